// How errors look on the admin port: `{"error": {"code", "message"}}` with the status
// that fits the code, so clients can match on a stable code.

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isDivertError, type ErrorCode } from '../errors.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  BAD_NAME: 400,
  BAD_ADDRESS: 400,
  BAD_TTL: 400,
  BAD_RULE: 400,
  BAD_ZONE: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  VERSION_MISMATCH: 412,
  BACKEND_UNAVAILABLE: 503,
  OUTCOME_UNKNOWN: 503,
};

export function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).send({ error: { code, message } });
}

/** Fastify's own errors (bad JSON, body too large, unknown content type) keep their status. */
export function errorHandler(err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (isDivertError(err)) return sendError(reply, STATUS[err.code] ?? 500, err.code, err.message);
  const fastifyError = err as FastifyError;
  if (fastifyError.statusCode && fastifyError.statusCode < 500) {
    const code = fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'BODY_TOO_LARGE'
      : fastifyError.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'UNSUPPORTED_MEDIA_TYPE'
      : 'BAD_REQUEST';
    return sendError(reply, fastifyError.statusCode, code, err.message);
  }
  request.log.error({ err }, 'admin request failed');
  return sendError(reply, 500, 'INTERNAL', 'internal error; see the server log');
}

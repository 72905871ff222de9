// How errors look on the admin port: `{"error": {"code", "message"}}` with the status
// that fits the code, so clients can match on a stable code. That holds for fastify's own
// errors too, also those it sends before any hook runs (a URL it cannot route, a request
// that is not HTTP).

import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
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
    const code =
      fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? 'BODY_TOO_LARGE'
        : fastifyError.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
          ? 'UNSUPPORTED_MEDIA_TYPE'
          : 'BAD_REQUEST';
    return sendError(reply, fastifyError.statusCode, code, err.message);
  }
  request.log.error({ err }, 'admin request failed');
  return sendError(reply, 500, 'INTERNAL', 'internal error; see the server log');
}

/**
 * What fastify's router refuses before any hook runs, so before the token is checked: a
 * path that does not decode, or a path segment longer than `maxParamLength`.
 */
export function frameworkErrorHandler(maxParamLength: number) {
  return (err: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      sendError(
        reply,
        414,
        'URI_TOO_LONG',
        `a segment of the path is longer than ${maxParamLength} characters, more than any name takes (253 characters, 1004 with every octet written as \\DDD)`,
      );
    } else if (err.code === 'FST_ERR_BAD_URL') {
      sendError(
        reply,
        400,
        'BAD_REQUEST',
        `the URL ${JSON.stringify(cut(request.url))} cannot be read (expected a path of UTF-8 with %XX escapes, as encodeURIComponent writes a name)`,
      );
    } else {
      errorHandler(err, request, reply);
    }
  };
}

/**
 * A request that is not HTTP at all, or whose headers are too large or too slow: node
 * refuses it before fastify sees a request, so the reply is written on the socket here.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  // a reset connection is gone: there is nobody to answer
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message]: [number, string, string] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'REQUEST_TIMEOUT', 'the request did not arrive in time']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'HEADERS_TOO_LARGE', 'the request line and headers are larger than the server takes']
        : [400, 'BAD_REQUEST', `the request is not valid HTTP/1.1 (${err.code ?? err.message})`];
  const body = JSON.stringify({ error: { code, message } });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/** A peer's text quoted in a message, cut to a readable length. */
function cut(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

// One error class for the whole program: a stable code that tests and the admin API
// match on, and a message that carries the values that were wrong.

export type ErrorCode =
  | 'BAD_CONFIG'
  | 'BAD_ZONE'
  | 'BAD_NAME'
  | 'BAD_ADDRESS'
  | 'BAD_TTL'
  | 'BAD_RULE'
  | 'NOT_FOUND'
  | 'VERSION_MISMATCH'
  | 'BACKEND_UNAVAILABLE'
  | 'OUTCOME_UNKNOWN'
  | 'LISTEN_FAILED'
  | 'WORKER_FAILED'
  | 'NO_UPSTREAM'
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED';

export class DivertError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DivertError';
    this.code = code;
  }
}

export function isDivertError(err: unknown, code?: ErrorCode): err is DivertError {
  return err instanceof DivertError && (code === undefined || err.code === code);
}

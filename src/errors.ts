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

/** The most of a bad value a message quotes. */
const SHOWN_CHARS = 80;

/**
 * A value from a request or a file as an error message quotes it: JSON, cut short. Safe
 * for any shape a peer can send: a value nested too deep for JSON.stringify (or String(),
 * which recurses through arrays) is described, never the cause of a crash.
 */
export function showValue(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  if (text === undefined) {
    text = Array.isArray(value)
      ? 'a list nested too deep to show'
      : typeof value === 'object' && value !== null
        ? 'an object nested too deep to show'
        : typeof value;
  }
  return text.length > SHOWN_CHARS ? `${text.slice(0, SHOWN_CHARS)}…` : text;
}

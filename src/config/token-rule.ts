// The rule an admin token obeys, whether given (--admin-token, --token) or read from a
// token file. Plain code without the option table's schema library, so that the CLI
// checks a token without loading it.

/** Characters an admin token may hold: it travels in an HTTP header. */
export const TOKEN_CHARS = /^[\x21-\x7e]+$/;

/** Too short to guess below this. */
export const MIN_TOKEN_LENGTH = 16;

/** What is wrong with a token (the first thing), or undefined when nothing is. */
export function tokenProblem(token: string): string | undefined {
  if (token.length < MIN_TOKEN_LENGTH) return `expected at least ${MIN_TOKEN_LENGTH} characters`;
  if (!TOKEN_CHARS.test(token)) return 'expected printable characters without spaces';
  return undefined;
}

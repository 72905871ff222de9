// The admin API's check of a bearer token against the one it demands, in constant time.

import { createHash, timingSafeEqual } from 'node:crypto';

/** Compares digests, so neither the content nor the length of the token leaks through timing. */
export function tokenMatcher(token: string): (given: string) => boolean {
  const expected = createHash('sha256').update(token).digest();
  return (given) => timingSafeEqual(createHash('sha256').update(given).digest(), expected);
}

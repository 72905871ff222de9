// Unpredictable 16-bit message IDs (RFC 5452), drawn from a buffer of CSPRNG output that
// is refilled in bulk, so a query costs an array read instead of a system call.

import { randomFillSync } from 'node:crypto';

const ids = new Uint16Array(4096);
let next = ids.length;

export function randomId(): number {
  if (next === ids.length) {
    randomFillSync(ids);
    next = 0;
  }
  return ids[next++];
}

/** A uniform integer in [0, n) for 1 <= n <= 65536, from the same CSPRNG buffer
 * (rejection sampling, so no value is more likely than another). */
export function randomBelow(n: number): number {
  const limit = 65536 - (65536 % n);
  for (;;) {
    const r = randomId();
    if (r < limit) return r % n;
  }
}

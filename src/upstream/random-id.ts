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

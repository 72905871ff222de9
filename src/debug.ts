// The inspection hook: how tests and debugging read what a component holds inside, and
// never the query path. A class with state worth looking at answers [INSPECT]() with a
// plain snapshot, and callers go through inspect(): no class carries a public member
// that only tests call, and a search for INSPECT finds every hook. (What tests ask of
// workers in other processes, a probe query, each worker's figures and PID, crosses the
// cluster's messages and so is the `debug` member of ServingHandle, serving/handle.ts.)

export const INSPECT: unique symbol = Symbol('divert.inspect');

/** Something that answers the inspection hook with `T`, given `A`. */
export interface Inspectable<A extends unknown[], T> {
  [INSPECT](...args: A): T;
}

/** `target`'s snapshot of itself (for tests and debugging). */
export function inspect<A extends unknown[], T>(target: Inspectable<A, T>, ...args: A): T {
  return target[INSPECT](...args);
}

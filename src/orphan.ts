// A worker process (of `divert serve` or `divert proxy`) lives only as long as its primary.
// The IPC channel's end is the usual sign that the primary died; should it not arrive (the
// channel closed before a listener was there, or its other end held open elsewhere), the
// primary's death still shows as a new parent process. Seen once in CI: a serve worker
// still running minutes after its primary was SIGKILLed.

/** Calls `onOrphaned` once when the channel to the parent closes or the parent changes. */
export function whenOrphaned(onOrphaned: () => void, everyMs = 500): void {
  const parent = process.ppid;
  let told = false;
  const tell = () => {
    if (told) return;
    told = true;
    clearInterval(watch);
    onOrphaned();
  };
  const watch = setInterval(() => {
    if (process.ppid !== parent || !process.connected) tell();
  }, everyMs).unref();
  process.once('disconnect', tell);
  if (!process.connected) tell();
}

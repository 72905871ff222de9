// Logs: pino JSON lines, one logger per process and a child per component ("serve",
// "table", "dns", "admin", "cluster", "update", "reload"), so every line says which part
// of divert wrote it. A pino child keeps the level it was created with; setLogLevel()
// changes the root and every component, which is what a reload of --log-level needs.

import { pino, type Logger, type LevelWithSilent } from 'pino';

/** The components made from each root, to change their level with it. */
const components = new WeakMap<Logger, Logger[]>();
const rootOf = new WeakMap<Logger, Logger>();

export function createLogger(level: LevelWithSilent, bindings: Record<string, unknown> = {}, destination?: pino.DestinationStream): Logger {
  const options = { level, base: { pid: process.pid, ...bindings } };
  const root = destination ? pino(options, destination) : pino(options);
  components.set(root, []);
  return root;
}

/** The logger of one component; `parent` is the root or another component's logger. */
export function componentLogger(parent: Logger, component: string): Logger {
  const root = rootOf.get(parent) ?? parent;
  const child = root.child({ component });
  child.level = parent.level;
  rootOf.set(child, root);
  if (!components.has(root)) components.set(root, []);
  components.get(root)!.push(child);
  return child;
}

/** Sets the level of `log`'s root and of every component made from it. */
export function setLogLevel(log: Logger, level: LevelWithSilent): void {
  const root = rootOf.get(log) ?? log;
  root.level = level;
  for (const child of components.get(root) ?? []) child.level = level;
}

/**
 * A log line that a peer can provoke at will (a bad datagram, a failing store lookup)
 * is written at most `lines` times per `windowMs`; the first line written after some
 * were left out carries their count as `suppressed`, so nothing is lost silently and a
 * flood cannot fill the disk.
 */
export function throttledLog(write: (details: Record<string, unknown>, message: string) => void, lines = 10, windowMs = 10_000) {
  let since = 0;
  let written = 0;
  let suppressed = 0;
  return (details: Record<string, unknown>, message: string, now = Date.now()): void => {
    if (now - since >= windowMs) [since, written] = [now, 0];
    if (written >= lines) {
      suppressed++;
      return;
    }
    written++;
    write(suppressed > 0 ? { ...details, suppressed } : details, message);
    suppressed = 0;
  };
}

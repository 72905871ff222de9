// A worker of `divert serve --workers N`: the query path over sockets it shares with the
// other workers, and a table view of its own that hears every change: the primary's
// table replicated over IPC, or its own connection to the shared Redis. Started by
// src/cluster/primary.ts through node:cluster; it exits when the primary goes away.

import { pino, type Logger } from 'pino';
import { componentLogger, createLogger, setLogLevel } from '../log.js';
import { DivertError } from '../errors.js';
import type { Result } from '../pipeline/outcome.js';
import { whenOrphaned } from '../orphan.js';
import { startServing, type Serving } from '../serving/serving.js';
import { openWorkerView } from '../table/backend.js';
import { ReplicaTable } from '../table/replica-table.js';
import type { WorkerView } from '../table/table.js';
import type { FromWorker, ToWorker } from './protocol.js';

/** To the primary. Once it is gone, so is the channel: the message goes nowhere (this
 * worker is on its way out) instead of throwing, or failing later with an 'error' event
 * (EPIPE) that nothing handles, which ended the worker with a stack trace on stderr. */
function send(message: FromWorker): void {
  if (process.connected) process.send?.(message, undefined, undefined, () => {});
}

let log: Logger = pino({ base: { component: 'worker' } });
/** Created at once, so a snapshot and changes that arrive while the sockets bind are kept. */
const replica = new ReplicaTable((err) => log.error({ err: err.message }, 'change listener failed'));
let serving: Serving | undefined;
let view: WorkerView | undefined;
let closing = false;
/** A reload that came while the worker was starting: applied as soon as it serves. */
let reload: Extract<ToWorker, { t: 'reconfigure' }> | undefined;
/** Likewise a new certificate. */
let certificate: Extract<ToWorker, { t: 'certificate' }> | undefined;
/** The first worker's pid, when it changed after the start message (a restart of it). */
let firstReader: number | undefined;

async function start(message: Extract<ToWorker, { t: 'start' }>): Promise<void> {
  const { config, upstreams } = message;
  log = componentLogger(createLogger(config.logLevel, { worker: message.workerId }), 'dns');
  const tableLog = componentLogger(log, 'table');
  view = await openWorkerView(message.table, replica, (err) => tableLog.warn({ err: err.message }, 'redis table'));
  serving = await startServing(config, view, upstreams, log, {
    exclusive: false,
    worker: message.workerId,
    udpFds: message.udpFds,
    firstReader: message.firstReader,
    tls: message.tls,
    onPoolNews: (news) => send({ t: 'upstream', news }),
  });
  // in the same turn as the listeners were set up: no query is answered with the old configuration
  if (reload) reconfigure(reload);
  // a certificate that came while starting (a SIGHUP meanwhile) replaces the one started with
  if (certificate) setCertificate(certificate);
  if (firstReader !== undefined) serving.setFirstReader(firstReader);
  send({ t: 'listening', listening: serving.listening, encrypted: serving.encrypted });
}

function reconfigure(message: Extract<ToWorker, { t: 'reconfigure' }>): void {
  setLogLevel(log, message.config.logLevel);
  if (!serving) {
    reload = message;
    return;
  }
  reload = undefined;
  serving.reconfigure(message.config, message.upstreams);
  log.debug({ upstreams: message.upstreams.length, allow: message.config.allow.length }, 'worker applied the reloaded configuration');
  send({ t: 'reconfigured', id: message.id });
}

function setCertificate(message: Extract<ToWorker, { t: 'certificate' }>): void {
  if (!serving) {
    certificate = message;
    return;
  }
  certificate = undefined;
  serving.setCertificate(message.pem);
  send({ t: 'certified', id: message.id });
}

/** How long a worker whose primary is gone may take over its queries in flight before it exits anyway. */
const ORPHAN_CLOSE_MS = 2000;

async function close(code: number, limitMs?: number): Promise<never> {
  if (limitMs !== undefined) setTimeout(() => process.exit(code), limitMs).unref();
  if (!closing) {
    closing = true;
    await serving?.close().catch(() => {});
    await view?.close().catch(() => {});
  }
  process.exit(code);
}

async function probe(query: Uint8Array, address: string): Promise<Result | null> {
  return serving ? serving.debug.probe(Buffer.from(query.buffer, query.byteOffset, query.byteLength), address) : null;
}

process.on('message', (message: ToWorker) => {
  switch (message.t) {
    case 'start':
      start(message).catch((err: unknown) => {
        const failure =
          err instanceof DivertError
            ? { code: err.code, message: err.message }
            : { code: 'WORKER_FAILED', message: (err as Error).message };
        send({ t: 'failed', ...failure });
        void close(1);
      });
      break;
    case 'snapshot':
      replica.load(message.entries);
      break;
    case 'changes':
      for (const event of message.events) replica.apply(event);
      break;
    case 'stats':
      if (serving) send({ t: 'stats', id: message.id, stats: serving.stats() });
      break;
    case 'probe':
      void probe(message.query, message.address).then((result) => send({ t: 'probe', id: message.id, result }));
      break;
    case 'sync':
      // the replica's changes came before this message on the same channel; a Redis
      // view's come on its own subscription, which it drains first
      void Promise.resolve(view?.barrier())
        .catch(() => {})
        .then(() => send({ t: 'synced', id: message.id }));
      break;
    case 'upstream':
      serving?.hear(message.news);
      break;
    case 'reconfigure':
      reconfigure(message);
      break;
    case 'certificate':
      setCertificate(message);
      break;
    case 'first-reader':
      firstReader = message.pid;
      serving?.setFirstReader(message.pid);
      break;
    case 'close':
      void close(0);
      break;
  }
});

// The primary coordinates shutdown: a Ctrl-C reaches the whole process group, and the
// workers wait for the primary's word. Without a primary there is nothing to serve for.
process.on('SIGINT', () => {});
// a hangup of the terminal reaches the workers too: only the primary reloads (and tells them)
process.on('SIGHUP', () => {});
process.on('SIGTERM', () => void close(0));
whenOrphaned(() => void close(0, ORPHAN_CLOSE_MS));
// messages sent before this module had its listener would be lost: say when to begin
send({ t: 'ready' });

// `divert serve --workers N` (N > 1): N worker processes share the DNS sockets through
// node:cluster (the primary holds each socket and hands the same one to every worker;
// the kernel gives each datagram to whichever worker reads first, and TCP connections
// are accepted by the workers directly; --udp-batch's UDP sockets are handed over as
// descriptors, src/cluster/shared-udp.ts). The primary owns the table and the admin API; every worker hears every
// change: the in-process table's changes are sent to each worker in order after a
// snapshot, and with Redis each worker follows the change channel itself. A worker that
// dies is replaced (when: src/cluster/restarts.ts).

import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { DivertError, type ErrorCode } from '../errors.js';
import { WORKER_HEAP_FLAGS } from '../worker-heap.js';
import type { HostPort } from '../net/host-port.js';
import type { UpstreamSpec } from '../net/upstream-spec.js';
import type { ServeConfig } from '../config/options.js';
import { sumStats } from '../serving/stats.js';
import type { ServingHandle } from '../serving/handle.js';
import type { Replication, WorkerTable } from '../table/backend.js';
import type { ChangeEvent } from '../entry/entry.js';
import type { FromWorker, ToWorker } from './protocol.js';
import { RESTART_TIMES, RestartSchedule } from './restarts.js';
import { freePortForBoth, freeTcpPort } from './ports.js';
import type { TlsPem } from '../transport/tls-settings.js';
import { SharedUdp } from './shared-udp.js';
import { loadUdpBatch, udpBatchAddonPath } from '../transport/udp-batch.js';

/** RESTART_TIMES, with the time a worker must serve to be forgiven its crashes shortened
 * by DIVERT_TEST_WORKER_STABLE_MS: for tests only (test/worker-restarts.test.ts), not an option. */
function restartTimes(env: NodeJS.ProcessEnv = process.env) {
  const stableMs = Number(env.DIVERT_TEST_WORKER_STABLE_MS);
  return Number.isInteger(stableMs) && stableMs > 0 ? { ...RESTART_TIMES, stableMs } : RESTART_TIMES;
}

const REPLY_TIMEOUT_MS = 2000;
/** How long a write waits for every worker to confirm it: a busy worker may be seconds behind without being stalled. */
const SETTLE_TIMEOUT_MS = 5000;
/** Changes per message to a worker: an import of many names is a few messages, not one per name. */
const CHANGES_PER_MESSAGE = 1000;
/** A worker that has not exited this long after the query timeout (its drain) is killed. */
const STOP_MARGIN_MS = 2000;

/** What the workers read their table from: each its own Redis connection, or a replica of the primary's store, fed from here. */
export interface WorkersTable {
  worker: WorkerTable;
  replication: Replication | null;
}

/** Each address as asked for, a port 0 replaced by a TCP port free now (that every worker then binds). */
function withTcpPorts(addresses: readonly HostPort[]): Promise<HostPort[]> {
  return Promise.all(addresses.map(async (at) => (at.port === 0 ? { host: at.host, port: await freeTcpPort(at.host) } : at)));
}

export async function startWorkers(
  config: ServeConfig,
  table: WorkersTable,
  upstreams: UpstreamSpec[],
  log: Logger,
  tls: TlsPem | null,
): Promise<ServingHandle> {
  // workers accept TCP connections themselves: no hand-off through the primary per connection
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  cluster.setupPrimary({
    exec: fileURLToPath(new URL('./worker.js', import.meta.url)),
    // not the primary's own flags (a test runner's, say); NODE_OPTIONS still reaches the workers
    execArgv: [...WORKER_HEAP_FLAGS],
    serialization: 'advanced',
  });

  const replicated = table.replication;
  const slots = new Array<Worker | null>(config.workers).fill(null);
  /** Workers that have had the snapshot: they get every change from then on, in order. */
  const live = new Set<Worker>();
  /** Workers that are answering queries (start-up done). */
  const serving = new Set<Worker>();
  /** Requests waiting for a worker's reply, by id. */
  const replies = new Map<number, { worker: Worker; done: (message: FromWorker | null) => void }>();
  let nextRequest = 1;
  let stopping = false;

  const post = (worker: Worker, message: ToWorker) => {
    if (worker.isConnected()) worker.send(message, () => {}); // a worker gone meanwhile is replaced on exit
  };
  // a write's changes all come in one turn: they go out together once it ends
  let pending: ChangeEvent[] = [];
  const sendChanges = () => {
    const events = pending;
    pending = [];
    for (let i = 0; i < events.length; i += CHANGES_PER_MESSAGE) {
      const batch = events.slice(i, i + CHANGES_PER_MESSAGE);
      for (const worker of live) post(worker, { t: 'changes', events: batch });
    }
  };
  const stopReplicating = replicated?.onChange((event) => {
    if (pending.push(event) === 1) queueMicrotask(sendChanges);
  });

  let listen = config.listen;
  let listenTls = config.listenTls;
  let listenHttps = config.listenHttps;
  /** The listen addresses as bound, which every worker (a respawned one too) binds. */
  const bound = () => ({ listen, listenTls, listenHttps });
  let certificate = tls;
  /** --udp-batch: the UDP sockets the primary binds for the workers (null: the addon does not load; each worker says so). */
  const addon = config.udpBatch ? loadUdpBatch(udpBatchAddonPath()) : null;
  let shared: SharedUdp | null = null;
  // what a worker starts with: the configuration of the last reload (listen stays as bound)
  let current = config;
  let currentUpstreams = upstreams;
  let longestQueryTimeoutMs = config.queryTimeoutMs;
  /** `replacing`: the slot's worker exited; a failed start is then retried, not fatal. */
  const fork = (slot: number, replacing = false): Promise<Extract<FromWorker, { t: 'listening' }>> => {
    const worker = cluster.fork({ DIVERT_WORKER: String(slot + 1) });
    slots[slot] = worker;
    // the others read the shared UDP sockets while the first falls behind, judged by its CPU: tell them who it is now
    const pid = worker.process.pid;
    if (slot === 0 && pid !== undefined) for (const other of slots) if (other && other !== worker) post(other, { t: 'first-reader', pid });
    return new Promise((resolve, reject) => {
      let started = false;
      worker.on('message', (message: FromWorker) => {
        if (message.t === 'ready') {
          post(worker, {
            t: 'start',
            config: { ...current, ...bound() },
            upstreams: currentUpstreams,
            tls: certificate,
            table: table.worker,
            workerId: slot + 1,
            udpFds: shared?.workerFds,
            firstReader: slot > 0 ? slots[0]?.process.pid : undefined,
          });
          if (replicated) {
            sendChanges(); // to the others: the snapshot holds them
            post(worker, { t: 'snapshot', entries: replicated.snapshot() });
            live.add(worker);
          }
        } else if (message.t === 'listening') {
          started = true;
          serving.add(worker);
          restarts.serving(slot);
          if (replacing) log.info({ worker: slot + 1, pid: worker.process.pid }, 'new worker serving');
          resolve(message);
        } else if (message.t === 'failed') {
          reject(new DivertError(message.code as ErrorCode, message.message));
        } else if (message.t === 'upstream') {
          // one worker's upstream failure counts for all: an upstream goes down once, not once per worker
          for (const other of slots) if (other && other !== worker) post(other, message);
        } else {
          replies.get(message.id)?.done(message);
        }
      });
      worker.on('exit', (code, signal) => {
        live.delete(worker);
        serving.delete(worker);
        // no reply will come: /healthz and /metrics need not wait REPLY_TIMEOUT_MS for it
        for (const pending of replies.values()) if (pending.worker === worker) pending.done(null);
        if (slots[slot] === worker) slots[slot] = null;
        if (!started) reject(new DivertError('WORKER_FAILED', `worker ${slot + 1} exited during start-up (${signal ?? `code ${code}`})`));
        // a worker of the first start that fails fails the start
        if (stopping || (!started && !replacing)) return;
        // a crash must not leave a share of the clients' queries unanswered: start another
        const { crashes, delayMs, upMs } = restarts.exited(
          slot,
          slots.some((w) => w !== null),
        );
        log.error(
          { worker: slot + 1, code, signal, upSeconds: upMs === null ? null : Math.round(upMs / 100) / 10, crashes, restartInMs: delayMs },
          started ? 'worker exited; starting a new one' : 'new worker failed to start; trying again',
        );
      });
    });
  };

  const request = <T extends FromWorker>(
    worker: Worker,
    make: (id: number) => ToWorker,
    timeoutMs = REPLY_TIMEOUT_MS,
  ): Promise<T | null> => {
    const id = nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(null), timeoutMs);
      const done = (message: T | null) => {
        clearTimeout(timer);
        replies.delete(id);
        resolve(message);
      };
      replies.set(id, { worker, done: (message) => done(message as T | null) });
      post(worker, make(id));
    });
  };
  /** Sends each connected worker its message; resolves with the workers (1-based) that did not confirm in time. */
  const unconfirmedOf = async (make: (id: number) => ToWorker): Promise<number[]> => {
    const workers = slots.flatMap((w, slot) => (w !== null && w.isConnected() ? [{ w, slot }] : []));
    const acks = await Promise.all(workers.map(({ w }) => request(w, make)));
    return workers.filter((_, i) => acks[i] === null).map(({ slot }) => slot + 1);
  };
  const running = () => slots.filter((w): w is Worker => w !== null && serving.has(w) && w.isConnected());
  const restarts = new RestartSchedule(
    config.workers,
    (slot) => {
      // its failure is logged, and retried, when the worker exits
      if (!stopping) fork(slot, true).catch(() => {});
    },
    restartTimes(),
  );

  const close = async () => {
    stopping = true;
    restarts.stop();
    stopReplicating?.();
    await Promise.all(
      slots
        .filter((worker): worker is Worker => worker !== null && !worker.isDead())
        .map((worker) => {
          return new Promise<void>((resolve) => {
            const timer = setTimeout(() => worker.process.kill('SIGKILL'), longestQueryTimeoutMs + STOP_MARGIN_MS);
            worker.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            post(worker, { t: 'close' });
          });
        }),
    );
    shared?.close();
  };

  try {
    // the first worker binds; a requested port 0 becomes one port that every worker then shares
    let listening: Extract<FromWorker, { t: 'listening' }> | undefined;
    for (let tries = 0; !listening; tries++) {
      shared?.close();
      shared = addon ? await SharedUdp.bind(addon, config.listen) : null;
      if (shared) cluster.setupPrimary({ stdio: shared.stdio });
      listen =
        shared?.listen ??
        (await Promise.all(
          config.listen.map(async (at) => (at.port === 0 ? { host: at.host, port: await freePortForBoth(at.host) } : at)),
        ));
      listenTls = await withTcpPorts(config.listenTls);
      listenHttps = await withTcpPorts(config.listenHttps);
      try {
        listening = await fork(0);
      } catch (err) {
        const anyPortZero = [...config.listen, ...config.listenTls, ...config.listenHttps].some((at) => at.port === 0);
        const retry = err instanceof DivertError && err.code === 'LISTEN_FAILED' && anyPortZero && tries < 5;
        if (!retry) throw err;
      }
    }
    await Promise.all(slots.slice(1).map((_, i) => fork(i + 1)));
    const statsEach = async () => {
      const got = await Promise.all(running().map((w) => request<Extract<FromWorker, { t: 'stats' }>>(w, (id) => ({ t: 'stats', id }))));
      return got.filter((m) => m !== null).map((m) => m.stats);
    };
    return {
      listening: listening.listening,
      encrypted: listening.encrypted,
      setCertificate: async (pem) => {
        certificate = pem;
        return unconfirmedOf((id) => ({ t: 'certificate', id, pem }));
      },
      stats: async () => sumStats(await statsEach()),
      // every worker that answers queries must say it has applied every change so far;
      // one that does not within SETTLE_TIMEOUT_MS is named, and the write is not
      // acknowledged as answered everywhere
      settle: async () => {
        sendChanges();
        const workers = slots.flatMap((w, slot) => (w !== null && serving.has(w) && w.isConnected() ? [{ w, slot }] : []));
        const acks = await Promise.all(workers.map(({ w }) => request(w, (id) => ({ t: 'sync', id }), SETTLE_TIMEOUT_MS)));
        const unconfirmed = workers
          .filter((_, i) => acks[i] === null && slots[workers[i].slot] === workers[i].w)
          .map(({ slot }) => slot + 1);
        return { unconfirmed };
      },
      workers: () => ({
        configured: config.workers,
        running: running().length,
        restarting: restarts.restarting(),
        restarts: restarts.restarts(),
      }),
      reconfigure: async (next, nextUpstreams) => {
        current = next;
        currentUpstreams = nextUpstreams;
        longestQueryTimeoutMs = Math.max(longestQueryTimeoutMs, next.queryTimeoutMs);
        return unconfirmedOf((id) => ({ t: 'reconfigure', id, config: { ...next, ...bound() }, upstreams: nextUpstreams }));
      },
      close,
      debug: {
        statsEach,
        probe: async (query, address = '127.0.0.1') => {
          const got = await Promise.all(
            running().map((w) => request<Extract<FromWorker, { t: 'probe' }>>(w, (id) => ({ t: 'probe', id, query, address }))),
          );
          return got.map((m) =>
            m?.result ? { reply: m.result.reply ? Buffer.from(m.result.reply) : null, outcome: m.result.outcome } : null,
          );
        },
        pids: () => running().map((w) => w.process.pid!),
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}

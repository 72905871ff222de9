// `divert proxy --workers N`: the primary forks N workers, each running every service
// (TCP listeners shared, each worker accepting from them; UDP listeners one per worker with
// SO_REUSEPORT, so a client's flow stays with one worker), answers the status endpoint
// with all the workers' figures merged, and starts a worker again if one dies.

import cluster, { type Worker } from 'node:cluster';
import { createSocket } from 'node:dgram';
import type { Logger } from 'pino';
import { formatHostPort, type HostPort } from '../net/host-port.js';
import type { ProxyConfig } from './config.js';
import { mergeFigures, type ProxyFigures } from './figures.js';
import { listenKey, relaysNatively, type RelayListener, type TcpRelayAddon } from './native-relay.js';
import type { Proxy } from './proxy.js';
import { whenOrphaned } from '../orphan.js';
import { WORKER_HEAP_FLAGS } from '../worker-heap.js';

/** How long a worker whose primary is gone may take to close before it exits anyway. */
const ORPHAN_CLOSE_MS = 2000;

export type ToWorker = { t: 'figures'; id: number } | { t: 'reload' };
export type FromWorker =
  | { t: 'ready'; listening: Record<string, HostPort[]> }
  | { t: 'failed'; message: string; code?: string }
  | { t: 'figures'; id: number; figures: ProxyFigures };

/** The variable that tells a worker its number, the one that carries the ports the primary chose for port 0 (UDP, and
 * the native relay's TCP listeners), and the one that names the descriptors of the native relay's listeners. */
const WORKER_VARIABLE = 'DIVERT_PROXY_WORKER';
const UDP_PORTS_VARIABLE = 'DIVERT_PROXY_UDP_PORTS';
const TCP_FDS_VARIABLE = 'DIVERT_PROXY_TCP_FDS';
/** A worker's descriptors 0-2 are its stdio and 3 the IPC channel: the listeners follow. */
const FIRST_FD = 4;
/** Each worker's connection ids start here times its number, so that merged ids stay unique. */
const ID_SPAN = 2 ** 40;
const FIGURES_TIMEOUT_MS = 2000;
const RESTART_DELAY_MS = 1000;

export function workerNumber(): number | null {
  return cluster.isWorker ? Number(process.env[WORKER_VARIABLE] ?? 1) : null;
}

export function firstIdOf(worker: number): number {
  return worker * ID_SPAN + 1;
}

/** The worker whose connection table holds connection `id` (firstIdOf's inverse). */
export function workerOf(id: number): number {
  return Math.floor(id / ID_SPAN);
}

/** A UDP listen address with port 0 gets one port for every worker: chosen here, before they bind. */
async function udpPorts(config: ProxyConfig): Promise<Record<string, number>> {
  const ports: Record<string, number> = {};
  for (const s of config.services) {
    if (s.protocol !== 'udp') continue;
    for (const [i, at] of s.listen.entries()) {
      if (at.port !== 0) continue;
      const socket = createSocket(at.host.includes(':') ? 'udp6' : 'udp4');
      ports[listenKey(s, i)] = await new Promise<number>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, at.host, () => resolve(socket.address().port));
      });
      socket.close();
    }
  }
  return ports;
}

/**
 * The native relay's listeners, opened here (one socket per listen address, which every
 * worker accepts from, as node:cluster shares node:net's): each worker, respawned ones too,
 * gets them as its descriptors FIRST_FD on. Throws naming the address that failed.
 */
function openNative(config: ProxyConfig, addon: TcpRelayAddon | null): { key: string; listener: RelayListener; port: number }[] {
  const opened: { key: string; listener: RelayListener; port: number }[] = [];
  if (!addon) return opened;
  for (const s of config.services) {
    if (!relaysNatively(s)) continue;
    for (const [i, at] of s.listen.entries()) {
      try {
        const listener = addon.listen(at.host, at.port);
        opened.push({ key: listenKey(s, i), listener, port: addon.port(listener) });
      } catch (err) {
        for (const o of opened) addon.stop(o.listener);
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        throw Object.assign(new Error(`service "${s.name}": cannot listen on tcp ${formatHostPort(at)} (${code})`), { code });
      }
    }
  }
  return opened;
}

/** In a worker: the native relay's listeners the primary opened, as this process's descriptors. */
export function inheritedListeners(): Record<string, number> {
  return JSON.parse(process.env[TCP_FDS_VARIABLE] ?? '{}') as Record<string, number>;
}

/** In a worker: the config with the ports the primary chose. */
export function withChosenPorts(config: ProxyConfig): ProxyConfig {
  const ports = JSON.parse(process.env[UDP_PORTS_VARIABLE] ?? '{}') as Record<string, number>;
  return {
    ...config,
    services: config.services.map((s) => ({
      ...s,
      listen: s.listen.map((at, i) => ({ ...at, port: ports[listenKey(s, i)] ?? at.port })),
    })),
  };
}

export class ProxyPrimary {
  private readonly workers = new Map<number, Worker>();
  private listeningAt: Record<string, HostPort[]> = {};
  private stopping = false;
  private nextAsk = 1;

  private constructor(
    private readonly count: number,
    private readonly env: Record<string, string>,
    private readonly log: Logger,
    /** The native relay's listeners, held for the workers (closed when the primary stops). */
    private readonly native: { addon: TcpRelayAddon | null; listeners: RelayListener[] } = { addon: null, listeners: [] },
  ) {}

  /** Forks the workers and waits until every one listens; rejects with the first failure's message (its code as err.code). */
  static async start(config: ProxyConfig, count: number, log: Logger, nativeRelay: TcpRelayAddon | null = null): Promise<ProxyPrimary> {
    // every worker accepts from the shared TCP listeners itself, instead of the primary handing each connection over
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    const ports = await udpPorts(config);
    const native = openNative(config, nativeRelay);
    const fds: Record<string, number> = {};
    native.forEach((n, i) => {
      ports[n.key] = n.port;
      fds[n.key] = FIRST_FD + i;
    });
    // the primary's own flags (--cpu-prof, say) and a bounded young generation (worker-heap.ts)
    cluster.setupPrimary({
      execArgv: [...process.execArgv, ...WORKER_HEAP_FLAGS],
      stdio: ['inherit', 'inherit', 'inherit', 'ipc', ...native.map((n) => nativeRelay!.fd(n.listener))],
    });
    const env = { [UDP_PORTS_VARIABLE]: JSON.stringify(ports), [TCP_FDS_VARIABLE]: JSON.stringify(fds) };
    const primary = new ProxyPrimary(count, env, log, { addon: nativeRelay, listeners: native.map((n) => n.listener) });
    try {
      await Promise.all(Array.from({ length: count }, (_, i) => primary.fork(i + 1)));
    } catch (err) {
      await primary.stop();
      throw err;
    }
    return primary;
  }

  get listening(): Record<string, HostPort[]> {
    return this.listeningAt;
  }

  /** Every worker's figures, merged; a worker that does not answer in time is left out (and logged). */
  async figures(): Promise<ProxyFigures> {
    const parts = await Promise.all([...this.workers.values()].map((w) => this.ask(w)));
    const got = parts.filter((p): p is ProxyFigures => p !== null);
    const admin = got[0]?.admin ?? { up: false, since: new Date().toISOString(), error: 'no worker answered' };
    return mergeFigures(got, admin);
  }

  /** SIGHUP: every worker reads its TLS certificates again. */
  reloadTls(): void {
    for (const w of this.workers.values()) if (w.isConnected()) w.send({ t: 'reload' } satisfies ToWorker, undefined, undefined, () => {});
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const listener of this.native.listeners) this.native.addon?.stop(listener);
    this.native.listeners.length = 0;
    await Promise.all(
      [...this.workers.values()].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            const kill = setTimeout(() => w.process.kill('SIGKILL'), 5000);
            w.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            w.process.kill('SIGTERM');
          }),
      ),
    );
  }

  private fork(n: number): Promise<void> {
    const worker = cluster.fork({ ...this.env, [WORKER_VARIABLE]: String(n) });
    this.workers.set(n, worker);
    return new Promise<void>((resolve, reject) => {
      let started = false;
      worker.on('message', (m: FromWorker) => {
        if (m.t === 'ready') {
          started = true;
          this.listeningAt = m.listening;
          resolve();
        } else if (m.t === 'failed') {
          reject(Object.assign(new Error(m.message), { code: m.code }));
        }
      });
      worker.on('exit', (code, signal) => {
        if (!started) reject(new Error(`worker ${n} exited before it listened (${signal ?? `exit ${code}`})`));
        if (this.stopping || this.workers.get(n) !== worker) return;
        this.log.error({ worker: n, code, signal }, `worker ${n} died; starting it again in ${RESTART_DELAY_MS} ms`);
        setTimeout(() => {
          if (!this.stopping)
            this.fork(n).catch((err: unknown) => this.log.error({ worker: n, err: String(err) }, 'worker did not start again'));
        }, RESTART_DELAY_MS).unref();
      });
    });
  }

  private ask(worker: Worker): Promise<ProxyFigures | null> {
    if (worker.isDead() || !worker.isConnected()) return Promise.resolve(null);
    const id = this.nextAsk++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        worker.off('message', onMessage);
        this.log.warn({ worker: worker.id }, 'a worker did not send its figures in time: left out of this reply');
        resolve(null);
      }, FIGURES_TIMEOUT_MS);
      const onMessage = (m: FromWorker) => {
        if (m.t !== 'figures' || m.id !== id) return;
        clearTimeout(timer);
        worker.off('message', onMessage);
        resolve(m.figures);
      };
      worker.on('message', onMessage);
      worker.send({ t: 'figures', id } satisfies ToWorker, undefined, undefined, () => {});
    });
  }
}

/** In a worker: tells the primary it listens (or why not), answers its requests for figures, and stops with it. */
export async function serveAsWorker(proxy: Proxy): Promise<void> {
  const stop = () => void proxy.stop().then(() => process.exit(0));
  const send = (m: FromWorker) => {
    if (process.connected) process.send?.(m, undefined, undefined, () => {});
  };
  // a hangup sent to the whole process group: the primary tells the workers to reload, they do not end
  process.on('SIGHUP', () => {});
  // a primary gone while this worker starts (it reads the table first) ends it too
  let started = false;
  whenOrphaned(() => {
    if (!started) process.exit(0);
    setTimeout(() => process.exit(0), ORPHAN_CLOSE_MS).unref();
    stop();
  });
  try {
    await proxy.start();
  } catch (err) {
    send({ t: 'failed', message: (err as Error).message, code: (err as NodeJS.ErrnoException).code });
    setTimeout(() => process.exit(2), 50).unref();
    return;
  }
  process.on('message', (m: ToWorker) => {
    if (m.t === 'figures') send({ t: 'figures', id: m.id, figures: proxy.figures() });
    else if (m.t === 'reload') proxy.reloadTls();
  });

  started = true;
  process.once('SIGTERM', stop);
  send({ t: 'ready', listening: proxy.listening() });
}

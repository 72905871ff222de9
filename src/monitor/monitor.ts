// The monitor: checks every mirror on its service's interval, turns the results into each
// service's answer through its policy, and hands changed answers to the table sync.

import type { Logger } from 'pino';
import type { AdminClient } from '../client/admin-client.js';
import { checkPort, passiveTarget, type MonitorConfig, type PassiveConfig, type ServiceConfig } from './config.js';
import type { MonitorMetrics } from './metrics.js';
import { FailureWindow, growth, readConnectFailures, readTimeout } from './passive.js';
import { choose, nextHealth, UNKNOWN, type Answer, type Health, type PolicyMemory } from './policies.js';
import { probe, type ProbeResult } from './probe.js';
import { TableSync, type Hold, type Wanted } from './table-sync.js';
import { formatHostPort } from '../net/host-port.js';

interface MirrorRuntime {
  address: string;
  port: number;
  priority: number;
  weight: number;
  site?: string;
  health: Health;
  lastCheck?: number;
  last?: ProbeResult;
  load?: number;
  /** When the state last changed (ms since the epoch). */
  since?: number;
  /** Why the state last changed. */
  reason?: string;
  /** The proxy's name for this mirror in GET /v1/stats/targets. */
  target: string;
  /** Passive health: the failures read within the window, all counted so far, when they last marked it down. */
  window?: FailureWindow;
  passiveFailures: number;
  passiveDownAt?: number;
}

interface PassiveRuntime {
  config: PassiveConfig;
  /** The proxy's HOST:PORT, as logs and status show it. */
  at: string;
  /** The counters of the last read; undefined until one (and after an outage: the next read is a new start). */
  last?: Map<string, number>;
  lastRead?: number;
  outage?: { since: number; error: string };
}

interface ServiceRuntime {
  config: ServiceConfig;
  mirrors: MirrorRuntime[];
  memory: PolicyMemory;
  /** Whether least-loaded's memory was taken from the table's answer yet. */
  resumed: boolean;
  answer?: Answer;
  allDown: boolean;
  passive?: PassiveRuntime;
}

export interface MirrorStatus {
  address: string;
  port: number;
  site: string | null;
  priority: number;
  weight: number;
  state: Health['state'];
  since: string | null;
  lastCheck: string | null;
  lastResult: 'ok' | 'fail' | null;
  error: string | null;
  latencyMs: number | null;
  load: number | null;
  okRun: number;
  failRun: number;
  overloaded: boolean;
  inAnswer: boolean;
  /** Why the state last changed: "passive: 3 connect failures via proxy 127.0.0.1:5382" when passive health made it down. */
  reason: string | null;
  /** Connect failures divert proxy counted for this mirror since the monitor started (passive health only). */
  passiveFailures: number | null;
}

/** Passive health of a service: the proxy it reads, and whether that works. */
export interface PassiveStatus {
  proxy: string;
  /** null before the first read; false while the proxy cannot be read (passive health paused). */
  up: boolean | null;
  /** When the proxy became unreachable. */
  since: string | null;
  error: string | null;
  lastRead: string | null;
  failures: number;
  windowMs: number;
  intervalMs: number;
}

export interface NameStatusReport {
  name: string;
  /** What the table holds (null: not intercepted; undefined before the first read). */
  table: { a: string[]; aaaa: string[]; ttl: number; version: number } | null | undefined;
  inSync: boolean;
  hold: { since: string; until: string | null; by: string; version: number } | null;
  lastPush: { at: string; version: number } | null;
  error: string | null;
  /** Queries per second divert answered for the name over the last queryRates interval (null before two readings). */
  queriesPerSecond: number | null;
}

export interface ServiceStatus {
  name: string;
  policy: ServiceConfig['policy'];
  /** Every mirror has a known state, so the service has an answer (or all are down). */
  ready: boolean;
  answer: string[] | null;
  weights: Record<string, number> | null;
  allDown: boolean;
  passive: PassiveStatus | null;
  names: NameStatusReport[];
  mirrors: MirrorStatus[];
}

export interface StatusReport {
  id: string;
  startedAt: string;
  admin: { url: string; up: boolean; since: string | null; error: string | null };
  services: ServiceStatus[];
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

function where(m: MirrorRuntime): string {
  return m.address.includes(':') ? `[${m.address}]:${m.port}` : `${m.address}:${m.port}`;
}

export function wantedOf(service: ServiceConfig, answer: Answer): Wanted {
  return {
    a: answer.addresses.filter((a) => !a.includes(':')),
    aaaa: answer.addresses.filter((a) => a.includes(':')),
    ...(service.policy === 'weighted' && { weights: answer.weights ?? {} }),
    ...(service.policy === 'weighted' && service.pick !== undefined && { pick: service.pick }),
  };
}

export class Monitor {
  private readonly services: ServiceRuntime[];
  private readonly sync: TableSync;
  private readonly startedAt = Date.now();
  private stopped = false;
  private readonly timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private loops: Promise<void>[] = [];
  /** divert's count of queries per name at the last reading, and when it was taken. */
  private lastCounts: { at: number; names: Record<string, number> } | undefined;
  private readonly qps = new Map<string, number>();
  private readonly queryRatesMs: number;

  constructor(
    config: MonitorConfig,
    private readonly admin: AdminClient,
    private readonly id: string,
    private readonly log: Logger,
    private readonly metrics: MonitorMetrics,
  ) {
    const shortest = Math.min(...config.services.map((s) => s.check.interval));
    this.queryRatesMs = config.queryRates;
    this.sync = new TableSync(admin, log, metrics, {
      id,
      manualHoldMs: config.manualHold,
      refreshMs: config.refresh,
      holdRecheckMs: Math.max(shortest, 200),
    });
    this.services = config.services.map((s) => ({
      config: s,
      mirrors: s.mirrors.map((m) => ({
        address: m.address,
        port: checkPort(s, m),
        priority: m.priority,
        weight: m.weight,
        site: m.site,
        health: UNKNOWN,
        target: passiveTarget(s, m),
        ...(s.passive && { window: new FailureWindow(s.passive.window) }),
        passiveFailures: 0,
      })),
      memory: { members: [], overloaded: [] },
      resumed: false,
      allDown: false,
      ...(s.passive && { passive: { config: s.passive, at: formatHostPort(s.passive.proxy) } }),
    }));
    for (const s of this.services) for (const name of s.config.names) this.sync.add(s.config.name, name, s.config.ttl);
  }

  start(): void {
    this.sync.start();
    for (const s of this.services) {
      this.metrics.allDown.set({ service: s.config.name }, 0);
      for (const m of s.mirrors) this.loops.push(this.checkLoop(s, m));
      if (s.passive) {
        this.metrics.passiveProxyUp.set({ service: s.config.name }, 0);
        this.loops.push(this.passiveLoop(s, s.passive));
      }
    }
    this.loops.push(this.rateLoop());
  }

  /**
   * What divert reports of each name's traffic, read every queryRates interval and turned
   * into a rate: the query load on the names this monitor steers, beside its mirrors' own
   * load figures. A failed reading is skipped (the table sync reports admin outages).
   */
  private async rateLoop(): Promise<void> {
    while (!this.stopped) {
      try {
        const { names } = await this.admin.nameQueries();
        const now = Date.now();
        const last = this.lastCounts;
        if (last) {
          const seconds = (now - last.at) / 1000;
          for (const s of this.services) {
            for (const name of s.config.names) {
              // a count below the last one: divert restarted, and counted this many since
              const [before, after] = [last.names[name] ?? 0, names[name] ?? 0];
              const rate = Math.round(((after >= before ? after - before : after) / seconds) * 100) / 100;
              this.qps.set(name, rate);
              this.metrics.nameQps.set({ service: s.config.name, name }, rate);
            }
          }
        }
        this.lastCounts = { at: now, names };
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, "reading divert's query counts failed");
      }
      await this.sleep(this.queryRatesMs);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) {
      clearTimeout(t.timer);
      t.resolve();
    }
    await Promise.all(this.loops);
    await this.sync.stop();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.timers.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      this.timers.add(entry);
    });
  }

  /** Fixed rate: the next check starts one interval after the last one started. */
  private async checkLoop(s: ServiceRuntime, m: MirrorRuntime): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      const result = await probe(s.config.check, m);
      if (this.stopped) return;
      this.record(s, m, result, started);
      await this.sleep(Math.max(0, started + s.config.check.interval - Date.now()));
    }
  }

  /**
   * Passive health: the proxy's counters read every passive interval. The first read (and
   * the first after an outage) only sets where counting starts; after that each mirror's
   * new connect failures are counted in its window.
   */
  private async passiveLoop(s: ServiceRuntime, p: PassiveRuntime): Promise<void> {
    const service = s.config.name;
    while (!this.stopped) {
      const started = Date.now();
      let counts: Map<string, number> | undefined;
      try {
        counts = await readConnectFailures(p.config.proxy, readTimeout(p.config.interval));
      } catch (err) {
        const error = (err as Error).message;
        if (!p.outage && !this.stopped)
          this.log.warn(
            { service, proxy: p.at, error },
            `divert proxy at ${p.at} cannot be read (${error}): passive health of ${service} paused, the active checks go on`,
          );
        p.outage = { since: p.outage?.since ?? Date.now(), error };
        p.last = undefined;
        this.metrics.passiveProxyUp.set({ service }, 0);
      }
      if (this.stopped) return;
      if (counts) this.passiveRead(s, p, counts);
      await this.sleep(Math.max(0, started + p.config.interval - Date.now()));
    }
  }

  private passiveRead(s: ServiceRuntime, p: PassiveRuntime, counts: Map<string, number>): void {
    const service = s.config.name;
    const now = Date.now();
    if (p.outage) {
      this.log.info({ service, proxy: p.at }, `divert proxy at ${p.at} can be read again: passive health of ${service} resumes`);
      p.outage = undefined;
    }
    this.metrics.passiveProxyUp.set({ service }, 1);
    const last = p.last;
    p.last = counts;
    p.lastRead = now;
    if (!last) return;
    for (const m of s.mirrors) {
      const count = growth(last.get(m.target), counts.get(m.target));
      if (count > 0) {
        m.passiveFailures += count;
        this.metrics.passiveFailures.inc({ service, mirror: m.address }, count);
      }
      // a mirror already down stays so until its active checks bring it back
      if (m.health.state === 'down') continue;
      const inWindow = m.window!.add(now, count);
      if (inWindow >= p.config.failures) this.passiveDown(s, p, m, inWindow, now);
    }
  }

  /** `failures` connect failures within the window: down at once, as `fall` failed checks would make it. */
  private passiveDown(s: ServiceRuntime, p: PassiveRuntime, m: MirrorRuntime, failures: number, now: number): void {
    const service = s.config.name;
    m.window!.clear();
    m.health = { state: 'down', okRun: 0, failRun: m.health.failRun };
    m.since = now;
    m.passiveDownAt = now;
    m.reason = `passive: ${failures} connect failures via proxy ${p.at}`;
    this.metrics.mirrorUp.set({ service, mirror: m.address, site: m.site ?? '' }, 0);
    this.log.warn(
      { service, mirror: where(m), site: m.site, state: 'down', reason: m.reason, proxy: p.at },
      `mirror ${where(m)} of ${service} is down: ${failures} connect failures via proxy ${p.at} within ${p.config.window} ms (passive health); it comes back after ${s.config.check.rise} good checks`,
    );
    this.evaluate(s);
  }

  private record(s: ServiceRuntime, m: MirrorRuntime, result: ProbeResult, started: number): void {
    const { rise, fall } = s.config.check;
    const labels = { service: s.config.name, mirror: m.address };
    m.lastCheck = Date.now();
    m.last = result;
    if (result.load !== undefined) {
      m.load = result.load;
      this.metrics.load.set(labels, result.load);
    }
    this.metrics.checks.inc({ ...labels, result: result.ok ? 'ok' : 'fail' });
    this.metrics.checkDuration.observe({ service: s.config.name }, result.latencyMs / 1000);
    const before = m.health.state;
    // a good check that began before passive health marked the mirror down says nothing of it since
    const stale = result.ok && m.passiveDownAt !== undefined && started < m.passiveDownAt;
    if (!stale) m.health = nextHealth(m.health, result.ok, rise, fall);
    if (m.health.state !== before) {
      m.since = m.lastCheck;
      m.reason =
        m.health.state === 'up'
          ? `${m.health.okRun} good check${m.health.okRun === 1 ? '' : 's'}`
          : `${m.health.failRun} failed check${m.health.failRun === 1 ? '' : 's'} (${result.error})`;
      // failures counted before it was down (or while it was) do not count against it once up
      if (m.health.state === 'up') m.window?.clear();
      this.metrics.mirrorUp.set({ ...labels, site: m.site ?? '' }, m.health.state === 'up' ? 1 : 0);
      const context = { service: s.config.name, mirror: where(m), site: m.site, state: m.health.state, error: result.error, load: m.load };
      if (before === 'unknown')
        this.log.info(context, `mirror ${where(m)} of ${s.config.name} is ${m.health.state}${result.error ? ` (${result.error})` : ''}`);
      else if (m.health.state === 'down')
        this.log.warn(context, `mirror ${where(m)} of ${s.config.name} is down after ${m.health.failRun} failed checks (${result.error})`);
      else this.log.info(context, `mirror ${where(m)} of ${s.config.name} is up again after ${m.health.okRun} good checks`);
    }
    this.evaluate(s);
  }

  /** The first time a service decides: least-loaded carries on from the answer the table holds (when read by then). */
  private resume(s: ServiceRuntime): void {
    s.resumed = true;
    const entry = this.sync.seen(s.config.names[0]);
    if (!entry) return;
    const ours = new Set(s.mirrors.map((m) => m.address));
    s.memory = { ...s.memory, members: [...entry.a, ...entry.aaaa].filter((a) => ours.has(a)) };
  }

  private evaluate(s: ServiceRuntime): void {
    if (s.mirrors.some((m) => m.health.state === 'unknown')) return;
    if (!s.resumed) this.resume(s);
    const { policy, count, overload, hysteresis } = s.config;
    const views = s.mirrors.map((m) => ({
      address: m.address,
      priority: m.priority,
      weight: m.weight,
      up: m.health.state === 'up',
      load: m.load,
    }));
    const choice = choose(views, { policy, count, overload, hysteresis }, s.memory);
    s.memory = choice.memory;
    const service = s.config.name;
    if (choice.answer === null) {
      if (!s.allDown) {
        s.allDown = true;
        this.metrics.allDown.set({ service }, 1);
        const kept = s.answer ? s.answer.addresses.join(',') : 'whatever the table holds';
        this.log.error(
          { service, kept: s.answer?.addresses ?? null },
          `EVERY MIRROR OF ${service} IS DOWN; its last answer (${kept}) stays in place: an empty answer is never pushed`,
        );
      }
      return;
    }
    if (s.allDown) {
      s.allDown = false;
      this.metrics.allDown.set({ service }, 0);
      this.log.warn({ service }, `${service} has a mirror up again`);
    }
    const answer = choice.answer;
    const same =
      s.answer &&
      s.answer.addresses.join() === answer.addresses.join() &&
      JSON.stringify(s.answer.weights) === JSON.stringify(answer.weights);
    if (same) return;
    this.log.info(
      { service, answer: answer.addresses, weights: answer.weights, previous: s.answer?.addresses ?? null },
      `${service} answers ${answer.addresses.join(',')}`,
    );
    s.answer = answer;
    this.metrics.answerSize.set({ service }, answer.addresses.length);
    for (const name of s.config.names) this.sync.want(name, wantedOf(s.config, answer));
  }

  private passiveStatus(p: PassiveRuntime): PassiveStatus {
    return {
      proxy: p.at,
      up: p.outage ? false : p.lastRead === undefined ? null : true,
      since: iso(p.outage?.since),
      error: p.outage?.error ?? null,
      lastRead: iso(p.lastRead),
      failures: p.config.failures,
      windowMs: p.config.window,
      intervalMs: p.config.interval,
    };
  }

  status(): StatusReport {
    const names = new Map(this.sync.status().map((n) => [n.name, n]));
    const outage = this.sync.adminDown;
    return {
      id: this.id,
      startedAt: new Date(this.startedAt).toISOString(),
      admin: { url: this.admin.where, up: outage === undefined, since: iso(outage?.since), error: outage?.error ?? null },
      services: this.services.map((s) => {
        const inAnswer = new Set(s.answer?.addresses ?? []);
        const overloaded = new Set(s.memory.overloaded);
        return {
          name: s.config.name,
          policy: s.config.policy,
          ready: s.mirrors.every((m) => m.health.state !== 'unknown'),
          answer: s.answer?.addresses ?? null,
          weights: s.answer?.weights ?? null,
          allDown: s.allDown,
          passive: s.passive ? this.passiveStatus(s.passive) : null,
          names: s.config.names.map((name) => {
            const n = names.get(name)!;
            const hold: Hold | undefined = n.hold;
            return {
              name,
              table: n.entry && { a: n.entry.a, aaaa: n.entry.aaaa, ttl: n.entry.ttl, version: n.entry.version },
              inSync: n.inSync,
              hold: hold ? { since: iso(hold.since)!, until: iso(hold.until ?? undefined), by: hold.by, version: hold.version } : null,
              lastPush: n.lastPush ? { at: iso(n.lastPush.at)!, version: n.lastPush.version } : null,
              error: n.lastError ?? null,
              queriesPerSecond: this.qps.get(name) ?? null,
            };
          }),
          mirrors: s.mirrors.map((m) => ({
            address: m.address,
            port: m.port,
            site: m.site ?? null,
            priority: m.priority,
            weight: m.weight,
            state: m.health.state,
            since: iso(m.since),
            lastCheck: iso(m.lastCheck),
            lastResult: m.last ? (m.last.ok ? 'ok' : 'fail') : null,
            error: m.last?.error ?? null,
            latencyMs: m.last?.latencyMs ?? null,
            load: m.load ?? null,
            okRun: m.health.okRun,
            failRun: m.health.failRun,
            overloaded: overloaded.has(m.address),
            inAnswer: inAnswer.has(m.address),
            reason: m.reason ?? null,
            passiveFailures: s.passive ? m.passiveFailures : null,
          })),
        };
      }),
    };
  }
}

// Reloading `divert serve` (SIGHUP, or RunningServer.reload()): the configuration is read
// again as at start (the same flags and DIVERT_* variables, the --config file read anew),
// with the zone files, --upstream-ca's certificates and, without --upstream, the
// --resolv-conf file. Everything is checked before anything is applied: a bad new
// configuration is refused whole, with one error line, and the server keeps serving with
// what it had. Then:
//
// - new names of the zone files are seeded (as at start, a name the table holds is never
//   overwritten, and a name no longer in the files is not removed);
// - the upstreams (with their CAs), --allow, --trust-ecs, the upstream timeouts and the rate limit apply to
//   the queries from then on (in every worker); a query already forwarded finishes with
//   the upstreams it was sent to, whose sockets then close;
// - --query-log-sample applies, and the query log file is opened anew (after logrotate
//   has moved it);
// - --log-level applies in this process and in every worker;
// - the DoT and DoH certificate and key (--tls-cert, --tls-key) are read again: a new pair
//   serves the connections from then on (open ones keep theirs), so a renewed certificate
//   needs no restart; a pair that does not load or match refuses the reload;
// - any other option (listeners, admin port, Redis, workers, TCP limits, cache size, the
//   query log's file, ...) needs a restart: a change is named in one warning and the running value kept.
//
// Reloads never overlap: one asked for during another runs once that one is done, and
// any number asked for meanwhile are served by that one run.

import type { Logger } from 'pino';
import { DivertError } from './errors.js';
import { setLogLevel } from './log.js';
import { formatUpstream, sameUpstreams, type UpstreamSpec } from './net/upstream-spec.js';
import { SERVE_OPTIONS, type ServeConfig, type ServeOptionKey } from './config/options.js';
import type { ServingHandle } from './serving/handle.js';
import { maskUrl } from './redact.js';
import type { AddressTable } from './table/address-table.js';
import { readZones } from './table/zone/read.js';
import { WritePolicy } from './table/write-policy.js';
import { describeCertificate, loadTlsCredentials, validityProblem, type TlsCredentials } from './serving/tls-credentials.js';

/** The options a reload applies; every other option needs a restart. */
export const RELOADABLE: readonly ServeOptionKey[] = [
  'upstream',
  'upstreamCa',
  'resolvConf',
  'zones',
  'allow',
  'trustEcs',
  'upstreamTimeoutMs',
  'queryTimeoutMs',
  'rateLimit',
  'rateLimitAction',
  'rateLimitV4Prefix',
  'rateLimitV6Prefix',
  'logLevel',
  'queryLogSample',
  'tlsCert',
  'tlsKey',
];

const NEEDS_RESTART = (Object.keys(SERVE_OPTIONS) as ServeOptionKey[]).filter((key) => !RELOADABLE.includes(key));

export type ReloadResult =
  | {
      ok: true;
      /** The configuration now in force (options that need a restart keep their running value). */
      config: ServeConfig;
      upstreams: UpstreamSpec[];
      /** What changed, as the log line says it. */
      changed: string[];
      /** Flags (without dashes) whose change was not applied: they need a restart. */
      restartNeeded: string[];
      /** Names of the zone files the table did not hold, now added. */
      seeded: number;
      /** Workers (1-based) that did not confirm the new configuration in time. */
      unconfirmed: number[];
    }
  | { ok: false; error: string };

export interface ReloadDeps {
  /** The configuration in force at start. */
  config: ServeConfig;
  upstreams: UpstreamSpec[];
  table: AddressTable;
  serving: Pick<ServingHandle, 'reconfigure' | 'settle' | 'setCertificate'>;
  /** The DoT and DoH certificate in force at start (null without those listeners). */
  tls: TlsCredentials | null;
  log: Logger;
  /** Reads the configuration again (throws DivertError on a bad one). */
  load: () => ServeConfig;
  /** The upstreams of a configuration: --upstream, or the nameservers of --resolv-conf. */
  resolveUpstreams: (config: ServeConfig) => Promise<UpstreamSpec[]>;
}

export interface Reloader {
  reload: () => Promise<ReloadResult>;
  /** The configuration in force. */
  current: () => ServeConfig;
  /** The DoT and DoH certificate in force. */
  certificate: () => TlsCredentials | null;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** An option's value as a log line shows it (never a secret). */
function shown(key: ServeOptionKey, value: unknown): string {
  if (value === undefined) return 'unset';
  if (key === 'adminToken') return '(hidden)';
  if (key === 'redis') return maskUrl(typeof value === 'string' ? value : JSON.stringify(value));
  const one = (v: unknown): string => {
    if (typeof v === 'object' && v !== null && 'host' in v) return formatUpstream(v as UpstreamSpec);
    return typeof v === 'string' ? v : JSON.stringify(v);
  };
  return Array.isArray(value) ? (value.length === 0 ? 'none' : value.map(one).join(',')) : one(value);
}

const flag = (key: ServeOptionKey) => SERVE_OPTIONS[key].flag;
const labels = (upstreams: UpstreamSpec[]) => upstreams.map(formatUpstream).join(',');

export function createReloader(deps: ReloadDeps): Reloader {
  const { table, serving, log } = deps;
  let current = deps.config;
  let upstreams = deps.upstreams;
  let tls = deps.tls;

  const refuse = (what: string, err: unknown): ReloadResult => {
    const message = err instanceof Error ? err.message : String(err);
    log.error({ err: message }, `${what}; still serving with the previous configuration: ${message}`);
    return { ok: false, error: message };
  };

  const run = async (): Promise<ReloadResult> => {
    // 1. read and check everything; nothing has changed yet
    let next: ServeConfig;
    let nextUpstreams: UpstreamSpec[];
    let seed: Awaited<ReturnType<typeof readZones>>;
    let restartNeeded: ServeOptionKey[];
    let loaded: ServeConfig;
    let nextTls: TlsCredentials | null;
    try {
      loaded = deps.load();
      restartNeeded = NEEDS_RESTART.filter((key) => !same(loaded[key], current[key]));
      // what cannot change keeps its running value (--listen also decides which
      // resolv.conf nameservers are divert itself)
      next = Object.freeze({ ...loaded, ...Object.fromEntries(NEEDS_RESTART.map((key) => [key, current[key]])) });
      nextUpstreams = await deps.resolveUpstreams(next);
      if (nextUpstreams.length === 0)
        throw new DivertError('NO_UPSTREAM', 'no upstream resolver: give at least one --upstream HOST[:PORT]');
      // the policy's options need a restart: `next` holds the running ones
      seed = await readZones(next.zones, new WritePolicy(next));
      // the certificate and key as the files hold them now (after an ACME client's renewal)
      nextTls = loadTlsCredentials(next);
    } catch (err) {
      return refuse('reload refused', err);
    }

    // 2. apply: names first (an error there, e.g. Redis unreachable, changes nothing else)
    let seeded = 0;
    let unconfirmed: number[];
    try {
      if (seed.size > 0) seeded = (await table.seed(seed, { by: 'reload' })).length;
      unconfirmed = await serving.reconfigure(next, nextUpstreams);
      if (nextTls && nextTls.pem.cert + nextTls.pem.key !== (tls ? tls.pem.cert + tls.pem.key : '')) {
        const late = await serving.setCertificate(nextTls.pem);
        unconfirmed = [...new Set([...unconfirmed, ...late])];
      }
      // a worker answers a new name once it has heard of it
      if (seeded > 0) await serving.settle();
    } catch (err) {
      return refuse('reload failed', err);
    }

    const changed: string[] = [];
    if (labels(upstreams) !== labels(nextUpstreams)) changed.push(`upstreams ${labels(upstreams)} → ${labels(nextUpstreams)}`);
    else if (!sameUpstreams(upstreams, nextUpstreams)) changed.push('new CA certificates of the tls:// upstreams (--upstream-ca)');
    if (!same(current.allow, next.allow))
      changed.push(`allow list ${current.allow.length} → ${next.allow.length} networks (${shown('allow', next.allow)})`);
    if (!same(current.trustEcs, next.trustEcs))
      changed.push(`trust-ecs ${shown('trustEcs', current.trustEcs)} → ${shown('trustEcs', next.trustEcs)}`);
    if (seed.size > 0)
      changed.push(
        `${seeded} new name${seeded === 1 ? '' : 's'} seeded from zone files (${seed.size - seeded} already held, left as they are)`,
      );
    if (nextTls && nextTls.certificate.fingerprint256 !== tls?.certificate.fingerprint256) {
      const shownTls = describeCertificate(nextTls);
      changed.push(
        `TLS certificate ${tls ? tls.certificate.serialNumber : 'none'} → ${shownTls.serial} (${shownTls.subject}, expires ${shownTls.notAfter})`,
      );
    }
    if (current.logLevel !== next.logLevel) changed.push(`log level ${current.logLevel} → ${next.logLevel}`);
    for (const key of RELOADABLE) {
      if (['upstream', 'resolvConf', 'allow', 'trustEcs', 'logLevel', 'tlsCert', 'tlsKey'].includes(key) || same(current[key], next[key]))
        continue;
      changed.push(`--${flag(key)} ${shown(key, current[key])} → ${shown(key, next[key])}`);
    }

    if (restartNeeded.length > 0) {
      log.warn(
        { restartNeeded: restartNeeded.map(flag) },
        `reload: ${restartNeeded.map((key) => `--${flag(key)} ${shown(key, loaded[key])} needs a restart; kept ${shown(key, current[key])}`).join('; ')}`,
      );
    }
    // a more verbose level first, a quieter one last: either way the summary below is written
    const rank = (level: ServeConfig['logLevel']) => (level === 'silent' ? Infinity : log.levels.values[level]);
    const louder = rank(next.logLevel) <= rank(current.logLevel);
    if (louder) setLogLevel(log, next.logLevel);
    const expiry = nextTls ? validityProblem(nextTls) : undefined;
    if (expiry) log.warn({ tlsCert: next.tlsCert }, `reload: --tls-cert "${next.tlsCert}" ${expiry}: DoT and DoH clients will refuse it`);
    if (unconfirmed.length > 0)
      log.warn({ workers: unconfirmed }, `reload: worker ${unconfirmed.join(', ')} did not confirm the new configuration in time`);
    log.info(
      {
        upstreams: nextUpstreams.map(formatUpstream),
        allow: next.allow.length,
        seeded,
        logLevel: next.logLevel,
        restartNeeded: restartNeeded.map(flag),
      },
      `configuration reloaded: ${changed.length > 0 ? changed.join('; ') : 'nothing changed'}`,
    );
    if (!louder) setLogLevel(log, next.logLevel);
    log.debug(
      { config: Object.fromEntries(RELOADABLE.map((key) => [flag(key), shown(key, next[key])])) },
      'reload: the options a reload can change, as now in force',
    );
    current = next;
    upstreams = nextUpstreams;
    tls = nextTls;
    return { ok: true, config: next, upstreams: nextUpstreams, changed, restartNeeded: restartNeeded.map(flag), seeded, unconfirmed };
  };

  let running: Promise<ReloadResult> | null = null;
  let queued: Promise<ReloadResult> | null = null;
  const reload = (): Promise<ReloadResult> => {
    if (!running) {
      running = run().finally(() => {
        running = null;
      });
      return running;
    }
    // one more run after this one, for every request made meanwhile: it reads the files as they are then
    queued ??= running.then(() => {
      queued = null;
      return reload();
    });
    return queued;
  };
  return { reload, current: () => current, certificate: () => tls };
}

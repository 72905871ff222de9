// `divert validate`: checks a configuration as `divert serve` would read it (the same
// options, flags, DIVERT_* variables and --config file, through the same loader), with
// the zone files, the upstreams from --resolv-conf, the Redis URL's form and the TSIG key
// file, and the DoT and DoH certificate and key (they load, match and have not expired),
// without binding a port, writing a token file or contacting Redis. Exit 0 with a
// one-line summary on stdout; exit 2 with the error line on stderr.

import { pino } from 'pino';
import { formatHostPort } from '../net/host-port.js';
import { formatUpstream } from '../net/upstream-spec.js';
import { loadServeConfig } from '../config/load.js';
import type { ServeConfig } from '../config/options.js';
import { maskUrl } from '../redact.js';
import { parseRedisUrl } from '../table/redis/redis-url.js';
import { readZones } from '../table/zone/read.js';
import { WritePolicy } from '../table/write-policy.js';
import { checkAdminExposure } from '../server/admin-token.js';
import { resolveUpstreams } from '../upstream/resolv-conf.js';
import { keysWithoutGrant } from '../update/grants.js';
import type { KeyFile } from '../update/key-file.js';
import { loadUpdateKeys } from '../update/update-server.js';
import { DivertError } from '../errors.js';
import { loadTlsCredentials, validityProblem } from '../serving/tls-credentials.js';

/** Fewer days than this left on the certificate: the summary says so (an ACME client renews at 30). */
const EXPIRY_WARNING_DAYS = 14;

/** "DoT 0.0.0.0:853, DoH 0.0.0.0:443 with CN=dns.example, expires 2026-03-01 (89 days)", or "off"; throws on a bad or expired pair. */
function tlsSummary(config: ServeConfig, now = Date.now()): string {
  const tls = loadTlsCredentials(config);
  if (!tls) return 'off';
  const problem = validityProblem(tls, now);
  if (problem) throw new DivertError('BAD_CONFIG', `--tls-cert "${config.tlsCert}" ${problem}`);
  const days = Math.floor((tls.notAfter.getTime() - now) / 86_400_000);
  const listeners = [
    ...config.listenTls.map((at) => `DoT ${formatHostPort(at)}`),
    ...config.listenHttps.map((at) => `DoH ${formatHostPort(at)}`),
  ].join(', ');
  const soon = days < EXPIRY_WARNING_DAYS ? ' — renew it soon' : '';
  return `${listeners} with ${tls.certificate.subject.replace(/\n/g, ', ')}, expires ${tls.notAfter.toISOString()} (${days} days${soon})`;
}

type Args = Record<string, unknown>;

const silent = pino({ level: 'silent' });

async function upstreamsOf(config: ServeConfig): Promise<string> {
  const found = await resolveUpstreams(config);
  const ca = config.upstreamCa === undefined ? '' : ` (CAs of tls:// upstreams from ${config.upstreamCa})`;
  return `${found.map(formatUpstream).join(', ')}${config.upstream ? '' : ` (from ${config.resolvConf})`}${ca}`;
}

/** "2 TSIG keys, 3 update-policy rules (key "ops" has no grant: may change nothing)" */
function keysSummary({ keys, grants }: KeyFile): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const without = keysWithoutGrant(keys.keys(), grants);
  const warning =
    without.length === 0
      ? ''
      : ` (${without.map((k) => `key "${k}"`).join(', ')} ${without.length === 1 ? 'has' : 'have'} no grant: may change nothing)`;
  return `${plural(keys.size, 'TSIG key')}, ${plural(grants.length, 'update-policy rule')}${warning}`;
}

/** Checks everything; resolves with the summary line, or throws the first problem. */
export async function validateConfig(argv: Args, env: NodeJS.ProcessEnv): Promise<string> {
  const config = loadServeConfig(argv, env);
  const zoneNames = (await readZones(config.zones, new WritePolicy(config))).size;
  const upstreams = await upstreamsOf(config);

  // the rule divert serve applies before it generates or reads a token file
  checkAdminExposure(config);
  const table = config.redis ? `redis ${maskUrl(config.redis)} (${parseRedisUrl(config.redis).kind}; not contacted)` : 'memory';

  // serve's own check and reader; nothing is logged (a key file without --update-listen is just "off")
  const keyFile = await loadUpdateKeys(config, silent);
  const update = keyFile ? `${formatHostPort(config.updateListen!)}, ${keysSummary(keyFile)}` : 'off';
  const tls = tlsSummary(config);

  const zones = config.zones.length > 0 ? ` from ${config.zones.join(', ')}` : '';
  return (
    `config OK: ${zoneNames} zone name${zoneNames === 1 ? '' : 's'}${zones}; ` +
    `listen ${config.listen.map(formatHostPort).join(', ')}; admin ${formatHostPort(config.admin)}; ` +
    `upstreams ${upstreams}; table ${table}; DNS UPDATE ${update}; TLS ${tls}`
  );
}

/** Resolves with the exit status after printing one line. */
export async function runValidate(argv: Args, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    process.stdout.write(`${await validateConfig(argv, env)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`divert: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
}

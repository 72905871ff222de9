// The options of `divert serve`, once: each with its flag, environment variable, help
// text, default and schema. The CLI help, the environment, the config file and the
// validation all read this table, so they cannot disagree.

import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { parseCidr } from '../net/cidr.js';

import { parseHostPort, type HostPort } from '../net/host-port.js';
import { parseUpstream, type UpstreamSpec } from '../net/upstream-spec.js';
import { tokenProblem } from './token-rule.js';

/** --allow's default: the networks a resolver's own clients use. */
export const DEFAULT_ALLOW = [
  '127.0.0.0/8',
  '::1/128', // loopback
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16', // RFC 1918
  '100.64.0.0/10', // RFC 6598 shared address space
  'fc00::/7', // unique local
  '169.254.0.0/16',
  'fe80::/10', // link-local
];

/** A string turned into a value by `parse`, whose message (a string) names what is wrong. */
const parsedBy = <T>(parse: (text: string) => T | string) =>
  z.string().transform((text, ctx) => {
    const parsed = parse(text);
    if (typeof parsed === 'string') {
      ctx.addIssue({ code: 'custom', message: parsed });
      return z.NEVER;
    }
    return parsed;
  });

const hostPort = () => parsedBy((text) => parseHostPort(text));
/** The --status address of a divert monitor or proxy, whose status the dashboard shows. */
const statusUrl = (of: string) =>
  z.string().regex(/^https?:\/\/[^/?#\s@]+\/?$/, `expected http://HOST:PORT, a divert ${of}'s --status address`);

/** An admin token given by --admin-token: too long to guess, fit for a header (config/token-rule.ts). */
const adminTokenSchema = z.string().superRefine((token, ctx) => {
  const problem = tokenProblem(token);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

const cidr = z.string().superRefine((text, ctx) => {
  try {
    parseCidr(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const count = (min: number, max: number) =>
  z.coerce
    .number({ error: (issue) => (issue.code === 'invalid_type' ? 'expected a whole number' : undefined) })
    .int('expected a whole number')
    .min(min, `expected at least ${min}`)
    .max(max, `expected at most ${max}`);

/** true or false, as a flag (yargs gives a boolean), a DIVERT_* variable or a config key gives it. */
const flag = z
  .union([z.boolean(), z.enum(['true', 'false'])], { error: 'expected true or false' })
  .transform((v) => v === true || v === 'true');

export interface OptionSpec {
  /** The flag without dashes; also the config-file key. */
  flag: string;
  describe: string;
  repeatable?: boolean;
  /** A switch: `--flag` alone means true (its schema takes true or false). */
  boolean?: boolean;
  /** Shown in --help and used when no flag, variable or config key sets the option. */
  default?: unknown;
  /** How the default is described when it is computed at start. */
  defaultDescription?: string;
  /** Validates one value (each value, for a repeatable option). */
  schema: z.ZodType;
}

/** The DIVERT_* variable of a flag: --admin-token ⇄ DIVERT_ADMIN_TOKEN. */
export function envName(flag: string): string {
  return 'DIVERT_' + flag.toUpperCase().replace(/-/g, '_');
}

export const SERVE_OPTIONS = {
  listen: {
    flag: 'listen',
    repeatable: true,
    default: ['0.0.0.0:53'],
    schema: hostPort(),
    describe: 'DNS listener HOST:PORT, UDP and TCP on the same port (port 0: any free port)',
  },
  listenTls: {
    flag: 'listen-tls',
    repeatable: true,
    default: [],
    schema: hostPort(),
    defaultDescription: 'none',
    describe: 'DNS over TLS (RFC 7858) listener HOST:PORT, usually port 853; needs --tls-cert and --tls-key',
  },
  listenHttps: {
    flag: 'listen-https',
    repeatable: true,
    default: [],
    schema: hostPort(),
    defaultDescription: 'none',
    describe:
      'DNS over HTTPS (RFC 8484) listener HOST:PORT, usually port 443: GET and POST on /dns-query, HTTP/2 and HTTP/1.1; needs --tls-cert and --tls-key',
  },
  tlsCert: {
    flag: 'tls-cert',
    schema: z.string().min(1),
    describe: 'PEM certificate (the chain: leaf first, e.g. an ACME fullchain.pem) of the DoT and DoH listeners; read again on SIGHUP',
  },
  tlsKey: {
    flag: 'tls-key',
    schema: z.string().min(1),
    describe: 'PEM private key of --tls-cert (e.g. privkey.pem); read again on SIGHUP',
  },
  admin: {
    flag: 'admin',
    default: '127.0.0.1:5380',
    schema: hostPort(),
    describe:
      'admin HTTP listener HOST:PORT (the API that rewrites the table, and the dashboard at /); a non-loopback address needs --admin-token',
  },
  adminToken: {
    flag: 'admin-token',
    schema: adminTokenSchema,
    defaultDescription: 'generated on first start into --admin-token-file',
    describe: 'bearer token the admin API and the dashboard demand (16 or more printable characters)',
  },
  adminTokenFile: {
    flag: 'admin-token-file',
    schema: z.string().min(1),
    defaultDescription: '$XDG_CONFIG_HOME/divert/admin-token or ~/.config/divert/admin-token',
    describe:
      "file (mode 0600) holding the generated token; the CLI reads it. Refused if it is a link, not this user's, open to group or others, or in a folder they may write",
  },
  upstream: {
    flag: 'upstream',
    repeatable: true,
    schema: parsedBy(parseUpstream),
    defaultDescription: "the nameservers in --resolv-conf, minus divert's own addresses",
    describe:
      'resolver that gets every query divert does not answer itself; tried in order. HOST[:PORT] (UDP; TCP for TCP queries, and for DoT and DoH ones whose UDP reply came truncated; port 53) or tls://HOST[:PORT][#NAME] (DNS over TLS for every query; port 853; the certificate must carry NAME, or HOST among its IP addresses when no NAME is given)',
  },
  upstreamCa: {
    flag: 'upstream-ca',
    schema: z.string().min(1),
    defaultDescription: "the system's CAs",
    describe: "PEM file of the CA certificates a tls:// upstream's certificate must chain to (read again on reload)",
  },
  zones: {
    flag: 'zones',
    repeatable: true,
    default: [],
    schema: z.string().min(1),
    describe: 'zone file, or folder of *.zone files, that seeds the table (never overwrites a name it holds)',
  },
  allow: {
    flag: 'allow',
    repeatable: true,
    default: DEFAULT_ALLOW,
    schema: cidr,
    defaultDescription: 'loopback, RFC 1918, RFC 6598, ULA and link-local',
    describe: 'client network (CIDR) that may query; others get REFUSED',
  },
  trustEcs: {
    flag: 'trust-ecs',
    repeatable: true,
    default: [],
    schema: cidr,
    defaultDescription: 'none',
    describe: "resolver network (CIDR) whose EDNS Client Subnet option the rules' networks match instead of its own address",
  },
  redis: {
    flag: 'redis',
    schema: z
      .string()
      .regex(/^(rediss?|redis-sentinel|redis-cluster):\/\//, 'expected a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL'),
    describe:
      'keep the address table in Redis (redis[s]://[:PASSWORD@]HOST:PORT, redis-sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER, redis-cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...])',
  },
  redisPrefix: {
    flag: 'redis-prefix',
    default: 'divert:',
    schema: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[^{}\s]+$/, 'expected no spaces or braces'),
    describe: 'prefix of every Redis key, so deployments can share one Redis',
  },
  resolvConf: {
    flag: 'resolv-conf',
    default: '/etc/resolv.conf',
    schema: z.string().min(1),
    describe: 'file whose nameservers are the upstreams when no --upstream is given',
  },
  upstreamTimeoutMs: {
    flag: 'upstream-timeout-ms',
    default: 1000,
    schema: count(10, 60_000),
    describe: 'wait this long for an upstream before also asking the next one',
  },
  queryTimeoutMs: {
    flag: 'query-timeout-ms',
    default: 2500,
    schema: count(10, 60_000),
    describe: 'answer SERVFAIL when no upstream has answered by then (stub resolvers give up at 5000)',
  },
  forwardMaxInFlight: {
    flag: 'forward-max-in-flight',
    default: 10_000,
    schema: count(10, 1_000_000),
    describe:
      'forwarded queries waiting for an upstream at once, in each worker; beyond it a query gets SERVFAIL at once (a flood towards a silent upstream cannot pile up memory)',
  },
  upstreamSockets: {
    flag: 'upstream-sockets',
    default: 64,
    schema: count(1, 65_536),
    describe:
      'UDP sockets per upstream, in each worker, each on a random port and retired after 2,000 queries or 20 s; a query leaves from one picked at random. More: ports harder to learn (RFC 5452); fewer: cheaper under load',
  },
  tcpIdleTimeoutMs: {
    flag: 'tcp-idle-timeout-ms',
    default: 10_000,
    schema: count(100, 600_000),
    describe:
      'close a TCP, DoT or DoH connection that has been idle this long (an HTTP/1.1 one that has not brought a whole request in this long, however slowly it sends)',
  },
  tcpMaxConnections: {
    flag: 'tcp-max-connections',
    default: 1000,
    schema: count(1, 1_000_000),
    describe:
      'TCP connections open at once, in each worker; when all are taken, a newcomer closes the least recently active idle one (and is refused only when none is idle)',
  },
  tcpMaxPerClient: {
    flag: 'tcp-max-per-client',
    default: 64,
    schema: count(1, 1_000_000),
    describe:
      'TCP connections open at once from one client network (the /24 or /56 of --rate-limit-v4-prefix and --rate-limit-v6-prefix), in each worker; more are reset at once',
  },
  rateLimit: {
    flag: 'rate-limit',
    default: 0,
    schema: count(0, 10_000_000),
    defaultDescription: '0: off',
    describe:
      "queries per second each client network may send (burst: one second's worth), shared out among the workers; over it, --rate-limit-action",
  },
  rateLimitV4Prefix: {
    flag: 'rate-limit-v4-prefix',
    default: 24,
    schema: count(8, 32),
    describe: 'IPv4 clients share a rate limit, and --tcp-max-per-client, per network of this prefix length',
  },
  rateLimitV6Prefix: {
    flag: 'rate-limit-v6-prefix',
    default: 56,
    schema: count(16, 128),
    describe: 'IPv6 clients share a rate limit, and --tcp-max-per-client, per network of this prefix length',
  },
  rateLimitAction: {
    flag: 'rate-limit-action',
    default: 'drop',
    schema: z.enum(['drop', 'refuse']),
    describe: 'what a query over the rate limit gets: drop (no reply, nothing to reflect) or refuse (REFUSED)',
  },
  maxUdpSize: {
    flag: 'max-udp-size',
    default: 1232,
    schema: count(512, 4096),
    describe:
      'largest UDP reply divert sends of its own (intercepted answers, errors), whatever size a client offers; a larger one goes out truncated (TC) and the client asks again over TCP',
  },
  cacheNames: {
    flag: 'cache-names',
    default: 100_000,
    schema: count(100, 100_000_000),
    describe: 'intercepted names (and names Redis said are not) whose answer each worker keeps in memory in front of the table',
  },
  workers: {
    flag: 'workers',
    default: availableParallelism(),
    defaultDescription: `the number of CPUs (${availableParallelism()} here)`,
    schema: count(1, 256),
    describe: 'processes answering DNS queries, sharing the listeners (1: everything in one process)',
  },
  udpBatch: {
    flag: 'udp-batch',
    boolean: true,
    default: true,
    schema: flag,
    describe:
      "receive and send UDP, clients' and upstreams', with recvmmsg/sendmmsg through divert's native addons, one socket per listen address that every worker reads (--no-udp-batch: node:dgram); falls back to node:dgram with a warning when the addons are not built",
  },
  queryLog: {
    flag: 'query-log',
    schema: z.string().min(1),
    defaultDescription: 'off',
    describe:
      'write one JSON line per query (client, name, type, transport, outcome, rcode, milliseconds) to this file, or to stdout with -',
  },
  queryLogSample: {
    flag: 'query-log-sample',
    default: 1,
    schema: z.coerce.number({ error: 'expected a number' }).gt(0, 'expected more than 0').max(1, 'expected at most 1'),
    describe: 'fraction of queries the query log writes (0.01: one in a hundred, at random)',
  },
  metricsMaxNames: {
    flag: 'metrics-max-names',
    default: 1000,
    schema: count(0, 100_000),
    describe: 'intercepted names that get their own divert_name_queries_total series; queries for others count under name="_other"',
  },
  eventsMaxStreams: {
    flag: 'events-max-streams',
    default: 64,
    schema: count(1, 100_000),
    describe: 'admin GET /v1/events streams open at once; one more is refused (503 TOO_MANY_STREAMS)',
  },
  maxAddresses: {
    flag: 'max-addresses',
    default: 64,
    schema: count(1, 1000),
    describe: 'addresses one entry, and each of its rules, may answer with (IPv4 and IPv6 together); a write over it is refused',
  },
  allowTldWildcards: {
    flag: 'allow-tld-wildcards',
    boolean: true,
    default: false,
    schema: flag,
    describe: 'let writes create a wildcard directly below a top-level domain (*.com), which answers for every name under it',
  },
  updateListen: {
    flag: 'update-listen',
    schema: hostPort(),
    defaultDescription: 'off',
    describe: 'listener HOST:PORT (UDP and TCP) for RFC 2136 DNS UPDATE of the table, signed with TSIG (needs --update-key-file)',
  },
  updateKeyFile: {
    flag: 'update-key-file',
    schema: z.string().min(1),
    describe:
      "TSIG keys (hmac-sha256) that may send DNS UPDATE, in BIND's key format, as tsig-keygen writes it, with the names each may change (update-policy { grant KEY subdomain NAME; };)",
  },
  dashboardMonitor: {
    flag: 'dashboard-monitor',
    schema: statusUrl('monitor'),
    defaultDescription: 'off',
    describe: 'status address http://HOST:PORT of a divert monitor (its --status) whose GET /status the dashboard shows',
  },
  dashboardProxy: {
    flag: 'dashboard-proxy',
    schema: statusUrl('proxy'),
    defaultDescription: 'off',
    describe:
      'status address http://HOST:PORT of a divert proxy (its --status, by default 127.0.0.1:5382) whose services, connections and targets the dashboard shows',
  },
  logLevel: {
    flag: 'log-level',
    default: 'info',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    describe: 'least severe log level written (fatal, error, warn, info, debug, trace, silent)',
  },
} satisfies Record<string, OptionSpec>;

export type ServeOptionKey = keyof typeof SERVE_OPTIONS;

export interface ServeConfig {
  listen: HostPort[];
  listenTls: HostPort[];
  listenHttps: HostPort[];
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  admin: HostPort;
  adminToken: string | undefined;
  adminTokenFile: string | undefined;
  upstream: UpstreamSpec[] | undefined;
  upstreamCa: string | undefined;
  zones: string[];
  allow: string[];
  trustEcs: string[];
  redis: string | undefined;
  redisPrefix: string;
  resolvConf: string;
  upstreamTimeoutMs: number;
  queryTimeoutMs: number;
  forwardMaxInFlight: number;
  upstreamSockets: number;
  tcpIdleTimeoutMs: number;
  tcpMaxConnections: number;
  tcpMaxPerClient: number;
  rateLimit: number;
  rateLimitV4Prefix: number;
  rateLimitV6Prefix: number;
  rateLimitAction: 'drop' | 'refuse';
  maxUdpSize: number;
  cacheNames: number;
  workers: number;
  udpBatch: boolean;
  queryLog: string | undefined;
  queryLogSample: number;
  metricsMaxNames: number;
  eventsMaxStreams: number;
  maxAddresses: number;
  allowTldWildcards: boolean;
  updateListen: HostPort | undefined;
  updateKeyFile: string | undefined;
  dashboardMonitor: string | undefined;
  dashboardProxy: string | undefined;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

// The proxy's config file (YAML or JSON): the services it relays, each to a name's answer
// or to an address that diversions move. One zod schema holds the shape, the defaults and
// the messages; a bad file stops start-up with one line naming the field.

import { z } from 'zod';
import { readYamlFile } from '../config/load.js';
import { address, checked, duration, hostPort, whole } from '../config/schema-parts.js';
import { normalizeName } from '../entry/names.js';

const name = z.string({ error: 'expected a name such as www.shop.example' }).transform((text, ctx) => {
  try {
    return normalizeName(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const targetSchema = z.union([z.strictObject({ name, port: whole(1, 65535) }), z.strictObject({ address, port: whole(1, 65535) })], {
  error: 'expected { name, port } (the address the name answers) or { address, port } (moved by diversions)',
});

/** What an open TCP connection does when its target leaves the answer. */
export const ON_CHANGE = ['keep', 'drain', 'close', 'move'] as const;

const serviceSchema = z.strictObject({
  name: z
    .string({ error: 'expected a service name' })
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected 1 to 64 letters, digits, ".", "_" or "-"'),
  // one HOST:PORT, or a list of them
  listen: z.preprocess(
    (value) => (typeof value === 'string' ? [value] : value),
    z.array(hostPort).min(1, 'expected at least one HOST:PORT'),
  ),
  protocol: z.enum(['tcp', 'udp'], { error: 'expected "tcp" or "udp"' }).default('tcp'),
  target: targetSchema,
  onChange: z.enum(ON_CHANGE, { error: `expected one of ${ON_CHANGE.map((p) => `"${p}"`).join(', ')}` }).default('drain'),
  drainSeconds: whole(0, 86_400).default(30),
  /** Unset: the config's connectTimeout (or --connect-timeout). */
  connectTimeout: duration(10, 60_000).optional(),
  /** TCP: clients speak TLS to the proxy, which holds this certificate (PEM, chain allowed) and key. */
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  /** TCP: the proxy speaks TLS to the target, verifying its certificate (servername: the name checked and sent as SNI; ca: a PEM file instead of the system's CAs). */
  targetTls: z
    .union([z.boolean(), z.strictObject({ servername: z.string().min(1).optional(), ca: z.string().min(1).optional() })], {
      error: 'expected true, false or { servername, ca }',
    })
    .default(false),
  /** A PROXY protocol v2 header names the client to the target (off: the target sees the proxy): TCP, once before the client's bytes; UDP, at the head of every datagram. */
  proxyProtocol: z.boolean({ error: 'expected true or false' }).default(false),
  /** TCP: a connection with no bytes either way for this long is closed; UDP: a flow is forgotten. Unset: the config's idleTimeout or udpIdleTimeout. */
  idleTimeout: duration(100, 86_400_000).optional(),
});

const checkedService = serviceSchema.superRefine((s, ctx) => {
  if (s.protocol !== 'udp') return;
  for (const [key, set] of [
    ['tls', s.tls !== undefined],
    ['targetTls', s.targetTls !== false],
  ] as const)
    if (set) ctx.addIssue({ code: 'custom', path: [key], message: `${key} applies to TCP services only (this service is udp)` });
});

export const proxyConfigSchema = z
  .strictObject({
    admin: z.string().min(1).optional(),
    token: z.string().min(1).optional(),
    tokenFile: z.string().min(1).optional(),
    /** Open TCP connections and UDP flows, all services together; beyond it a new one is refused. */
    maxConnections: whole(1, 1_000_000).default(10_000),
    /** The same, per client /24 (IPv4) or /56 (IPv6): one network cannot take them all. */
    maxConnectionsPerNetwork: whole(1, 1_000_000).default(1_000),
    /** For every service that sets none of its own. */
    connectTimeout: duration(10, 60_000).default(3000),
    idleTimeout: duration(100, 86_400_000).default(3_600_000),
    udpIdleTimeout: duration(100, 86_400_000).default(60_000),
    services: z.array(checkedService).min(1, 'expected at least one service'),
  })
  .superRefine((c, ctx) => {
    const names = new Set<string>();
    const listens = new Set<string>();
    c.services.forEach((s, i) => {
      if (names.has(s.name))
        ctx.addIssue({ code: 'custom', path: ['services', i, 'name'], message: `service "${s.name}" is defined twice` });
      names.add(s.name);
      s.listen.forEach((l, j) => {
        const key = `${s.protocol} ${l.host} ${l.port}`;
        // port 0: the OS picks a free one for each
        if (l.port !== 0 && listens.has(key))
          ctx.addIssue({
            code: 'custom',
            path: ['services', i, 'listen', j],
            message: `${s.protocol} ${l.host}:${l.port} is listed twice`,
          });
        listens.add(key);
      });
    });
  });

export type ProxyConfig = z.output<typeof proxyConfigSchema>;
export type ProxyService = ProxyConfig['services'][number];
export type Target = ProxyService['target'];
export type OnChange = ProxyService['onChange'];

/** The proxy-wide limits a flag may set (--max-connections …); a flag wins over the config file. */
export type LimitFlags = Partial<
  Pick<ProxyConfig, 'maxConnections' | 'maxConnectionsPerNetwork' | 'connectTimeout' | 'idleTimeout' | 'udpIdleTimeout'>
>;

/** The config with the flags applied, and every service's timeouts set (its own, else the proxy-wide ones). */
export function withLimits(config: ProxyConfig, flags: LimitFlags = {}): ProxyConfig {
  const top = { ...config, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) };
  return {
    ...top,
    services: top.services.map((s) => ({
      ...s,
      connectTimeout: s.connectTimeout ?? top.connectTimeout,
      idleTimeout: s.idleTimeout ?? (s.protocol === 'tcp' ? top.idleTimeout : top.udpIdleTimeout),
    })),
  };
}

/** A service's timeouts, as withLimits set them (the defaults only for a config that did not pass through it). */
export function idleTimeoutOf(service: ProxyService): number {
  return service.idleTimeout ?? (service.protocol === 'tcp' ? 3_600_000 : 60_000);
}

export function connectTimeoutOf(service: ProxyService): number {
  return service.connectTimeout ?? 3000;
}

export function parseProxyConfig(data: unknown, source: string, flags: LimitFlags = {}): ProxyConfig {
  return withLimits(checked(proxyConfigSchema, data, source), flags);
}

export function loadProxyConfig(path: string, flags: LimitFlags = {}): ProxyConfig {
  return parseProxyConfig(readYamlFile(path), path, flags);
}

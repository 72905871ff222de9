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
export const ON_CHANGE = ['keep', 'drain', 'close'] as const;

const serviceSchema = z.strictObject({
  name: z
    .string({ error: 'expected a service name' })
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected 1 to 64 letters, digits, ".", "_" or "-"'),
  listen: z.union([hostPort.transform((one) => [one]), z.array(hostPort).min(1, 'expected at least one HOST:PORT')]),
  protocol: z.enum(['tcp', 'udp'], { error: 'expected "tcp" or "udp"' }).default('tcp'),
  target: targetSchema,
  onChange: z.enum(ON_CHANGE, { error: `expected one of ${ON_CHANGE.map((p) => `"${p}"`).join(', ')}` }).default('drain'),
  drainSeconds: whole(0, 86_400).default(30),
  connectTimeout: duration(10, 60_000).default(3000),
  /** TCP: a connection with no bytes either way for this long is closed; UDP: a flow is forgotten. */
  idleTimeout: duration(100, 86_400_000).optional(),
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
    services: z.array(serviceSchema).min(1, 'expected at least one service'),
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
        if (listens.has(key))
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

/** Idle timeouts when the service gives none: TCP connections an hour, UDP flows a minute. */
export function idleTimeoutOf(service: ProxyService): number {
  return service.idleTimeout ?? (service.protocol === 'tcp' ? 3_600_000 : 60_000);
}

export function parseProxyConfig(data: unknown, source: string): ProxyConfig {
  return checked(proxyConfigSchema, data, source);
}

export function loadProxyConfig(path: string): ProxyConfig {
  return parseProxyConfig(readYamlFile(path), path);
}

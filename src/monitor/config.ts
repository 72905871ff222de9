// The monitor's config file (YAML or JSON): one zod schema is the single source of its
// shape, defaults and error messages; a bad file stops start-up with one line naming the field.

import { z } from 'zod';
import { DivertError } from '../errors.js';
import { readYamlFile } from '../config/load.js';
import { address, checked, duration, fraction, hostPort, whole } from '../config/schema-parts.js';
import { formatHostPort } from '../net/host-port.js';

export { canonicalAddress, parseDuration } from '../config/schema-parts.js';
import { normalizeName } from '../entry/names.js';

const interceptedName = z.string({ error: 'expected a name such as www.shop.example' }).transform((text, ctx) => {
  try {
    return normalizeName(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const mirrorSchema = z.strictObject({
  address,
  port: whole(1, 65535).optional(),
  priority: whole(0, 1_000_000).default(0),
  weight: whole(0, 1000).default(1),
  site: z.string().min(1).max(100).optional(),
});

const loadSchema = z
  .strictObject({
    path: z.string().startsWith('/', 'expected a path starting with "/"').optional(),
    url: z
      .string()
      .regex(/^https?:\/\//, "expected an http:// or https:// URL ({address} and {port} are replaced by the mirror's)")
      .optional(),
    field: z.string().min(1).default('load'),
  })
  .refine((l) => (l.path === undefined) !== (l.url === undefined), { message: 'expected exactly one of "path" or "url"' });

const checkSchema = z
  .strictObject({
    type: z.enum(['tcp', 'http', 'https'], { error: 'expected "tcp", "http" or "https"' }),
    port: whole(1, 65535).optional(),
    path: z.string().startsWith('/', 'expected a path starting with "/"').default('/'),
    expect: whole(100, 599).default(200),
    host: z.string().min(1).optional(),
    insecure: z.boolean({ error: 'expected true or false' }).default(false),
    interval: duration(50, 3_600_000).default(5000),
    timeout: duration(10, 600_000).default(2000),
    rise: whole(1, 100).default(2),
    fall: whole(1, 100).default(3),
    load: loadSchema.optional(),
  })
  .refine((c) => c.timeout <= c.interval, {
    message: 'expected at most the interval (a check must end before the next one starts)',
    path: ['timeout'],
  });

/** The proxy's default --status: where its GET /v1/stats/targets is read when `proxy` is left out. */
export const DEFAULT_PASSIVE_PROXY = { host: '127.0.0.1', port: 5382 };

/**
 * Passive health: a mirror's connect failures as divert proxy counts them (GET
 * /v1/stats/targets on its --status endpoint) count as failed checks.
 */
const passiveSchema = z
  .strictObject(
    {
      proxy: hostPort
        .refine((at) => at.port !== 0, { message: "expected the proxy's --status HOST:PORT, with a port other than 0" })
        .default(DEFAULT_PASSIVE_PROXY),
      port: whole(1, 65535).optional(),
      failures: whole(1, 1_000_000).default(3),
      window: duration(100, 3_600_000).default(10_000),
      interval: duration(100, 600_000).default(1000),
    },
    {
      error:
        "expected a map such as { proxy: 127.0.0.1:5382, failures: 3, window: 10s } (divert proxy's --status and when to count a mirror down)",
    },
  )
  .refine((p) => p.interval <= p.window, {
    message: 'expected at most the window (a failure must stay counted until the next read)',
    path: ['interval'],
  });

const serviceSchema = z
  .strictObject({
    name: z
      .string({ error: 'expected a service name' })
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected 1 to 64 letters, digits, ".", "_" or "-"'),
    names: z.array(interceptedName).min(1, 'expected at least one intercepted name'),
    ttl: whole(0, 86400).default(30),
    policy: z
      .enum(['failover', 'all-healthy', 'weighted', 'least-loaded'], {
        error: 'expected "failover", "all-healthy", "weighted" or "least-loaded"',
      })
      .default('failover'),
    count: whole(1, 1000).default(1),
    overload: fraction.default(0.9),
    hysteresis: fraction.default(0.1),
    pick: whole(1, 1000).optional(),
    check: checkSchema,
    passive: passiveSchema.optional(),
    mirrors: z.array(mirrorSchema).min(1, 'expected at least one mirror'),
  })
  .superRefine((s, ctx) => {
    if (s.policy === 'least-loaded' && !s.check.load) {
      ctx.addIssue({
        code: 'custom',
        path: ['check', 'load'],
        message: 'the least-loaded policy needs a load figure: expected check.load with a path or url',
      });
    }
    if (s.pick !== undefined && s.policy !== 'weighted') {
      ctx.addIssue({
        code: 'custom',
        path: ['pick'],
        message: `only the weighted policy takes pick (this service's policy is ${s.policy})`,
      });
    }
    // a DNS answer holds addresses, not ports: two mirrors on one address could not be told apart
    const seen = new Set<string>();
    s.mirrors.forEach((m, i) => {
      if (seen.has(m.address))
        ctx.addIssue({
          code: 'custom',
          path: ['mirrors', i, 'address'],
          message: `${m.address} is listed twice (each mirror's address must be unique in a service)`,
        });
      seen.add(m.address);
      if (m.port === undefined && s.check.port === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['mirrors', i, 'port'],
          message: 'expected a port: give check.port for the service or port for the mirror',
        });
      }
    });
  });

export const monitorConfigSchema = z
  .strictObject({
    id: z
      .string()
      .regex(/^[\x20-\x7e]{1,100}$/, 'expected 1 to 100 printable ASCII characters')
      .default('monitor'),
    admin: z.string().min(1).optional(),
    token: z.string().min(1).optional(),
    tokenFile: z.string().min(1).optional(),
    manualHold: duration(0, 30 * 86_400_000).default(600_000),
    refresh: duration(1000, 3_600_000).default(30_000),
    queryRates: duration(1000, 3_600_000).default(10_000),
    services: z.array(serviceSchema).min(1, 'expected at least one service'),
  })
  .superRefine((c, ctx) => {
    const ids = new Set<string>();
    const owner = new Map<string, string>();
    c.services.forEach((s, i) => {
      if (ids.has(s.name)) ctx.addIssue({ code: 'custom', path: ['services', i, 'name'], message: `service "${s.name}" is defined twice` });
      ids.add(s.name);
      s.names.forEach((name, j) => {
        const other = owner.get(name);
        if (other !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['services', i, 'names', j],
            message: `"${name}" is already steered by service "${other}"`,
          });
        owner.set(name, s.name);
      });
    });
  });

export type MonitorConfig = z.output<typeof monitorConfigSchema>;
export type ServiceConfig = MonitorConfig['services'][number];
export type MirrorConfig = ServiceConfig['mirrors'][number];
export type CheckConfig = ServiceConfig['check'];
export type Policy = ServiceConfig['policy'];
export type PassiveConfig = NonNullable<ServiceConfig['passive']>;

/** The config as data (already parsed from YAML or JSON); `source` names it in errors. */
export function parseMonitorConfig(data: unknown, source: string): MonitorConfig {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new DivertError('BAD_CONFIG', `${source}: expected a map with "services" (see docker/monitor.example.yaml)`);
  }
  return checked(monitorConfigSchema, data, source);
}

export function loadMonitorConfig(path: string): MonitorConfig {
  return parseMonitorConfig(readYamlFile(path), path);
}

/** The port a mirror is checked on. */
export function checkPort(service: ServiceConfig, mirror: MirrorConfig): number {
  return mirror.port ?? service.check.port!;
}

/**
 * The proxy's key for a mirror in GET /v1/stats/targets ("ADDRESS:PORT", IPv6 bracketed):
 * passive.port when given, else the port the mirror is checked on.
 */
export function passiveTarget(service: ServiceConfig, mirror: MirrorConfig): string {
  return formatHostPort({ host: mirror.address, port: service.passive?.port ?? checkPort(service, mirror) });
}

// The Redis URL forms RedisTable accepts: one server, Sentinel, or Cluster.

import { DivertError } from '../../errors.js';
import { maskUrl } from '../../redact.js';

export interface RedisNode {
  host: string;
  port: number;
}

export type RedisTarget =
  /** redis:// or rediss://, handed to ioredis as written. */
  | { kind: 'standalone'; url: string; password: string }
  /** The password is the master's; the Sentinels are asked without one. */
  | { kind: 'sentinel'; sentinels: RedisNode[]; name: string; username: string; password: string }
  /** Seed nodes; the client learns the rest of the cluster from them. */
  | { kind: 'cluster'; nodes: RedisNode[]; username: string; password: string };

const FORMS =
  'expected redis[s]://[:PASSWORD@]HOST:PORT, redis-sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME ' +
  'or redis-cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT...]';

/** Master names as Sentinel configs allow them: no spaces, slashes or URL syntax. */
const MASTER_NAME = /^[A-Za-z0-9._:-]+$/;

export function parseRedisUrl(url: string): RedisTarget {
  const bad = (reason: string) => new DivertError('BAD_CONFIG', `redis URL "${maskUrl(url)}": ${reason}`);
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'redis' || scheme === 'rediss') {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw bad(`not a valid URL; ${FORMS}`);
    }
    if (parsed.hostname === '') throw bad(`no host; ${FORMS}`);
    return { kind: 'standalone', url, password: decode(parsed.password, bad) };
  }
  if (scheme !== 'redis-sentinel' && scheme !== 'redis-cluster') throw bad(FORMS);

  const rest = url.slice(scheme.length + 3);
  if (/[?#]/.test(rest)) throw bad('query and fragment are not supported');
  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash + 1);
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? '' : authority.slice(0, at);
  const colon = userinfo.indexOf(':');
  if (at !== -1 && colon === -1) throw bad('the part before "@" must be ":PASSWORD" (or "USER:PASSWORD")');
  const username = decode(userinfo.slice(0, Math.max(colon, 0)), bad);
  const password = decode(userinfo.slice(colon + 1), bad);
  const nodes = parseNodes(authority.slice(at + 1), bad);

  if (scheme === 'redis-cluster') {
    if (path !== '') throw bad('a cluster URL has no path (the database is always 0)');
    return { kind: 'cluster', nodes, username, password };
  }
  if (path === '') throw bad('the master name is missing, as in redis-sentinel://HOST:PORT/mymaster');
  const name = decode(path, bad);
  if (!MASTER_NAME.test(name)) throw bad(`master name "${name}" may hold only letters, digits, ".", "_", ":" and "-"`);
  return { kind: 'sentinel', sentinels: nodes, name, username, password };
}

function decode(part: string, bad: (reason: string) => DivertError): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw bad('bad %-escape in the URL');
  }
}

function parseNodes(list: string, bad: (reason: string) => DivertError): RedisNode[] {
  if (list === '') throw bad('no HOST:PORT given');
  return list.split(',').map((item) => {
    // [v6]:port, or host:port with exactly one colon
    const m = /^\[([0-9A-Fa-f:.]+)\]:(\d+)$/.exec(item) ?? /^([^:[\]@/\s]+):(\d+)$/.exec(item);
    if (!m) throw bad(`"${item}" is not HOST:PORT (an IPv6 address goes in brackets: [::1]:6379)`);
    const port = Number(m[2]);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(`"${item}": port ${m[2]} is not from 1 to 65535`);
    return { host: m[1], port };
  });
}

// The default upstreams: the system's nameservers, minus any that are divert itself, so
// that divert, set as the system resolver, does not forward queries to itself.

import { readFile } from 'node:fs/promises';
import type { ServeConfig } from '../config/options.js';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { DivertError } from '../errors.js';
import type { HostPort } from '../net/host-port.js';
import type { UpstreamSpec } from '../net/upstream-spec.js';
import { readUpstreamCa, withUpstreamCa } from './upstream-ca.js';

export function nameserversOf(resolvConf: string): string[] {
  return (
    resolvConf
      .split('\n')
      .map((line) =>
        line
          .replace(/[#;].*$/, '')
          .trim()
          .split(/\s+/),
      )
      .filter((words) => words[0] === 'nameserver' && words[1] !== undefined)
      // a link-local nameserver keeps its zone (fe80::1%eth0): it says which interface
      .map((words) => words[1])
      .filter((host) => isIP(host.split('%')[0]) !== 0)
  );
}

function isLocalAddress(host: string, localAddresses: ReadonlySet<string>): boolean {
  const bare = host.split('%')[0];
  return bare.startsWith('127.') || bare === '::1' || localAddresses.has(bare);
}

export function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const info of list ?? []) out.add(info.address);
  return out;
}

/** Nameservers (port 53) that are not one of divert's own listeners. */
export function upstreamsFromResolvConf(
  resolvConf: string,
  listen: readonly HostPort[],
  local: ReadonlySet<string> = localAddresses(),
): HostPort[] {
  const isSelf = (host: string) =>
    listen.some((l) => {
      if (l.port !== 53) return false;
      if (l.host === host.split('%')[0]) return true;
      const wildcard = l.host === '0.0.0.0' || l.host === '::';
      return wildcard && isLocalAddress(host, local);
    });
  return nameserversOf(resolvConf)
    .filter((host) => !isSelf(host))
    .map((host) => ({ host, port: 53 }));
}

export function requireUpstreams(upstreams: HostPort[], resolvConfPath: string): HostPort[] {
  if (upstreams.length === 0) {
    throw new DivertError(
      'NO_UPSTREAM',
      `no upstream resolver: ${resolvConfPath} lists no nameserver other than divert itself; give one with --upstream HOST[:PORT]`,
    );
  }
  return upstreams;
}

/** The upstreams: --upstream (the tls:// ones with --upstream-ca's certificates, read
 * now), or the nameservers of --resolv-conf (minus divert's own addresses). */
export async function resolveUpstreams(config: ServeConfig): Promise<UpstreamSpec[]> {
  const ca = config.upstreamCa === undefined ? undefined : await readUpstreamCa(config.upstreamCa);
  if (config.upstream) return withUpstreamCa(config.upstream, ca);
  let text: string;
  try {
    text = await readFile(config.resolvConf, 'utf8');
  } catch (err) {
    throw new DivertError(
      'NO_UPSTREAM',
      `--resolv-conf "${config.resolvConf}": cannot read it (${(err as NodeJS.ErrnoException).code}); give --upstream HOST[:PORT]`,
    );
  }
  return requireUpstreams(upstreamsFromResolvConf(text, config.listen), config.resolvConf);
}

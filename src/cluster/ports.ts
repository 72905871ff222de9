// The ports the primary of `divert serve --workers N` settles before its workers bind: a
// requested port 0 becomes one port, free for both UDP and TCP, that every worker shares.

import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { DivertError } from '../errors.js';

/** Whether a TCP listener could take `port` on `host` now (it is let go again at once). */
export async function tcpPortFree(host: string, port: number): Promise<boolean> {
  const tcp = createServer();
  const free = await new Promise<boolean>((resolve) => {
    tcp.once('error', () => resolve(false));
    tcp.listen({ host, port, exclusive: true, ipv6Only: host.includes(':') }, () => resolve(true));
  });
  if (free) await new Promise<void>((resolve) => tcp.close(() => resolve()));
  return free;
}

/** A TCP port free on `host` now (for a DoT or DoH listener asked for on port 0); the workers then all bind it. */
export async function freeTcpPort(host: string): Promise<number> {
  const tcp = createServer();
  const port = await new Promise<number>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen({ host, port: 0, exclusive: true, ipv6Only: host.includes(':') }, () => resolve((tcp.address() as { port: number }).port));
  });
  await new Promise<void>((resolve) => tcp.close(() => resolve()));
  return port;
}

/** A port that is free for both UDP and TCP on `host` now; the workers then all bind it. */
export async function freePortForBoth(host: string): Promise<number> {
  for (let tries = 0; tries < 20; tries++) {
    const udp = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', ipv6Only: host.includes(':') });
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ address: host, port: 0, exclusive: true }, () => resolve(udp.address().port));
    }).catch((err: NodeJS.ErrnoException) => {
      udp.close();
      throw err;
    });
    const free = await tcpPortFree(host, port);
    udp.close();
    if (free) return port;
  }
  throw noPortFree(host);
}

export function noPortFree(host: string): DivertError {
  return new DivertError('LISTEN_FAILED', `cannot find a port on ${host} free for both UDP and TCP`);
}

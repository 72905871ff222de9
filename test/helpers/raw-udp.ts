// Datagrams with any source address and port, port 0 included, on loopback: what Node's
// dgram cannot send (it will not bind or send from port 0). A python3 child with raw
// sockets writes the UDP header (and, for IPv4, the IP header) itself; it needs root
// (CAP_NET_RAW), which CI has. One child serves many datagrams, read from its stdin.

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { spawnChild } from './children.js';

const SENDER = String.raw`
import socket, struct, sys
v4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)   # we write the IP header
v6 = {}   # a raw IPv6 socket per source address (bound to it)
def v6_from(src):
    if src not in v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
        s.setsockopt(socket.IPPROTO_IPV6, 7, 6)   # IPV6_CHECKSUM: the kernel fills in the UDP checksum
        s.bind((src, 0))
        v6[src] = s
    return v6[src]
for line in sys.stdin:
    parts = line.split()
    if len(parts) != 5:
        continue
    src, sport, dst, dport, payload = parts[0], int(parts[1]), parts[2], int(parts[3]), bytes.fromhex(parts[4])
    udp = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload   # checksum 0: none (IPv4)
    try:
        if ':' in dst:
            v6_from(src).sendto(udp, (dst, 0))
        else:
            ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                             socket.inet_aton(src), socket.inet_aton(dst))
            v4.sendto(ip + udp, (dst, 0))
    except OSError as e:
        sys.stderr.write('raw send failed: %s\n' % e)
    sys.stdout.write('.')
    sys.stdout.flush()
`;

export interface Endpoint {
  address: string;
  port: number;
}

/** Raw sockets need root (CAP_NET_RAW); the reason a test is skipped otherwise. */
export function rawUdpUnavailable(): string | false {
  return process.getuid?.() === 0 ? false : 'raw sockets need root (CAP_NET_RAW); CI runs as root';
}

export class RawUdp {
  private sent = 0;
  private written = 0;
  private readonly waiters: (() => void)[] = [];

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on('data', (chunk: Buffer) => {
      this.written += chunk.length;
      this.waiters.splice(0).forEach((w) => w());
    });
  }

  static start(): RawUdp {
    const child = spawnChild('python3', ['-u', '-c', SENDER], { stdio: ['pipe', 'pipe', 'inherit'] });
    return new RawUdp(child);
  }

  /** Queues one datagram from `from` to `to`. */
  send(from: Endpoint, to: Endpoint, payload: Buffer): void {
    this.sent++;
    this.child.stdin!.write(`${from.address} ${from.port} ${to.address} ${to.port} ${payload.toString('hex')}\n`);
  }

  /** Resolves once every datagram queued so far has been handed to the kernel (or after timeoutMs). */
  async flushed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.written < this.sent && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    if (this.written < this.sent) throw new Error(`raw sender wrote ${this.written} of ${this.sent} datagrams`);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** One datagram, sent and flushed. */
export async function sendRaw(from: Endpoint, to: Endpoint, payload: Buffer): Promise<void> {
  const raw = RawUdp.start();
  try {
    raw.send(from, to, payload);
    await raw.flushed();
  } finally {
    await raw.close();
  }
}

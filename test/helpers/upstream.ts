// A scriptable upstream resolver for tests: UDP and TCP on one loopback port. Each
// query is decoded and passed to a responder, which returns the exact bytes to send
// (or null to stay silent); the bytes sent are kept so tests can compare them with what
// the client received.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import dnsPacket from 'dns-packet';
import { lengthPrefix, TcpFramer } from '../../src/transport/tcp-framer.js';

export interface UpstreamQuery {
  raw: Buffer;
  packet: dnsPacket.Packet;
  transport: 'udp' | 'tcp';
  from: { address: string; port: number };
}

/** Bytes to send (the ID is the responder's business), or null for no reply. */
export type Responder = (query: UpstreamQuery) => Buffer | null | Promise<Buffer | null>;

export interface TestUpstream {
  port: number;
  address: string;
  queries: UpstreamQuery[];
  /** Every reply sent, in order. */
  sent: Buffer[];
  respond: Responder;
  /** Sends `bytes` to `to` over UDP from a different port than the upstream's. */
  sendFromOtherPort(bytes: Buffer, to: { address: string; port: number }): Promise<void>;
  /** Sends raw bytes to `to` from the upstream's own UDP port (for spoof tests). */
  sendFromUpstreamPort(bytes: Buffer, to: { address: string; port: number }): void;
  close(): Promise<void>;
}

/** Response codes, for the low bits of `flags` (dns-packet encodes rcode only from there). */
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

/** A reply to `query` built with dns-packet: the question copied, `fields` merged in. */
export function replyTo(query: UpstreamQuery, fields: Partial<dnsPacket.Packet> = {}, rcode = 0): Buffer {
  return dnsPacket.encode({
    id: query.packet.id,
    type: 'response',
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
    questions: query.packet.questions,
    ...fields,
  });
}

/** dns-packet's reading of a query, or (for bytes it cannot read: another opcode's, garbage) just the ID. */
function decodeOrHeader(raw: Buffer): dnsPacket.Packet {
  try {
    return dnsPacket.decode(raw);
  } catch {
    return { id: raw.length >= 2 ? raw.readUInt16BE(0) : 0, questions: [] };
  }
}

export async function startUpstream(respond: Responder, host = '127.0.0.1'): Promise<TestUpstream> {
  // UDP first on a port the OS picks, then TCP on the same port; retry if TCP's is taken
  for (let tries = 0; ; tries++) {
    try {
      return await bindUpstream(respond, host);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || tries >= 20) throw err;
    }
  }
}

async function bindUpstream(respond: Responder, host: string): Promise<TestUpstream> {
  const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((resolve) => udp.bind(0, host, resolve));
  const port = udp.address().port;
  const tcp: Server = createServer((socket: Socket) => {
    const framer = new TcpFramer();
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      for (const raw of framer.push(chunk)) {
        void handle(raw, 'tcp', { address: socket.remoteAddress!, port: socket.remotePort! }).then((reply) => {
          if (!reply || socket.destroyed) return;
          socket.write(Buffer.concat([lengthPrefix(reply), reply]));
        });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', (err) => {
      udp.close();
      reject(err);
    });
    tcp.listen(port, host, () => resolve());
  });
  const other: UdpSocket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((resolve) => other.bind(0, host, resolve));

  const upstream: TestUpstream = {
    port,
    address: host,
    queries: [],
    sent: [],
    respond,
    sendFromOtherPort: (bytes, to) => new Promise((resolve) => other.send(bytes, to.port, to.address, () => resolve())),
    sendFromUpstreamPort: (bytes, to) => udp.send(bytes, to.port, to.address),
    close: async () => {
      udp.close();
      other.close();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };

  async function handle(raw: Buffer, transport: 'udp' | 'tcp', from: { address: string; port: number }): Promise<Buffer | null> {
    const query: UpstreamQuery = { raw: Buffer.from(raw), packet: decodeOrHeader(raw), transport, from };
    upstream.queries.push(query);
    const reply = await upstream.respond(query);
    if (reply) upstream.sent.push(Buffer.from(reply));
    return reply;
  }

  udp.on('message', (raw, rinfo) => {
    void handle(raw, 'udp', { address: rinfo.address, port: rinfo.port }).then((reply) => {
      if (reply) udp.send(reply, rinfo.port, rinfo.address);
    });
  });
  return upstream;
}

// Connecting to a target: the addresses a service gives for a client, tried in order
// within one connect timeout; each refusal or timeout is counted against its target.

import { createConnection, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { formatAddress, type ConnectionTable } from './connections.js';

/** Where a plain connection's reads go: into a reused buffer, handed to `sink` (false: pause reading). */
export interface Reader {
  sink: ((chunk: Buffer) => boolean) | null;
  /** The last buffer handed out is still held by a write queue: the next read needs a fresh one. */
  retained: boolean;
  buffer: Buffer;
}

export interface Dialled {
  reader: Reader | null;
  socket: Socket;
  address: string;
  /** How long the connect took, ms. */
  ms: number;
  /** The proxy's own address:port towards the target. */
  source: string | null;
}

/** A connection to host:port (TLS when `tls` is given: connected once the handshake and the certificate check pass). */
function open(host: string, port: number, timeoutMs: number, tls: ConnectionOptions | null, reader: Reader): Promise<Socket | null> {
  return new Promise((resolve) => {
    const onread = {
      buffer: () => {
        if (reader.retained) {
          reader.buffer = Buffer.allocUnsafe(65536);
          reader.retained = false;
        }
        return reader.buffer;
      },
      callback: (n: number, buf: Uint8Array) => (reader.sink ? reader.sink(Buffer.from(buf.buffer, buf.byteOffset, n)) : true),
    };
    const socket = tls ? tlsConnect({ ...tls, host, port }) : createConnection({ host, port, allowHalfOpen: true, noDelay: true, onread });
    const ready = tls ? 'secureConnect' : 'connect';
    const timer = setTimeout(() => fail(), timeoutMs);
    const fail = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(null);
    };
    socket.once('error', fail);
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.off('error', fail);
      resolve(socket);
    });
  });
}

/** The first of `addresses` that accepts on `port` within `timeoutMs` in all; null when none does or `abandoned()` says the client went. */
export async function dial(
  addresses: readonly string[],
  port: number,
  timeoutMs: number,
  table: ConnectionTable,
  abandoned: () => boolean,
  tls: ConnectionOptions | null = null,
): Promise<Dialled | null> {
  const deadline = Date.now() + timeoutMs;
  for (const address of addresses) {
    const left = deadline - Date.now();
    if (left <= 0 || abandoned()) return null;
    const started = performance.now();
    const reader: Reader = { sink: null, retained: false, buffer: Buffer.allocUnsafe(65536) };
    const socket = await open(address, port, left, tls, reader);
    if (!socket) {
      table.connectFailed(formatAddress(address, port));
      continue;
    }
    if (abandoned()) {
      socket.destroy();
      return null;
    }
    const source = socket.localAddress !== undefined ? formatAddress(socket.localAddress, socket.localPort ?? 0) : null;
    return { reader: tls ? null : reader, socket, address, ms: Math.round((performance.now() - started) * 100) / 100, source };
  }
  return null;
}

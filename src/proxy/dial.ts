// Connecting to a target: the addresses a service gives for a client, tried in order
// within one connect timeout; each refusal or timeout is counted against its target.

import { createConnection, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { formatAddress, type ConnectionTable } from './connections.js';

/**
 * Read buffers of plain target connections that have closed, for the next ones. Node reads
 * a connection into the buffer it was given, and asks for the next one after every read:
 * a connection keeps its buffer while no write holds the bytes last read into it, so a
 * buffer is reused within a connection and, once the connection has closed, by another.
 * A buffer of its own per connection cost 64 KB outside V8's heap per connection: at
 * 5,000 new connections a second, a full garbage collection every ~100 ms.
 */
const READ_SIZE = 65536;
const MAX_SPARE = 64;
const spare: Buffer[] = [];
const EMPTY = Buffer.alloc(0);

function takeBuffer(): Buffer {
  return spare.pop() ?? Buffer.allocUnsafe(READ_SIZE);
}

/** The connection is closed: its buffer, unless a write still holds it, serves another. */
function release(reader: Reader): void {
  if (!reader.retained && spare.length < MAX_SPARE) spare.push(reader.buffer);
}

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
  /** The proxy's own address:port towards the target, asked of the OS when the table is read (a system call not made per connection). */
  source: () => string | null;
}

/** A connection to host:port (TLS when `tls` is given: connected once the handshake and the certificate check pass). */
function open(host: string, port: number, timeoutMs: number, tls: ConnectionOptions | null, reader: Reader): Promise<Socket | null> {
  return new Promise((resolve) => {
    const onread = {
      buffer: () => {
        if (reader.retained) {
          reader.buffer = takeBuffer();
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
    const reader: Reader = { sink: null, retained: false, buffer: tls ? EMPTY : takeBuffer() };
    const socket = await open(address, port, left, tls, reader);
    if (!tls) {
      if (socket) socket.once('close', () => release(reader));
      else release(reader);
    }
    if (!socket) {
      table.connectFailed(formatAddress(address, port));
      continue;
    }
    if (abandoned()) {
      socket.destroy();
      return null;
    }
    const source = () => (socket.localAddress !== undefined ? formatAddress(socket.localAddress, socket.localPort ?? 0) : null);
    return { reader: tls ? null : reader, socket, address, ms: Math.round((performance.now() - started) * 100) / 100, source };
  }
  return null;
}

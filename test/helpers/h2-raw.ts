// A raw HTTP/2 client for tests of the DoH server's framing: frames written by hand over
// node:tls (ALPN h2), every frame the server sends kept in order, so a test can send what
// no well-behaved client would (a header block in pieces, a window of a few octets, a frame
// that breaks the protocol) and check each frame that comes back.

import { connect, type TLSSocket } from 'node:tls';
import { HpackDecoder } from '../../src/transport/hpack-decoder.js';
import * as h2 from '../../src/transport/h2-frames.js';

// frames are written with the server's own writer (h2-frames.ts): what is tested here is how
// the server reads them; real clients (dig, kdig, node, h2load) check the writer itself
export const T = {
  DATA: h2.DATA,
  HEADERS: h2.HEADERS,
  PRIORITY: h2.PRIORITY,
  RST_STREAM: h2.RST_STREAM,
  SETTINGS: h2.SETTINGS,
  PUSH_PROMISE: h2.PUSH_PROMISE,
  PING: h2.PING,
  GOAWAY: h2.GOAWAY,
  WINDOW_UPDATE: h2.WINDOW_UPDATE,
  CONTINUATION: h2.CONTINUATION,
};
export const F = { END_STREAM: h2.END_STREAM, ACK: h2.ACK, END_HEADERS: h2.END_HEADERS, PADDED: h2.PADDED, PRIORITY: h2.PRIORITY_FLAG };
export const frame = h2.frame;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

function integer(value: number, prefixBits: number, pattern: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [pattern | value];
  const out = [pattern | max];
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
  return out;
}

const literal = (text: string): Buffer => Buffer.concat([Buffer.from(integer(text.length, 7, 0)), Buffer.from(text, 'latin1')]);

/** A header block of plain literals, none indexed; `indexed` (name, value) ones are added to the table (01 pattern). */
export function headerBlock(fields: [string, string][], indexed = false): Buffer {
  return Buffer.concat(fields.map(([name, value]) => Buffer.concat([Buffer.from([indexed ? 0x40 : 0x00]), literal(name), literal(value)])));
}

export function settings(entries: [number, number][]): Buffer {
  return h2.settingsFrame(entries);
}

export class RawH2 {
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  private buffered = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  private readonly decoder = new HpackDecoder();

  private constructor(readonly socket: TLSSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 9) {
        const length = this.buffered.readUIntBE(0, 3);
        if (this.buffered.length < 9 + length) break;
        const b = this.buffered;
        this.frames.push({
          type: b[3],
          flags: b[4],
          stream: b.readUInt32BE(5) & 0x7fffffff,
          payload: Buffer.from(b.subarray(9, 9 + length)),
        });
        this.buffered = b.subarray(9 + length);
      }
      this.wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => (this.wake(), resolve())));
  }

  /** Connects, sends the preface and `initial` (SETTINGS by default, empty) unless `preface` is false. */
  static async open(port: number, initial: Buffer = settings([]), preface = true): Promise<RawH2> {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    const client = new RawH2(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    });
    if (preface) socket.write(Buffer.concat([h2.PREFACE, initial]));
    return client;
  }

  send(...bytes: Buffer[]): void {
    this.socket.write(Buffer.concat(bytes));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** The first frame (from the start) that `match` accepts, within `ms`. */
  async next(match: (f: Frame) => boolean, ms = 5000, what = 'a frame'): Promise<Frame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.frames.find(match);
      if (found) return found;
      if (this.socket.destroyed || Date.now() > deadline)
        throw new Error(`${what} did not come within ${ms} ms (closed: ${this.socket.destroyed})`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** The response on `stream`: its headers decoded (frames in order, as the server's HPACK state runs) and its body, once END_STREAM came. */
  async response(stream: number, ms = 5000): Promise<{ status: number; headers: Record<string, string>; body: Buffer; frames: Frame[] }> {
    await this.next(
      (f) => f.stream === stream && (f.flags & F.END_STREAM) !== 0 && (f.type === T.DATA || f.type === T.HEADERS),
      ms,
      `the response on stream ${stream}`,
    );
    const frames = this.frames.filter((f) => f.stream === stream);
    const headers: Record<string, string> = {};
    const head = frames.find((f) => f.type === T.HEADERS)!;
    this.decoder.decode(head.payload, 1 << 20, (name, value) => (headers[name] = value));
    const body = Buffer.concat(frames.filter((f) => f.type === T.DATA).map((f) => f.payload));
    return { status: Number(headers[':status']), headers, body, frames };
  }

  /** The GOAWAY's error code, once it came. */
  async goaway(ms = 5000): Promise<number> {
    return (await this.next((f) => f.type === T.GOAWAY, ms, 'GOAWAY')).payload.readUInt32BE(4);
  }

  close(): void {
    this.socket.destroy();
  }
}

// One HTTP/2 connection (RFC 9113) of the DoH server, on a TLS socket whose handshake
// chose h2: frames read straight off the socket, a request handed on when its header
// block is whole, a response written as one HEADERS and its DATA in a single write.
// Only what a DNS-over-HTTPS server needs is kept per request (its id, its flow-control
// window, whether each side has ended): no stream object, no header object, no events,
// unless a request has a body (POST), which is given to the reader as 'data' and 'end'.
//
// What a peer may do is bounded: streams open at once (100; more are refused with
// REFUSED_STREAM, and a peer that keeps opening them past the limit is sent away), a
// header block (16 KiB, compressed or not), a frame (16 KiB), bytes queued to the socket
// (4 MiB, beyond which the peer is not reading and the connection is closed), replies
// held for a client that gives them no window (4 MiB, then GOAWAY), frames that
// break a stream's rules (100), requests reset before their answer (a burst of 1,000,
// then 33 a second). A breach of the protocol ends the connection with GOAWAY
// and the error's code; nothing a peer sends throws out of here.

import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { HpackDecoder } from './hpack-decoder.js';
import * as h2 from './h2-frames.js';

const MAX_STREAMS = 100;
/** The request's headers, all together (a DoH request needs a few hundred bytes). */
export const MAX_HEADER_BYTES = 16 * 1024;
/** A stream's receive window: one byte over the largest DNS message, so a body too large shows as such without waiting. */
const STREAM_WINDOW = 0x10000;
const MAX_REJECTED = 100;
const MAX_INVALID = 100;
const MAX_QUEUED = 4 * 1024 * 1024;
/** Requests a client may reset before their answer (the "rapid reset" of CVE-2023-44487, each a query sent on for nothing): a burst, then so many a second, as nghttp2 allows. */
const RESET_BURST = 1000;
const RESET_RATE = 33;

const SERVER_SETTINGS = h2.settingsFrame([
  [h2.SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS],
  [h2.SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW],
  [h2.SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES],
  [h2.SETTINGS_ENABLE_PUSH, 0],
]);
const SETTINGS_ACK = h2.frame(h2.SETTINGS, h2.ACK, 0);

/** A request's head: what DoH reads of it, valid during the onRequest call it is given to. */
export interface H2Head {
  method: string | undefined;
  path: string | undefined;
  contentType: string | undefined;
  contentLength: string | undefined;
}

export class H2Stream {
  /** Bytes the peer lets this stream send now. */
  sendWindow: number;
  /** The peer's END_STREAM has come. */
  remoteEnded: boolean;
  /** A response has been given (part of it may still wait for window). */
  responded = false;
  /** Gone from the session: answered, reset, or the connection closed. */
  closed = false;
  /** DATA waiting for window, sent with END_STREAM when it fits. */
  pending: Buffer | null = null;
  /** Body bytes received. */
  received = 0;
  private emitter: EventEmitter | null = null;

  constructor(
    readonly session: H2Session,
    readonly id: number,
    sendWindow: number,
    remoteEnded: boolean,
  ) {
    this.sendWindow = sendWindow;
    this.remoteEnded = remoteEnded;
  }

  /** The request's body as 'data' (Buffer) and 'end', and 'close' when the stream goes; nothing is made for a request no one reads. */
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'end' | 'close', listener: () => void): this;
  on(event: string, listener: (chunk: Buffer) => void): this {
    (this.emitter ??= new EventEmitter()).on(event, listener);
    return this;
  }

  emit(event: 'data' | 'end' | 'close', chunk?: Buffer): void {
    this.emitter?.emit(event, chunk);
  }

  /** A response can still be given. */
  get open(): boolean {
    return !this.closed && !this.responded;
  }
}

interface HeaderBlock {
  stream: number;
  endStream: boolean;
  parts: Buffer[];
  size: number;
}

export class H2Session {
  private readonly decoder = new HpackDecoder();
  private readonly streams = new Map<number, H2Stream>();
  /** Streams with DATA waiting for window, in the order they began waiting. */
  private blocked: H2Stream[] = [];
  /** Octets of replies waiting for window, all streams together. */
  private held = 0;
  private partial: Buffer | null = null;
  private preface = false;
  private lastStream = 0;
  private sendWindow = 65_535;
  private peerWindow = 65_535;
  private sizeUpdate = false;
  private block: HeaderBlock | null = null;
  private unacked = 0;
  private rejected = 0;
  private invalid = 0;
  private resetTokens = RESET_BURST;
  private resetAt = 0;
  private corked = false;
  private peerGone = false;
  private closed = false;
  /** The head of the request being decoded, filled by `take`: made once, as the request is handed on at once. */
  private readonly head: H2Head = { method: undefined, path: undefined, contentType: undefined, contentLength: undefined };
  private readonly take = (name: string, value: string): void => {
    if (name === ':method') this.head.method = value;
    else if (name === ':path') this.head.path = value;
    else if (name === 'content-type') this.head.contentType = value;
    else if (name === 'content-length') this.head.contentLength = value;
  };
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly socket: TLSSocket,
    private readonly onRequest: (stream: H2Stream, head: H2Head) => void,
    private readonly onFault: (err: unknown) => void,
  ) {
    socket.on('data', (chunk: Buffer) => {
      try {
        this.read(chunk);
      } catch (err) {
        // a fault of this server's own, not the peer's: reported, and the connection alone ends
        this.onFault(err);
        this.fail(h2.INTERNAL_ERROR);
      }
    });
    socket.once('close', () => this.gone());
    this.write(SERVER_SETTINGS);
  }

  /** Sends `status`, `fields` (name, value, …) and `body` on `stream`, with END_STREAM. */
  respond(stream: H2Stream, status: number, fields: readonly string[], body: Buffer): void {
    // every stream is closed with its connection: an open one has its connection too
    if (!stream.open) return;
    stream.responded = true;
    const sizeUpdate = this.sizeUpdate;
    this.sizeUpdate = false;
    this.send(stream, body, status, fields, sizeUpdate);
  }

  /**
   * What the windows let go now of `body` on `stream`, after the response's HEADERS (`status`
   * and `fields`) when a status is given, in one write; the rest is held until a
   * WINDOW_UPDATE (flush), and the stream is done once all of it went.
   */
  private send(stream: H2Stream, body: Buffer, status?: number, fields: readonly string[] = [], sizeUpdate = false): void {
    const now = Math.max(0, Math.min(body.length, this.sendWindow, stream.sendWindow));
    // no DATA at all while there is no window for any of a body
    const frames = now === 0 && body.length > 0 ? 0 : Math.ceil(now / h2.MAX_FRAME) || 1;
    const blockLength = status === undefined ? 0 : h2.headerBlockLength(status, fields, sizeUpdate);
    const out = Buffer.allocUnsafe(h2.FRAME_HEADER * ((status === undefined ? 0 : 1) + frames) + blockLength + now);
    let at = 0;
    if (status !== undefined) {
      at = h2.writeFrameHeader(out, at, blockLength, h2.HEADERS, h2.END_HEADERS, stream.id);
      at = h2.writeHeaderBlock(out, at, status, fields, sizeUpdate);
    }
    if (frames > 0) this.writeData(out, at, stream, body, now);
    this.write(out);
    if (now === body.length) return this.sent(stream);
    this.blocked.push(stream);
    this.hold(stream, body.subarray(now));
    // replies the client will not take: held for it no further than what is queued to the socket is
    if (this.held > MAX_QUEUED) this.fail(h2.ENHANCE_YOUR_CALM);
  }

  /** Keeps `bytes` as what waits for window on `stream` (null: nothing), counted in `held`. */
  private hold(stream: H2Stream, bytes: Buffer | null): void {
    this.held += (bytes?.length ?? 0) - (stream.pending?.length ?? 0);
    stream.pending = bytes;
  }

  /** DATA frames of `body`'s first `length` octets into `out`; END_STREAM on the last when that is all of it. */
  private writeData(out: Buffer, at: number, stream: H2Stream, body: Buffer, length: number): number {
    this.sendWindow -= length;
    stream.sendWindow -= length;
    let from = 0;
    do {
      const size = Math.min(h2.MAX_FRAME, length - from);
      const last = from + size === length;
      at = h2.writeFrameHeader(out, at, size, h2.DATA, last && length === body.length ? h2.END_STREAM : 0, stream.id);
      at += body.copy(out, at, from, from + size);
      from += size;
    } while (from < length);
    return at;
  }

  /** The response is out whole: the stream is done (a request not yet ended is told to stop, RFC 9113 8.1). */
  private sent(stream: H2Stream): void {
    if (!stream.remoteEnded) this.write(h2.word(h2.RST_STREAM, stream.id, h2.NO_ERROR));
    this.close(stream);
  }

  private close(stream: H2Stream): void {
    if (stream.closed) return;
    stream.closed = true;
    this.hold(stream, null);
    this.streams.delete(stream.id);
    stream.emit('close');
    if (this.peerGone && this.streams.size === 0) this.end();
  }

  /** What may go now of the DATA that waited for window, in the order it began waiting. */
  private flush(): void {
    const waiting = this.blocked;
    this.blocked = [];
    for (const stream of waiting) {
      if (stream.pending === null) continue; // closed meanwhile
      if (Math.min(this.sendWindow, stream.sendWindow) <= 0) this.blocked.push(stream);
      else {
        const pending = stream.pending;
        this.hold(stream, null);
        this.send(stream, pending);
      }
    }
  }

  private write(bytes: Buffer): void {
    if (this.closed) return;
    if (!this.corked) {
      // what one turn of the event loop answers goes out in one TLS write
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(bytes);
    if (this.socket.writableLength > MAX_QUEUED) this.socket.destroy();
  }

  private read(chunk: Buffer): void {
    if (this.closed) return;
    let data = chunk;
    if (this.partial) {
      data = Buffer.concat([this.partial, chunk]);
      this.partial = null;
    }
    let at = 0;
    if (!this.preface) {
      if (data.length < h2.PREFACE.length) {
        if (!h2.PREFACE.subarray(0, data.length).equals(data)) this.socket.destroy();
        else this.partial = data;
        return;
      }
      if (!h2.PREFACE.equals(data.subarray(0, h2.PREFACE.length))) {
        this.socket.destroy();
        return;
      }
      this.preface = true;
      at = h2.PREFACE.length;
    }
    while (data.length - at >= h2.FRAME_HEADER) {
      const length = (data[at] << 16) | (data[at + 1] << 8) | data[at + 2];
      if (length > h2.MAX_FRAME) return this.fail(h2.FRAME_SIZE_ERROR);
      const end = at + h2.FRAME_HEADER + length;
      if (end > data.length) break;
      this.frame(data[at + 3], data[at + 4], data.readUInt32BE(at + 5) & 0x7fff_ffff, data, at + h2.FRAME_HEADER, end);
      if (this.closed) return;
      at = end;
    }
    if (at < data.length) this.partial = data.subarray(at);
    if (this.unacked > 0) {
      this.write(h2.word(h2.WINDOW_UPDATE, 0, this.unacked));
      this.unacked = 0;
    }
  }

  private frame(type: number, flags: number, id: number, data: Buffer, from: number, to: number): void {
    if (this.block && (type !== h2.CONTINUATION || id !== this.block.stream)) return this.fail(h2.PROTOCOL_ERROR);
    switch (type) {
      case h2.DATA:
        return this.data(flags, id, data, from, to);
      case h2.HEADERS:
        return this.headers(flags, id, data, from, to);
      case h2.CONTINUATION:
        if (!this.block) return this.fail(h2.PROTOCOL_ERROR);
        return this.fragment(flags, data.subarray(from, to));
      case h2.PRIORITY:
        if (id === 0) return this.fail(h2.PROTOCOL_ERROR);
        return;
      case h2.RST_STREAM:
        if (id === 0 || id > this.lastStream) return this.fail(h2.PROTOCOL_ERROR);
        if (to - from !== 4) return this.fail(h2.FRAME_SIZE_ERROR);
        return this.reset(id);
      case h2.SETTINGS:
        return this.settings(flags, id, data, from, to);
      case h2.PUSH_PROMISE:
        return this.fail(h2.PROTOCOL_ERROR);
      case h2.PING:
        if (id !== 0) return this.fail(h2.PROTOCOL_ERROR);
        if (to - from !== 8) return this.fail(h2.FRAME_SIZE_ERROR);
        if (!(flags & h2.ACK)) this.write(h2.frame(h2.PING, h2.ACK, 0, data.subarray(from, to)));
        return;
      case h2.GOAWAY:
        if (id !== 0) return this.fail(h2.PROTOCOL_ERROR);
        // the peer opens no more streams: the connection ends when those it has are answered
        this.peerGone = true;
        if (this.streams.size === 0) this.end();
        return;
      case h2.WINDOW_UPDATE:
        if (to - from !== 4) return this.fail(h2.FRAME_SIZE_ERROR);
        return this.windowUpdate(id, data.readUInt32BE(from) & 0x7fff_ffff);
      default:
      // unknown frame types are ignored (RFC 9113 5.5)
    }
  }

  /** The payload of a DATA or HEADERS frame without its padding; null when the padding is longer than the frame. */
  private unpadded(flags: number, data: Buffer, from: number, to: number): [number, number] | null {
    if (!(flags & h2.PADDED)) return [from, to];
    if (to === from) return null;
    const padding = data[from];
    if (padding >= to - from) return null;
    return [from + 1, to - padding];
  }

  private data(flags: number, id: number, data: Buffer, from: number, to: number): void {
    if (id === 0 || id > this.lastStream) return this.fail(h2.PROTOCOL_ERROR);
    this.unacked += to - from; // flow control counts the whole payload, padding too
    const range = this.unpadded(flags, data, from, to);
    if (!range) return this.fail(h2.PROTOCOL_ERROR);
    const stream = this.streams.get(id);
    if (!stream) return; // a stream this server has closed: its late frames are let go
    if (stream.remoteEnded) return this.resetStream(stream, h2.STREAM_CLOSED);
    stream.received += to - from;
    if (stream.received > STREAM_WINDOW) return this.resetStream(stream, h2.FLOW_CONTROL_ERROR);
    if (range[1] > range[0]) stream.emit('data', data.subarray(range[0], range[1]));
    if (flags & h2.END_STREAM) this.remoteEnd(stream);
  }

  private remoteEnd(stream: H2Stream): void {
    if (stream.closed || stream.remoteEnded) return;
    stream.remoteEnded = true;
    stream.emit('end');
  }

  private headers(flags: number, id: number, data: Buffer, from: number, to: number): void {
    if (id === 0 || id % 2 === 0) return this.fail(h2.PROTOCOL_ERROR);
    const range = this.unpadded(flags, data, from, to);
    if (!range) return this.fail(h2.PROTOCOL_ERROR);
    let start = range[0];
    if (flags & h2.PRIORITY_FLAG) start += 5;
    if (start > range[1]) return this.fail(h2.FRAME_SIZE_ERROR);
    this.block = { stream: id, endStream: (flags & h2.END_STREAM) !== 0, parts: [], size: 0 };
    this.fragment(flags, data.subarray(start, range[1]));
  }

  private fragment(flags: number, part: Buffer): void {
    const block = this.block!;
    block.size += part.length;
    if (block.size > MAX_HEADER_BYTES) return this.fail(h2.ENHANCE_YOUR_CALM);
    if (!(flags & h2.END_HEADERS)) {
      // the frame's bytes are the socket's read buffer: kept past this read, they are copied
      block.parts.push(Buffer.from(part));
      return;
    }
    this.block = null;
    block.parts.push(part);
    this.headerBlock(block.stream, block.endStream, block.parts.length === 1 ? part : Buffer.concat(block.parts, block.size));
  }

  private headerBlock(id: number, endStream: boolean, bytes: Buffer): void {
    const head = this.head;
    head.method = head.path = head.contentType = head.contentLength = undefined;
    const result = this.decoder.decode(bytes, MAX_HEADER_BYTES, this.take);
    if (result === 'malformed') return this.fail(h2.COMPRESSION_ERROR);
    const known = this.streams.get(id);
    if (known) {
      // trailers: they end the request, and say nothing DoH reads; after its end, a stream takes no more (RFC 9113 5.1)
      if (known.remoteEnded) return this.resetStream(known, h2.STREAM_CLOSED);
      if (!endStream) return this.resetStream(known, h2.PROTOCOL_ERROR);
      return this.remoteEnd(known);
    }
    if (id <= this.lastStream) return; // a stream closed here: decoded only to keep the table in step
    this.lastStream = id;
    if (this.peerGone) return;
    if (this.streams.size >= MAX_STREAMS) {
      if (++this.rejected > MAX_REJECTED) return this.fail(h2.ENHANCE_YOUR_CALM);
      this.write(h2.word(h2.RST_STREAM, id, h2.REFUSED_STREAM));
      return;
    }
    const stream = new H2Stream(this, id, this.peerWindow, endStream);
    this.streams.set(id, stream);
    if (result === 'too-large') {
      this.respond(stream, 431, ['content-type', 'text/plain; charset=utf-8'], Buffer.from('request header fields too large\n'));
      return;
    }
    this.onRequest(stream, head);
    // a request that ended with its headers has an empty body, for whoever reads it
    if (endStream) stream.emit('end');
  }

  private reset(id: number): void {
    const stream = this.streams.get(id);
    if (!stream) return;
    if (!stream.responded && !this.mayReset()) return this.fail(h2.ENHANCE_YOUR_CALM);
    this.close(stream);
  }

  /** Takes one of the resets the client may make before an answer; false when it has none left. */
  private mayReset(): boolean {
    const now = performance.now();
    this.resetTokens = Math.min(RESET_BURST, this.resetTokens + ((now - this.resetAt) * RESET_RATE) / 1000);
    this.resetAt = now;
    if (this.resetTokens < 1) return false;
    this.resetTokens--;
    return true;
  }

  /** A stream error (RFC 9113 5.4.2): that stream ends; many of them end the connection. */
  private resetStream(stream: H2Stream, code: number): void {
    this.write(h2.word(h2.RST_STREAM, stream.id, code));
    this.close(stream);
    if (++this.invalid > MAX_INVALID) this.fail(h2.ENHANCE_YOUR_CALM);
  }

  private settings(flags: number, id: number, data: Buffer, from: number, to: number): void {
    if (id !== 0) return this.fail(h2.PROTOCOL_ERROR);
    if (flags & h2.ACK) {
      if (to !== from) this.fail(h2.FRAME_SIZE_ERROR);
      return;
    }
    if ((to - from) % 6 !== 0) return this.fail(h2.FRAME_SIZE_ERROR);
    for (let at = from; at < to; at += 6) {
      const value = data.readUInt32BE(at + 2);
      switch (data.readUInt16BE(at)) {
        case h2.SETTINGS_HEADER_TABLE_SIZE:
          this.sizeUpdate = true;
          break;
        case h2.SETTINGS_ENABLE_PUSH:
          if (value > 1) return this.fail(h2.PROTOCOL_ERROR);
          break;
        case h2.SETTINGS_INITIAL_WINDOW_SIZE: {
          if (value > h2.MAX_WINDOW) return this.fail(h2.FLOW_CONTROL_ERROR);
          const change = value - this.peerWindow;
          this.peerWindow = value;
          for (const stream of this.streams.values()) stream.sendWindow += change;
          break;
        }
        case h2.SETTINGS_MAX_FRAME_SIZE:
          if (value < h2.MAX_FRAME || value > 0xff_ffff) return this.fail(h2.PROTOCOL_ERROR);
          // this server's responses are small: frames of the initial size serve them
          break;
        default:
      }
    }
    this.write(SETTINGS_ACK);
    if (this.blocked.length > 0) this.flush();
  }

  private windowUpdate(id: number, increment: number): void {
    if (id === 0) {
      if (increment === 0) return this.fail(h2.PROTOCOL_ERROR);
      this.sendWindow += increment;
      if (this.sendWindow > h2.MAX_WINDOW) return this.fail(h2.FLOW_CONTROL_ERROR);
    } else {
      const stream = this.streams.get(id);
      if (!stream) return;
      if (increment === 0) return this.resetStream(stream, h2.PROTOCOL_ERROR);
      stream.sendWindow += increment;
      if (stream.sendWindow > h2.MAX_WINDOW) return this.resetStream(stream, h2.FLOW_CONTROL_ERROR);
    }
    if (this.blocked.length > 0) this.flush();
  }

  /** A connection error (RFC 9113 5.4.1): GOAWAY with its code, then the connection closes. */
  private fail(code: number): void {
    if (this.closed) return;
    this.write(h2.goawayFrame(this.lastStream, code));
    this.end();
  }

  private end(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end();
    // a peer that does not close its side in turn is not waited for
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.gone();
  }

  /** The connection is over: every stream with it, their answers dropped when they come. */
  private gone(): void {
    this.closed = true;
    this.partial = null;
    this.blocked = [];
    for (const stream of [...this.streams.values()]) this.close(stream);
  }
}

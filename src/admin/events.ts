// GET /v1/events: every change of the table as a server-sent event, as it happens, within
// limits: at most --events-max-streams streams at once, and a client that does not keep
// up is sent `resync` and closed instead of being buffered for without bound.
// (SSE is a few lines of text framing over a kept-open response; no library needed.)

import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AddressTable } from '../table/address-table.js';
import type { ChangeEvent } from '../entry/entry.js';
import type { DiversionChange } from '../entry/diversions.js';
import { Backlog } from './event-backlog.js';
import { sendError } from './http-errors.js';

/** A stream further behind than this (its unsent part of the backlog and its socket's buffer)... */
export const MAX_UNSENT_BYTES = 1024 * 1024;
/** ...whose client has taken nothing for this many checks in a row is too slow. */
const STALL_CHECKS = 5;
const CHECK_MS = 1000;
/**
 * No stream may be further behind than this, however well it reads: the backlog never
 * holds more. A change burst is written in one go (an import of 40,000 names is about
 * 8 MB of events), and a client cannot read while it is written: this is what lets a
 * reading client get every change of a large import.
 */
export const MAX_BACKLOG_BYTES = 32 * 1024 * 1024;
/** One write to a stream's socket: a burst goes out in chunks, not in a write per change. */
const CHUNK_BYTES = 64 * 1024;
const HEARTBEAT_MS = 15_000;
/** A stream closed as too slow is destroyed if its client has not taken its last bytes by then. */
const CLOSE_GRACE_MS = 10_000;

const RESYNC = 'event: resync\ndata: {}\n\n';

function changeFrame(event: ChangeEvent): string {
  return `event: change\nid: ${event.version}\ndata: ${JSON.stringify(event)}\n\n`;
}

/**
 * A change of the diversion records: an event type of its own, so that a consumer that
 * knows only `change` (and SSE clients skip types they do not listen for) is unaffected.
 * Its id is from the same sequence as the entries' versions.
 */
function diversionFrame({ version, action, from, to, by, at }: DiversionChange): string {
  return `event: diversion\nid: ${version}\ndata: ${JSON.stringify({ action, from, to, by, at })}\n\n`;
}

interface Stream {
  res: ServerResponse;
  ip: string;
  /** The next backlog frame to write. */
  cursor: number;
  /** Until 'drain': the socket holds as much as it should. */
  waiting: boolean;
  /** Checks in a row that found it waiting and more than MAX_UNSENT_BYTES behind. */
  strikes: number;
}

export interface EventStreamFigures {
  /** Open responses, being fed or closing: what --events-max-streams counts. */
  open: number;
  /** Streams sent resync and closed because their client did not keep up. */
  slowClosed: number;
  /** Requests refused at --events-max-streams. */
  refused: number;
}

export class EventStreams {
  private readonly backlog = new Backlog();
  private readonly all = new Set<Stream>();
  /** The streams being fed (the others are closing). */
  private readonly live = new Set<Stream>();
  private slowClosed = 0;
  private refused = 0;
  private unsubscribe: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checks = 0;
  private flushQueued = false;
  /** One warning per spell at the limit, not one per refused request. */
  private warnedFull = false;

  constructor(
    private readonly table: AddressTable,
    private readonly maxStreams: number,
    private readonly log: Logger,
  ) {}

  figures(): EventStreamFigures {
    return { open: this.all.size, slowClosed: this.slowClosed, refused: this.refused };
  }

  /** Streams changes to the request until the client goes away, or refuses it at the limit. */
  open(request: FastifyRequest, reply: FastifyReply): void {
    if (this.all.size >= this.maxStreams) {
      this.refused++;
      if (!this.warnedFull) {
        this.warnedFull = true;
        this.log.warn({ ip: request.ip, maxStreams: this.maxStreams }, 'event streams at --events-max-streams: new ones are refused');
      }
      void sendError(
        reply,
        503,
        'TOO_MANY_STREAMS',
        `${this.all.size} event streams are open, the most --events-max-streams (${this.maxStreams}) allows; close one, or raise --events-max-streams`,
      );
      return;
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': divert change events\n\n');
    const stream: Stream = { res, ip: request.ip, cursor: this.backlog.head, waiting: false, strikes: 0 };
    this.all.add(stream);
    this.live.add(stream);
    this.subscribe();
    res.on('drain', () => {
      stream.waiting = false;
      stream.strikes = 0;
      if (!this.live.has(stream)) return;
      this.pump(stream);
      this.trim();
    });
    res.on('error', () => this.drop(stream));
    res.on('close', () => {
      this.all.delete(stream);
      if (this.all.size < this.maxStreams) this.warnedFull = false;
      this.drop(stream);
    });
  }

  /** Ends every stream (the server waits for open connections, and a stream never ends by itself). */
  closeAll(): void {
    for (const stream of this.all) {
      const feeding = this.live.has(stream);
      this.drop(stream);
      // a client that is not reading would never take the end (one being closed already has it)
      if (feeding && !stream.waiting && stream.res.writableLength === 0) this.end(stream);
      else stream.res.destroy();
    }
  }

  private subscribe(): void {
    if (this.unsubscribe) return;
    const offChange = this.table.onChange((event) => this.append(changeFrame(event)));
    const offDiversion = this.table.onDiversion((change) => this.append(diversionFrame(change)));
    // after a reconnection to a shared store, changes may have been missed: clients re-read
    // (the entries, and GET /v1/diversions)
    const offResync = this.table.onResync(() => this.append(RESYNC));
    this.unsubscribe = () => {
      offChange();
      offDiversion();
      offResync();
    };
    this.timer = setInterval(() => this.check(), CHECK_MS).unref();
  }

  /** Stops feeding a stream; with none left, stops listening to the table. */
  private drop(stream: Stream): void {
    if (!this.live.delete(stream)) return;
    if (this.live.size === 0) {
      this.unsubscribe?.();
      this.unsubscribe = undefined;
      clearInterval(this.timer);
    }
    this.trim();
  }

  private append(frame: string): void {
    this.backlog.append(frame);
    if (this.backlog.bytes > MAX_BACKLOG_BYTES) {
      for (const stream of this.live) {
        if (this.backlog.behind(stream.cursor) > MAX_BACKLOG_BYTES)
          this.closeSlow(stream, `more than ${MAX_BACKLOG_BYTES} bytes of events behind`);
      }
    }
    // the rest of a burst is written synchronously too: write it out in chunks once it is in
    if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => {
        this.flushQueued = false;
        for (const stream of this.live) this.pump(stream);
        this.trim();
      });
    }
  }

  /** Writes the stream's backlog until its socket holds enough; 'drain' resumes it. */
  private pump(stream: Stream): void {
    while (!stream.waiting && stream.cursor < this.backlog.head) {
      const { text, next } = this.backlog.read(stream.cursor, CHUNK_BYTES);
      stream.cursor = next;
      this.write(stream, text);
    }
  }

  private write(stream: Stream, text: string): void {
    // a destroyed response takes nothing more ('close' follows)
    if (stream.res.destroyed || !stream.res.write(text)) stream.waiting = true;
  }

  private trim(): void {
    let oldest = this.backlog.head;
    for (const stream of this.live) oldest = Math.min(oldest, stream.cursor);
    this.backlog.trim(oldest);
  }

  private check(): void {
    const heartbeat = ++this.checks % (HEARTBEAT_MS / CHECK_MS) === 0;
    for (const stream of this.live) {
      const unsent = this.backlog.behind(stream.cursor) + stream.res.writableLength;
      if (stream.waiting && unsent > MAX_UNSENT_BYTES) {
        if (++stream.strikes >= STALL_CHECKS)
          this.closeSlow(stream, `more than ${MAX_UNSENT_BYTES} bytes unsent, none taken for ${(STALL_CHECKS * CHECK_MS) / 1000} s`);
        continue;
      }
      stream.strikes = 0;
      if (heartbeat && !stream.waiting && stream.cursor === this.backlog.head) this.write(stream, ': heartbeat\n\n');
    }
    this.trim();
  }

  /** Sends resync (changes were missed: re-read) and ends the stream; nothing more is queued for it. */
  private closeSlow(stream: Stream, why: string): void {
    const unsentBytes = this.backlog.behind(stream.cursor) + stream.res.writableLength;
    this.drop(stream);
    this.slowClosed++;
    this.log.warn({ ip: stream.ip, unsentBytes }, `event stream closed: the client did not keep up (${why}); it was sent resync`);
    this.end(stream, RESYNC);
  }

  /** Ends the response and its connection, at once if the client does not take the rest in time. */
  private end(stream: Stream, last?: string): void {
    const { res } = stream;
    if (res.destroyed) return;
    // the connection was kept alive for this stream alone: left open, it would idle until the keep-alive timeout
    const socket = res.socket;
    res.once('finish', () => socket?.end());
    res.end(last);
    const timer = setTimeout(() => res.destroy(), CLOSE_GRACE_MS).unref();
    res.once('close', () => clearTimeout(timer));
  }
}

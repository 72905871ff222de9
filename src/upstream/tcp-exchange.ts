// Queries to one upstream over TCP (RFC 7766) or TLS (RFC 7858; stream-dial.ts opens the
// connections), pipelined on a few persistent connections opened when needed: each query
// gets an ID not in use on its connection, and replies are matched by ID and question, in
// whatever order they come. Used for queries that reached divert over TCP, so a reply too
// large for UDP reaches the client whole, and for every query to a DoT upstream.
//
// When the upstream closes or resets an established connection, the queries it left
// unanswered are sent once more on a new connection (RFC 7766 6.2.1 lets a server close
// connections when it likes); a second loss, or a refused connect, fails them (null, so
// the forwarder moves on). A connection that answered some queries and then dropped the
// rest tells how many the upstream answers per connection: that budget holds for a
// minute, so an upstream that closes after every reply gets one query per connection (on
// more connections) instead of losing all but the first of a pipeline.

import type { Socket } from 'node:net';
import { INSPECT } from '../debug.js';
import { isReplyTo } from '../wire/query.js';
import { TcpFramer } from '../transport/tcp-framer.js';
import { IdTable } from './id-table.js';
import { randomId } from './random-id.js';
import { tcpDial, type StreamDial } from './stream-dial.js';
import type { Exchange, ReplyTarget } from './udp-exchange.js';
import type { Upstream } from './upstream-pool.js';

export interface TcpPoolOptions {
  /** Connections kept per upstream. */
  connections: number;
  /** Queries in flight on one connection at most; beyond every connection's, queries wait. */
  maxPending: number;
  /** An idle connection is closed after this long (and one still connecting is given up). */
  idleTimeoutMs: number;
  /** Queries waiting for room on a connection at most; more fail at once. */
  maxQueued: number;
}

export const DEFAULT_TCP_POOL_OPTIONS: TcpPoolOptions = {
  connections: 4,
  maxPending: 100,
  idleTimeoutMs: 10_000,
  maxQueued: 2_000,
};

/** Connections allowed while an upstream is known to close them after a few queries. */
const SHORT_LIVED_CONNECTIONS = 32;
/** How long a learned per-connection budget holds before connections are tried whole again. */
const BUDGET_MS = 60_000;
const ID_TRIES = 8;

class Connection {
  readonly framer = new TcpFramer();
  /** Queries in flight by ID, and for a few seconds the IDs of those given up on (the
   * sweep epoch they were given up in): a late reply to them is not counted as forged. */
  readonly queries = new IdTable<TcpQuery | number>();
  live = 0;
  sent = 0;
  answered = 0;
  connected = false;
  closed = false;
  /** Sweep epoch of the last query sent or answered. */
  lastUsed: number;

  constructor(
    readonly socket: Socket,
    readonly openedAt: number,
  ) {
    this.lastUsed = openedAt;
  }
}

class TcpQuery implements Exchange {
  /** Where it is in flight; null while queued or once settled. */
  conn: Connection | null = null;
  id = -1;
  done = false;
  retried = false;
  /** The message itself, after the length prefix. */
  readonly message: Buffer;

  constructor(
    private readonly pool: TcpUpstreamConnections,
    /** Length prefix and message, written in one piece. */
    readonly framed: Buffer,
    readonly questionEnd: number,
    private readonly target: ReplyTarget,
    private readonly attempt: number,
  ) {
    this.message = framed.subarray(2);
  }

  resolve(reply: Buffer | null): void {
    this.target.settled(this.attempt, reply);
  }

  cancel(): void {
    this.pool.cancel(this);
  }
}

/** One upstream's TCP connections as inspect() sees them. */
export interface TcpConnectionsState {
  open: number;
}

export class TcpUpstreamConnections {
  private readonly conns: Connection[] = [];
  private queue: TcpQuery[] = [];
  private queueHead = 0;
  /** Queries an upstream answers on one connection before closing it, when it was seen to. */
  private budget = Infinity;
  private budgetUntil = 0;
  private epoch = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly upstream: Upstream,
    private readonly options: TcpPoolOptions,
    private readonly onRejected: () => void,
    /** How connections are opened: plain TCP, or TLS for a DoT upstream. */
    private readonly dial: StreamDial = tcpDial(upstream),
  ) {}

  /** Sends `query` with an ID of its connection's choosing; its outcome goes to `target`.
   * Null: it failed before anything was sent. */
  exchange(query: Buffer, questionEnd: number, target: ReplyTarget, attempt: number): Exchange | null {
    if (this.closed) return null;
    const framed = Buffer.allocUnsafe(query.length + 2);
    framed.writeUInt16BE(query.length, 0);
    query.copy(framed, 2);
    const q = new TcpQuery(this, framed, questionEnd, target, attempt);
    this.place(q);
    return q;
  }

  cancel(q: TcpQuery): void {
    if (q.done) return;
    const conn = q.conn;
    if (conn) {
      if (conn.queries.get(q.id) === q) conn.queries.set(q.id, this.epoch);
      conn.live--;
    }
    this.settle(q, null);
    if (conn) this.pump();
  }

  /** Closes every connection; queries in flight or waiting get null, later ones fail at once. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const conn of this.conns.slice()) this.drop(conn, false);
    for (let i = this.queueHead; i < this.queue.length; i++) if (!this.queue[i].done) this.settle(this.queue[i], null);
    this.queue = [];
    this.queueHead = 0;
  }

  /** For tests and debugging (debug.ts): connections open now. */
  [INSPECT](): TcpConnectionsState {
    return { open: this.conns.length };
  }

  private settle(q: TcpQuery, reply: Buffer | null): void {
    q.done = true;
    q.conn = null;
    q.resolve(reply);
  }

  /** Sends `q` on the least busy connection, opening one when none is idle and there is
   * room for another; queues it when every connection is full. While the upstream is
   * known to close connections after `budget` queries, a connection that has carried
   * that many takes no more, and more connections may be open at once. */
  private place(q: TcpQuery): void {
    if (this.budget !== Infinity && Date.now() >= this.budgetUntil) this.budget = Infinity;
    let best: Connection | undefined;
    let usable = 0;
    for (const c of this.conns) {
      if (c.sent >= this.budget) continue; // used up: it only waits for its replies
      usable++;
      // one the upstream has stopped reading from (write() said so) gets nothing more
      if (c.socket.writableNeedDrain) continue;
      if (c.live < this.options.maxPending && (best === undefined || c.live < best.live)) best = c;
    }
    if ((best === undefined || best.live > 0) && usable < this.options.connections && this.conns.length < this.connectionCap()) {
      best = this.openConnection();
    }
    if (best !== undefined) {
      this.send(best, q);
    } else if (this.queue.length - this.queueHead < this.options.maxQueued || this.compactQueue()) {
      this.queue.push(q);
    } else {
      this.settle(q, null);
    }
  }

  private connectionCap(): number {
    return this.budget === Infinity ? this.options.connections : Math.max(this.options.connections, SHORT_LIVED_CONNECTIONS);
  }

  /** Drops cancelled queries from the queue; whether there is room now. */
  private compactQueue(): boolean {
    this.queue = this.queue.slice(this.queueHead).filter((q) => !q.done);
    this.queueHead = 0;
    return this.queue.length < this.options.maxQueued;
  }

  private send(conn: Connection, q: TcpQuery): void {
    let id = randomId();
    for (let tries = 1; conn.queries.has(id); tries++) {
      if (tries === ID_TRIES) {
        this.settle(q, null);
        return;
      }
      id = randomId();
    }
    q.id = id;
    q.conn = conn;
    q.framed.writeUInt16BE(id, 2);
    conn.queries.set(id, q);
    conn.live++;
    conn.sent++;
    conn.lastUsed = this.epoch;
    conn.socket.write(q.framed);
  }

  /** Sends waiting queries while there is room. */
  private pump(): void {
    while (this.queueHead < this.queue.length) {
      const q = this.queue[this.queueHead];
      if (q.done) {
        this.queueHead++;
        continue;
      }
      const before = this.queue.length;
      this.queueHead++;
      this.place(q);
      if (this.queue.length > before) {
        // no room after all: it went back to the end; put it back in front and stop
        this.queue.pop();
        this.queue[--this.queueHead] = q;
        break;
      }
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  private openConnection(): Connection {
    const socket = this.dial.open();
    const conn = new Connection(socket, this.epoch);
    this.conns.push(conn);
    socket.unref();
    // a TLS connection is ready once its handshake is done and the certificate checked
    socket.on(this.dial.ready, () => {
      conn.connected = true;
    });
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('drain', () => this.pump());
    // the upstream sends nothing more after its FIN: treat it as closed at once
    socket.on('end', () => this.drop(conn, true));
    socket.on('error', () => this.drop(conn, true));
    socket.on('close', () => this.drop(conn, true));
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(25, this.options.idleTimeoutMs / 2));
      this.sweeper.unref();
    }
    return conn;
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.closed) return;
    let answered = false;
    for (const msg of conn.framer.push(chunk)) {
      if (msg.length >= 2) {
        const q = conn.queries.get(msg.readUInt16BE(0));
        if (typeof q === 'number') continue; // a late reply to an attempt given up on
        if (q !== undefined && isReplyTo(msg, q.message, q.questionEnd)) {
          conn.queries.delete(q.id);
          conn.live--;
          conn.answered++;
          answered = true;
          // a view into the chunk, which nothing else writes to; the reply is passed on whole
          this.settle(q, msg);
          continue;
        }
      }
      this.onRejected();
    }
    if (answered) {
      conn.lastUsed = this.epoch;
      if (conn.live === 0 && conn.sent >= this.budget) this.drop(conn, false); // used up
      this.pump();
    }
  }

  /** The connection is gone (`byUpstream`: closed, reset or failed, not by us). */
  private drop(conn: Connection, byUpstream: boolean): void {
    if (conn.closed) return;
    conn.closed = true;
    conn.socket.destroy();
    const at = this.conns.indexOf(conn);
    if (at >= 0) this.conns.splice(at, 1);
    if (this.conns.length === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
    // the upstream ended a connection that had been established: what it left unanswered
    // gets one more try, on a new connection (a refused connect gets none: nothing was sent)
    const retry = byUpstream && conn.connected && !this.closed;
    if (retry && conn.answered > 0 && conn.live > 0 && conn.answered < this.budget) {
      // it answered some and dropped the rest: it ends connections after that many queries
      this.budget = conn.answered;
      this.budgetUntil = Date.now() + BUDGET_MS;
    }
    const again: TcpQuery[] = [];
    for (const q of conn.queries.list()) {
      if (typeof q === 'number' || q.conn !== conn) continue;
      if (retry && !q.retried) {
        q.retried = true;
        q.conn = null;
        again.push(q);
      } else {
        this.settle(q, null);
      }
    }
    conn.queries.clear();
    conn.live = 0;
    if (again.length > 0) {
      const fresh = this.conns.length < this.connectionCap() ? this.openConnection() : undefined;
      for (const q of again) {
        if (fresh && fresh.live < this.options.maxPending && fresh.sent < this.budget) this.send(fresh, q);
        else this.place(q);
      }
    }
    if (!this.closed) this.pump();
  }

  /** Closes connections idle for a while or stuck connecting, and forgets the IDs of
   * attempts given up on two or three sweeps ago. Sweeps come every half idle timeout,
   * so "two sweeps ago" is between one and one and a half idle timeouts ago. */
  private sweep(): void {
    const idleBefore = this.epoch - 2;
    this.epoch++;
    for (const conn of this.conns.slice()) {
      if (conn.live === 0 && conn.lastUsed <= idleBefore) {
        this.drop(conn, false);
      } else if (!conn.connected && conn.openedAt <= idleBefore) {
        this.drop(conn, true); // never connected: its queries fail (answered is 0)
      } else if (conn.queries.size !== conn.live) {
        conn.queries.deleteWhere((q) => typeof q === 'number' && q <= idleBefore);
      }
    }
  }
}

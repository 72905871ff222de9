// Queries to one upstream over UDP, from a rotating pool of connected sockets (RFC 5452).
// Opening a socket per query cost about a third of the CPU in bind and close; instead a
// query goes out on one of `sockets` slots picked uniformly at random (CSPRNG), with a
// random ID not outstanding on that socket (one slot drawn per turn of the event loop for
// that turn's queries, sent together: on the addon's sockets with one sendmmsg; turn-batch.ts).
// A slot's socket is opened when a query first picks it, on a port the kernel picks at
// random, and connect()ed to the upstream, so the kernel itself drops datagrams from any
// other address or port (and an off-path prober sending from its own address cannot even
// tell which ports are open: every probe gets the same ICMP reply). A socket is retired
// after `queriesPerSocket` queries or `socketLifetimeMs`, whichever comes first, and
// closed once its last query settles.
//
// What a blind spoofer must guess: the port of the one socket carrying the query and its
// 16-bit ID. Not knowing which ports are open, that is ~15 bits of port (Linux draws from
// 32768-60999) plus 16 of ID, as with a socket per query. A spoofer that has found the
// pool's open ports (say by an ICMP side channel, which needs spoofed probes and takes
// time) still faces log2(sockets) + 16 bits: 64 slots give 22 bits (23 with 2 workers), and rotation makes
// what was learned worthless within a socket's lifetime. A mostly idle server, whose
// slots are nearly all empty, opens a fresh socket for nearly every query.

import { createSocket } from 'node:dgram';
import { constants } from 'node:os';
import { INSPECT } from '../debug.js';
import type { ConnectedUdp } from '../transport/connected-udp.js';
import { isReplyTo } from '../wire/query.js';
import { IdTable } from './id-table.js';
import { TurnBatch } from './turn-batch.js';
import { randomBelow, randomId } from './random-id.js';
import type { Upstream } from './upstream-pool.js';

/** Where an exchange's outcome goes: the upstream's reply, or null when it failed or was
 * cancelled; `attempt` is what its owner gave exchange(), to tell its attempts apart.
 * Called once per exchange, possibly before exchange() has returned. */
export interface ReplyTarget {
  settled(attempt: number, reply: Buffer | null): void;
}

/** A query sent upstream and not yet settled. */
export interface Exchange {
  /** Gives it up: its target hears null, unless it has heard already. */
  cancel(): void;
}

export interface UdpPoolOptions {
  /** Socket slots per upstream; each is opened when a query first picks it. */
  sockets: number;
  /** Queries a socket carries before it is retired. */
  queriesPerSocket: number;
  /** How long a socket takes new queries, however few it has carried. */
  socketLifetimeMs: number;
  /** SO_RCVBUF asked for (the system may cap it); bursts of replies must not be dropped. */
  recvBufferBytes: number;
  /** --udp-batch: the sockets are the native addon's (read in batches), not node:dgram's. */
  native?: ConnectedUdp | null;
}

// 64 slots (--upstream-sockets): consecutive queries mostly leave from different ports,
// and each wakeup under load reads more than one reply. 1024 cost 14 % of the forwarded
// queries/s on 2 cores (57.8k against 66.2k, on the addon of --udp-batch) for 4 more bits
// against a spoofer who has learnt the open ports; the README weighs it. The lifetime
// bounds how long what such a spoofer learnt stays true; under load the query count
// retires a socket sooner (at 30k queries/s per worker, every ~4 s).
export const DEFAULT_UDP_POOL_OPTIONS: UdpPoolOptions = {
  sockets: 64,
  queriesPerSocket: 2000,
  socketLifetimeMs: 20_000,
  recvBufferBytes: 1 << 20,
};

/** A retired socket still waiting for replies after this long is closed anyway. */
const RETIRED_GRACE_MS = 30_000;
const { EAGAIN, ENOBUFS } = constants.errno;
/** Tries to find an ID not in use on the chosen socket before giving up on the query. */
const ID_TRIES = 8;

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

/** What the pool needs of a socket, node:dgram's or the addon's. */
interface SocketIo {
  /** Sends `count` queries staged one after another in `data` (IDs written in): how many
   * went, or minus the errno (the addon: one sendmmsg; node:dgram: a send each, of a copy). */
  sendBatch(data: Buffer, lengths: Int32Array, count: number): number;
  port(): number;
  close(): void;
}

/** One socket of the pool. Its map holds the queries in flight by ID and, for a few
 * seconds, the IDs of queries given up on (the sweep epoch they were given up in), so a
 * late reply to a hedged or timed-out attempt is dropped quietly instead of being counted
 * as forged, and the ID is not handed out again meanwhile. */
class PooledSocket {
  readonly queries = new IdTable<UdpQuery | number>();
  /** Queries in `queries` still waiting for a reply. */
  live = 0;
  carried = 0;
  state = CONNECTING;
  retired = false;
  retiredAt = 0;
  /** Queries sent before the socket was connected; sent on connect. */
  backlog: UdpQuery[] | null = [];
  io!: SocketIo;

  constructor(
    readonly slot: number,
    readonly retireAt: number,
  ) {}
}

class UdpQuery implements Exchange {
  /** The socket it is outstanding on; null once settled. */
  owner: PooledSocket | null;

  constructor(
    private readonly pool: UdpUpstreamSockets,
    owner: PooledSocket,
    readonly id: number,
    /** The client's query, as it came: it goes out with `id` in place of the client's ID. */
    readonly sent: Buffer,
    readonly questionEnd: number,
    private readonly target: ReplyTarget,
    private readonly attempt: number,
  ) {
    this.owner = owner;
  }

  resolve(reply: Buffer | null): void {
    this.target.settled(this.attempt, reply);
  }

  cancel(): void {
    this.pool.cancel(this);
  }
}

/** One upstream's UDP sockets as inspect() sees them. */
export interface UdpSocketsState {
  open: number;
  opened: number;
  closed: number;
  /** Queries waiting for a reply. */
  inFlight: number;
  /** The local ports of the sockets connected now. */
  ports: number[];
}

export class UdpUpstreamSockets {
  private readonly slots: (PooledSocket | undefined)[];
  private readonly retired = new Set<PooledSocket>();
  private open = 0;
  private epoch = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  /** Sockets opened and closed so far (for inspection). */
  private readonly counts = { opened: 0, closed: 0 };

  constructor(
    private readonly upstream: Upstream,
    private readonly options: UdpPoolOptions,
    private readonly onRejected: () => void,
  ) {
    this.slots = new Array<PooledSocket | undefined>(options.sockets).fill(undefined);
  }

  /** Sends `query` with a fresh ID of its own (the caller's buffer is left alone); its
   * outcome goes to `target`. Null: it failed before anything was sent. It goes with the
   * turn's others once the caller's JavaScript is done (turn-batch.ts); `together` (DoT and
   * DoH, a query per callback): once the poll phase is, with the others so asked. */
  exchange(query: Buffer, questionEnd: number, target: ReplyTarget, attempt: number, together = false): Exchange | null {
    if (this.closed) return null;
    // this turn's socket while it takes queries (turn-batch.ts); else a slot picked at random
    let s = this.batch.turn;
    if (s === undefined || s.retired || s.state !== OPEN) {
      const slot = randomBelow(this.slots.length);
      s = this.slots[slot];
      if (s === undefined) {
        const opened = this.openSocket(slot);
        if (opened === null) return null;
        s = opened;
      }
    }
    let id = randomId();
    for (let tries = 1; s.queries.has(id); tries++) {
      if (tries === ID_TRIES) return null;
      id = randomId();
    }
    const q = new UdpQuery(this, s, id, query, questionEnd, target, attempt);
    s.queries.set(id, q);
    s.live++;
    if (s.backlog) s.backlog.push(q);
    else this.batch.add(s, q, together);
    if (++s.carried >= this.options.queriesPerSocket) this.retire(s);
    return q;
  }

  /** A turn's queries go out on one socket together (the addon's: with one sendmmsg). */
  private readonly batch = new TurnBatch<PooledSocket, UdpQuery>({
    isOpen: (s) => s.state === OPEN,
    sendStaged: (s, data, lengths, count) => s.io.sendBatch(data, lengths, count),
    refused: (s, queries, errno) => {
      if (errno !== 0 && errno !== EAGAIN && errno !== ENOBUFS)
        this.fail(s); // a pending ICMP error: the socket is of no more use
      else for (const q of queries) this.cancel(q); // a full buffer costs only these
    },
  });

  cancel(q: UdpQuery): void {
    const s = q.owner;
    if (s === null) return;
    q.owner = null;
    if (s.queries.get(q.id) === q) s.queries.set(q.id, this.epoch);
    s.live--;
    q.resolve(null);
    if (s.retired && s.live === 0) this.closeSocket(s);
  }

  /** Closes every socket; queries in flight get null, later ones fail at once. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const s of this.slots) if (s) this.fail(s);
    for (const s of this.retired) this.fail(s);
  }

  /** For tests and debugging (debug.ts): sockets open now, opened and closed so far, and
   * queries waiting for a reply on any of them. */
  [INSPECT](): UdpSocketsState {
    let inFlight = 0;
    const ports: number[] = [];
    for (const s of [...this.slots, ...this.retired]) {
      if (!s) continue;
      inFlight += s.live;
      if (s.state === OPEN) ports.push(s.io.port());
    }
    return { open: this.open, ...this.counts, inFlight, ports };
  }

  /** The slot's new socket, or null when the OS would not give one (out of descriptors). */
  private openSocket(slot: number): PooledSocket | null {
    const s = new PooledSocket(slot, Date.now() + this.options.socketLifetimeMs);
    if (this.options.native) {
      if (!this.openNative(s, this.options.native)) return null;
    } else {
      this.openDgram(s);
    }
    this.slots[slot] = s;
    this.open++;
    this.counts.opened++;
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), Math.min(5_000, Math.max(50, this.options.socketLifetimeMs / 4)));
      this.sweeper.unref();
    }
    return s;
  }

  private openDgram(s: PooledSocket): void {
    const socket = createSocket(this.upstream.family === 6 ? 'udp6' : 'udp4');
    s.io = {
      // node:dgram may send later, from the buffer it was given: a copy of its own for each
      // (its errors come as the socket's 'error' event)
      sendBatch: (data, lengths, count) => {
        for (let i = 0, at = 0; i < count; at += lengths[i++]) socket.send(Buffer.from(data.subarray(at, at + lengths[i])));
        return count;
      },
      port: () => socket.address().port,
      close: () => {
        try {
          socket.close();
        } catch {
          // already closed by an error
        }
      },
    };
    socket.on('message', (msg) => this.onMessage(s, msg));
    // ICMP unreachable shows up here on a connected socket: what is in flight on it fails now
    socket.on('error', () => this.fail(s));
    socket.connect(this.upstream.port, this.upstream.host, (err?: Error) => {
      if (err) {
        this.fail(s);
        return;
      }
      try {
        socket.setRecvBufferSize(this.options.recvBufferBytes);
      } catch {
        // the default buffer still works; only a burst beyond it is lost
      }
      this.onConnect(s);
    });
    socket.unref();
  }

  /** Connected at once (a UDP connect only sets the peer); false when the OS refused a socket. */
  private openNative(s: PooledSocket, native: ConnectedUdp): boolean {
    let id: number;
    try {
      id = native.connect(this.upstream.host, this.upstream.port, this.options.recvBufferBytes, {
        onMessage: (msg) => this.onMessage(s, msg),
        onError: () => this.fail(s),
      });
    } catch {
      return false;
    }
    s.io = {
      sendBatch: (data, lengths, count) => native.sendBatch(id, data, lengths, count),
      port: () => native.port(id),
      close: () => native.close(id),
    };
    this.onConnect(s);
    return true;
  }

  private onConnect(s: PooledSocket): void {
    if (s.state !== CONNECTING) return;
    s.state = OPEN;
    const backlog = s.backlog!;
    s.backlog = null;
    // node:dgram's: the addon's connect at once
    for (const q of backlog) if (q.owner === s) this.batch.add(s, q, false);
  }

  private onMessage(s: PooledSocket, msg: Buffer): void {
    if (msg.length >= 2) {
      const q = s.queries.get(msg.readUInt16BE(0));
      if (typeof q === 'number') return; // a late reply to an attempt given up on
      if (q !== undefined && isReplyTo(msg, q.sent, q.questionEnd, q.id)) {
        s.queries.delete(q.id);
        q.owner = null;
        s.live--;
        q.resolve(msg);
        if (s.retired && s.live === 0) this.closeSocket(s);
        return;
      }
    }
    this.onRejected();
  }

  /** Takes the socket out of its slot: the next query to pick the slot opens a new one. */
  private retire(s: PooledSocket): void {
    if (s.retired) return;
    s.retired = true;
    s.retiredAt = Date.now();
    if (this.slots[s.slot] === s) this.slots[s.slot] = undefined;
    if (s.live === 0) this.closeSocket(s);
    else this.retired.add(s);
  }

  /** The socket failed: whatever is in flight on it gets null now, and it is replaced. */
  private fail(s: PooledSocket): void {
    for (const q of s.queries.list()) {
      if (typeof q === 'number' || q.owner !== s) continue;
      q.owner = null;
      q.resolve(null);
    }
    s.queries.clear();
    s.live = 0;
    this.closeSocket(s);
  }

  private closeSocket(s: PooledSocket): void {
    if (s.state === CLOSED) return;
    s.state = CLOSED;
    s.retired = true;
    s.backlog = null;
    if (this.slots[s.slot] === s) this.slots[s.slot] = undefined;
    this.retired.delete(s);
    this.open--;
    this.counts.closed++;
    s.io.close();
    if (this.open === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Retires sockets past their lifetime, closes retired ones left waiting too long, and
   * forgets the IDs of attempts given up on two sweeps ago or earlier. */
  private sweep(): void {
    const now = Date.now();
    const forgetBefore = this.epoch - 1;
    this.epoch++;
    for (const s of this.slots) {
      if (s === undefined) continue;
      forget(s, forgetBefore);
      if (now >= s.retireAt) this.retire(s);
    }
    for (const s of this.retired) {
      if (now - s.retiredAt >= RETIRED_GRACE_MS) this.fail(s);
      else forget(s, forgetBefore);
    }
  }
}

function forget(s: PooledSocket, before: number): void {
  if (s.queries.size === s.live) return;
  s.queries.deleteWhere((q) => typeof q === 'number' && q < before);
}

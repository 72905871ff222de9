// The client UDP listener of --udp-batch: a socket of divert's native addon
// (src/native/udp-batch.c) instead of node:dgram. The addon reads up to BATCH datagrams
// with one recvmmsg and calls here once for them; the replies given at once go out
// together with one sendmmsg at the end of the batch, and those that come later (a
// forwarded query's) are gathered and sent together once per turn of the microtask
// queue. What the dgram listener promises holds here too (udp-listener.ts): a datagram
// from port 0, a handler that throws or rejects, and a reply the OS will not send each
// cost that one datagram, counted. With cluster workers the primary opens the socket and
// each worker adopts it (one socket per address, read by the first worker, and by the
// others while the first falls behind: spill).

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LATER, type Client, type Handler, type Reply, type ReplySink } from './handler.js';
import type { ListenerReport } from './listener-events.js';
import { AddressTexts } from './address-texts.js';

/** A client of the batched listener: its reply's destination, the sockaddr at names[nameAt]. */
interface BatchClient extends Client {
  names: Buffer;
  nameAt: number;
}

/** A copy of the sockaddr at `names[at]`, from Node's pool (as a query's copy is): the batch's buffer is read into again. */
function nameOf(names: Buffer, at: number, length: number): Buffer {
  const name = Buffer.allocUnsafe(length);
  names.copy(name, 0, at, at + length);
  return name;
}

type NativeSocket = object;

/** How a spill reader reads a shared socket (BatchUdpSocket.spillState). */
export interface SpillState {
  joins: number;
  leaves: number;
  away: boolean;
  /** The first reader's thread's CPU share as this one last weighed it (0-1; 1 is a core); null: not known. */
  firstBusy: number | null;
}

/** What src/native/udp-batch.c exports; its comment says how the arrays are laid out. */
export interface UdpBatchAddon {
  readonly BATCH: number;
  readonly SLOT: number;
  readonly NAME: number;
  readonly TEXT: number;
  open(host: string, port: number): NativeSocket;
  /** Takes over a UDP socket this process was handed as descriptor `fd`; throws (err.code) if it is not one. */
  adopt(fd: number): NativeSocket;
  fd(socket: NativeSocket): number;
  port(socket: NativeSocket): number;
  start(socket: NativeSocket, data: Buffer, meta: Int32Array, names: Buffer, text: Buffer, onBatch: (count: number) => void): void;
  send(socket: NativeSocket, data: Uint8Array, meta: Int32Array, names: Buffer, count: number): number;
  /** How many replies were still waiting for room in the send buffer: they are dropped. */
  stop(socket: NativeSocket): number;
  /** Started, and not the socket's first reader (process firstPid; 0: not known): reads only while the first falls behind (udp-spill.h).
   * Called again: the first reader is process firstPid from now (one restarted). */
  spill(socket: NativeSocket, firstPid: number): void;
  /** [joins, leaves, away, firstBusy]: a spill reader's returns to the socket, departures, 1 while away, and the first reader's CPU share as last weighed (per mille; -1: not known). */
  spilled(socket: NativeSocket): [number, number, number, number];
}

/** Where npm run build puts the addon: dist/native/, from dist/src/transport/. */
export const DEFAULT_ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'udp-batch.node');

/** Where divert serve loads the addon from: DIVERT_UDP_BATCH_ADDON points elsewhere (tests use it to see the fallback). */
export function udpBatchAddonPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.DIVERT_UDP_BATCH_ADDON ?? DEFAULT_ADDON_PATH;
}

/** The addon, or null when it was not built (no cc) or will not load here. */
export function loadUdpBatch(path = DEFAULT_ADDON_PATH): UdpBatchAddon | null {
  try {
    return createRequire(import.meta.url)(path) as UdpBatchAddon;
  } catch {
    return null;
  }
}

export class BatchUdpSocket {
  private closed = false;
  private flushQueued = false;
  /** Replies waiting for the next sendmmsg: bytes at i × SLOT, [offset, length, name index] in meta, the destination at i × NAME. */
  private readonly out: Buffer;
  private readonly outMeta: Int32Array;
  private readonly outNames: Buffer;
  private queued = 0;
  private report: ListenerReport | undefined;

  private constructor(
    private readonly addon: UdpBatchAddon,
    private readonly socket: NativeSocket,
  ) {
    this.out = Buffer.alloc(addon.BATCH * addon.SLOT);
    this.outMeta = new Int32Array(addon.BATCH * 3);
    this.outNames = Buffer.alloc(addon.BATCH * addon.NAME);
  }

  /** Binds `host:port`, for this process alone. Throws the OS's error (err.code). */
  static open(addon: UdpBatchAddon, host: string, port: number): BatchUdpSocket {
    return new BatchUdpSocket(addon, addon.open(host, port));
  }

  /** The socket another process bound and handed over as descriptor `fd` (a cluster worker's, from the primary). */
  static adopt(addon: UdpBatchAddon, fd: number): BatchUdpSocket {
    return new BatchUdpSocket(addon, addon.adopt(fd));
  }

  get port(): number {
    return this.addon.port(this.socket);
  }

  /**
   * After serve(), in a worker other than the first (process `firstPid`, 0 when not known):
   * this one reads the shared socket only while the first falls behind (stalled: a datagram
   * waiting 10 ms; saturated: a queue waiting while the first's thread is on a CPU 90 % of
   * the time), and leaves it again once the two together did less than one reader can
   * (udp-spill.h). Below one worker's capacity a datagram then wakes one process, and a
   * batch is read whole, instead of split between two.
   */
  spill(firstPid: number): void {
    this.addon.spill(this.socket, firstPid);
  }

  /** The first reader is process `firstPid` from now (the first worker restarted). */
  setFirstReader(firstPid: number): void {
    this.addon.spill(this.socket, firstPid);
  }

  /** A spill reader's returns to the socket and departures from it, whether it is away now, and the first reader's CPU share as it last weighed it (0-1; null: not known). */
  get spillState(): SpillState {
    const [joins, leaves, away, firstBusy] = this.addon.spilled(this.socket);
    return { joins, leaves, away: away === 1, firstBusy: firstBusy < 0 ? null : firstBusy / 1000 };
  }

  get fd(): number {
    return this.addon.fd(this.socket);
  }

  /** `accepting()` false: datagrams are dropped unread (a drain has begun). */
  serve(handler: Handler, report: ListenerReport, accepting: () => boolean): void {
    this.report = report;
    const { BATCH, SLOT, NAME, TEXT } = this.addon;
    const data = Buffer.alloc(BATCH * SLOT);
    const meta = new Int32Array(BATCH * 4); // length (-1: cut short), port, address text length, name length
    const names = Buffer.alloc(BATCH * NAME);
    const text = Buffer.alloc(BATCH * TEXT);
    const failed = (err: unknown) => report.fault('handler_error', err);
    const words = new Int32Array(names.buffer, names.byteOffset, names.length / 4);
    const addresses = new AddressTexts();
    const into = handler.into;
    // a forwarded query's reply comes here, with its client: where it goes travels in it
    const sink: ReplySink<BatchClient> = { later: (reply, client) => this.later(reply, client.names, client.nameAt), failed };
    const onBatch = (count: number) => {
      if (!accepting()) return;
      for (let i = 0; i < count; i++) {
        const length = meta[i * 4];
        // longer than any query a client sends over UDP: what was read of it is not a message
        if (length < 0) continue;
        // nothing can go back to port 0: answering it, or forwarding it, would only spend work
        if (meta[i * 4 + 1] === 0) {
          report.counts.unreplyable_source++;
          continue;
        }
        const address = addresses.textOf(words, (i * NAME) / 4, meta[i * 4 + 3], text, i * TEXT, meta[i * 4 + 2]);
        // a copy: the batch buffer is read into again, and a forwarded query is read again when its reply comes
        const msg = Buffer.allocUnsafe(length);
        data.copy(msg, 0, i * SLOT, i * SLOT + length);
        let reply: Reply | Promise<Reply> | typeof LATER;
        // while the batch lasts, the client's sockaddr is read from the batch's own buffer
        const client: BatchClient = { transport: 'udp', address, names, nameAt: i * NAME };
        try {
          reply = into ? into(msg, client, sink, client) : handler(msg, client);
        } catch (err) {
          failed(err);
          continue;
        }
        if (reply === LATER || reply instanceof Promise) {
          // the reply comes after the batch: the client's sockaddr goes with it, in a copy
          client.names = nameOf(names, i * NAME, NAME);
          client.nameAt = 0;
          if (reply !== LATER) reply.then((r) => sink.later(r, client), failed);
        } else if (reply) {
          this.queue(reply, names, i * NAME);
        }
      }
      this.flush();
    };
    this.addon.start(this.socket, data, meta, names, text, onBatch);
  }

  /** Stops reading and closes the socket once the replies queued so far have gone out. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    const dropped = this.addon.stop(this.socket);
    for (let i = 0; i < dropped; i++) this.report?.fault('send_error', new Error('closed with the reply still waiting for room to send'));
  }

  /** A reply that came after its batch (or during it, from a forward that failed at once):
   * sent with the others of this turn, to the sockaddr at `names[nameAt]`. */
  private later(reply: Reply, names: Buffer, nameAt: number): void {
    if (!reply) return;
    if (this.closed) {
      this.report?.fault('send_error', new Error('the UDP socket is closed'));
      return;
    }
    this.queue(reply, names, nameAt);
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(this.flushLater);
  }

  /** One function for every turn's flush: no closure per turn. */
  private readonly flushLater = (): void => {
    this.flushQueued = false;
    this.flush();
  };

  private queue(reply: Buffer, names: Buffer, nameAt: number): void {
    const { BATCH, SLOT, NAME } = this.addon;
    if (reply.length > SLOT) {
      // larger than a slot (a forwarded reply can be): on its own, from its own memory
      const name = nameOf(names, nameAt, NAME);
      this.sent(this.addon.send(this.socket, reply, Int32Array.of(0, reply.length, 0), name, 1));
      return;
    }
    if (this.queued === BATCH) this.flush();
    const q = this.queued++;
    reply.copy(this.out, q * SLOT);
    this.outMeta[q * 3] = q * SLOT;
    this.outMeta[q * 3 + 1] = reply.length;
    this.outMeta[q * 3 + 2] = q;
    names.copy(this.outNames, q * NAME, nameAt, nameAt + NAME);
  }

  private flush(): void {
    if (this.queued === 0 || this.closed) return;
    const count = this.queued;
    this.queued = 0;
    this.sent(this.addon.send(this.socket, this.out, this.outMeta, this.outNames, count));
  }

  private sent(failures: number): void {
    for (let i = 0; i < failures; i++) this.report?.fault('send_error', new Error('sendmmsg: the OS did not send a reply'));
  }
}

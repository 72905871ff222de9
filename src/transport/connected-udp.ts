// The upstream side of --udp-batch: connected UDP sockets of divert's native addon
// (src/native/udp-connected.c) instead of node:dgram's. The addon reads a readable socket
// with one recvmmsg and hands every reply read in one turn of the event loop over in one
// call; here each goes to the owner of its socket. One group per process, made on first
// use: every upstream pool of every forwarder (a reload makes new ones) shares it.

import { createRequire } from 'node:module';

type NativeGroup = object;

/** What src/native/udp-connected.c exports; its comment says how the arrays are laid out. */
interface UdpConnectedAddon {
  readonly CAP: number;
  readonly SLOT: number;
  group(data: Buffer, meta: Int32Array, onReplies: (count: number) => void, capacity: number): NativeGroup;
  connect(group: NativeGroup, host: string, port: number, recvBufferBytes: number): number;
  sendBatch(group: NativeGroup, id: number, data: Uint8Array, lengths: Int32Array, count: number): number;
  port(group: NativeGroup, id: number): number;
  close(group: NativeGroup, id: number): void;
}

/** What a connected socket's datagrams and errors go to. */
export interface ConnectedUdpOwner {
  onMessage(msg: Buffer): void;
  /** The socket reported an error (an ICMP unreachable shows up so): it is of no more use. */
  onError(errno: number): void;
}

/** Sockets open at once, all upstreams and forwarders together. */
const CAPACITY = 1 << 16;

/** Where npm run build puts the addon: dist/native/, beside udp-batch.node. */
export const CONNECTED_ADDON_NAME = 'udp-connected.node';

export class ConnectedUdp {
  private readonly owners: (ConnectedUdpOwner | undefined)[] = [];
  private readonly group: NativeGroup;
  /** Sockets open now, all pools together. */
  open = 0;

  private constructor(private readonly addon: UdpConnectedAddon) {
    const { CAP, SLOT } = addon;
    // not zeroed: the memory is touched only as far as replies fill it (a slot holds the largest datagram)
    const data = Buffer.allocUnsafeSlow(CAP * SLOT);
    const meta = new Int32Array(CAP * 2);
    this.group = addon.group(
      data,
      meta,
      (count) => {
        for (let i = 0; i < count; i++) {
          const owner = this.owners[meta[i * 2]];
          if (owner === undefined) continue; // its socket was closed after the reply was read
          const length = meta[i * 2 + 1];
          if (length < 0) {
            owner.onError(-length);
            continue;
          }
          // a copy: the slot is read into again, and the reply goes on to the client later
          const msg = Buffer.allocUnsafe(length);
          data.copy(msg, 0, i * SLOT, i * SLOT + length);
          owner.onMessage(msg);
        }
      },
      CAPACITY,
    );
  }

  /** This process's group, or null when the addon was not built or does not load here.
   * The first call's path is the one loaded. */
  static load(path: string): ConnectedUdp | null {
    if (loaded === undefined) {
      try {
        loaded = new ConnectedUdp(createRequire(import.meta.url)(path) as UdpConnectedAddon);
      } catch {
        loaded = null;
      }
    }
    return loaded;
  }

  /** A socket connected to host:port (an IP address), on a port the kernel picks at random.
   * Throws the OS's error (err.code), e.g. EMFILE. */
  connect(host: string, port: number, recvBufferBytes: number, owner: ConnectedUdpOwner): number {
    const id = this.addon.connect(this.group, host, port, recvBufferBytes);
    this.owners[id] = owner;
    this.open++;
    return id;
  }

  /** Sends `count` datagrams with one sendmmsg: datagram i is lengths[i] bytes of `data`,
   * right after datagram i - 1. How many went (from the first), or minus the errno the OS
   * gave when not even the first did. `count` is at most the addon's CAP (64). */
  sendBatch(id: number, data: Buffer, lengths: Int32Array, count: number): number {
    return this.addon.sendBatch(this.group, id, data, lengths, count);
  }

  port(id: number): number {
    return this.addon.port(this.group, id);
  }

  /** No more datagrams or errors reach the owner. */
  close(id: number): void {
    if (this.owners[id] === undefined) return;
    this.owners[id] = undefined;
    this.open--;
    this.addon.close(this.group, id);
  }
}

let loaded: ConnectedUdp | null | undefined;

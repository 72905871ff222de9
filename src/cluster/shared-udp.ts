// --udp-batch with workers: the primary binds the UDP socket of each listen address with
// divert's addon (and never reads it) and hands it to every worker, respawned ones too, as
// a descriptor of the worker's own (node:cluster's stdio), which the worker adopts and
// polls. One socket, read by the first worker and by the others while it falls behind
// (BatchUdpSocket.spill): a stalled worker strands no client for more than ~15 ms, as it
// did when each worker bound a socket of its own with SO_REUSEPORT (the kernel hashes
// each client to one of those sockets for good).

import type { HostPort } from '../net/host-port.js';
import { bindError } from '../serving/bind-error.js';
import { BatchUdpSocket, type UdpBatchAddon } from '../transport/udp-batch.js';
import { noPortFree, tcpPortFree } from './ports.js';

/** A worker's descriptors 0-2 are its stdio and 3 the IPC channel: the sockets follow. */
const FIRST_FD = 4;

export class SharedUdp {
  private constructor(
    private readonly sockets: BatchUdpSocket[],
    /** The addresses bound, a requested port 0 replaced by the one the OS gave. */
    readonly listen: HostPort[],
  ) {}

  /**
   * Binds every address, or none (a failure closes what was bound and throws the
   * LISTEN_FAILED a worker would). A port 0 is taken only where TCP can have the same port
   * too (the workers' TCP listeners bind it later).
   */
  static async bind(addon: UdpBatchAddon, addresses: readonly HostPort[]): Promise<SharedUdp> {
    const shared = new SharedUdp([], []);
    try {
      for (const at of addresses) {
        const socket = await SharedUdp.bindOne(addon, at);
        shared.sockets.push(socket);
        shared.listen.push({ host: at.host, port: socket.port });
      }
    } catch (err) {
      shared.close();
      throw err;
    }
    return shared;
  }

  private static async bindOne(addon: UdpBatchAddon, at: HostPort): Promise<BatchUdpSocket> {
    for (let tries = 0; tries < 20; tries++) {
      let socket: BatchUdpSocket;
      try {
        socket = BatchUdpSocket.open(addon, at.host, at.port);
      } catch (err) {
        throw bindError(err as NodeJS.ErrnoException, at);
      }
      if (at.port !== 0 || (await tcpPortFree(at.host, socket.port))) return socket;
      socket.close();
    }
    throw noPortFree(at.host);
  }

  /** cluster.setupPrimary's stdio: the workers' own stdio and IPC channel, then the sockets. */
  get stdio(): (string | number)[] {
    return ['inherit', 'inherit', 'inherit', 'ipc', ...this.sockets.map((s) => s.fd)];
  }

  /** The sockets as a worker's descriptors, in the order of the addresses. */
  get workerFds(): number[] {
    return this.sockets.map((_, i) => FIRST_FD + i);
  }

  close(): void {
    for (const socket of this.sockets) socket.close();
  }
}

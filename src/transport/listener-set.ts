// The listeners of one role (the DNS ports, the DNS UPDATE port): UDP and TCP on each
// address, and DNS over TLS and over HTTPS on theirs, bound together and released together. UDP comes first, on the port asked for
// or one the OS picks, then TCP on the same port (with port 0 the OS may hand out a UDP
// port whose TCP twin is taken: then both are let go and it tries again). The TCP, DoT
// and DoH connections admitted are tracked, so that a drain can stop taking messages, let the
// replies under way go out, and then close every connection.

import type { Server, Socket } from 'node:net';
import type { HostPort } from '../net/host-port.js';
import type { Handler } from './handler.js';
import type { ListenerReport } from './listener-events.js';
import { ADMIT_ALL, type TcpAdmission, type TcpLimits } from './connection-slots.js';
import { DohService, type DnsInspection } from './doh-listener.js';
import { DotService } from './dot-listener.js';
import { createStreamServer, createTcpServer, listenTcp, type TcpServing } from './tcp-listener.js';
import type { TlsPem } from './tls-settings.js';
import { BatchUdpSocket, type SpillState, type UdpBatchAddon } from './udp-batch.js';
import { bindUdp, serveUdp } from './udp-listener.js';

export interface ListenerSetOptions {
  limits: TcpLimits;
  /** Who may open a TCP connection (UDP clients are the handler's to judge); everyone by default. */
  admission?: TcpAdmission;
  /** Where the listeners count what they could not serve. */
  report: ListenerReport;
  /** false in a cluster worker: the port is shared with the other workers. */
  exclusive?: boolean;
  onError: (err: Error) => void;
  /** --udp-batch: UDP through divert's native addon (udp-batch.ts); node:dgram without. */
  udpBatch?: UdpBatchAddon | null;
  /** With udpBatch in a cluster worker: the descriptors of the UDP sockets the primary bound, one per address in order, adopted instead of binding. */
  udpFds?: readonly number[];
  /** With udpFds: this worker is not the first, and reads those sockets only while the first falls behind (BatchUdpSocket.spill); firstReader: the first worker's pid (0: not known yet). */
  spill?: { firstReader: number };
  /** DNS over TLS and over HTTPS: their addresses, and the certificate they share. */
  encrypted?: EncryptedOptions;
}

export interface EncryptedOptions {
  dot: readonly HostPort[];
  doh: readonly HostPort[];
  pem: TlsPem;
  /** What DoH asks of the DNS side (is a body a query; a reply's least TTL). */
  dns: DnsInspection;
}

/** The DoT and DoH addresses bound. */
export interface EncryptedAddresses {
  dot: HostPort[];
  doh: HostPort[];
}

/** A bind that failed: the OS's error, and the address it was for (with the port it had). */
export class BindFailure extends Error {
  constructor(
    override readonly cause: NodeJS.ErrnoException,
    readonly at: HostPort,
  ) {
    super(cause.message);
  }
}

/** A bound UDP socket, of node:dgram or of the addon (which may be a spill reader: BatchUdpSocket.spill). */
interface UdpListener {
  port: number;
  close(): void;
  readonly spillState?: SpillState;
  setFirstReader?(firstPid: number): void;
}

/** How a worker reads its UDP sockets: how many now, its returns to shared ones and departures, and the first worker's CPU share as last weighed (null: not known). */
interface UdpReadingState {
  reading: number;
  joins: number;
  leaves: number;
  firstBusy: number | null;
}

interface Pair {
  udp: UdpListener;
  tcp: Server;
  address: HostPort;
}

export class ListenerSet {
  private readonly pairs: Pair[] = [];
  private readonly streams: { server: Server; address: HostPort; transport: 'dot' | 'doh' }[] = [];
  private services: { dot: DotService; doh: DohService } | null = null;
  /** The connections admitted and still open, by the kind of listener that took them. */
  private readonly connections = { tcp: new Set<Socket>(), dot: new Set<Socket>(), doh: new Set<Socket>() };
  private accepting = true;
  private serversClosed: Promise<void> | undefined;

  private constructor() {}

  /** Binds every address, or none: a failure releases what was bound and throws BindFailure. */
  static async open(addresses: readonly HostPort[], handler: Handler, options: ListenerSetOptions): Promise<ListenerSet> {
    const set = new ListenerSet();
    try {
      for (const [i, at] of addresses.entries()) set.pairs.push(await set.bind(at, handler, options, options.udpFds?.[i]));
      if (options.encrypted) await set.bindEncrypted(options.encrypted, handler, options);
    } catch (err) {
      await set.close(0);
      throw err;
    }
    return set;
  }

  /** The addresses bound (a requested port 0 replaced by the one given). */
  get addresses(): HostPort[] {
    return this.pairs.map((p) => p.address);
  }

  get encryptedAddresses(): EncryptedAddresses {
    const of = (transport: 'dot' | 'doh') => this.streams.filter((s) => s.transport === transport).map((s) => s.address);
    return { dot: of('dot'), doh: of('doh') };
  }

  /** The TCP, DoT and DoH connections open now, by transport. */
  get openConnections(): { tcp: number; dot: number; doh: number } {
    const { tcp, dot, doh } = this.connections;
    return { tcp: tcp.size, dot: dot.size, doh: doh.size };
  }

  /** Its UDP sockets it reads now (a worker other than the first may be away from a shared one), how often it came back to them and left, and the first worker's CPU share as it last weighed it. */
  get udpReading(): UdpReadingState {
    const reading: UdpReadingState = { reading: 0, joins: 0, leaves: 0, firstBusy: null };
    for (const { udp } of this.pairs) {
      const state = udp.spillState;
      if (!state?.away) reading.reading++;
      reading.joins += state?.joins ?? 0;
      reading.leaves += state?.leaves ?? 0;
      if (state?.firstBusy != null) reading.firstBusy = Math.max(reading.firstBusy ?? 0, state.firstBusy);
    }
    return reading;
  }

  /** A worker other than the first: the first worker is process `firstPid` from now (it was restarted). */
  setFirstReader(firstPid: number): void {
    for (const { udp } of this.pairs) udp.setFirstReader?.(firstPid);
  }

  /** The DoT and DoH certificate for new connections from now on (checked by the caller: a pair that does not load throws). */
  setCertificate(pem: TlsPem): void {
    this.services?.dot.setCertificate(pem);
    this.services?.doh.setCertificate(pem);
  }

  /** Stops taking connections and messages, UDP and on open connections alike; replies under way still go out. */
  stopAccepting(): void {
    if (!this.accepting) return;
    this.accepting = false;
    const servers = [...this.pairs.map((p) => p.tcp), ...this.streams.map((s) => s.server)];
    this.serversClosed = Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())))).then(() => {});
  }

  /**
   * Stops accepting (if not already), lets the replies handed to the sockets in this
   * turn go out, closes the UDP sockets, and ends every open connection: what is
   * buffered is sent first; a client that does not read is cut off after `marginMs`.
   */
  async close(marginMs: number): Promise<void> {
    this.stopAccepting();
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (const p of this.pairs) p.udp.close();
    for (const socket of [...this.connections.tcp, ...this.connections.dot, ...this.connections.doh]) {
      socket.destroySoon();
      setTimeout(() => socket.destroy(), marginMs).unref();
    }
    await this.serversClosed;
  }

  private tcpServing(options: ListenerSetOptions, transport: 'tcp' | 'dot' | 'doh'): TcpServing {
    return {
      limits: options.limits,
      admission: options.admission ?? ADMIT_ALL,
      report: options.report,
      accepting: () => this.accepting,
      onError: options.onError,
      onConnection: (socket) => {
        const open = this.connections[transport];
        open.add(socket);
        socket.once('close', () => open.delete(socket));
      },
    };
  }

  /** DoT and DoH: TCP listeners alone, whose connections one TLS server of each kind takes over. */
  private async bindEncrypted(encrypted: EncryptedOptions, handler: Handler, options: ListenerSetOptions): Promise<void> {
    // every client gets a connection (within the caps), and a client outside the allow list
    // a REFUSED answer, as over UDP: a DoT or DoH client (a phone, a browser) shows a reset as
    // a broken server, but takes REFUSED for what it is
    const admission = options.admission ?? ADMIT_ALL;
    const admitAll = { admits: () => true, networkOf: (a: string) => admission.networkOf(a) };
    const serving = (transport: 'dot' | 'doh') => ({ ...this.tcpServing(options, transport), admission: admitAll });
    const services = {
      dot: new DotService(encrypted.pem, handler, serving('dot')),
      doh: new DohService(encrypted.pem, handler, serving('doh'), encrypted.dns),
    };
    this.services = services;
    for (const transport of ['dot', 'doh'] as const) {
      for (const at of encrypted[transport]) {
        const server = createStreamServer(serving(transport), services[transport].service);
        try {
          const port = await listenTcp(server, at.host, at.port, options.exclusive ?? true);
          this.streams.push({ server, address: { host: at.host, port }, transport });
        } catch (err) {
          throw new BindFailure(err as NodeJS.ErrnoException, at);
        }
      }
    }
  }

  private async bind(at: HostPort, handler: Handler, options: ListenerSetOptions, udpFd: number | undefined): Promise<Pair> {
    const exclusive = options.exclusive ?? true;
    const accepting = () => this.accepting;
    for (let tries = 0; ; tries++) {
      let udp: UdpListener;
      let serve: () => void;
      try {
        // a worker adopts the one socket the primary bound, as do the others: the first reads it,
        // the others while the first falls behind (a worker handed none shares a node:dgram socket instead)
        if (options.udpBatch && (udpFd !== undefined || exclusive)) {
          const batch =
            udpFd === undefined ? BatchUdpSocket.open(options.udpBatch, at.host, at.port) : BatchUdpSocket.adopt(options.udpBatch, udpFd);
          udp = batch;
          serve = () => {
            batch.serve(handler, options.report, accepting);
            if (udpFd !== undefined && options.spill) batch.spill(options.spill.firstReader);
          };
        } else {
          const socket = await bindUdp(at.host, at.port, exclusive);
          udp = { port: socket.address().port, close: () => socket.close() };
          serve = () => serveUdp(socket, handler, options.report, options.onError, accepting);
        }
      } catch (err) {
        throw new BindFailure(err as NodeJS.ErrnoException, at);
      }
      const port = udp.port;
      const tcp = createTcpServer(handler, this.tcpServing(options, 'tcp'));
      try {
        await listenTcp(tcp, at.host, port, exclusive);
      } catch (err) {
        udp.close();
        if (at.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && tries < 20) continue;
        throw new BindFailure(err as NodeJS.ErrnoException, { host: at.host, port });
      }
      serve();
      return { udp, tcp, address: { host: at.host, port } };
    }
  }
}

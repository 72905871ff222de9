// One UDP service of `divert proxy`: a flow per client address and port, each with its own
// socket towards the target (so the target's replies find their client, and the target
// sees the proxy). A flow's next datagram goes to the new target once a change takes its
// target out of the answer; replies are taken only from the flow's current target. A flow
// with no datagram either way for the idle timeout is forgotten.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Logger } from 'pino';
import { formatHostPort, type HostPort } from '../net/host-port.js';
import { idleTimeoutOf, type ProxyService } from './config.js';
import { formatAddress, type Connection, type ConnectionTable } from './connections.js';
import { proxyHeader } from './proxy-protocol.js';
import type { TableView } from './table-view.js';
import { stillTargeted, targetsFor } from './targets.js';

interface Flow {
  key: string;
  record: Connection;
  listener: Socket;
  clientAddress: string;
  clientPort: number;
  family: 'udp4' | 'udp6';
  /** Datagrams that came while `upstream` was connecting; null once it is connected. */
  waiting: Buffer[] | null;
  /** Connected to `address`; null until the flow's first datagram picks a target. */
  upstream: Socket | null;
  address: string | null;
  /** proxyProtocol: the PROXY v2 header sent ahead of each datagram; null without it. */
  header: Buffer | null;
}

/** Datagrams a flow keeps while its socket connects; more are dropped, as a full socket buffer would. */
const MAX_WAITING = 64;

export class UdpService {
  private readonly listeners: Socket[] = [];
  private readonly flows = new Map<string, Flow>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly service: ProxyService,
    private readonly view: TableView,
    private readonly table: ConnectionTable,
    private readonly log: Logger,
    /** With workers: each binds its own socket with SO_REUSEPORT, and the kernel keeps a client's datagrams on one. */
    private readonly reusePort = false,
  ) {}

  async listen(): Promise<HostPort[]> {
    const bound: HostPort[] = [];
    for (const at of this.service.listen) {
      const socket = createSocket({
        type: at.host.includes(':') ? 'udp6' : 'udp4',
        ipv6Only: at.host.includes(':'),
        reusePort: this.reusePort,
      });
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        // exclusive: a cluster worker binds its own socket instead of sharing the primary's
        socket.bind({ port: at.port, address: at.host, exclusive: true }, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      socket.on('error', (err) => this.log.warn({ service: this.service.name, error: String(err) }, 'UDP listener error'));
      const own = socket.address();
      const listened: HostPort = { host: own.address, port: own.port };
      const listenText = formatHostPort(listened);
      socket.on('message', (msg, rinfo) => this.fromClient(socket, listenText, msg, rinfo));
      this.listeners.push(socket);
      bound.push(listened);
    }
    const idle = idleTimeoutOf(this.service);
    this.sweeper = setInterval(() => this.sweep(idle), Math.min(5000, Math.max(50, idle / 4))).unref();
    return bound;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const flow of this.flows.values()) this.forget(flow);
    await Promise.all(this.listeners.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  /** The table changed: a flow whose target left the answer sends its next datagram to the new one. */
  changed(): void {
    for (const flow of this.flows.values()) {
      if (flow.address !== null && !stillTargeted(this.service, this.view, flow.address)) flow.address = null;
    }
  }

  /** `listen`: the listener's address:port, made once per listener, not per datagram. */
  private fromClient(listener: Socket, listen: string, msg: Buffer, rinfo: RemoteInfo): void {
    if (rinfo.port === 0) return;
    const key = `${rinfo.address}|${rinfo.port}|${listen}`;
    let flow = this.flows.get(key);
    if (!flow) {
      const record = this.table.add(this.service.name, 'udp', rinfo.address, rinfo.port, listen);
      if (!record) return;
      flow = {
        key,
        record,
        listener,
        clientAddress: rinfo.address,
        clientPort: rinfo.port,
        family: rinfo.family === 'IPv6' ? 'udp6' : 'udp4',
        upstream: null,
        waiting: null,
        address: null,
        // proxyProtocol: the same header leads every datagram of the flow (the listener's own address as the destination)
        header: this.service.proxyProtocol ? proxyHeader(rinfo, listener.address(), 'udp') : null,
      };
      this.flows.set(key, flow);
    }
    if (flow.address === null || flow.upstream === null) {
      const address = targetsFor(this.service, this.view, flow.clientAddress)[0];
      if (address === undefined) return;
      this.aim(flow, address);
    }
    this.table.bytes(flow.record, msg.length, 0);
    if (flow.waiting) {
      // its socket is connecting (a turn of the event loop): a few datagrams wait for it
      if (flow.waiting.length < MAX_WAITING) flow.waiting.push(msg);
      return;
    }
    this.send(flow, msg);
  }

  private send(flow: Flow, msg: Buffer): void {
    flow.upstream!.send(flow.header ? [flow.header, msg] : msg, (err) => {
      if (err) this.table.connectFailed(formatAddress(flow.address ?? '?', this.service.target.port));
    });
  }

  /**
   * The flow's datagrams go to `address` from now on, from a socket connected to it: the
   * kernel lets only that target answer it, and an ICMP "port unreachable" comes back as
   * an error on it, counted as a failed connect (what passive health reads). A flow that
   * changes target gets a new socket (a new source port: the new target never saw the old).
   */
  private aim(flow: Flow, address: string): void {
    flow.upstream?.close();
    const target = formatAddress(address, this.service.target.port);
    const upstream = createSocket(flow.family);
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (flow.upstream !== upstream) return;
      if (err.code === 'ECONNREFUSED') this.table.connectFailed(target);
      else this.log.debug({ service: this.service.name, error: String(err) }, 'UDP flow socket error');
    });
    upstream.on('message', (reply) => this.fromTarget(flow, upstream, reply));
    upstream.connect(this.service.target.port, address, () => {
      if (flow.upstream !== upstream) return;
      const own = upstream.address();
      flow.record.source = formatAddress(own.address, own.port);
      const waiting = flow.waiting ?? [];
      flow.waiting = null;
      for (const msg of waiting) this.send(flow, msg);
    });
    flow.waiting = [];
    flow.upstream = upstream;
    flow.address = address;
    this.table.attach(flow.record, target, null, null);
  }

  private fromTarget(flow: Flow, upstream: Socket, reply: Buffer): void {
    // the socket is connected: only the flow's target reaches it; a reply from a target the flow has left is dropped
    if (flow.upstream !== upstream) return;
    this.table.bytes(flow.record, 0, reply.length);
    flow.listener.send(reply, flow.clientPort, flow.clientAddress);
  }

  private sweep(idle: number): void {
    const now = Date.now();
    for (const flow of this.flows.values()) if (now - flow.record.lastActivity >= idle) this.forget(flow);
  }

  private forget(flow: Flow): void {
    this.flows.delete(flow.key);
    flow.upstream?.close();
    this.table.remove(flow.record);
  }
}

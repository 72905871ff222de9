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
  upstream: Socket;
  address: string | null;
  /** proxyProtocol: the PROXY v2 header sent ahead of each datagram; null without it. */
  header: Buffer | null;
}

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
      const upstream = createSocket(rinfo.family === 'IPv6' ? 'udp6' : 'udp4');
      const created: Flow = {
        key,
        record,
        listener,
        clientAddress: rinfo.address,
        clientPort: rinfo.port,
        upstream,
        address: null,
        // proxyProtocol: the same header leads every datagram of the flow (the listener's own address as the destination)
        header: this.service.proxyProtocol ? proxyHeader(rinfo, listener.address(), 'udp') : null,
      };
      upstream.on('error', (err) => this.log.debug({ service: this.service.name, error: String(err) }, 'UDP flow socket error'));
      upstream.on('message', (reply, from) => this.fromTarget(created, reply, from));
      this.flows.set(key, created);
      flow = created;
    }
    if (flow.address === null) {
      const address = targetsFor(this.service, this.view, flow.clientAddress)[0];
      if (address === undefined) return;
      flow.address = address;
      // the flow's own source port is known once its socket has sent (bound on the first send)
      this.table.attach(flow.record, formatAddress(address, this.service.target.port), flow.record.source, null);
    }
    this.table.bytes(flow.record, msg.length, 0);
    const current = flow;
    flow.upstream.send(flow.header ? [flow.header, msg] : msg, this.service.target.port, flow.address, (err) => {
      if (err) this.table.connectFailed(formatAddress(current.address ?? '?', this.service.target.port));
      else if (current.record.source === null) {
        const own = current.upstream.address();
        current.record.source = formatAddress(own.address, own.port);
      }
    });
  }

  private fromTarget(flow: Flow, reply: Buffer, from: RemoteInfo): void {
    // only the flow's target may answer it: anything else on its port is dropped
    if (from.address !== flow.address || from.port !== this.service.target.port) return;
    this.table.bytes(flow.record, 0, reply.length);
    flow.listener.send(reply, flow.clientPort, flow.clientAddress);
  }

  private sweep(idle: number): void {
    const now = Date.now();
    for (const flow of this.flows.values()) if (now - flow.record.lastActivity >= idle) this.forget(flow);
  }

  private forget(flow: Flow): void {
    this.flows.delete(flow.key);
    flow.upstream.close();
    this.table.remove(flow.record);
  }
}

// One TCP service of `divert proxy`: each client connection is relayed to the address the
// table gives for that client now (both addresses rewritten: the target sees the proxy),
// bytes passed through as they come with backpressure both ways, half-close and reset
// passed on. When a change takes a connection's target out of the answer, the service's
// onChange decides: keep it, drain it (closed after drainSeconds), or close it at once.

import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { formatHostPort, type HostPort } from '../net/host-port.js';
import { idleTimeoutOf, type ProxyService } from './config.js';
import { formatAddress, type Connection, type ConnectionTable } from './connections.js';
import type { TableView } from './table-view.js';
import { stillTargeted, targetsFor } from './targets.js';

interface Relay {
  record: Connection;
  client: Socket;
  upstream: Socket | null;
  /** The target's address (without port), what the answer is checked against. */
  address: string | null;
  drain: NodeJS.Timeout | null;
  /** Bytes read from the client and from the target that the record already holds. */
  counted: [number, number];
}

export class TcpService {
  private readonly servers: Server[] = [];
  private readonly relays = new Set<Relay>();

  constructor(
    private readonly service: ProxyService,
    private readonly view: TableView,
    private readonly table: ConnectionTable,
    private readonly log: Logger,
  ) {
    // bytes are read off the sockets' own counters when the table is read and at close, not
    // counted per chunk: a 'data' listener on each side cost about a fifth of the CPU per GB
    // relayed (npm run bench:proxy, before and after in one run)
    table.onRead(() => {
      for (const relay of this.relays) this.count(relay);
    });
  }

  /** Listens on every address of the service; rejects with the OS's error (err.code) naming the address. */
  async listen(): Promise<HostPort[]> {
    const bound: HostPort[] = [];
    for (const at of this.service.listen) {
      const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => this.accept(socket, at));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: at.host, port: at.port, ipv6Only: at.host.includes(':') }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      // a failed accept (EMFILE) must not end the process: it is logged, the listener goes on
      server.on('error', (err) => this.log.warn({ service: this.service.name, error: String(err) }, 'accept failed'));
      this.servers.push(server);
      const address = server.address();
      if (address && typeof address === 'object') bound.push({ host: address.address, port: address.port });
    }
    return bound;
  }

  /** Stops accepting and closes every open connection. */
  async close(): Promise<void> {
    // a server's close waits for its connections: they go first
    const closed = Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const relay of this.relays) this.end(relay, true);
    await closed;
  }

  /** The table changed: connections whose target left the answer follow onChange. */
  changed(): void {
    const { onChange, drainSeconds } = this.service;
    for (const relay of this.relays) {
      if (relay.address === null) continue;
      const holds = stillTargeted(this.service, this.view, relay.address);
      if (holds) {
        // back in the answer before its drain ended: it runs on
        if (relay.drain) {
          clearTimeout(relay.drain);
          relay.drain = null;
          relay.record.drainEndsAt = null;
        }
        continue;
      }
      if (onChange === 'close') this.end(relay, false);
      else if (onChange === 'drain' && !relay.drain) {
        relay.record.drainEndsAt = Date.now() + drainSeconds * 1000;
        relay.drain = setTimeout(() => this.end(relay, false), drainSeconds * 1000);
      }
    }
  }

  private accept(client: Socket, at: HostPort): void {
    const clientAddress = client.remoteAddress;
    const clientPort = client.remotePort;
    if (clientAddress === undefined || clientPort === undefined) {
      client.destroy();
      return;
    }
    // where the client connected to: the listener's own address, or the one a wildcard listener was reached on
    const listen =
      client.localAddress !== undefined && client.localPort !== undefined
        ? formatAddress(client.localAddress, client.localPort)
        : formatHostPort(at);
    const record = this.table.add(this.service.name, 'tcp', clientAddress, clientPort, listen);
    if (!record) {
      client.resetAndDestroy();
      return;
    }
    const relay: Relay = { record, client, upstream: null, address: null, drain: null, counted: [0, 0] };
    this.relays.add(relay);
    client.on('error', () => {});
    client.once('close', () => this.end(relay, false));
    void this.connect(relay, targetsFor(this.service, this.view, clientAddress));
  }

  /** Tries the addresses in order within one connect timeout; the client is reset if none answers. */
  private async connect(relay: Relay, addresses: string[]): Promise<void> {
    const deadline = Date.now() + this.service.connectTimeout;
    const port = this.service.target.port;
    for (const address of addresses) {
      const left = deadline - Date.now();
      if (left <= 0 || relay.client.destroyed) break;
      const started = performance.now();
      const upstream = await this.open(address, port, left);
      if (!upstream) {
        this.table.connectFailed(formatAddress(address, port));
        continue;
      }
      if (relay.client.destroyed) {
        upstream.destroy();
        return;
      }
      const source = upstream.localAddress !== undefined ? formatAddress(upstream.localAddress, upstream.localPort ?? 0) : null;
      this.table.attach(relay.record, formatAddress(address, port), source, Math.round((performance.now() - started) * 100) / 100);
      relay.upstream = upstream;
      relay.address = address;
      this.pipe(relay, upstream);
      return;
    }
    if (addresses.length === 0) this.log.debug({ service: this.service.name, client: relay.record.client }, 'no target known: reset');
    relay.client.resetAndDestroy();
    this.end(relay, false);
  }

  private open(host: string, port: number, timeoutMs: number): Promise<Socket | null> {
    return new Promise((resolve) => {
      const socket = createConnection({ host, port, allowHalfOpen: true, noDelay: true });
      const timer = setTimeout(() => fail(), timeoutMs);
      const fail = () => {
        clearTimeout(timer);
        socket.destroy();
        resolve(null);
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve(socket);
      });
    });
  }

  private pipe(relay: Relay, upstream: Socket): void {
    const { client } = relay;
    const idle = idleTimeoutOf(this.service);
    // pipe: each side's FIN is passed on as one (half-close), and a slow side pauses the other
    client.pipe(upstream);
    upstream.pipe(client);
    // a reset is passed on as a reset; any other end of one side ends the other
    const onError = (other: Socket) => (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') other.resetAndDestroy();
      else other.destroy();
    };
    client.on('error', onError(upstream));
    upstream.on('error', onError(client));
    upstream.once('close', () => this.end(relay, false));
    // every byte relayed is read on one side and written on the other, so one side without
    // reads or writes (or with a write queue that does not move) for `idle` is the relay idle
    for (const side of [client, upstream]) side.setTimeout(idle, () => this.end(relay, false));
    client.resume();
  }

  /** The bytes read on each side since the last count go to the record and its target. */
  private count(relay: Relay): void {
    if (!relay.upstream) return;
    const inbound = relay.client.bytesRead - relay.counted[0];
    const outbound = relay.upstream.bytesRead - relay.counted[1];
    if (inbound === 0 && outbound === 0) return;
    relay.counted = [relay.client.bytesRead, relay.upstream.bytesRead];
    this.table.bytes(relay.record, inbound, outbound);
  }

  /** Both sides closed (reset when `reset`), the drain timer stopped, the record gone. */
  private end(relay: Relay, reset: boolean): void {
    if (!this.relays.delete(relay)) return;
    this.count(relay);
    if (relay.drain) clearTimeout(relay.drain);
    for (const side of [relay.client, relay.upstream]) {
      if (!side || side.destroyed) continue;
      if (reset) side.resetAndDestroy();
      else side.destroy();
    }
    this.table.remove(relay.record);
  }
}

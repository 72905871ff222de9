// One TCP service of `divert proxy` relayed by the native addon (native-relay.ts says
// which): the addon accepts, connects and moves the bytes; this file decides what
// tcp-service.ts decides for node:net's relay — the target of each new connection (the
// addresses the table gives the client, tried in order within the connect timeout), the
// limits, onChange keep / drain / close, and what the connection table shows (bytes and
// last activity read from the addon when the table is read, and when a connection ends).

import type { Logger } from 'pino';
import { getSystemErrorName } from 'node:util';
import { isWildcard, type HostPort } from '../net/host-port.js';
import { connectTimeoutOf, idleTimeoutOf, type ProxyService } from './config.js';
import { formatAddress, type Connection, type ConnectionTable } from './connections.js';
import { listenKey, relayEvents, type RelayListener, type TcpRelayAddon } from './native-relay.js';
import { proxyHeader } from './proxy-protocol.js';
import type { TableView } from './table-view.js';
import { followChange, targetsFor } from './targets.js';

interface NativeRelay {
  id: number;
  record: Connection;
  /** The addresses to try, in order, and the next one. */
  addresses: readonly string[];
  next: number;
  deadline: number;
  /** The address being connected to. */
  trying: string;
  /** The connected target's address (without port), what the answer is checked against. */
  address: string | null;
  header: Buffer | null;
  drain: NodeJS.Timeout | null;
  /** Bytes already counted in the table, each way. */
  countedIn: number;
  countedOut: number;
}

export class NativeTcpService {
  private readonly listeners: RelayListener[] = [];
  private readonly relays = new Map<number, NativeRelay>();
  private readonly counters = new Float64Array(3);

  constructor(
    private readonly service: ProxyService,
    private readonly view: TableView,
    private readonly table: ConnectionTable,
    private readonly log: Logger,
    private readonly addon: TcpRelayAddon,
    /** In a worker: the listeners the primary opened, as this process's descriptors, by listenKey. */
    private readonly inherited: Readonly<Record<string, number>> = {},
  ) {
    table.beforeRead(() => this.refresh());
  }

  /** Listens on every address of the service (or takes the primary's listeners over); throws the OS's error (err.code). */
  listen(): Promise<HostPort[]> {
    const bound: HostPort[] = [];
    const tag = relayEvents(this.addon).register((type, id, a, b) => this.event(type, id, a, b));
    for (const [i, at] of this.service.listen.entries()) {
      const fd = this.inherited[listenKey(this.service, i)];
      const listener = fd === undefined ? this.addon.listen(at.host, at.port) : this.addon.adopt(fd);
      this.listeners.push(listener);
      const port = this.addon.port(listener);
      const wildcard = isWildcard(at.host);
      const listenText = wildcard ? null : formatAddress(at.host, port);
      this.addon.start(
        listener,
        (id, address, clientPort, localAddress, localPort) =>
          this.accept(id, address!, clientPort!, localAddress, localPort, { address: at.host, port }, listenText),
        idleTimeoutOf(this.service),
        wildcard,
        tag,
      );
      bound.push({ host: at.host, port });
    }
    return Promise.resolve(bound);
  }

  /** Stops accepting and resets every open connection. */
  close(): Promise<void> {
    for (const relay of this.relays.values()) {
      this.addon.close(relay.id, true);
      this.end(relay);
    }
    for (const listener of this.listeners) this.addon.stop(listener);
    this.listeners.length = 0;
    return Promise.resolve();
  }

  /** The table changed: connections whose target left the answer follow onChange (keep, drain or close). */
  changed(): void {
    for (const relay of this.relays.values()) followChange(this.service, this.view, relay, () => this.closeNow(relay));
  }

  private accept(
    id: number,
    address: string,
    port: number,
    localAddress: string | undefined,
    localPort: number | undefined,
    own: { address: string; port: number },
    listenText: string | null,
  ): void {
    if (id < 0) {
      // the addon rests the listener a moment: the connection waits in the backlog
      this.log.warn({ service: this.service.name, error: getSystemErrorName(id) }, 'accept failed');
      return;
    }
    // where the client connected to: the listener's own address, or (wildcard) the one it was reached on
    const local = listenText === null && localAddress !== undefined ? { address: localAddress, port: localPort! } : own;
    const listen = listenText ?? formatAddress(local.address, local.port);
    const record = this.table.add(this.service.name, 'tcp', address, port, listen);
    if (!record) {
      this.addon.close(id, true);
      return;
    }
    const header = this.service.proxyProtocol ? proxyHeader({ address, port }, local) : null;
    const relay: NativeRelay = {
      id,
      record,
      addresses: targetsFor(this.service, this.view, address),
      next: 0,
      deadline: Date.now() + connectTimeoutOf(this.service),
      trying: '',
      address: null,
      header,
      drain: null,
      countedIn: 0,
      countedOut: 0,
    };
    this.relays.set(id, relay);
    this.dial(relay);
  }

  /** Connects to the next address; the client is reset when none is left within the connect timeout. */
  private dial(relay: NativeRelay): void {
    const { port } = this.service.target;
    while (relay.next < relay.addresses.length) {
      const left = relay.deadline - Date.now();
      if (left <= 0) break;
      relay.trying = relay.addresses[relay.next++];
      if (this.addon.connect(relay.id, relay.trying, port, left, relay.header) === 0) return;
      this.table.connectFailed(formatAddress(relay.trying, port));
    }
    if (relay.addresses.length === 0) this.log.debug({ service: this.service.name, client: relay.record.client }, 'no target known: reset');
    this.addon.close(relay.id, true);
    this.end(relay);
  }

  private event(type: number, id: number, a: number, b: number): void {
    const relay = this.relays.get(id);
    if (!relay) return;
    const { port } = this.service.target;
    if (type === this.addon.CONNECTED) {
      relay.address = relay.trying;
      // its source address is read when the table is (refresh)
      this.table.attach(relay.record, formatAddress(relay.trying, port), null, Math.round(a / 10) / 100);
    } else if (type === this.addon.FAILED) {
      this.table.connectFailed(formatAddress(relay.trying, port));
      this.dial(relay);
    } else if (type === this.addon.CLOSED) {
      this.count(relay, a, b, 0);
      this.end(relay);
    }
  }

  /** The table is read: each connection's bytes and last activity as the addon has them now,
   * and the proxy's own address towards the target, asked once per connection. */
  private refresh(): void {
    const c = this.counters;
    for (const relay of this.relays.values()) {
      if (relay.address === null || !this.addon.counters(relay.id, c)) continue;
      this.count(relay, c[0], c[1], c[2]);
      if (relay.record.source !== null) continue;
      const source = this.addon.source(relay.id);
      if (source) relay.record.source = formatAddress(source[0], source[1]);
    }
  }

  private count(relay: NativeRelay, bytesIn: number, bytesOut: number, msAgo: number): void {
    if (bytesIn > relay.countedIn || bytesOut > relay.countedOut)
      this.table.bytes(relay.record, bytesIn - relay.countedIn, bytesOut - relay.countedOut);
    relay.countedIn = bytesIn;
    relay.countedOut = bytesOut;
    if (msAgo >= 0) relay.record.lastActivity = Date.now() - msAgo;
  }

  /** Closed by the proxy (onChange, drain's end): its last bytes counted first. */
  private closeNow(relay: NativeRelay): void {
    if (this.addon.counters(relay.id, this.counters)) this.count(relay, this.counters[0], this.counters[1], this.counters[2]);
    this.addon.close(relay.id, false);
    this.end(relay);
  }

  private end(relay: NativeRelay): void {
    if (!this.relays.delete(relay.id)) return;
    if (relay.drain) clearTimeout(relay.drain);
    this.table.remove(relay.record);
  }
}

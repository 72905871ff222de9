// The connection table: every TCP connection and UDP flow the proxy relays, with both
// addresses of each side, its bytes and its times; per target the figures a monitor needs
// (connects, failures, connect time, bytes); and the limits on how many may be open.

import ipaddr from 'ipaddr.js';
import { networkOf } from '../net/cidr.js';
import { formatHostPort } from '../net/host-port.js';

export interface Connection {
  id: number;
  service: string;
  protocol: 'tcp' | 'udp';
  /** The client's address:port. */
  client: string;
  /** Where the client connected to (the original destination). */
  listen: string;
  /** The proxy's own address:port towards the target; null until connected. */
  source: string | null;
  /** The target's address:port; null until one is chosen. */
  target: string | null;
  /** ms since the epoch. */
  startedAt: number;
  lastActivity: number;
  /** Client to target. */
  bytesIn: number;
  /** Target to client. */
  bytesOut: number;
  /** How long the connect to the target took (TCP), ms. */
  connectMs: number | null;
  /** When a drain closes it (its target left the answer), ms since the epoch. */
  drainEndsAt: number | null;
}

export interface TargetStats {
  connects: number;
  connectFailures: number;
  connectMsTotal: number;
  bytesIn: number;
  bytesOut: number;
  open: number;
}

/** The network a client counts against for maxConnectionsPerNetwork: its /24, or /56 for IPv6. */
export function clientNetwork(address: string): string {
  const parsed = ipaddr.process(address);
  return networkOf(parsed, parsed.kind() === 'ipv4' ? 24 : 56).toString();
}

/** Client addresses whose network is remembered at most (then forgotten all at once). */
const NETWORK_CACHE = 10_000;

/** address:port as the table shows it (IPv6 in brackets). */
export function formatAddress(host: string, port: number): string {
  return formatHostPort({ host, port });
}

export class ConnectionTable {
  private readonly open = new Map<number, Connection>();
  private readonly perNetwork = new Map<string, number>();
  /** Each open connection's client network. */
  private readonly networks = new Map<number, string>();
  private readonly perTarget = new Map<string, TargetStats>();
  /** Open TCP connections whose source is read when the table is listed. */
  private readonly sources = new Map<number, () => string | null>();
  private nextId: number;
  /** Refused at a limit, by which. */
  readonly refused = { total: 0, network: 0 };
  /** Connections and flows ever opened, per service. */
  readonly opened = new Map<string, number>();
  /** Client addresses' networks, as clientNetwork gives them (the same clients come back: parsing each time cost more than the rest of a connection's bookkeeping). */
  private readonly networkCache = new Map<string, string>();
  /** Run before the table is listed or its targets' figures are read. */
  private readonly refreshers: (() => void)[] = [];

  /** `firstId`: where this process's connection ids start (workers' ids must not meet). */
  constructor(
    private readonly maxConnections: number,
    private readonly maxPerNetwork: number,
    firstId = 1,
  ) {
    this.nextId = firstId;
  }

  /** A new connection from `clientAddress`, or null when a limit refuses it. */
  add(service: string, protocol: 'tcp' | 'udp', clientAddress: string, clientPort: number, listen: string): Connection | null {
    const network = this.networkFor(clientAddress);
    if (this.open.size >= this.maxConnections) {
      this.refused.total++;
      return null;
    }
    const inNetwork = this.perNetwork.get(network) ?? 0;
    if (inNetwork >= this.maxPerNetwork) {
      this.refused.network++;
      return null;
    }
    this.perNetwork.set(network, inNetwork + 1);
    const now = Date.now();
    const c: Connection = {
      id: this.nextId++,
      service,
      protocol,
      client: formatAddress(clientAddress, clientPort),
      listen,
      source: null,
      target: null,
      startedAt: now,
      lastActivity: now,
      bytesIn: 0,
      bytesOut: 0,
      connectMs: null,
      drainEndsAt: null,
    };
    this.open.set(c.id, c);
    this.opened.set(service, (this.opened.get(service) ?? 0) + 1);
    this.networks.set(c.id, network);
    return c;
  }

  private networkFor(address: string): string {
    let network = this.networkCache.get(address);
    if (network === undefined) {
      if (this.networkCache.size >= NETWORK_CACHE) this.networkCache.clear();
      network = clientNetwork(address);
      this.networkCache.set(address, network);
    }
    return network;
  }

  remove(c: Connection): void {
    if (!this.open.delete(c.id)) return;
    const network = this.networks.get(c.id) ?? '';
    this.networks.delete(c.id);
    this.sources.delete(c.id);
    const left = (this.perNetwork.get(network) ?? 1) - 1;
    if (left > 0) this.perNetwork.set(network, left);
    else this.perNetwork.delete(network);
    if (c.target) this.stats(c.target).open--;
  }

  /** The connection now relays to `target` (a UDP flow may move; its figures go with the target it had).
   * `source` reads the proxy's address towards it, once the table is listed (a UDP flow sets its own). */
  attach(c: Connection, target: string, source: (() => string | null) | null, connectMs: number | null): void {
    if (c.target) this.stats(c.target).open--;
    c.target = target;
    c.source = null;
    if (source) this.sources.set(c.id, source);
    else this.sources.delete(c.id);
    const s = this.stats(target);
    s.open++;
    s.connects++;
    if (connectMs !== null) {
      c.connectMs = connectMs;
      s.connectMsTotal += connectMs;
    }
  }

  /** `refresh` brings the figures of connections counted elsewhere (the native relay) up to date before each read. */
  beforeRead(refresh: () => void): void {
    this.refreshers.push(refresh);
  }

  connectFailed(target: string): void {
    this.stats(target).connectFailures++;
  }

  bytes(c: Connection, inbound: number, outbound: number): void {
    c.bytesIn += inbound;
    c.bytesOut += outbound;
    c.lastActivity = Date.now();
    if (c.target) {
      const s = this.stats(c.target);
      s.bytesIn += inbound;
      s.bytesOut += outbound;
    }
  }

  list(): Connection[] {
    for (const refresh of this.refreshers) refresh();
    // an entry leaves `sources` with its connection (remove), so each names an open one
    for (const [id, read] of this.sources) {
      const source = read();
      if (source === null) continue;
      this.open.get(id)!.source = source;
      this.sources.delete(id);
    }
    return [...this.open.values()];
  }

  get size(): number {
    return this.open.size;
  }

  /** A copy of every target's figures. */
  targets(): Record<string, TargetStats> {
    for (const refresh of this.refreshers) refresh();
    return Object.fromEntries([...this.perTarget].map(([target, s]) => [target, { ...s }]));
  }

  private stats(target: string): TargetStats {
    let s = this.perTarget.get(target);
    if (!s) {
      s = { connects: 0, connectFailures: 0, connectMsTotal: 0, bytesIn: 0, bytesOut: 0, open: 0 };
      this.perTarget.set(target, s);
    }
    return s;
  }
}

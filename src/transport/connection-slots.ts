// The connections a stream listener (DNS over TCP, over TLS, over HTTPS) holds open, and
// who may open one. Admission happens at accept, before a byte is read (before a TLS
// handshake too): a client the owner does not admit is reset at once, and so is one whose
// network already holds its share of connections. When every slot is taken, the least
// recently active idle connection is closed to make room (RFC 7766 6.2.3), so idle or
// abandoned connections cannot lock clients out; only when every connection has a query
// in flight is the newcomer refused.

import type { Socket } from 'node:net';
import type { ListenerReport } from './listener-events.js';

export interface TcpLimits {
  idleTimeoutMs: number;
  maxConnections: number;
  /** Queries in flight on one connection before reading from it pauses. */
  maxInFlight: number;
  /** Unsent reply bytes after which a connection is closed. */
  maxPendingWriteBytes: number;
  /** Connections open at once from one client network (see TcpAdmission.networkOf). */
  maxPerClient: number;
}

export const DEFAULT_TCP_LIMITS: TcpLimits = {
  idleTimeoutMs: 10_000,
  maxConnections: 1_000,
  maxInFlight: 100,
  maxPendingWriteBytes: 1024 * 1024,
  maxPerClient: 64,
};

/** Who may connect, and which connections count together against maxPerClient. */
export interface TcpAdmission {
  /** Read at every accept, so a reload's new list applies to the next connection. */
  admits(address: string): boolean;
  /** The client's network as the rate limiter counts it (a /24, a /56): one IPv6 client
   * has whole networks of addresses, so counting single addresses would cap nothing. */
  networkOf(address: string): string;
}

export const ADMIT_ALL: TcpAdmission = { admits: () => true, networkOf: (address) => address };

/** One open connection, as the slot keeper sees it: its accepted socket (under any TLS). */
export interface Connection {
  readonly socket: Socket;
  readonly network: string;
  /** Queries (or HTTP requests) begun and not yet answered: a connection with one is never evicted as idle. */
  inFlight: number;
}

/**
 * The open connections in order of last activity (a Map keeps insertion order; touching
 * a connection moves it to the end), so the least recently active comes first.
 */
export class Slots {
  private readonly byActivity = new Map<Socket, Connection>();
  private readonly perNetwork = new Map<string, number>();

  constructor(
    private readonly limits: TcpLimits,
    private readonly report: ListenerReport,
  ) {}

  /** The new connection's slot, or null when it was refused (and reset). */
  take(socket: Socket, admission: TcpAdmission): Connection | null {
    const address = socket.remoteAddress;
    if (address === undefined || !admission.admits(address)) return this.refuse(socket, 'tcp_not_allowed');
    const network = admission.networkOf(address);
    const open = this.perNetwork.get(network) ?? 0;
    if (open >= this.limits.maxPerClient) return this.refuse(socket, 'tcp_client_limit');
    if (this.byActivity.size >= this.limits.maxConnections && !this.evictIdle()) return this.refuse(socket, 'tcp_full');
    const connection: Connection = { socket, network, inFlight: 0 };
    this.byActivity.set(socket, connection);
    this.perNetwork.set(network, open + 1);
    socket.once('close', () => this.release(connection));
    return connection;
  }

  touch(connection: Connection): void {
    if (this.byActivity.delete(connection.socket)) this.byActivity.set(connection.socket, connection);
  }

  private release(connection: Connection): void {
    if (!this.byActivity.delete(connection.socket)) return;
    const left = (this.perNetwork.get(connection.network) ?? 1) - 1;
    if (left > 0) this.perNetwork.set(connection.network, left);
    else this.perNetwork.delete(connection.network);
  }

  /** Closes the least recently active connection with nothing in flight; false when there is none. */
  private evictIdle(): boolean {
    for (const connection of this.byActivity.values()) {
      if (connection.inFlight > 0) continue;
      this.release(connection);
      connection.socket.destroy();
      this.report.counts.tcp_evicted_idle++;
      return true;
    }
    return false;
  }

  private refuse(socket: Socket, event: 'tcp_not_allowed' | 'tcp_client_limit' | 'tcp_full'): null {
    this.report.counts[event]++;
    // a reset, not a FIN: no TIME_WAIT left on this side for each refused client
    socket.resetAndDestroy();
    return null;
  }
}

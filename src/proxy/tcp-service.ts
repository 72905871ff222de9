// One TCP service of `divert proxy`: each client connection is relayed to the address the
// table gives for that client now (both addresses rewritten: the target sees the proxy),
// bytes passed through as they come with backpressure both ways, half-close and reset
// passed on. When a change takes a connection's target out of the answer, the service's
// onChange decides: keep it, drain it (closed after drainSeconds), close it at once, or
// move it: once the client speaks again after the target has answered, with no byte
// waiting either way, its next bytes go to a new connection to the target the table gives
// now (the client's own connection untouched). That is safe only for protocols in which a
// client sends its next request after the whole reply and no state lives in the server's
// connection (HTTP/1.1 without pipelining, many line protocols); README says when.

import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type ConnectionOptions, type Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import { formatHostPort, isWildcard, type HostPort } from '../net/host-port.js';
import { connectTimeoutOf, idleTimeoutOf, type ProxyService } from './config.js';
import { formatAddress, type Connection, type ConnectionTable } from './connections.js';
import { dial, type Dialled } from './dial.js';
import { proxyHeader } from './proxy-protocol.js';
import type { TableView } from './table-view.js';
import { followChange, targetsFor } from './targets.js';
import { listenContext, MIN_TLS_VERSION, targetTlsOptions } from './tls.js';

/** A client that has not finished its TLS handshake by then is dropped. */
const HANDSHAKE_MS = 10_000;

interface Relay {
  record: Connection;
  client: Socket;
  upstream: Socket | null;
  /** The target's address (without port), what the answer is checked against. */
  address: string | null;
  drain: NodeJS.Timeout | null;
  /** onChange move: its target left the answer; it moves at the next quiet moment. */
  moving: boolean;
  /** The last bytes relayed came from the target (it answered the client's last bytes). */
  lastFromTarget: boolean;
  /** Ending: the side the relay has ended that still has bytes queued for its peer; they go first. */
  flushing: Socket | null;
}

/** A side the relay has sent its FIN (end()) with bytes still queued behind it: a peer that reads slowly has them to take. */
function flushing(side: Socket | null): side is Socket {
  return side !== null && !side.destroyed && side.writableEnded && !side.writableFinished && side.writableLength > 0;
}

/** A reset is passed on as a reset; any other failure of one side closes the other. */
function passOn(err: NodeJS.ErrnoException, other: Socket): void {
  if (err.code === 'ECONNRESET') other.resetAndDestroy();
  else other.destroy();
}

export class TcpService {
  private readonly servers: Server[] = [];
  private readonly relays = new Set<Relay>();
  /** tls: the certificate clients get; null: plain TCP. */
  private secure: { cert: Buffer; key: Buffer } | null;
  /** targetTls: how the target is spoken to; null: plain TCP. */
  private readonly targetTls: ConnectionOptions | null;

  /** Throws a BAD_CONFIG DivertError when tls or targetTls name files that do not load. */
  constructor(
    private readonly service: ProxyService,
    private readonly view: TableView,
    private readonly table: ConnectionTable,
    private readonly log: Logger,
  ) {
    this.secure = listenContext(service);
    this.targetTls = targetTlsOptions(service);
  }

  /** `where.text`: the address clients reach this listener on, once it listens on one address
   * (null for a wildcard one, where each connection's own local address is asked for). */
  private server(at: HostPort, where: { text: string | null }): Server {
    const options = { allowHalfOpen: true, pauseOnConnect: true, noDelay: true };
    if (!this.secure) return createServer(options, (socket) => this.accept(socket, at, where.text));
    const server = createTlsServer(
      { ...options, ...this.secure, minVersion: MIN_TLS_VERSION, handshakeTimeout: HANDSHAKE_MS },
      (socket) => {
        // held until the target is connected, as a plain connection is
        socket.pause();
        this.accept(socket, at, where.text);
      },
    );
    server.on('tlsClientError', (err) =>
      this.log.debug({ service: this.service.name, error: err.message }, 'TLS handshake with a client failed'),
    );
    return server;
  }

  /**
   * SIGHUP: the tls certificate and key are read again and given to new handshakes (open
   * connections keep theirs). A pair that does not load or match is refused with one line
   * and the one in use stays. Nothing to do without tls.
   */
  reloadTls(): void {
    if (!this.secure) return;
    try {
      const fresh = listenContext(this.service)!;
      for (const server of this.servers) (server as TlsServer).setSecureContext({ ...fresh, minVersion: MIN_TLS_VERSION });
      this.secure = fresh;
      this.log.info({ service: this.service.name, cert: this.service.tls?.cert }, `service "${this.service.name}": certificate reloaded`);
    } catch (err) {
      this.log.error({ service: this.service.name }, `${(err as Error).message}: not reloaded, the certificate in use stays`);
    }
  }

  /** Listens on every address of the service; rejects with the OS's error (err.code) naming the address. */
  async listen(): Promise<HostPort[]> {
    const bound: HostPort[] = [];
    for (const at of this.service.listen) {
      const where = { text: null as string | null };
      const server = this.server(at, where);
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
      if (address && typeof address === 'object') {
        bound.push({ host: address.address, port: address.port });
        if (!isWildcard(address.address)) where.text = formatAddress(address.address, address.port);
      }
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
    for (const relay of this.relays) {
      const holds = followChange(this.service, this.view, relay, () => this.end(relay, false));
      // move: at the next quiet moment (fromClient); back in the answer: it stays
      relay.moving = !holds && this.service.onChange === 'move';
    }
  }

  /** `listenText`: the listener's own address, when it has one (null: a wildcard listener). */
  private accept(client: Socket, at: HostPort, listenText: string | null): void {
    const clientAddress = client.remoteAddress;
    const clientPort = client.remotePort;
    if (clientAddress === undefined || clientPort === undefined) {
      client.destroy();
      return;
    }
    // where the client connected to: the listener's own address, or (a system call) the one a wildcard listener was reached on
    const listen =
      listenText ??
      (client.localAddress !== undefined && client.localPort !== undefined
        ? formatAddress(client.localAddress, client.localPort)
        : formatHostPort(at));
    const record = this.table.add(this.service.name, 'tcp', clientAddress, clientPort, listen);
    if (!record) {
      client.resetAndDestroy();
      return;
    }
    const relay: Relay = {
      record,
      client,
      upstream: null,
      address: null,
      drain: null,
      moving: false,
      lastFromTarget: false,
      flushing: null,
    };
    this.relays.add(relay);
    client.on('error', () => {});
    client.once('close', () => this.end(relay, false));
    void this.connect(relay, targetsFor(this.service, this.view, clientAddress));
  }

  /** Connects to the first address that answers; the client is reset if none does within the connect timeout. */
  private async connect(relay: Relay, addresses: readonly string[]): Promise<void> {
    const { port } = this.service.target;
    const dialled = await dial(addresses, port, connectTimeoutOf(this.service), this.table, () => relay.client.destroyed, this.targetTls);
    if (!dialled) {
      if (addresses.length === 0) this.log.debug({ service: this.service.name, client: relay.record.client }, 'no target known: reset');
      if (!relay.client.destroyed) relay.client.resetAndDestroy();
      this.end(relay, false);
      return;
    }
    this.table.attach(relay.record, formatAddress(dialled.address, port), dialled.source, dialled.ms);
    this.announce(relay, dialled);
    const { client } = relay;
    client.on('data', (chunk: Buffer) => this.fromClient(relay, chunk));
    // the client's FIN is passed on as one (half-close): the target may still answer
    client.on('end', () => relay.upstream?.end());
    client.on('error', (err: NodeJS.ErrnoException) => {
      if (relay.upstream) passOn(err, relay.upstream);
    });
    this.idleTimer(relay, client);
    this.attach(relay, dialled);
    client.resume();
  }

  /** `dialled` becomes the relay's target side: its bytes go to the client, with backpressure. */
  private attach(relay: Relay, dialled: Dialled): void {
    const { client, record } = relay;
    const upstream = dialled.socket;
    relay.upstream = upstream;
    relay.address = dialled.address;
    const current = () => relay.upstream === upstream;
    const deliver = (chunk: Buffer): boolean => {
      this.table.bytes(record, 0, chunk.length);
      relay.lastFromTarget = true;
      const ok = client.write(chunk);
      // a write not finished at once holds the buffer: the next read gets a fresh one
      if (dialled.reader && client.writableLength > 0) dialled.reader.retained = true;
      if (!ok) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
      return ok;
    };
    if (dialled.reader) dialled.reader.sink = deliver;
    else upstream.on('data', deliver);
    upstream.on('end', () => {
      if (current()) client.end();
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (current()) passOn(err, client);
    });
    upstream.once('close', () => {
      if (current()) this.end(relay, false);
    });
    this.idleTimer(relay, upstream);
  }

  private fromClient(relay: Relay, chunk: Buffer): void {
    const upstream = relay.upstream!;
    this.table.bytes(relay.record, chunk.length, 0);
    // move: the client speaks again after the target answered, with nothing unsent either way
    if (relay.moving && relay.lastFromTarget && upstream.writableLength === 0 && relay.client.writableLength === 0) {
      void this.move(relay, chunk);
      return;
    }
    relay.lastFromTarget = false;
    if (!upstream.write(chunk)) {
      relay.client.pause();
      upstream.once('drain', () => relay.client.resume());
    }
  }

  /** onChange move: the client's next bytes go to a new connection to the target the table gives now; the old one is ended. */
  private async move(relay: Relay, chunk: Buffer): Promise<void> {
    const { client } = relay;
    client.pause();
    const { port } = this.service.target;
    const addresses = targetsFor(this.service, this.view, client.remoteAddress ?? '');
    const dialled = await dial(addresses, port, connectTimeoutOf(this.service), this.table, () => client.destroyed, this.targetTls);
    if (!dialled) {
      // nowhere to go: the connection ends as close would end it
      this.end(relay, false);
      return;
    }
    const old = relay.upstream!;
    this.table.attach(relay.record, formatAddress(dialled.address, port), dialled.source, dialled.ms);
    relay.moving = false;
    relay.lastFromTarget = false;
    this.attach(relay, dialled);
    this.announce(relay, dialled);
    // the old target gets a FIN; one that does not close its side soon is closed for it
    old.on('error', () => {});
    old.end();
    old.setTimeout(5000, () => old.destroy());
    this.log.debug({ service: this.service.name, client: relay.record.client, to: relay.record.target }, 'connection moved');
    dialled.socket.write(chunk);
    client.resume();
  }

  /** proxyProtocol: the target learns the client's address and port before its first byte. */
  private announce(relay: Relay, dialled: Dialled): void {
    const { client } = relay;
    if (!this.service.proxyProtocol) return;
    dialled.socket.write(
      proxyHeader(
        { address: client.remoteAddress ?? '0.0.0.0', port: client.remotePort ?? 0 },
        { address: client.localAddress ?? '0.0.0.0', port: client.localPort ?? 0 },
      ),
    );
  }

  private idleTimer(relay: Relay, side: Socket): void {
    const idle = idleTimeoutOf(this.service);
    // a side is quiet while the other is busy: then the timer waits for the rest of the idle time
    const check = () => {
      const quiet = Date.now() - relay.record.lastActivity;
      if (quiet >= idle) this.end(relay, false);
      else side.setTimeout(idle - quiet, check);
    };
    side.setTimeout(idle, check);
  }

  /**
   * Both sides closed (reset when `reset`), the drain timer stopped, the record gone. Not
   * reset, a side already ended with bytes still queued for its peer (the target wrote its
   * last bytes and closed while the client reads slowly) is let finish first: closing it then
   * would drop them. A peer that takes nothing for the idle timeout is closed without them.
   */
  private end(relay: Relay, reset: boolean): void {
    if (!this.relays.has(relay)) return;
    const rest = reset ? null : flushing(relay.client) ? relay.client : flushing(relay.upstream) ? relay.upstream : null;
    if (rest) {
      if (relay.flushing === rest) return;
      relay.flushing = rest;
      rest.removeAllListeners('timeout');
      rest.setTimeout(idleTimeoutOf(this.service), () => rest.destroy());
      rest.once('finish', () => this.end(relay, false));
      return;
    }
    this.relays.delete(relay);
    if (relay.drain) clearTimeout(relay.drain);
    for (const side of [relay.client, relay.upstream]) {
      if (!side || side.destroyed) continue;
      if (reset) side.resetAndDestroy();
      else side.destroy();
    }
    this.table.remove(relay.record);
  }
}

// DNS over HTTPS on HTTP/1.1 (a client that offers no ALPN, or http/1.1): node:http's
// parser and responses on a connection whose TLS handshake is done, handed in with
// emit('connection'). HTTP/1.1 has no frames whose pace could be timed, and node's own
// header timeout only runs on a server that listens itself, so a connection here has a
// deadline of its own: a whole request (head and body) must come within the idle timeout
// of the connection opening or of its last response, unless a query of it is being
// answered; else it is closed. A client that dribbles its headers a byte at a time holds
// the connection no longer than one that sends nothing.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { DohExchange, refusalHeaders, replyHeaders, type DnsInspection, type DohPeer } from './doh-exchange.js';
import type { Refusal } from './doh-request.js';
import { MAX_HEADER_BYTES } from './h2-session.js';
import type { Handler } from './handler.js';
import type { TcpServing } from './tcp-listener.js';

interface H1Peer extends DohPeer {
  /** Closes the connection unless a request comes whole, or a query is being answered (finish() moves it on). */
  readonly deadline: NodeJS.Timeout;
}

function ignore(): void {}

export class DohH1 extends DohExchange<ServerResponse, H1Peer> {
  private readonly http: Server;
  private readonly peers = new WeakMap<object, H1Peer>();

  constructor(
    handler: Handler,
    serving: TcpServing,
    dns: DnsInspection,
    private readonly idleMs: number,
  ) {
    super(handler, serving, dns);
    // requireHostHeader: a DoH client needs none (HTTP/2's :authority has no HTTP/1.1 counterpart here)
    this.http = createServer({ maxHeaderSize: MAX_HEADER_BYTES, requireHostHeader: false, keepAliveTimeout: idleMs }, (req, res) =>
      this.onRequest(req, res),
    );
  }

  /** Serves the HTTP/1.1 connection on `socket`. */
  serve(socket: TLSSocket, peer: DohPeer): void {
    const deadline = setTimeout(() => {
      if (h1.answering > 0) deadline.refresh();
      else socket.destroy();
    }, this.idleMs);
    deadline.unref();
    const h1: H1Peer = { ...peer, deadline };
    socket.once('close', () => clearTimeout(deadline));
    this.peers.set(socket, h1);
    this.http.emit('connection', socket);
  }

  protected override finish(peer: H1Peer): void {
    super.finish(peer);
    peer.deadline.refresh();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    req.on('error', ignore);
    res.on('error', ignore);
    const peer = this.peers.get(req.socket);
    if (!peer) {
      req.socket.destroy();
      return;
    }
    this.request(peer, res, req.method, req.url, req.headers['content-type'], req.headers['content-length'], req);
  }

  /** writeHead() throws once headers went out: never called then. */
  protected open(res: ServerResponse): boolean {
    return !res.writableEnded && !res.destroyed && !res.headersSent;
  }

  protected sendReply(res: ServerResponse, reply: Buffer, ttl: number | undefined): void {
    res.writeHead(200, replyHeaders(reply.length, ttl));
    res.end(reply);
  }

  protected sendRefusal(res: ServerResponse, refusal: Refusal, close: boolean): void {
    res.writeHead(refusal.status, close ? { ...refusalHeaders(refusal), connection: 'close' } : refusalHeaders(refusal));
    res.end(`${refusal.message}\n`);
  }
}

// DNS over HTTPS on HTTP/2, on a connection whose TLS handshake chose h2: h2-session.ts
// reads the frames and hands on each request's head; the reply goes out as one HEADERS
// and one DATA frame in a single write. node:http2 served this before, and its per-request
// objects (a Duplex stream, a header object, a few nextTicks: about 15 % of a worker, and
// much of the garbage) cost more than the DNS work of a query: dnsdist answered DoH at up
// to twice divert's rate on the same machine (README, Performance). HTTP/2's own limits
// bound what one connection may hold: streams at once, header list size, bytes queued.

import type { TLSSocket } from 'node:tls';
import { DohExchange, refusalHeaders, replyHeaders, type DohPeer } from './doh-exchange.js';
import type { Refusal } from './doh-request.js';
import { H2Session, type H2Stream } from './h2-session.js';

export class DohH2 extends DohExchange<H2Stream> {
  /** Serves the HTTP/2 connection on `socket` until it closes or has been idle for `idleMs`. */
  serve(socket: TLSSocket, peer: DohPeer, idleMs: number): void {
    new H2Session(
      socket,
      (stream, head) => this.request(peer, stream, head.method, head.path, head.contentType, head.contentLength, stream),
      this.fault,
    );
    // on(), not setTimeout's callback, which node adds with once(): a session found busy at
    // its first idle moment must still be closed at a later one
    socket.setTimeout(idleMs);
    socket.on('timeout', () => {
      if (peer.connection.inFlight === 0) socket.destroy();
    });
  }

  protected open(stream: H2Stream): boolean {
    return stream.open;
  }

  protected sendReply(stream: H2Stream, reply: Buffer, ttl: number | undefined): void {
    stream.session.respond(stream, 200, replyHeaders(reply.length, ttl), reply);
  }

  protected sendRefusal(stream: H2Stream, refusal: Refusal): void {
    const headers = Object.entries(refusalHeaders(refusal)).flat();
    stream.session.respond(stream, refusal.status, headers, Buffer.from(`${refusal.message}\n`));
  }
}

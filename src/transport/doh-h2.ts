// DNS over HTTPS on HTTP/2: node:http2's core API on a connection whose TLS handshake
// (ALPN h2) is done — a session made on the socket, a 'stream' event per request with its
// headers, and stream.respond() + end() for the reply. No request and response objects
// are built per query (the compatibility API's took about a fifth of the CPU), and the
// client's address is read once per connection. HTTP/2's own limits bound what one
// connection may hold: streams at once, header list size, session memory.

import { performServerHandshake, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { DohExchange, refusalHeaders, replyHeaders, type DohPeer } from './doh-exchange.js';
import type { Refusal } from './doh-request.js';

/** HTTP/2 streams one connection may have open at once. */
const MAX_STREAMS = 100;
/** The request's headers, all together (a DoH request needs a few hundred bytes). */
export const MAX_HEADER_BYTES = 16 * 1024;

const SESSION_OPTIONS = {
  settings: { maxConcurrentStreams: MAX_STREAMS, maxHeaderListSize: MAX_HEADER_BYTES, enablePush: false },
  maxHeaderListPairs: 64,
  maxSessionMemory: 4,
  maxSessionRejectedStreams: 100,
  maxSessionInvalidFrames: 100,
};

const STATUS_OK: readonly string[] = [':status', '200'];

/** A stream's error (a reset, a session gone) ends only that stream. */
function ignore(): void {}

export class DohH2 extends DohExchange<ServerHttp2Stream> {
  /** Serves the HTTP/2 connection on `socket` until it closes or has been idle for `idleMs`. */
  serve(socket: TLSSocket, peer: DohPeer, idleMs: number): void {
    const session = performServerHandshake(socket, SESSION_OPTIONS);
    session.on('error', () => session.destroy());
    session.setTimeout(idleMs, () => {
      if (peer.connection.inFlight === 0) session.destroy();
    });
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      stream.on('error', ignore);
      this.request(peer, stream, headers[':method'], headers[':path'], headers['content-type'], headers['content-length'], stream);
    });
  }

  /** respond() throws on a stream closed or reset, or already answered: never called then. */
  protected open(stream: ServerHttp2Stream): boolean {
    return !stream.destroyed && !stream.closed && !stream.headersSent;
  }

  protected sendReply(stream: ServerHttp2Stream, reply: Buffer, ttl: number | undefined): void {
    stream.respond(replyHeaders(reply.length, ttl, STATUS_OK));
    stream.end(reply);
  }

  protected sendRefusal(stream: ServerHttp2Stream, refusal: Refusal): void {
    stream.respond({ ':status': refusal.status, ...refusalHeaders(refusal) });
    stream.end(`${refusal.message}\n`);
  }
}

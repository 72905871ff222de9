// DNS over HTTPS (RFC 8484) at /dns-query: GET with ?dns= (base64url) and POST with an
// application/dns-message body, over HTTP/2 and HTTP/1.1 (ALPN h2, http/1.1). Its
// connections are accepted and admitted by the stream server as TCP ones are (the same
// caps per client network and in all), then handed to one node:http2 server per
// process. HTTP/2's own limits bound what one connection may hold: streams at once,
// header list size, session memory; a body is read up to one DNS message (64 KiB) and
// refused beyond. Whatever a peer sends ends in an HTTP status, never in a fault.

import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Handler, Reply } from './handler.js';
import { PeerSlots } from './peer-slots.js';
import { DNS_MESSAGE, MAX_DNS_MESSAGE, readHead, TOO_LARGE, type Refusal } from './doh-request.js';
import type { ConnectionService, TcpServing } from './tcp-listener.js';
import { HANDSHAKE_TIMEOUT_MS, TLS_SERVER_SETTINGS, type TlsPem } from './tls-settings.js';

/** HTTP/2 streams one connection may have open at once. */
const MAX_STREAMS = 100;
/** The request's headers, all together (a DoH request needs a few hundred bytes). */
const MAX_HEADER_BYTES = 16 * 1024;

/** What the DoH listener asks of the DNS side, which it does not itself read. */
export interface DnsInspection {
  /** Whether the message is a query divert can read (else: 400). */
  isQuery(msg: Buffer): boolean;
  /** The least TTL of a reply's records, for Cache-Control; undefined when it has none. */
  minTtl(reply: Buffer): number | undefined;
}

type Request = Http2ServerRequest | IncomingMessage;
type Response = Http2ServerResponse | ServerResponse;

/** One response, on HTTP/2 and HTTP/1.1 alike (the two compatibility APIs share these members). */
function respond(res: Response, status: number, headers: Record<string, string>, body: Buffer | string): void {
  const out = res as ServerResponse;
  out.statusCode = status;
  for (const [name, value] of Object.entries(headers)) out.setHeader(name, value);
  out.end(body);
}

export class DohService {
  private readonly http: Http2SecureServer;
  private readonly peers = new PeerSlots();
  private readonly handshakeMs: number;

  constructor(
    pem: TlsPem,
    private readonly handler: Handler,
    private readonly serving: TcpServing,
    private readonly dns: DnsInspection,
  ) {
    const idleMs = serving.limits.idleTimeoutMs;
    this.handshakeMs = Math.min(HANDSHAKE_TIMEOUT_MS, idleMs);
    this.http = createSecureServer({
      ...TLS_SERVER_SETTINGS,
      cert: pem.cert,
      key: pem.key,
      allowHTTP1: true,
      handshakeTimeout: this.handshakeMs,
      settings: { maxConcurrentStreams: MAX_STREAMS, maxHeaderListSize: MAX_HEADER_BYTES, enablePush: false },
      maxHeaderListPairs: 64,
      maxSessionMemory: 4,
      maxSessionRejectedStreams: 100,
      maxSessionInvalidFrames: 100,
      unknownProtocolTimeout: idleMs,
    });
    this.peers.serveOn(this.http, (stream, slot) => {
      // HTTP/1.1: the socket's own idle timeout (set after node's, which would be none)
      if (stream.alpnProtocol !== 'h2') {
        stream.setTimeout(idleMs);
        stream.on('timeout', () => {
          if (slot.connection.inFlight === 0) stream.destroy();
        });
      }
    });
    this.http.on('session', (session) => {
      session.on('error', () => session.destroy());
      session.setTimeout(idleMs, () => {
        const slot = session.socket ? this.peers.of(session.socket) : undefined;
        if (!slot || slot.connection.inFlight === 0) session.destroy();
      });
    });
    this.http.on('request', (req: Request, res: Response) => this.request(req, res));
  }

  /** For the stream server: each admitted connection goes through the handshake here. */
  readonly service: ConnectionService = (socket, connection, slots) => {
    this.peers.add(socket, connection, slots, this.handshakeMs);
    this.http.emit('connection', socket);
  };

  /** New connections from now on get this certificate; open ones keep theirs. */
  setCertificate(pem: TlsPem): void {
    this.http.setSecureContext({ ...TLS_SERVER_SETTINGS, cert: pem.cert, key: pem.key });
  }

  private request(req: Request, res: Response): void {
    req.on('error', () => {});
    res.on('error', () => {});
    const slot = this.peers.of(req.socket);
    if (!slot || !this.serving.accepting()) {
      this.refuse(res, { status: 503, message: 'service unavailable' });
      return;
    }
    const { connection, slots } = slot;
    slots.touch(connection);
    connection.inFlight++;
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      connection.inFlight--;
      slots.touch(connection);
    };
    res.once('close', settle);
    res.once('finish', settle);

    const head = readHead(req.method, req.url, req.headers['content-type']);
    if (head === 'body') this.readBody(req, res);
    else if ('status' in head) this.refuse(res, head);
    else this.answer(head.query, req, res);
  }

  private readBody(req: Request, res: Response): void {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_DNS_MESSAGE) {
      this.refuse(res, TOO_LARGE, true);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > MAX_DNS_MESSAGE) {
        refused = true;
        this.refuse(res, TOO_LARGE, true);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!refused) this.answer(Buffer.concat(chunks, size), req, res);
    });
  }

  private answer(query: Buffer, req: Request, res: Response): void {
    if (!this.dns.isQuery(query)) {
      this.refuse(res, { status: 400, message: 'bad request: not a DNS query' });
      return;
    }
    const client = { transport: 'doh' as const, address: req.socket.remoteAddress ?? '' };
    const send = (reply: Reply) => {
      if (res.writableEnded || res.destroyed) return;
      // a query readable but unanswered: the rate limit dropped it
      if (!reply) {
        this.refuse(res, { status: 429, message: 'too many requests' });
        return;
      }
      const ttl = this.dns.minTtl(reply);
      respond(
        res,
        200,
        {
          'content-type': DNS_MESSAGE,
          'content-length': String(reply.length),
          // how long an HTTP cache may keep it (RFC 8484 5.1)
          ...(ttl === undefined ? {} : { 'cache-control': `max-age=${ttl}` }),
        },
        reply,
      );
    };
    const failed = (err: unknown) => {
      this.serving.report.fault('handler_error', err);
      this.refuse(res, { status: 500, message: 'internal error' });
    };
    let result: Reply | Promise<Reply>;
    try {
      result = this.handler(query, client);
    } catch (err) {
      failed(err);
      return;
    }
    if (result instanceof Promise) result.then(send, failed);
    else send(result);
  }

  /** `close`: over HTTP/1.1, the connection closes after the reply (the rest of a too-large body is not read). */
  private refuse(res: Response, refusal: Refusal, close = false): void {
    if (res.writableEnded || res.destroyed) return;
    const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' };
    if (refusal.status === 405) headers.allow = 'GET, POST';
    if (close && !('stream' in res)) headers.connection = 'close';
    respond(res, refusal.status, headers, `${refusal.message}\n`);
  }
}

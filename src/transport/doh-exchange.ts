// What DNS over HTTPS does the same over HTTP/2 and HTTP/1.1 once a request's head is
// read: refuse what asks for no DNS query (doh-request.ts says which status), read a
// POST's body up to one DNS message, hand the query to the handler and send its reply
// (200, Cache-Control from the least TTL), or the status that says why not (429 the rate
// limit dropped it, 500 a fault). Each HTTP version says how a response goes out on its
// own objects: doh-h2.ts on h2-session.ts's streams, doh-h1.ts on node:http's responses.
// Every request ends in exactly one finish(), so a connection's count of requests in
// flight (which keeps it from being closed as idle) cannot drift.

import type { Connection, Slots } from './connection-slots.js';
import { LATER, type Client, type Handler, type Reply, type ReplySink } from './handler.js';
import { DNS_MESSAGE, MAX_DNS_MESSAGE, readHead, TOO_LARGE, type Refusal } from './doh-request.js';
import type { TcpServing } from './tcp-listener.js';

/** What the DoH listener asks of the DNS side, which it does not itself read. */
export interface DnsInspection {
  /** Whether the message is a query divert can read (else: 400). */
  isQuery(msg: Buffer): boolean;
  /** The least TTL of a reply's records, for Cache-Control; undefined when it has none. */
  minTtl(reply: Buffer): number | undefined;
}

/** One DoH connection, made once when its handshake is done: its slot, and the client every query on it comes from. */
export interface DohPeer {
  readonly connection: Connection;
  readonly slots: Slots;
  readonly client: Client;
  /** Queries handed to the handler and not yet answered. */
  answering: number;
}

const NOT_A_QUERY: Refusal = { status: 400, message: 'bad request: not a DNS query' };
const RATE_LIMITED: Refusal = { status: 429, message: 'too many requests' };
const FAULT: Refusal = { status: 500, message: 'internal error' };
const UNAVAILABLE: Refusal = { status: 503, message: 'service unavailable' };

const NONE: readonly string[] = [];

/** A reply's headers as one flat list of names and values, after `first` (HTTP/2's
 * `:status`); both HTTP versions take such a list as it is, where an object is walked and
 * copied per reply. `ttl` says how long an HTTP cache may keep it (RFC 8484 5.1). */
export function replyHeaders(length: number, ttl: number | undefined, first: readonly string[] = NONE): string[] {
  const headers = [...first, 'content-type', DNS_MESSAGE, 'content-length', String(length)];
  if (ttl !== undefined) headers.push('cache-control', `max-age=${ttl}`);
  return headers;
}

/** A refusal's headers (HTTP/2 adds `:status`, HTTP/1.1 gives the status on its own). */
export function refusalHeaders(refusal: Refusal): Record<string, string> {
  return { 'content-type': 'text/plain; charset=utf-8', ...(refusal.status === 405 ? { allow: 'GET, POST' } : {}) };
}

/** A request's body as it is read: node:http's request, or h2-session.ts's stream. */
export interface RequestBody {
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end' | 'close', listener: () => void): unknown;
}

/** A request whose reply is on its way. */
interface Waiting<T, P> {
  peer: P;
  target: T;
}

/** `T`: what a response goes out on (an HTTP/2 stream, an HTTP/1.1 response). */
export abstract class DohExchange<T, P extends DohPeer = DohPeer> {
  /** Where a reply that comes later goes, with the request it answers. */
  private readonly sink: ReplySink<Waiting<T, P>> = {
    later: (reply, waiting) => this.send(waiting.peer, waiting.target, reply),
    failed: (err, waiting) => this.fail(waiting.peer, waiting.target, err),
  };

  /** Reports a fault of this server's own (never what a peer sent). */
  protected readonly fault = (err: unknown): void => this.serving.report.fault('handler_error', err);

  constructor(
    private readonly handler: Handler,
    private readonly serving: TcpServing,
    private readonly dns: DnsInspection,
  ) {}

  /** Whether a response can still go out on `target` (its client has not reset or gone). */
  protected abstract open(target: T): boolean;
  protected abstract sendReply(target: T, reply: Buffer, ttl: number | undefined): void;
  /** `close`: over HTTP/1.1 the connection closes after it (the rest of a body too large is not read). */
  protected abstract sendRefusal(target: T, refusal: Refusal, close: boolean): void;

  /** One request from its head; a POST's body is read from `body`. */
  protected request(
    peer: P,
    target: T,
    method: string | undefined,
    path: string | undefined,
    contentType: string | undefined,
    contentLength: string | undefined,
    body: RequestBody,
  ): void {
    if (!this.serving.accepting()) {
      if (this.open(target)) this.sendRefusal(target, UNAVAILABLE, false);
      return;
    }
    peer.connection.inFlight++;
    peer.slots.touch(peer.connection);
    const head = readHead(method, path, contentType);
    if (head === 'body') this.readBody(peer, target, contentLength, body);
    else if ('status' in head) this.refuse(peer, target, head);
    else this.answer(peer, target, head.query);
  }

  /** The request is done with (answered, refused, or its client gone): called once for each. */
  protected finish(peer: P): void {
    peer.connection.inFlight--;
    peer.slots.touch(peer.connection);
  }

  private readBody(peer: P, target: T, declared: string | undefined, body: RequestBody): void {
    if (Number(declared ?? 0) > MAX_DNS_MESSAGE) {
      this.refuse(peer, target, TOO_LARGE, true);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    let ended = false;
    body.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > MAX_DNS_MESSAGE) {
        over = true;
        this.refuse(peer, target, TOO_LARGE, true);
        return;
      }
      chunks.push(chunk);
    });
    body.on('end', () => {
      ended = true;
      if (!over) this.answer(peer, target, Buffer.concat(chunks, size));
    });
    // a client gone before the end of its body
    body.on('close', () => {
      if (!ended && !over) this.finish(peer);
    });
  }

  private answer(peer: P, target: T, query: Buffer): void {
    if (!this.dns.isQuery(query)) {
      this.refuse(peer, target, NOT_A_QUERY);
      return;
    }
    peer.answering++;
    const into = this.handler.into;
    let result: Reply | Promise<Reply> | typeof LATER;
    try {
      // with into, a forwarded query's reply comes to the sink: no promise on its way
      result = into ? into(query, peer.client, this.sink, { peer, target }) : this.handler(query, peer.client);
    } catch (err) {
      this.fail(peer, target, err);
      return;
    }
    if (result === LATER) return;
    if (result instanceof Promise)
      result.then(
        (reply) => this.send(peer, target, reply),
        (err: unknown) => this.fail(peer, target, err),
      );
    else this.send(peer, target, result);
  }

  private send(peer: P, target: T, reply: Reply): void {
    peer.answering--;
    // a query readable but unanswered: the rate limit dropped it
    if (reply === null) this.refuse(peer, target, RATE_LIMITED);
    else {
      if (this.open(target)) this.sendReply(target, reply, this.dns.minTtl(reply));
      this.finish(peer);
    }
  }

  private fail(peer: P, target: T, err: unknown): void {
    peer.answering--;
    this.fault(err);
    this.refuse(peer, target, FAULT);
  }

  private refuse(peer: P, target: T, refusal: Refusal, close = false): void {
    if (this.open(target)) this.sendRefusal(target, refusal, close);
    this.finish(peer);
  }
}

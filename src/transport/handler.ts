// What a listener hands each message to, and who sent it. Transports know nothing of
// DNS beyond framing: a handler takes the bytes and the client, and returns the reply's
// bytes, nothing (no reply), or a promise of either. A listener that moves many replies
// at once (the batched UDP one) may instead hand the message to the handler's `into`,
// which returns the reply at once or LATER, and gives a later reply to the listener's
// sink with the tag the listener passed in: no promise per query on the busiest path.

/** How the query came: DNS over UDP, TCP, TLS (RFC 7858) or HTTPS (RFC 8484). */
export type Transport = 'udp' | 'tcp' | 'dot' | 'doh';

export interface Client {
  transport: Transport;
  address: string;
}

export type Reply = Buffer | null;

/** The reply will go to the sink. */
export const LATER: unique symbol = Symbol('later');

/** Where a listener takes replies that were not ready at once: one object for all its queries. */
export interface ReplySink<T> {
  /** `tag`: what the listener passed in with the query (where the reply goes). */
  later(reply: Reply, tag: T): void;
  /** Serving the query failed (a bug): it gets no reply. */
  failed(err: unknown, tag: T): void;
}

export type IntoHandler = <T>(msg: Buffer, client: Client, sink: ReplySink<T>, tag: T) => Reply | typeof LATER;

export type Handler = ((msg: Buffer, client: Client) => Reply | Promise<Reply>) & { readonly into?: IntoHandler };

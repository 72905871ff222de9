// What a listener hands each message to, and who sent it. Transports know nothing of
// DNS beyond framing: a handler takes the bytes and the client, and returns the reply's
// bytes, nothing (no reply), or a promise of either.

/** How the query came: DNS over UDP, TCP, TLS (RFC 7858) or HTTPS (RFC 8484). */
export type Transport = 'udp' | 'tcp' | 'dot' | 'doh';

export interface Client {
  transport: Transport;
  address: string;
}

export type Reply = Buffer | null;

export type Handler = (msg: Buffer, client: Client) => Reply | Promise<Reply>;

// What a listener hands each message to, and who sent it. Transports know nothing of
// DNS beyond framing: a handler takes the bytes and the client, and returns the reply's
// bytes, nothing (no reply), or a promise of either.

export type Transport = 'udp' | 'tcp';

export interface Client {
  transport: Transport;
  address: string;
}

export type Reply = Buffer | null;

export type Handler = (msg: Buffer, client: Client) => Reply | Promise<Reply>;

// DNS over HTTPS (RFC 8484) at /dns-query: GET with ?dns= (base64url) and POST with an
// application/dns-message body, over HTTP/2 and HTTP/1.1 (ALPN h2, http/1.1). Its
// connections are accepted and admitted by the stream server as TCP ones are (the same
// caps per client network and in all), then handed to one node:tls server per process
// for the handshake; the protocol the client chose decides who serves the connection
// after it: doh-h2.ts or doh-h1.ts, with what they share in doh-exchange.ts. Whatever a
// peer sends ends in an HTTP status, never in a fault.

import { createServer, type Server as TlsServer } from 'node:tls';
import type { Handler } from './handler.js';
import { PeerSlots } from './peer-slots.js';
import type { DnsInspection, DohPeer } from './doh-exchange.js';
import { DohH1 } from './doh-h1.js';
import { DohH2 } from './doh-h2.js';
import type { ConnectionService, TcpServing } from './tcp-listener.js';
import { HANDSHAKE_TIMEOUT_MS, TLS_SERVER_SETTINGS, type TlsPem } from './tls-settings.js';

export type { DnsInspection } from './doh-exchange.js';

export class DohService {
  private readonly tls: TlsServer;
  private readonly peers = new PeerSlots();
  private readonly handshakeMs: number;

  constructor(pem: TlsPem, handler: Handler, serving: TcpServing, dns: DnsInspection) {
    const idleMs = serving.limits.idleTimeoutMs;
    this.handshakeMs = Math.min(HANDSHAKE_TIMEOUT_MS, idleMs);
    const h2 = new DohH2(handler, serving, dns);
    const h1 = new DohH1(handler, serving, dns, idleMs);
    this.tls = createServer({
      ...TLS_SERVER_SETTINGS,
      cert: pem.cert,
      key: pem.key,
      ALPNProtocols: ['h2', 'http/1.1'],
      handshakeTimeout: this.handshakeMs,
    });
    this.peers.serveOn(this.tls, (stream, slot) => {
      const peer: DohPeer = {
        connection: slot.connection,
        slots: slot.slots,
        client: { transport: 'doh', address: stream.remoteAddress ?? '' },
        answering: 0,
      };
      // no ALPN at all (node's https client): HTTP/1.1
      if (stream.alpnProtocol === 'h2') h2.serve(stream, peer, idleMs);
      else h1.serve(stream, peer);
    });
  }

  /** For the stream server: each admitted connection goes through the handshake here. */
  readonly service: ConnectionService = (socket, connection, slots) => {
    // the stream server accepts half-open (DNS over TCP and DoT answer what was asked before
    // a client's FIN), and the TLS socket made over this one inherits that; HTTP takes a FIN
    // as the end (a client that wants its answers sends GOAWAY, or waits); a session kept
    // half-closed stayed open until idle after dig +https exited (node:http2's did), and
    // for good when the client vanished with streams in flight, holding a slot of the
    // client's cap. Replies still on their way find their streams gone and are dropped.
    socket.allowHalfOpen = false;
    this.peers.add(socket, connection, slots, this.handshakeMs);
    this.tls.emit('connection', socket);
  };

  /** New connections from now on get this certificate; open ones keep theirs. */
  setCertificate(pem: TlsPem): void {
    this.tls.setSecureContext({ ...TLS_SERVER_SETTINGS, cert: pem.cert, key: pem.key });
  }
}

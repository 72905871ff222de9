// DNS over TLS (RFC 7858): DNS over TCP's framing and connection handling (tcp-listener.ts)
// on a TLS stream. Connections are accepted and admitted by the stream server as plain
// TCP ones are, before the handshake, and then handed to one node:tls server per
// process, which does the handshake and gives back the TLS socket (matched to its slot by
// the peer's address and port). Its certificate can be replaced while it serves.

import { createServer, type Server as TlsServer } from 'node:tls';
import type { Handler } from './handler.js';
import { PeerSlots } from './peer-slots.js';
import { serveFramed, type ConnectionService, type TcpServing } from './tcp-listener.js';
import { HANDSHAKE_TIMEOUT_MS, TLS_SERVER_SETTINGS, type TlsPem } from './tls-settings.js';

export class DotService {
  private readonly tls: TlsServer;
  private readonly peers = new PeerSlots();
  private readonly handshakeMs: number;

  constructor(pem: TlsPem, handler: Handler, serving: TcpServing) {
    this.handshakeMs = Math.min(HANDSHAKE_TIMEOUT_MS, serving.limits.idleTimeoutMs);
    this.tls = createServer({
      ...TLS_SERVER_SETTINGS,
      cert: pem.cert,
      key: pem.key,
      ALPNProtocols: ['dot'],
      handshakeTimeout: this.handshakeMs,
    });
    this.peers.serveOn(this.tls, (stream, slot) => serveFramed(stream, 'dot', slot.connection, slot.slots, handler, serving));
  }

  /** For the stream server: each admitted connection goes through the handshake here. */
  readonly service: ConnectionService = (socket, connection, slots) => {
    this.peers.add(socket, connection, slots, this.handshakeMs);
    this.tls.emit('connection', socket);
  };

  /** New connections from now on get this certificate; open ones keep theirs. */
  setCertificate(pem: TlsPem): void {
    this.tls.setSecureContext({ ...TLS_SERVER_SETTINGS, cert: pem.cert, key: pem.key });
  }
}

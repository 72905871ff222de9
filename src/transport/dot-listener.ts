// DNS over TLS (RFC 7858): DNS over TCP's framing and connection handling (tcp-listener.ts)
// on a TLS stream. Connections are accepted and admitted by the stream server as plain
// TCP ones are, before the handshake, and then handed to one node:tls server per
// process, which does the handshake and gives back the TLS socket (matched to its slot by
// the peer's address and port). Its certificate can be replaced while it serves.

import type { Socket } from 'node:net';
import { createServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Handler } from './handler.js';
import type { Connection, Slots } from './connection-slots.js';
import { serveFramed, type ConnectionService, type TcpServing } from './tcp-listener.js';
import { HANDSHAKE_TIMEOUT_MS, TLS_SERVER_SETTINGS, type TlsPem } from './tls-settings.js';

/** A connection's own key while it is open: its peer's address and port. */
export function peerKey(socket: { remoteAddress?: string; remotePort?: number }): string {
  return `${socket.remoteAddress ?? ''}|${socket.remotePort ?? 0}`;
}

export interface PeerSlot {
  connection: Connection;
  slots: Slots;
  /** Its TLS handshake is done. */
  secure: boolean;
}

/** The admitted connections waiting for their TLS socket, or served over it, by peer. */
export class PeerSlots {
  private readonly byPeer = new Map<string, PeerSlot>();

  add(socket: Socket, connection: Connection, slots: Slots, handshakeMs: number): void {
    const key = peerKey(socket);
    const entry: PeerSlot = { connection, slots, secure: false };
    this.byPeer.set(key, entry);
    socket.once('close', () => {
      if (this.byPeer.get(key) === entry) this.byPeer.delete(key);
    });
    // node's handshakeTimeout does not reach a connection handed in with emit('connection'):
    // one that has not finished its handshake in time is closed here
    const timer = setTimeout(() => {
      if (!entry.secure) socket.destroy();
    }, handshakeMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  of(socket: { remoteAddress?: string; remotePort?: number }): PeerSlot | undefined {
    return this.byPeer.get(peerKey(socket));
  }

  /** Calls `serve` with each TLS socket `tls` hands over after its handshake, and the slot of the connection under it. */
  serveOn(tls: TlsServer, serve: (stream: TLSSocket, slot: PeerSlot) => void): void {
    tls.on('secureConnection', (stream: TLSSocket) => {
      stream.on('error', () => stream.destroy());
      const slot = this.of(stream);
      if (!slot) {
        stream.destroy();
        return;
      }
      slot.secure = true;
      serve(stream, slot);
    });
    // a failed handshake (a plain-text client, no common protocol): node has closed the socket; nothing more to do
    tls.on('tlsClientError', () => {});
  }
}

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

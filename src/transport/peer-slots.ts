// The TLS listeners' link between an admitted connection and the TLS socket node:tls
// gives back for it after the handshake (DoT, DoH): the stream server admits the accepted
// socket and hands it in with emit('connection'), and the TLS server's socket is found
// again by the peer's address and port, unique while the connection is open. Until its
// handshake is done, a connection has a deadline of its own.

import type { Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Connection, Slots } from './connection-slots.js';

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

// How a stream connection to an upstream is opened: plain TCP (RFC 7766), or TLS (DNS
// over TLS, RFC 7858) for a tls:// upstream. tcp-exchange.ts pipelines queries on
// either alike; it only needs to know when a connection can carry answers — once TCP
// connects, or once the TLS handshake is done and the certificate was found good.
//
// A DoT upstream's certificate must chain to --upstream-ca's certificates, or to the
// system's and Node's own, and carry the upstream's name (tls://HOST#NAME) among its DNS
// names, or HOST among its IP addresses when no name is given; TLS 1.2 at least. A
// connection that fails either, or has not finished its handshake within 5 s, is closed,
// its queries fail over to the next upstream, and the reason is reported (serving.ts
// throttles the log lines).

import { connect, type Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, createSecureContext, getCACertificates, type SecureContext } from 'node:tls';
import type { UpstreamSpec, UpstreamTls } from '../net/upstream-spec.js';

export interface StreamDial {
  /** A new connection to the upstream; writes before it is ready are queued by the socket. */
  open(): Socket;
  /** The event after which the connection can carry queries and answers. */
  readonly ready: 'connect' | 'secureConnect';
}

/** Why a connection to an upstream failed, for the log. */
export type ReportConnectionError = (err: Error) => void;

/** Plain TCP: nothing is reported (a refused connect is an upstream failure like a timeout). */
export function tcpDial(upstream: UpstreamSpec): StreamDial {
  return { open: () => connect({ host: upstream.host, port: upstream.port, noDelay: true }), ready: 'connect' };
}

let systemCas: string[] | undefined;

/** Node's bundled CAs, NODE_EXTRA_CA_CERTS and the system's store, read once. */
function defaultCas(): string[] {
  systemCas ??= [...new Set([...getCACertificates('default'), ...getCACertificates('system')])];
  return systemCas;
}

/** A DoT upstream's TLS handshake must be done within this, from the connect call, or the
 * connection fails (its queries go on to the next upstream at once). */
export const UPSTREAM_HANDSHAKE_TIMEOUT_MS = 5000;

/** DNS over TLS to `upstream` (which has `tls`). One secure context per upstream; the
 * last TLS session is offered again, so a new connection can resume instead of a full handshake. */
export function tlsDial(
  upstream: UpstreamSpec & { tls: UpstreamTls },
  report: ReportConnectionError,
  handshakeMs = UPSTREAM_HANDSHAKE_TIMEOUT_MS,
): StreamDial {
  const { name, ca } = upstream.tls;
  const secureContext: SecureContext = createSecureContext({ ca: ca ?? defaultCas(), minVersion: 'TLSv1.2' });
  const identity = name ?? upstream.host;
  let session: Buffer | undefined;
  const open = (): Socket => {
    const socket = tlsConnect({
      host: upstream.host,
      port: upstream.port,
      // SNI carries a name only (RFC 6066 3): none for an upstream known by its address
      ...(name === undefined ? {} : { servername: name }),
      secureContext,
      // the same checks the default does, made explicit: the name, else the address
      checkServerIdentity: (_host, cert) => checkServerIdentity(identity, cert),
      ALPNProtocols: ['dot'],
      session,
    });
    socket.setNoDelay(true);
    // an upstream that accepts the connection and then says nothing must not hold its queries until they time out
    const handshake = setTimeout(() => socket.destroy(new Error(`TLS handshake not done within ${handshakeMs} ms`)), handshakeMs);
    handshake.unref();
    socket.once('secureConnect', () => clearTimeout(handshake));
    socket.once('close', () => clearTimeout(handshake));
    socket.on('session', (ticket: Buffer) => (session = ticket));
    socket.on('error', (err: Error) => {
      // a session the upstream no longer takes is not offered again
      if (!socket.authorized) session = undefined;
      report(err);
    });
    return socket;
  };
  return { open, ready: 'secureConnect' };
}

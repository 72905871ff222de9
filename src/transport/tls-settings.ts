// How divert's DNS listeners speak TLS (DoT, DoH): TLS 1.2 and 1.3 only, and for 1.2 only
// forward-secret (ECDHE) key exchange with AEAD ciphers, as RFC 7525 (BCP 195) and
// Mozilla's "intermediate" profile recommend; the certificate and key are PEM text, so
// that a cluster's primary can hand the very bytes it checked to every worker.

import { createSecureContext, type SecureContext, type TlsOptions } from 'node:tls';

/** A certificate (chain, leaf first) and its private key, as PEM text. */
export interface TlsPem {
  cert: string;
  key: string;
}

const CIPHERS = [
  // TLS 1.3 (all AEAD, all forward-secret)
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  // TLS 1.2: ECDHE with AEAD only
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export const TLS_SERVER_SETTINGS = {
  minVersion: 'TLSv1.2',
  ciphers: CIPHERS,
  honorCipherOrder: true,
} as const satisfies TlsOptions;

/** A TLS handshake must be done within this, or the connection is closed. */
export const HANDSHAKE_TIMEOUT_MS = 5000;

/** The context of `pem` with divert's settings; throws (OpenSSL's error) when the pair does not load. */
export function secureContextOf(pem: TlsPem): SecureContext {
  return createSecureContext({ ...TLS_SERVER_SETTINGS, cert: pem.cert, key: pem.key });
}

// The certificate and key of the DoT and DoH listeners (--tls-cert, --tls-key): read from
// their PEM files, and checked before they are used, at start, on a reload (SIGHUP) and
// by `divert validate`: the certificate reads, the key reads, the key is the
// certificate's, and the pair loads as a TLS context with divert's settings. A problem
// is one line naming the file and what is wrong with it.

import { readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { DivertError } from '../errors.js';
import type { ServeConfig } from '../config/options.js';
import { secureContextOf, type TlsPem } from '../transport/tls-settings.js';

export interface TlsCredentials {
  pem: TlsPem;
  /** The leaf certificate (the first of the chain). */
  certificate: X509Certificate;
  notBefore: Date;
  notAfter: Date;
}

/** Whether the configuration has a DoT or DoH listener (and so needs a certificate). */
export function hasTlsListeners(config: Pick<ServeConfig, 'listenTls' | 'listenHttps'>): boolean {
  return config.listenTls.length > 0 || config.listenHttps.length > 0;
}

function bad(message: string, cause?: unknown): DivertError {
  return new DivertError('BAD_CONFIG', message, { cause });
}

function readPem(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw bad(`--${flag} "${path}": cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`, err);
  }
}

/** The first line of OpenSSL's reason, which is all an operator needs. */
const reason = (err: unknown) => (err instanceof Error ? err.message.split('\n')[0] : String(err));

/** The configured pair, checked; null without DoT and DoH listeners. Throws BAD_CONFIG on any problem. */
export function loadTlsCredentials(config: Pick<ServeConfig, 'listenTls' | 'listenHttps' | 'tlsCert' | 'tlsKey'>): TlsCredentials | null {
  if (!hasTlsListeners(config)) return null;
  if (config.tlsCert === undefined || config.tlsKey === undefined) {
    throw bad('--listen-tls and --listen-https need --tls-cert FILE and --tls-key FILE (the PEM certificate chain and its private key)');
  }
  const pem = { cert: readPem(config.tlsCert, 'tls-cert'), key: readPem(config.tlsKey, 'tls-key') };
  return checkPair(pem, config.tlsCert, config.tlsKey);
}

/** `pem` checked as a pair; the paths name the files in a refusal. */
export function checkPair(pem: TlsPem, certPath: string, keyPath: string): TlsCredentials {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem.cert);
  } catch (err) {
    throw bad(`--tls-cert "${certPath}": not a PEM certificate (${reason(err)})`, err);
  }
  let key;
  try {
    key = createPrivateKey(pem.key);
  } catch (err) {
    throw bad(`--tls-key "${keyPath}": not a PEM private key (${reason(err)})`, err);
  }
  if (!certificate.checkPrivateKey(key)) {
    throw bad(`--tls-key "${keyPath}" is not the key of --tls-cert "${certPath}" (${certificate.subject.replace(/\n/g, ', ')})`);
  }
  try {
    secureContextOf(pem);
  } catch (err) {
    throw bad(`--tls-cert "${certPath}" and --tls-key "${keyPath}" do not load as a TLS pair (${reason(err)})`, err);
  }
  return { pem, certificate, notBefore: new Date(certificate.validFrom), notAfter: new Date(certificate.validTo) };
}

/** What is wrong with the certificate's dates at `now`, if anything: "expired on …", "is not valid before …". */
export function validityProblem(credentials: TlsCredentials, now = Date.now()): string | undefined {
  if (credentials.notAfter.getTime() <= now) return `expired on ${credentials.notAfter.toISOString()}`;
  if (credentials.notBefore.getTime() > now) return `is not valid before ${credentials.notBefore.toISOString()}`;
  return undefined;
}

/** The certificate as /healthz and the logs show it. */
export function describeCertificate(credentials: TlsCredentials): Record<string, string> {
  const { certificate } = credentials;
  return {
    subject: certificate.subject.replace(/\n/g, ', '),
    subjectAltName: certificate.subjectAltName ?? '',
    serial: certificate.serialNumber,
    fingerprint256: certificate.fingerprint256,
    notAfter: credentials.notAfter.toISOString(),
  };
}

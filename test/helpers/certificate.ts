// Self-signed certificates for tests, made by openssl: a P-256 key and a certificate valid
// for two days, which is its own CA (the client trusts it with `ca`).

import { join } from 'node:path';
import { execChildSync } from './children.js';

/** openssl's arguments for a self-signed P-256 certificate of `cn` with `san` (subjectAltName), valid for 2 days, into `cert` and `key`. */
export function selfSignedArgs(cert: string, key: string, cn: string, san: string): string[] {
  const args = '-x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2'.split(' ');
  return ['req', ...args, '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`, '-keyout', key, '-out', cert];
}

/** `${dir}/${label}-cert.pem` and `-key.pem`, subject CN=label, with these subjectAltNames ("DNS:a.test,IP:127.0.0.1"). */
export function selfSignedCertificate(dir: string, label: string, sans: string): { cert: string; key: string } {
  const cert = join(dir, `${label}-cert.pem`);
  const key = join(dir, `${label}-key.pem`);
  execChildSync('openssl', selfSignedArgs(cert, key, label, sans), { stdio: 'ignore' });
  return { cert, key };
}

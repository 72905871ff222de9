// Self-signed certificates for tests, made by openssl: a P-256 key and a certificate valid
// for two days, which is its own CA (the client trusts it with `ca`).

import { join } from 'node:path';
import { execChildSync } from './children.js';

/** `${dir}/${label}-cert.pem` and `-key.pem`, subject CN=label, with these subjectAltNames ("DNS:a.test,IP:127.0.0.1"). */
export function selfSignedCertificate(dir: string, label: string, sans: string): { cert: string; key: string } {
  const cert = join(dir, `${label}-cert.pem`);
  const key = join(dir, `${label}-key.pem`);
  execChildSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${label}`,
      '-addext',
      `subjectAltName=${sans}`,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

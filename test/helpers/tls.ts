// Certificates made with openssl for the DoT and DoH tests, and the clients that speak
// to divert over them with node's own tls, http2 and https: raw bytes in, raw bytes out,
// so replies can be compared byte for byte.

import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { connect as http2Connect, type SecureClientSessionOptions } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { lengthPrefix, TcpFramer } from '../../src/transport/tcp-framer.js';
import { execChild } from './children.js';
import { selfSignedArgs } from './certificate.js';

export interface CertFiles {
  cert: string;
  key: string;
  /** The certificate's SHA-256 fingerprint, as getPeerCertificate() gives it. */
  fingerprint256: string;
}

/** A folder for certificates, removed by the returned clean-up. */
export function certFolder(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'divert-tls-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function fingerprintOf(certPath: string): string {
  return new X509Certificate(readFileSync(certPath)).fingerprint256;
}

/** A self-signed P-256 certificate for divert.test and 127.0.0.1, valid for 2 days, as `name`.pem and `name`.key. */
export async function makeCert(dir: string, name: string, cn = 'divert.test'): Promise<CertFiles> {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  await execChild('openssl', selfSignedArgs(cert, key, cn, 'DNS:divert.test,IP:127.0.0.1'));
  return { cert, key, fingerprint256: fingerprintOf(cert) };
}

/** A self-signed certificate that expired in 2020 (openssl req cannot date one in the past; openssl ca can). */
export async function makeExpiredCert(dir: string, name: string): Promise<CertFiles> {
  const ca = mkdtempSync(join(dir, 'ca-'));
  writeFileSync(join(ca, 'index.txt'), '');
  writeFileSync(join(ca, 'serial'), '01\n');
  writeFileSync(
    join(ca, 'ca.cnf'),
    `[ca]\ndefault_ca = d\n[d]\ndatabase = ${ca}/index.txt\nnew_certs_dir = ${ca}\nserial = ${ca}/serial\n` +
      'default_md = sha256\npolicy = p\nunique_subject = no\n[p]\ncommonName = supplied\n',
  );
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  const csr = join(ca, 'req.csr');
  await execChild('openssl', [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    '/CN=expired.test',
    '-keyout',
    key,
    '-out',
    csr,
  ]);
  await execChild('openssl', [
    'ca',
    '-batch',
    '-notext',
    '-config',
    join(ca, 'ca.cnf'),
    '-selfsign',
    '-keyfile',
    key,
    '-in',
    csr,
    '-out',
    cert,
    '-startdate',
    '20200101000000Z',
    '-enddate',
    '20200102000000Z',
  ]);
  return { cert, key, fingerprint256: fingerprintOf(cert) };
}

const TIMEOUT_MS = 5000;

/** A DoT connection kept open: length-prefixed queries out, replies in (in any order). */
export interface DotSession {
  socket: TLSSocket;
  /** The certificate the server presented. */
  fingerprint256: string;
  /** Sends `query` and resolves with the reply whose ID is the query's. */
  ask(query: Buffer, timeoutMs?: number): Promise<Buffer>;
  close(): void;
}

export async function dotSession(port: number, localAddress?: string): Promise<DotSession> {
  // localAddress is net.connect's, which tls.connect passes on (its types leave it out)
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    localAddress,
    rejectUnauthorized: false,
    ALPNProtocols: ['dot'],
  } as ConnectionOptions);
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('close', () => reject(new Error('DoT connection closed before its handshake')));
    setTimeout(() => reject(new Error('DoT handshake not within 5 s')), TIMEOUT_MS).unref();
  });
  const framer = new TcpFramer();
  const waiting = new Map<number, { resolve: (reply: Buffer) => void; reject: (err: Error) => void }>();
  socket.on('data', (chunk: Buffer) => {
    for (const reply of framer.push(chunk)) waiting.get(reply.readUInt16BE(0))?.resolve(reply);
  });
  socket.on('close', () => {
    for (const [id, w] of waiting) w.reject(new Error(`DoT connection closed before the reply to query ${id}`));
  });
  return {
    socket,
    fingerprint256: socket.getPeerCertificate().fingerprint256,
    ask: (query, timeoutMs = TIMEOUT_MS) =>
      new Promise((resolve, reject) => {
        const id = query.readUInt16BE(0);
        const done = () => {
          clearTimeout(timer);
          waiting.delete(id);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no DoT reply to query ${id} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, {
          resolve: (reply) => {
            done();
            resolve(reply);
          },
          reject: (err) => {
            done();
            reject(err);
          },
        });
        if (socket.destroyed) waiting.get(id)!.reject(new Error('DoT connection closed'));
        else socket.write(Buffer.concat([lengthPrefix(query), query]));
      }),
    close: () => socket.destroy(),
  };
}

/** One query over a new DoT connection; also says which certificate the server presented. */
export async function dotAsk(port: number, query: Buffer, localAddress?: string): Promise<{ reply: Buffer; fingerprint256: string }> {
  const session = await dotSession(port, localAddress);
  try {
    return { reply: await session.ask(query), fingerprint256: session.fingerprint256 };
  } finally {
    session.close();
  }
}

export interface HttpReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface DohRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: Buffer;
  localAddress?: string;
}

/** A request over HTTP/2 (node:http2), on a connection of its own. */
export function h2Request(port: number, request: DohRequest): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`https://127.0.0.1:${port}`, {
      rejectUnauthorized: false,
      localAddress: request.localAddress,
    } as SecureClientSessionOptions);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error('no HTTP/2 reply within 5 s'));
    }, TIMEOUT_MS);
    session.on('error', (err: Error) => {
      clearTimeout(timer);
      reject(err);
    });
    const stream = session.request({ ':method': request.method ?? 'GET', ':path': request.path ?? '/dns-query', ...request.headers });
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    let headers: Record<string, string | string[] | undefined> = {};
    stream.on('response', (h) => (headers = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('close', () => {
      clearTimeout(timer);
      session.close();
      if (headers[':status'] === undefined) reject(new Error('HTTP/2 stream closed without a response'));
      else resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks) });
    });
    stream.end(request.body);
  });
}

/** A request over HTTP/1.1 (node:https, which offers no ALPN: the server falls back to HTTP/1.1), on a connection of its own. */
export function h1Request(port: number, request: DohRequest): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        method: request.method ?? 'GET',
        path: request.path ?? '/dns-query',
        headers: request.headers,
        rejectUnauthorized: false,
        localAddress: request.localAddress,
        agent: false,
        timeout: TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.httpVersion !== '1.1') reject(new Error(`answered over HTTP/${res.httpVersion}, not 1.1`));
          else resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no HTTP/1.1 reply within 5 s')));
    req.on('error', reject);
    req.end(request.body);
  });
}

/** The DoH GET path of `query` (base64url, no padding). */
export function getPath(query: Buffer): string {
  return `/dns-query?dns=${query.toString('base64url')}`;
}

/** A DoH POST of `query`. */
export function post(query: Buffer, localAddress?: string): DohRequest {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/dns-message', accept: 'application/dns-message' },
    body: query,
    localAddress,
  };
}

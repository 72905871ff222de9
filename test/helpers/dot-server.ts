// A real DNS-over-TLS server for tests: NSD serving a small zone on a loopback port, and
// dnsdist in front of it terminating TLS (addTLSLocal) on another, both on ports the OS
// picked, with a certificate made here by openssl (DNS:dot.test, IP:127.0.0.1), which is
// its own CA. dnsdist can be stopped and started again on the same port. Nothing listens
// or sends beyond loopback (dnsdist's security poll is turned off). Works as root and as
// a normal user: neither server changes user, chroots or binds a low port.

import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { lengthPrefix, TcpFramer } from '../../src/transport/tcp-framer.js';
import { selfSignedCertificate } from './certificate.js';
import { execChild, spawnChild } from './children.js';
import { query, tcpAsk } from './divert.js';
import { freePort } from './redis.js';

export const DOT_NAME = 'dot.test';

/** The zone NSD serves; test queries ask for names in it. */
export const DOT_ZONE = `$ORIGIN dot.test.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
ns1 IN A 127.0.0.1
www IN A 192.0.2.1
www IN AAAA 2001:db8::1
txt IN TXT "over tls"
${Array.from({ length: 40 }, (_, i) => `big IN TXT "record ${i} ${'x'.repeat(60)}"`).join('\n')}
`;

export interface DotServer {
  /** NSD's port (UDP and TCP): the direct answers to compare with. */
  nsdPort: number;
  /** dnsdist's DoT port. */
  dotPort: number;
  /** PEM file of the certificate dnsdist presents, which is its own CA. */
  caFile: string;
  /** A PEM file of another CA, which signed nothing dnsdist presents. */
  otherCaFile: string;
  /** Stops dnsdist (SIGTERM, waited for); NSD keeps running. */
  stopDot(): Promise<void>;
  /** Starts dnsdist again on the same port, and waits until it answers over TLS. */
  startDot(): Promise<void>;
  /** Stops both and removes the folder. */
  stop(): Promise<void>;
}

const TOOLS = ['nsd', 'dnsdist', 'openssl'];

/** The tools the DoT server needs that are not installed (empty when all are). */
export async function missingDotTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of TOOLS) {
    const found = await execChild('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`]).then(
      () => true,
      () => false,
    );
    if (!found) missing.push(tool);
  }
  return missing;
}

const running = (child: ChildProcess | undefined) => child !== undefined && child.exitCode === null && child.signalCode === null;

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || !running(child)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(killer);
}

/** One DoT query to 127.0.0.1:port, trusting `ca`; the reply, or an error. */
export function dotAsk(port: number, ca: string, msg: Buffer, timeoutMs = 2000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: DOT_NAME });
    const framer = new TcpFramer();
    const timer = setTimeout(() => done(new Error(`no DoT reply within ${timeoutMs} ms`)), timeoutMs);
    const done = (result: Buffer | Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    socket.on('secureConnect', () => socket.write(Buffer.concat([lengthPrefix(msg), msg])));
    socket.on('data', (chunk: Buffer) => {
      const [reply] = framer.push(chunk);
      if (reply) done(reply);
    });
    socket.on('error', (err) => done(err));
  });
}

/** Polls `ready` until it resolves, for at most timeoutMs; throws the last error then. */
async function waitUntil(what: string, ready: () => Promise<unknown>, alive: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await ready();
      return;
    } catch (err) {
      if (!alive()) throw new Error(`${what} exited before it answered`, { cause: err });
      if (Date.now() > deadline) throw new Error(`${what} did not answer within ${timeoutMs} ms: ${String(err)}`, { cause: err });
      await sleep(50);
    }
  }
}

export async function startDotServer(): Promise<DotServer> {
  const dir = mkdtempSync(join(tmpdir(), 'divert-dot-'));
  let nsd: ChildProcess | undefined;
  let dnsdist: ChildProcess | undefined;
  let output = '';
  const collect = (child: ChildProcess) => {
    child.stdout?.on('data', (c) => (output += c));
    child.stderr?.on('data', (c) => (output += c));
    child.on('error', (err) => (output += String(err)));
  };
  try {
    const { cert, key } = selfSignedCertificate(dir, DOT_NAME, `DNS:${DOT_NAME},IP:127.0.0.1`);
    const other = selfSignedCertificate(dir, 'other-ca.test', 'DNS:other-ca.test');
    const ca = readFileSync(cert, 'utf8');
    const [nsdPort, dotPort, udpPort] = [await freePort(), await freePort(), await freePort()];
    writeFileSync(join(dir, 'dot.zone'), DOT_ZONE);
    writeFileSync(
      join(dir, 'nsd.conf'),
      `server:
  ip-address: 127.0.0.1@${nsdPort}
  port: ${nsdPort}
  zonesdir: "${dir}"
  database: ""
  username: ""
  chroot: ""
  pidfile: "${dir}/nsd.pid"
  xfrdfile: "${dir}/xfrd.state"
  zonelistfile: "${dir}/zone.list"
  server-count: 1
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: ${DOT_NAME}
  zonefile: dot.zone
`,
    );
    writeFileSync(
      join(dir, 'dnsdist.conf'),
      `setSecurityPollSuffix('')
setLocal('127.0.0.1:${udpPort}')
addTLSLocal('127.0.0.1:${dotPort}', '${cert}', '${key}')
newServer{address='127.0.0.1:${nsdPort}'}
`,
    );
    nsd = spawnChild('nsd', ['-d', '-c', join(dir, 'nsd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    collect(nsd);
    await waitUntil(
      'nsd',
      () => tcpAsk(nsdPort, query('www.dot.test'), 500),
      () => running(nsd),
    );
    const startDot = async () => {
      dnsdist = spawnChild('dnsdist', ['--supervised', '--disable-syslog', '-C', join(dir, 'dnsdist.conf')], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      collect(dnsdist);
      await waitUntil(
        'dnsdist',
        () => dotAsk(dotPort, ca, query('www.dot.test'), 500),
        () => running(dnsdist),
      );
    };
    await startDot();
    return {
      nsdPort,
      dotPort,
      caFile: cert,
      otherCaFile: other.cert,
      stopDot: () => stopChild(dnsdist),
      startDot,
      stop: async () => {
        await Promise.all([stopChild(dnsdist), stopChild(nsd)]);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all([stopChild(dnsdist), stopChild(nsd)]);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`DoT server did not start: ${String(err)}; output: ${output}`, { cause: err });
  }
}

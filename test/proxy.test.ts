// `divert proxy` end to end: a real divert serve, the proxy as a process, TCP and UDP echo
// mirrors on 127.0.0.2 and 127.0.0.3; every change goes through the admin API as an
// operator's or a monitor's would.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { selfSignedCertificate } from './helpers/certificate.js';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { connect, createServer, type Server } from 'node:net';
import { proxyHeader } from '../src/proxy/proxy-protocol.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServe, waitFor } from './monitor-fixtures.js';
import type { TestServer } from './helpers/divert.js';
import { runDivert } from './helpers/process.js';
import { tempFiles } from './helpers/temp-files.js';
import { workerOf } from '../src/proxy/workers.js';
import {
  lineClient,
  setAddresses,
  startProxy,
  startTcpMirrors,
  startUdpMirrors,
  udpSay,
  whoAnswers,
  type ProxyProcess,
  type TcpMirror,
  type UdpMirror,
} from './proxy-fixtures.js';

const NAME = 'www.shop.example';
const A = '127.0.0.2';
const B = '127.0.0.3';

const setName = (server: TestServer, addresses: string[]) => setAddresses(server, NAME, addresses);

interface Setup {
  server: TestServer;
  mirrors: (TcpMirror | UdpMirror)[];
  proxy: ProxyProcess;
}

async function setup(service: Record<string, unknown>, protocol: 'tcp' | 'udp' = 'tcp', initial = [A]): Promise<Setup> {
  const mirrors = protocol === 'tcp' ? await startTcpMirrors([A, B]) : await startUdpMirrors([A, B]);
  const server = await startServe();
  try {
    await setName(server, initial);
    const proxy = await startProxy(
      { services: [{ name: 'web', listen: '127.0.0.1:0', protocol, target: { name: NAME, port: mirrors[0].port }, ...service }] },
      server,
    );
    return { server, mirrors, proxy };
  } catch (err) {
    await server.close();
    for (const m of mirrors) await m.stop();
    throw err;
  }
}

async function teardown(s: Setup | undefined): Promise<void> {
  if (!s) return;
  await s.proxy.stop();
  await s.server.close();
  for (const m of s.mirrors) await m.stop();
}

describe('divert proxy: a name target', () => {
  test('new connections go where the name answers, and to the new address right after a change', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({});
      const port = s.proxy.port('web');
      assert.equal(await whoAnswers(port), A);
      await setName(s.server, [B]);
      // the change reaches the proxy over /v1/events: new connections move within moments
      const started = performance.now();
      await waitFor(async () => (await whoAnswers(port)) === B, 2000, 'a new connection reaching 127.0.0.3');
      assert.ok(performance.now() - started < 1000, `moved after ${(performance.now() - started).toFixed(0)} ms`);
    } finally {
      await teardown(s);
    }
  });

  test('the connection table shows both addresses of each side, bytes and connect time', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({});
      const port = s.proxy.port('web');
      const client = await lineClient(port);
      assert.equal(await client.say('hello'), `${A}:hello`);
      const [c] = await s.proxy.connections();
      assert.equal(c.service, 'web');
      assert.equal(c.protocol, 'tcp');
      assert.equal(c.client, `127.0.0.1:${client.socket.localPort}`);
      assert.equal(c.listen, `127.0.0.1:${port}`);
      assert.equal(c.target, `${A}:${s.mirrors[0].port}`);
      // the mirror sees the proxy's source address, and it is the one the table names
      const seen = [...(s.mirrors[0] as TcpMirror).sockets][0];
      assert.equal(c.source, `${seen.remoteAddress}:${seen.remotePort}`);
      assert.equal(c.bytesIn, 'hello\n'.length);
      assert.equal(c.bytesOut, `${A}:hello\n`.length);
      assert.ok(typeof c.connectMs === 'number' && c.connectMs >= 0);
      const stats = (await (await s.proxy.get('/v1/stats/targets')).json()) as {
        targets: Record<string, { connects: number; bytesIn: number }>;
      };
      assert.equal(stats.targets[`${A}:${s.mirrors[0].port}`].connects, 1);
      const metrics = await (await s.proxy.get('/metrics')).text();
      assert.match(metrics, new RegExp(`divert_proxy_target_connects_total\\{target="${A}:${s.mirrors[0].port}"\\} 1`));
      client.close();
      await waitFor(async () => (await s!.proxy.connections()).length === 0, 2000, 'the closed connection leaving the table');
      // the status command reads the same table
      const status = runDivert(['proxy', 'status', '--status', s.proxy.statusAt]);
      assert.equal(await status.exited(), 0, status.stderr());
      assert.match(status.stdout(), /SERVICE +PROTOCOL +LISTEN +TARGET/);
      assert.match(status.stdout(), new RegExp(`web +tcp +127\\.0\\.0\\.1:${port} +${NAME.replace(/\./g, '\\.')} port`));
    } finally {
      await teardown(s);
    }
  });

  test("a target that refuses: the entry's next address is tried before the client sees a reset", async () => {
    let s: Setup | undefined;
    try {
      // 127.0.0.9 has nothing on the mirrors' port: refused at once
      s = await setup({}, 'tcp', ['127.0.0.9', B]);
      assert.equal(await whoAnswers(s.proxy.port('web')), B);
      const stats = (await (await s.proxy.get('/v1/stats/targets')).json()) as { targets: Record<string, { connectFailures: number }> };
      assert.equal(stats.targets[`127.0.0.9:${s.mirrors[0].port}`].connectFailures, 1);
    } finally {
      await teardown(s);
    }
  });
});

/** `target` listening on A, and a proxy in front of it (service "bulk"; no divert serve: an address target). */
async function proxyInFrontOf(target: Server): Promise<ProxyProcess> {
  target.listen(0, A);
  await once(target, 'listening');
  const port = (target.address() as { port: number }).port;
  return startProxy(
    { services: [{ name: 'bulk', listen: '127.0.0.1:0', target: { address: A, port } }] },
    { adminUrl: 'http://127.0.0.1:9' },
  );
}

describe('divert proxy: bytes arrive whole and in order', () => {
  test('48 MB from the target to a client that stalls (reads go into reused buffers) and 48 MB the other way', async () => {
    // more than the kernel's socket buffers hold: while the client stalls, the proxy's writes to it queue
    const size = 48 << 20;
    const pattern = Buffer.alloc(size);
    for (let i = 0; i < size; i++) pattern[i] = (i * 7 + (i >> 9)) & 255;
    const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const uploads: Buffer[] = [];
    let uploaded = '';
    const target = createServer((socket) => {
      socket.on('data', (chunk: Buffer) => uploads.push(chunk));
      socket.on('end', () => (uploaded = digest(Buffer.concat(uploads))));
      // written in pieces, so that many reads happen while the client is paused
      for (let at = 0; at < size; at += 256 << 10) socket.write(pattern.subarray(at, at + (256 << 10)));
    });
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await proxyInFrontOf(target);
      const client = connect({ port: proxy.port('bulk'), host: '127.0.0.1' });
      await once(client, 'connect');
      const got: Buffer[] = [];
      let length = 0;
      let pauses = 0;
      const done = new Promise<void>((resolve, reject) => {
        // a relay that stops reading (the failure this test is for) shows as a stall, not a hang of the suite
        let stalled: NodeJS.Timeout | undefined;
        const watch = () => {
          clearTimeout(stalled);
          stalled = setTimeout(() => {
            void proxy!.connections().then(
              (table) =>
                reject(new Error(`the download stalled at ${length} of ${size} bytes for 20 s; proxy table: ${JSON.stringify(table)}`)),
              () => reject(new Error(`the download stalled at ${length} of ${size} bytes for 20 s`)),
            );
          }, 20_000);
        };
        watch();
        client.on('data', (chunk: Buffer) => {
          watch();
          got.push(chunk);
          length += chunk.length;
          // a slow reader: the proxy's writes to it queue up while the target keeps sending
          if (pauses < 3 && length > pauses * (8 << 20)) {
            pauses++;
            client.pause();
            setTimeout(() => client.resume(), 300);
          }
          if (length >= size) {
            clearTimeout(stalled);
            resolve();
          }
        });
      });
      client.end(pattern);
      await done;
      assert.equal(length, size);
      assert.equal(digest(Buffer.concat(got)), digest(pattern), 'the download arrived unchanged');
      await waitFor(() => uploaded !== '', 5000, 'the upload complete at the target');
      assert.equal(uploaded, digest(pattern), 'the upload arrived unchanged');
      client.destroy();
    } finally {
      await proxy?.stop();
      await new Promise<void>((resolve) => target.close(() => resolve()));
    }
  });

  test('a target that writes and closes at once, to a client that said all it had and reads slowly: every byte arrives', async () => {
    // both ways done on the target's side while the proxy may still hold bytes for the client:
    // the relay ends only once they are delivered. The drop this guards against (seen once in
    // CI) needs the proxy's last write to the client queued short of its high-water mark just
    // as the target closes; a slow reader and a late small tail give it its chance, but the
    // kernel's buffer sizes (autotuned) decide whether a run meets it: a few rounds in a hundred.
    // What it does catch every time: the tail and the target's FIN read together (the native
    // relay's short read after EPOLLRDHUP, taken as the last) must still pass the FIN on
    const size = 8 << 20;
    const pattern = Buffer.alloc(size);
    for (let i = 0; i < size; i++) pattern[i] = (i * 13 + (i >> 10)) & 255;
    const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    // the last piece comes once the rest is out, so that the proxy's last read is a small one
    const tail = 5000;
    // allowHalfOpen: the client's FIN (passed on at once) does not end the target's side
    const target = createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => {});
      socket.resume();
      socket.write(pattern.subarray(0, size - tail), () => setTimeout(() => socket.end(pattern.subarray(size - tail)), 50));
    });
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await proxyInFrontOf(target);
      for (let round = 0; round < 3; round++) {
        const client = connect({ port: proxy.port('bulk'), host: '127.0.0.1' });
        client.on('error', () => {});
        await once(client, 'connect');
        client.end();
        const got: Buffer[] = [];
        let length = 0;
        let ended = false;
        client.pause();
        // a slow reader to the end: a rest of 30 ms after each 512 KB
        const reading = new Promise<void>((resolve) => {
          let next = 512 << 10;
          client.on('data', (chunk: Buffer) => {
            got.push(chunk);
            length += chunk.length;
            if (length >= next) {
              next += 512 << 10;
              client.pause();
              setTimeout(() => client.resume(), 30);
            }
          });
          client.on('end', () => {
            ended = true;
            resolve();
          });
          client.on('close', () => resolve());
        });
        // the target is done and gone before the client reads a byte
        await sleep(300);
        client.resume();
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([reading, new Promise<void>((resolve) => (timer = setTimeout(resolve, 20_000)))]);
        clearTimeout(timer);
        assert.ok(ended, `round ${round}: the proxy's FIN reached the client (${length} of ${size} bytes, then no end)`);
        assert.equal(length, size, `round ${round}: every byte reached the client before the FIN (${length} of ${size})`);
        assert.equal(digest(Buffer.concat(got)), digest(pattern), `round ${round}: unchanged`);
        client.destroy();
      }
      await waitFor(async () => (await proxy!.connections()).length === 0, 5000, 'the finished connections leaving the table');
    } finally {
      await proxy?.stop();
      await new Promise<void>((resolve) => target.close(() => resolve()));
    }
  });
});

describe('divert proxy: connections that share the read buffer', () => {
  test('four downloads at once, in small pieces, to clients that stall in turn: each arrives unchanged', async () => {
    // every plain target connection of a process reads into one buffer: bytes a stalled
    // client has not taken yet must survive the other connections' reads
    const size = 8 << 20;
    const patterns = [0, 1, 2, 3].map((n) => {
      const b = Buffer.alloc(size);
      for (let i = 0; i < size; i++) b[i] = (i * (n * 2 + 3) + (i >> 11) + n * 61) & 255;
      return b;
    });
    const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    let accepted = 0;
    const target = createServer((socket) => {
      const pattern = patterns[accepted++ % patterns.length];
      socket.on('error', () => {});
      // small writes, so that the proxy reads small pieces from every connection at once
      let at = 0;
      const more = () => {
        while (at < size) {
          const ok = socket.write(pattern.subarray(at, at + 3000));
          at += 3000;
          if (!ok) return void socket.once('drain', more);
        }
        socket.end();
      };
      more();
    });
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await proxyInFrontOf(target);
      const download = async (n: number): Promise<string> => {
        const client = connect({ port: proxy!.port('bulk'), host: '127.0.0.1' });
        await once(client, 'connect');
        const got: Buffer[] = [];
        let length = 0;
        let pauses = 0;
        return new Promise<string>((resolve, reject) => {
          const stalled = setTimeout(() => reject(new Error(`download ${n} stalled at ${length} of ${size} bytes`)), 60_000);
          client.on('data', (chunk: Buffer) => {
            got.push(chunk);
            length += chunk.length;
            // each client stalls now and then, at its own moments, while the others read on
            if (length > (pauses + 1) * (1 << 20) + n * 200_000) {
              pauses++;
              client.pause();
              setTimeout(() => client.resume(), 50 + 40 * n);
            }
          });
          client.on('end', () => {
            clearTimeout(stalled);
            client.destroy();
            resolve(digest(Buffer.concat(got)));
          });
          client.on('error', reject);
        });
      };
      const digests = await Promise.all([0, 1, 2, 3].map((n) => download(n)));
      const expected = new Set(patterns.map(digest));
      for (const [n, d] of digests.entries()) assert.ok(expected.has(d), `download ${n} arrived changed`);
      assert.equal(new Set(digests).size, 4, 'each connection got its own bytes');
    } finally {
      await proxy?.stop();
      await new Promise<void>((resolve) => target.close(() => resolve()));
    }
  });
});

describe('divert proxy: an address target follows the diversions', () => {
  test('POST /v1/diversions moves new connections and closes open ones (onChange close); DELETE moves them back', async () => {
    const mirrors = await startTcpMirrors([A, B]);
    const server = await startServe();
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await startProxy(
        { services: [{ name: 'fixed', listen: '127.0.0.1:0', target: { address: A, port: mirrors[0].port }, onChange: 'close' }] },
        server,
      );
      const port = proxy.port('fixed');
      const open = await lineClient(port);
      assert.equal(await open.say('1'), `${A}:1`);
      const divert = async (method: string, path: string, body?: unknown) => {
        const res = await server.api(path, {
          method,
          headers: body === undefined ? {} : { 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        assert.ok(res.ok, `${method} ${path}: HTTP ${res.status} ${await res.text()}`);
      };
      // no entry answers 127.0.0.2: the diversion is still recorded, and the proxy follows it
      await divert('POST', '/v1/diversions', { from: A, to: B });
      // a connection made just before the change reaches the proxy is closed by it (onChange close): asked again
      const settled = (want: string) => async () => (await whoAnswers(port).catch(() => '')) === want;
      await waitFor(settled(B), 2000, 'new connections reaching 127.0.0.3');
      await waitFor(() => open.ended, 2000, 'the open connection to 127.0.0.2 closed');
      await divert('DELETE', `/v1/diversions/${A}`);
      await waitFor(settled(A), 2000, 'new connections back on 127.0.0.2');
    } finally {
      await proxy?.stop();
      await server.close();
      for (const m of mirrors) await m.stop();
    }
  });
});

describe('divert proxy: open connections on a change (onChange)', () => {
  test('keep: the open connection runs on to the old mirror', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({ onChange: 'keep' });
      const client = await lineClient(s.proxy.port('web'));
      assert.equal(await client.say('1'), `${A}:1`);
      await setName(s.server, [B]);
      await waitFor(async () => (await whoAnswers(s!.proxy.port('web'))) === B, 2000, 'the change reaching the proxy');
      assert.equal(await client.say('2'), `${A}:2`);
      client.close();
    } finally {
      await teardown(s);
    }
  });

  test('close: the open connection is closed at once', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({ onChange: 'close' });
      const client = await lineClient(s.proxy.port('web'));
      assert.equal(await client.say('1'), `${A}:1`);
      await setName(s.server, [B]);
      await waitFor(() => client.ended, 2000, 'the connection closed by the proxy');
      assert.equal(await whoAnswers(s.proxy.port('web')), B);
    } finally {
      await teardown(s);
    }
  });

  test('drain: the open connection works until drainSeconds have passed, then is closed', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({ onChange: 'drain', drainSeconds: 2 });
      const client = await lineClient(s.proxy.port('web'));
      assert.equal(await client.say('1'), `${A}:1`);
      await setName(s.server, [B]);
      const [c] = await waitFor(
        async () => {
          const list = await s!.proxy.connections();
          return list.length === 1 && list[0].drainEndsAt !== null ? list : undefined;
        },
        2000,
        'the connection marked draining',
      );
      assert.ok(c.drainEndsAt! - Date.now() > 1000, 'about two seconds to go');
      assert.equal(await client.say('2'), `${A}:2`, 'still served while it drains');
      await waitFor(() => client.ended, 4000, 'the drained connection closed');
    } finally {
      await teardown(s);
    }
  });

  test('move: the client gets every reply, and the new mirror serves what it sends after the change, on the same connection', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({ onChange: 'move' });
      const client = await lineClient(s.proxy.port('web'));
      assert.equal(await client.say('1'), `${A}:1`);
      assert.equal(await client.say('2'), `${A}:2`);
      await setName(s.server, [B]);
      await waitFor(async () => (await whoAnswers(s!.proxy.port('web'))) === B, 2000, 'the change reaching the proxy');
      assert.equal(await client.say('3'), `${B}:3`);
      assert.equal(await client.say('4'), `${B}:4`);
      assert.equal(client.ended, false);
      const [c] = (await s.proxy.connections()).filter((x) => x.client === `127.0.0.1:${client.socket.localPort}`);
      assert.equal(c.target, `${B}:${s.mirrors[0].port}`);
      assert.equal(c.bytesIn, '1\n2\n3\n4\n'.length);
      // the old mirror's connection is closed once the client has moved
      await waitFor(() => (s!.mirrors[0] as TcpMirror).sockets.size === 0, 2000, 'the connection to 127.0.0.2 closed');
      client.close();
    } finally {
      await teardown(s);
    }
  });
});

describe('divert proxy: UDP flows', () => {
  test('a flow to a port nobody listens on: the ICMP refusal counts as a failed connect of that target (what passive health reads)', async () => {
    const client = createSocket('udp4');
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');
    let proxy: ProxyProcess | undefined;
    try {
      // port 9 (discard): nothing listens on it here, so the kernel answers with ICMP port unreachable
      proxy = await startProxy(
        { services: [{ name: 'dead', listen: '127.0.0.1:0', protocol: 'udp', target: { address: A, port: 9 } }] },
        { adminUrl: 'http://127.0.0.1:9' },
      );
      const port = proxy.port('dead');
      const failures = async () => {
        const stats = (await (await proxy!.get('/v1/stats/targets')).json()) as { targets: Record<string, { connectFailures: number }> };
        return stats.targets[`${A}:9`]?.connectFailures ?? 0;
      };
      assert.equal(await failures(), 0);
      for (let i = 0; i < 3; i++) {
        client.send(`probe ${i}`, port, '127.0.0.1');
        await sleep(100);
      }
      await waitFor(async () => (await failures()) >= 2, 3000, 'refusals counted for 127.0.0.2:9');
      const flows = (await proxy.connections()).filter((c) => c.service === 'dead');
      assert.equal(flows.length, 1, 'one flow for the client');
      assert.equal(flows[0].target, `${A}:9`);
    } finally {
      await proxy?.stop();
      client.close();
    }
  });

  test('a flow sends its next datagram to the new target, and new flows go there at once', async () => {
    let s: Setup | undefined;
    const socket = createSocket('udp4');
    try {
      s = await setup({}, 'udp');
      const port = s.proxy.port('web');
      socket.bind(0, '127.0.0.1');
      await once(socket, 'listening');
      assert.equal(await udpSay(socket, port, 'one'), `${A}:one`);
      const [flow] = await s.proxy.connections();
      assert.equal(flow.protocol, 'udp');
      assert.equal(flow.client, `127.0.0.1:${socket.address().port}`);
      await setName(s.server, [B]);
      await waitFor(async () => (await udpSay(socket, port, 'two')).startsWith(`${B}:`), 2000, 'the flow moved to 127.0.0.3');
      const [moved] = await s.proxy.connections();
      assert.equal(moved.id, flow.id, 'the same flow');
      assert.equal(moved.target, `${B}:${s.mirrors[0].port}`);
    } finally {
      socket.close();
      await teardown(s);
    }
  });
});

describe('divert proxy: PROXY protocol v2 towards the target (proxyProtocol: true)', () => {
  test("the target reads the client's address and port, and the address it connected to, before the client's bytes", async () => {
    const received: Buffer[] = [];
    const target = createServer((socket) => socket.on('data', (chunk: Buffer) => received.push(chunk)));
    target.listen(0, A);
    await once(target, 'listening');
    let proxy: ProxyProcess | undefined;
    try {
      const port = (target.address() as { port: number }).port;
      proxy = await startProxy(
        { services: [{ name: 'pp', listen: '127.0.0.1:0', target: { address: A, port }, proxyProtocol: true }] },
        { adminUrl: 'http://127.0.0.1:9' },
      );
      const client = connect({ port: proxy.port('pp'), host: '127.0.0.1' });
      await once(client, 'connect');
      client.write('hello');
      await waitFor(() => Buffer.concat(received).length >= 28 + 5, 3000, 'the header and the bytes at the target');
      const bytes = Buffer.concat(received);
      assert.deepEqual([...bytes.subarray(0, 12)], [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
      assert.equal(bytes[12], 0x21, 'version 2, PROXY');
      assert.equal(bytes[13], 0x11, 'TCP over IPv4');
      assert.equal(bytes.readUInt16BE(14), 12);
      assert.equal([...bytes.subarray(16, 20)].join('.'), '127.0.0.1', 'source: the client');
      assert.equal([...bytes.subarray(20, 24)].join('.'), '127.0.0.1', 'destination: where the client connected');
      assert.equal(bytes.readUInt16BE(24), client.localPort);
      assert.equal(bytes.readUInt16BE(26), proxy.port('pp'));
      assert.equal(bytes.subarray(28).toString(), 'hello');
      client.destroy();
    } finally {
      await proxy?.stop();
      await new Promise<void>((resolve) => target.close(() => resolve()));
    }
  });

  test('UDP: every datagram reaches the target behind a header naming the client (DGRAM over IPv4); replies pass back bare', async () => {
    const target = createSocket('udp4');
    const seen: Buffer[] = [];
    target.on('message', (msg, from) => {
      seen.push(msg);
      target.send(`reply to ${msg.subarray(28).toString()}`, from.port, from.address);
    });
    target.bind(0, A);
    await once(target, 'listening');
    const client = createSocket('udp4');
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await startProxy(
        {
          services: [
            {
              name: 'dgram-pp',
              listen: '127.0.0.1:0',
              protocol: 'udp',
              target: { address: A, port: target.address().port },
              proxyProtocol: true,
            },
          ],
        },
        { adminUrl: 'http://127.0.0.1:9' },
      );
      const port = proxy.port('dgram-pp');
      assert.equal(await udpSay(client, port, 'one'), 'reply to one', 'the reply reaches the client without the header');
      assert.equal(await udpSay(client, port, 'two'), 'reply to two');
      assert.equal(seen.length, 2);
      for (const [i, text] of ['one', 'two'].entries()) {
        const bytes = seen[i];
        assert.deepEqual([...bytes.subarray(0, 12)], [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
        assert.equal(bytes[12], 0x21, 'version 2, PROXY');
        assert.equal(bytes[13], 0x12, 'DGRAM (UDP) over IPv4');
        assert.equal(bytes.readUInt16BE(14), 12);
        assert.equal([...bytes.subarray(16, 20)].join('.'), '127.0.0.1', 'source: the client');
        assert.equal([...bytes.subarray(20, 24)].join('.'), '127.0.0.1', "destination: the proxy's listen address");
        assert.equal(bytes.readUInt16BE(24), client.address().port);
        assert.equal(bytes.readUInt16BE(26), port);
        assert.equal(bytes.subarray(28).toString(), text, `datagram ${i + 1} whole after its header`);
      }
    } finally {
      await proxy?.stop();
      client.close();
      target.close();
    }
  });

  test('the header for IPv6, and for one side of each family', () => {
    const six = proxyHeader({ address: '2001:db8::1', port: 1000 }, { address: '2001:db8::2', port: 443 });
    assert.equal(six[13], 0x21, 'TCP over IPv6');
    assert.equal(six.readUInt16BE(14), 36);
    assert.equal(six.subarray(16, 32).toString('hex'), '20010db8000000000000000000000001');
    assert.equal(six.readUInt16BE(48), 1000);
    assert.equal(six.readUInt16BE(50), 443);
    const mixed = proxyHeader({ address: '192.0.2.1', port: 1 }, { address: '2001:db8::2', port: 2 });
    assert.equal(mixed.subarray(16, 32).toString('hex'), '00000000000000000000ffffc0000201');
    const mapped = proxyHeader({ address: '::ffff:192.0.2.1', port: 1 }, { address: '::ffff:192.0.2.2', port: 2 });
    assert.equal(mapped[13], 0x11, 'IPv4 as Node shows it on a dual-stack socket');
  });
});

describe('divert proxy: TLS on either side (tls, targetTls)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'divert-proxy-tls-'));
  // one self-signed certificate for the mirror (mirror.test, 127.0.0.2) and the proxy (127.0.0.1), trusted as its own CA
  const { cert, key } = selfSignedCertificate(dir, 'mirror.test', 'DNS:mirror.test,IP:127.0.0.2,IP:127.0.0.1');

  async function tlsMirror(): Promise<{ port: number; close(): Promise<void> }> {
    const server = createTlsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (socket) => {
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => socket.write(`${A}:${chunk.toString()}`));
    });
    server.listen(0, A);
    await once(server, 'listening');
    return { port: (server.address() as { port: number }).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  test('targetTls: the target is spoken to over TLS and its certificate checked for the name; a wrong name is refused', async () => {
    const mirror = await tlsMirror();
    let proxy: ProxyProcess | undefined;
    try {
      const target = { address: A, port: mirror.port };
      proxy = await startProxy(
        {
          services: [
            { name: 'good', listen: '127.0.0.1:0', target, targetTls: { servername: 'mirror.test', ca: cert } },
            { name: 'wrong', listen: '127.0.0.1:0', target, targetTls: { servername: 'other.test', ca: cert } },
          ],
        },
        { adminUrl: 'http://127.0.0.1:9' },
      );
      const good = await lineClient(proxy.port('good'));
      assert.equal(await good.say('x'), `${A}:x`);
      good.close();
      const wrong = await lineClient(proxy.port('wrong'));
      await assert.rejects(wrong.say('x'), /the connection ended|ECONNRESET/);
      const stats = (await (await proxy.get('/v1/stats/targets')).json()) as {
        targets: Record<string, { connects: number; connectFailures: number }>;
      };
      assert.deepEqual(stats.targets[`${A}:${mirror.port}`].connectFailures, 1);
    } finally {
      await proxy?.stop();
      await mirror.close();
    }
  });

  test('tls: clients speak TLS to the proxy, which relays the plain bytes to the target', async () => {
    const [mirror] = await startTcpMirrors([A]);
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await startProxy(
        { services: [{ name: 'front', listen: '127.0.0.1:0', target: { address: A, port: mirror.port }, tls: { cert, key } }] },
        { adminUrl: 'http://127.0.0.1:9' },
      );
      const socket = tlsConnect({ host: '127.0.0.1', port: proxy.port('front'), ca: readFileSync(cert) });
      await once(socket, 'secureConnect');
      socket.write('hello\n');
      const [reply] = (await once(socket, 'data')) as [Buffer];
      assert.equal(reply.toString(), `${A}:hello\n`);
      socket.destroy();
    } finally {
      await proxy?.stop();
      await mirror.stop();
    }
  });

  test('SIGHUP: new handshakes get the certificate now in the files, open connections go on; a bad pair is refused with one line and the old one kept', async () => {
    const [mirror] = await startTcpMirrors([A]);
    const live = mkdtempSync(join(tmpdir(), 'divert-proxy-tls-'));
    const liveCert = join(live, 'cert.pem');
    const liveKey = join(live, 'key.pem');
    copyFileSync(cert, liveCert);
    copyFileSync(key, liveKey);
    const second = mkdtempSync(join(tmpdir(), 'divert-proxy-tls-'));
    const rotated = selfSignedCertificate(second, 'rotated.test', 'IP:127.0.0.1');
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await startProxy(
        {
          services: [
            { name: 'front', listen: '127.0.0.1:0', target: { address: A, port: mirror.port }, tls: { cert: liveCert, key: liveKey } },
          ],
        },
        { adminUrl: 'http://127.0.0.1:9' },
        ['--workers', '2'],
      );
      const port = proxy.port('front');
      /** A new TLS connection: the certificate's subject CN, and its text echoed back. */
      const handshake = async (ca: string) => {
        const socket = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(ca) });
        await once(socket, 'secureConnect');
        return { socket, cn: String(socket.getPeerCertificate().subject.CN) };
      };
      const before = await handshake(cert);
      assert.equal(before.cn, 'mirror.test');

      copyFileSync(rotated.cert, liveCert);
      copyFileSync(rotated.key, liveKey);
      proxy.proc.child.kill('SIGHUP');
      // every worker reloads: a run of new connections all see the new certificate
      await waitFor(
        async () => {
          const seen = await Promise.all(
            Array.from({ length: 6 }, () =>
              handshake(rotated.cert).then(
                (h) => (h.socket.destroy(), h.cn),
                () => '',
              ),
            ),
          );
          return seen.every((cn) => cn === 'rotated.test');
        },
        5000,
        'new handshakes with the rotated certificate',
      );
      before.socket.write('still here\n');
      const [reply] = (await once(before.socket, 'data')) as [Buffer];
      assert.equal(reply.toString(), `${A}:still here\n`, 'the connection opened before the reload goes on');
      before.socket.destroy();

      // a certificate whose key does not match: refused with one line, the rotated one stays
      copyFileSync(cert, liveCert);
      const errors = () => proxy!.logs().filter((l) => l.level === 50 && /certificate in use stays/.test(String(l.msg)));
      proxy.proc.child.kill('SIGHUP');
      await waitFor(() => errors().length === 2, 5000, 'one refusal line from each worker');
      assert.match(
        String(errors()[0].msg),
        /^service "front": tls: the certificate and key do not load as a pair .*: not reloaded, the certificate in use stays$/,
      );
      const after = await handshake(rotated.cert);
      assert.equal(after.cn, 'rotated.test');
      after.socket.destroy();
      assert.equal(proxy.proc.child.exitCode, null, 'the proxy runs on');
    } finally {
      await proxy?.stop();
      await mirror.stop();
      rmSync(live, { recursive: true, force: true });
      rmSync(second, { recursive: true, force: true });
    }
  });

  test('a key that does not load stops the start with one line naming the service and file', async () => {
    const path = tempFiles(
      'divert-proxy',
      '.yaml',
    )(
      `services:\n  - name: front\n    listen: 127.0.0.1:0\n    target: { address: ${A}, port: 9 }\n    tls: { cert: ${cert}, key: ${join(dir, 'missing.pem')} }\n`,
    );
    const proc = runDivert(['proxy', '--config', path, '--admin', 'http://127.0.0.1:9', '--token', 'x', '--status', '127.0.0.1:0']);
    assert.notEqual(await proc.exited(), 0);
    assert.match(proc.stderr().trim(), /^divert: service "front": tls\.key ".*missing\.pem": cannot read it \(ENOENT\)$/);
  });
});

describe('divert proxy --workers 2', () => {
  test('both workers relay; the table and figures are merged; a change reaches both; a UDP flow stays with its worker', async () => {
    const tcp = await startTcpMirrors([A, B]);
    const udp = await startUdpMirrors([A, B]);
    const server = await startServe();
    let proxy: ProxyProcess | undefined;
    const socket = createSocket('udp4');
    try {
      await setName(server, [A]);
      proxy = await startProxy(
        {
          services: [
            { name: 'web', listen: '127.0.0.1:0', target: { name: NAME, port: tcp[0].port }, onChange: 'keep' },
            { name: 'dgram', listen: '127.0.0.1:0', protocol: 'udp', target: { name: NAME, port: udp[0].port } },
          ],
        },
        server,
        ['--workers', '2'],
      );
      const status = (await (await proxy.get('/status')).json()) as { workers: number };
      assert.equal(status.workers, 2);
      const port = proxy.port('web');
      // open connections, 20 at a time, until both workers hold some (a worker that wakes
      // takes a burst of them: on a busy machine the other may sleep through the first
      // bursts); the table lists them all, whichever worker holds each
      const clients: Awaited<ReturnType<typeof lineClient>>[] = [];
      const workersHolding = async () => new Set((await proxy!.connections()).map((c) => workerOf(c.id))).size;
      while (clients.length < 400 && (clients.length === 0 || (await workersHolding()) < 2)) {
        const batch = await Promise.all(Array.from({ length: 20 }, () => lineClient(port)));
        for (const c of batch) assert.equal(await c.say('x'), `${A}:x`);
        clients.push(...batch);
      }
      const table = await proxy.connections();
      assert.equal(table.filter((c) => c.service === 'web').length, clients.length);
      assert.equal(new Set(table.map((c) => c.id)).size, table.length, 'connection ids unique across workers');
      const workerIds = new Set(table.map((c) => workerOf(c.id)));
      assert.equal(workerIds.size, 2, `connections in both workers (ids ${[...workerIds].join(', ')}, ${clients.length} open)`);
      const stats = (await (await proxy.get('/v1/stats/targets')).json()) as { targets: Record<string, { connects: number }> };
      assert.equal(stats.targets[`${A}:${tcp[0].port}`].connects, clients.length);
      for (const c of clients) c.close();

      socket.bind(0, '127.0.0.1');
      await once(socket, 'listening');
      const udpPort = proxy.port('dgram');
      for (let i = 0; i < 5; i++) assert.equal(await udpSay(socket, udpPort, `d${i}`), `${A}:d${i}`);
      await waitFor(
        async () => (await proxy!.connections()).filter((c) => c.service === 'web').length === 0,
        3000,
        'closed connections gone',
      );
      const flows = (await proxy.connections()).filter((c) => c.service === 'dgram');
      assert.equal(flows.length, 1, 'one flow for one client: its datagrams all reached one worker');

      await setName(server, [B]);
      // every new connection, whichever worker takes it, goes to the new address
      await waitFor(
        async () => {
          const seen = await Promise.all(Array.from({ length: 10 }, () => whoAnswers(port).catch(() => '')));
          return seen.every((who) => who === B);
        },
        3000,
        'new connections in both workers reaching 127.0.0.3',
      );
      await waitFor(async () => (await udpSay(socket, udpPort, 'again')).startsWith(`${B}:`), 2000, 'the flow moved');
    } finally {
      socket.close();
      await proxy?.stop();
      await server.close();
      for (const m of [...tcp, ...udp]) await m.stop();
    }
  });
});

describe('divert proxy: start-up and resources', () => {
  const file = tempFiles('divert-proxy', '.yaml');

  test('a bad config stops it with one line naming the field', async () => {
    const path = file('services:\n  - name: web\n    listen: 127.0.0.1:0\n    target: { name: www.shop.example }\n');
    const proc = runDivert(['proxy', '--config', path, '--admin', 'http://127.0.0.1:9', '--token', 'x']);
    assert.notEqual(await proc.exited(), 0);
    assert.match(proc.stderr().trim(), /^divert: .*services\[0\]\.target/);
    assert.equal(proc.stderr().trim().split('\n').length, 1, proc.stderr());
  });

  test('a port in use stops it with one line naming the service and the address', async () => {
    const [mirror] = await startTcpMirrors([A]);
    try {
      const path = file(`services:\n  - name: web\n    listen: ${A}:${mirror.port}\n    target: { address: ${A}, port: ${mirror.port} }\n`);
      const proc = runDivert(['proxy', '--config', path, '--admin', 'http://127.0.0.1:9', '--token', 'x', '--status', '127.0.0.1:0']);
      assert.notEqual(await proc.exited(15_000), 0);
      assert.match(proc.stderr(), /service "web": cannot listen on tcp 127\.0\.0\.2:\d+ \(EADDRINUSE\)/);
    } finally {
      await mirror.stop();
    }
  });

  test('a name with no entry: it starts, says so in one line, and resets clients until the name has one', async () => {
    const [mirror] = await startTcpMirrors([A]);
    const server = await startServe();
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await startProxy({ services: [{ name: 'web', listen: '127.0.0.1:0', target: { name: NAME, port: mirror.port } }] }, server);
      assert.ok(
        proxy
          .logs()
          .some((l) => String(l.msg) === `service "web": ${NAME} has no entry in the table: its clients are reset until it has one`),
      );
      await assert.rejects(whoAnswers(proxy.port('web')), /the connection ended|ECONNRESET/);
      await setName(server, [A]);
      await waitFor(async () => (await whoAnswers(proxy!.port('web')).catch(() => '')) === A, 2000, 'the name, once set, relayed');
    } finally {
      await proxy?.stop();
      await server.close();
      await mirror.stop();
    }
  });

  test('limits from flags: --max-connections refuses the connection beyond it (reset, counted); --idle-timeout closes a quiet one', async () => {
    const [mirror] = await startTcpMirrors([A]);
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await startProxy(
        { services: [{ name: 'fixed', listen: '127.0.0.1:0', target: { address: A, port: mirror.port } }] },
        { adminUrl: 'http://127.0.0.1:9' },
        ['--workers', '1', '--max-connections', '2', '--idle-timeout', '400ms'],
      );
      const port = proxy.port('fixed');
      const first = await lineClient(port);
      const second = await lineClient(port);
      assert.equal(await first.say('1'), `${A}:1`);
      assert.equal(await second.say('2'), `${A}:2`);
      await assert.rejects(whoAnswers(port), /the connection ended|ECONNRESET/);
      const metrics = await (await proxy.get('/metrics')).text();
      assert.match(metrics, /divert_proxy_refused_total\{limit="total"\} 1/);
      // quiet for the idle timeout: both are closed by the proxy, and a new one fits again
      await waitFor(() => first.ended && second.ended, 3000, 'the idle connections closed');
      assert.equal(await whoAnswers(port), A);
    } finally {
      await proxy?.stop();
      await mirror.stop();
    }
  });

  test('a bad limit flag: one line naming it, exit 2', async () => {
    const proc = runDivert(['proxy', '--config', '/nonexistent.yaml', '--connect-timeout', 'soon']);
    assert.equal(await proc.exited(), 2);
    assert.match(proc.stderr().trim(), /^divert: --connect-timeout "soon": expected a duration/);
  });

  test('divert serve unreachable at start: it runs, says so, and an address target still relays', async () => {
    const [mirror] = await startTcpMirrors([A]);
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await startProxy(
        { services: [{ name: 'fixed', listen: '127.0.0.1:0', target: { address: A, port: mirror.port } }] },
        { adminUrl: 'http://127.0.0.1:9' },
      );
      assert.ok(proxy.logs().some((l) => /unreachable/.test(String(l.msg))));
      const status = (await (await proxy.get('/status')).json()) as { admin: { up: boolean } };
      assert.equal(status.admin.up, false);
      assert.equal(await whoAnswers(proxy.port('fixed')), A);
    } finally {
      await proxy?.stop();
      await mirror.stop();
    }
  });

  test('10,000 connections opened and closed leave no descriptor behind', async () => {
    let s: Setup | undefined;
    try {
      s = await setup({});
      const port = s.proxy.port('web');
      const pid = s.proxy.proc.child.pid!;
      const fds = () => readdirSync(`/proc/${pid}/fd`).length;
      await whoAnswers(port);
      await waitFor(async () => (await s!.proxy.connections()).length === 0, 2000, 'an empty table');
      const before = fds();
      let done = 0;
      const one = async () => {
        const socket = connect({ port, host: '127.0.0.1' });
        socket.on('error', () => {});
        await once(socket, 'connect');
        // read what comes back, or the socket never sees the proxy's end and never closes
        socket.resume();
        socket.end('x\n');
        await once(socket, 'close');
      };
      const lane = async () => {
        while (done < 10_000) {
          done++;
          await one();
        }
      };
      await Promise.all(Array.from({ length: 20 }, lane));
      await waitFor(async () => (await s!.proxy.connections()).length === 0, 5000, 'every connection gone from the table');
      await waitFor(() => fds() <= before, 5000, `descriptors back to ${before} (now ${fds()})`);
      await sleep(10);
    } finally {
      await teardown(s);
    }
  });
});

// `divert proxy` end to end: a real divert serve, the proxy as a process, TCP and UDP echo
// mirrors on 127.0.0.2 and 127.0.0.3; every change goes through the admin API as an
// operator's or a monitor's would.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServe, waitFor } from './monitor-fixtures.js';
import type { TestServer } from './helpers/divert.js';
import { runDivert } from './helpers/process.js';
import { tempFiles } from './helpers/temp-files.js';
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
});

describe('divert proxy: UDP flows', () => {
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

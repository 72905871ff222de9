// What divert serve relays to the dashboard from a monitor's or a proxy's status endpoint
// (--dashboard-monitor, --dashboard-proxy): read with limits, errors naming the page, and
// the proxy's connection list cut to the newest SHOWN_CONNECTIONS, or left out when too large.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { monitorStatusReader } from '../src/admin/status-relay.js';
import { proxyStatusReader, SHOWN_CONNECTIONS } from '../src/admin/proxy-status.js';
import { freePort } from './helpers/redis.js';

/** Path → [HTTP status, body] the stand-in endpoint answers. */
let pages: Record<string, [number, string]> = {};
let server: Server;
let url: string;

before(async () => {
  server = createServer((req, res) => {
    const [code, body] = pages[req.url ?? ''] ?? [404, '{}'];
    if (code === 302) return res.writeHead(302, { location: 'http://192.0.2.1/' }).end();
    res.writeHead(code, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
});

after(() => new Promise((resolve) => server.close(resolve)));

const connection = (id: number) => ({ id, service: 'web', startedAt: 1000 + id });

test('not configured: url null, nothing read', async () => {
  assert.deepEqual(await monitorStatusReader(undefined)(), { url: null, ok: false });
  assert.deepEqual(await proxyStatusReader(undefined)(), { url: null, ok: false });
});

test('the proxy: its status, its targets, and its newest connections, at most SHOWN_CONNECTIONS', async () => {
  pages = {
    '/status': [200, JSON.stringify({ connections: SHOWN_CONNECTIONS + 10 })],
    '/v1/stats/targets': [200, JSON.stringify({ targets: { '127.0.0.2:80': { connects: 3 } } })],
    '/v1/connections': [200, JSON.stringify({ connections: Array.from({ length: SHOWN_CONNECTIONS + 10 }, (_, i) => connection(i)) })],
  };
  const view = await proxyStatusReader(url)();
  assert.equal(view.url, url.slice(0, -1));
  assert.equal(view.ok, true);
  const status = view.status as { status: unknown; targets: unknown; connections: { id: number }[] };
  assert.deepEqual(status.status, { connections: SHOWN_CONNECTIONS + 10 });
  assert.deepEqual(status.targets, { '127.0.0.2:80': { connects: 3 } });
  assert.equal(status.connections.length, SHOWN_CONNECTIONS);
  assert.deepEqual(
    status.connections.slice(0, 2).map((c) => c.id),
    [SHOWN_CONNECTIONS + 9, SHOWN_CONNECTIONS + 8],
    'newest first',
  );
});

test('a connection list over its limit is left out (null); the rest is shown', async () => {
  const many = JSON.stringify({ connections: Array.from({ length: 60_000 }, (_, i) => ({ ...connection(i), client: '127.0.0.1:40000' })) });
  assert.ok(many.length > 4 * 1024 * 1024);
  pages['/v1/connections'] = [200, many];
  const view = await proxyStatusReader(url)();
  assert.equal(view.ok, true);
  assert.equal((view.status as { connections: unknown }).connections, null);
});

test('failures name the page: an HTTP error, a page over 1 MiB, a redirect (not followed), nobody listening', async () => {
  pages = { '/status': [503, '{}'] };
  assert.deepEqual(await monitorStatusReader(url)(), { url: url.slice(0, -1), ok: false, error: 'GET /status: HTTP 503' });
  pages = { '/status': [200, JSON.stringify({ pad: 'x'.repeat(1024 * 1024) })] };
  assert.equal((await monitorStatusReader(url)()).error, 'GET /status: more than 1048576 bytes');
  pages = { '/status': [302, ''] };
  assert.match((await monitorStatusReader(url)()).error ?? '', /^GET \/status: /);
  pages = { '/status': [200, '{}'], '/v1/stats/targets': [500, '{}'], '/v1/connections': [200, '{"connections": []}'] };
  assert.equal((await proxyStatusReader(url)()).error, 'GET /v1/stats/targets: HTTP 500');
  const gone = await monitorStatusReader(`http://127.0.0.1:${await freePort()}`)();
  assert.match(gone.error ?? '', /^GET \/status: .*ECONNREFUSED/);
});

// The admin port is served by the primary, which also holds the table: a client may not
// hold it with connections that never finish a request, nor with more connections than
// it has descriptors to spare. Headers must arrive within 10 s; at most 1,024
// connections are open at once; the token holder still gets in once others let go.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDivert, type TestServer } from './helpers/divert.js';

function open(port: number): { socket: Socket; closed: Promise<number>; data: () => string } {
  const socket = connect({ port, host: '127.0.0.1' });
  let data = '';
  socket.on('data', (c) => (data += c.toString()));
  socket.on('error', () => {});
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
  return { socket, closed, data: () => data };
}

describe('admin port limits', () => {
  let divert: TestServer;

  before(async () => {
    divert = await startDivert({ upstream: ['127.0.0.1:9'] });
  });
  after(async () => divert?.close());

  test('a request whose headers never finish is answered 408 and closed within the headers timeout (10 s)', async () => {
    const slow = open(divert.admin.port);
    await new Promise((resolve) => slow.socket.once('connect', resolve));
    const started = Date.now();
    slow.socket.write('GET /v1/names HTTP/1.1\r\nHost: x\r\n'); // and never the blank line
    // a byte every second keeps the socket active, but the headers never end
    const trickle = setInterval(() => slow.socket.write('X'), 1000);
    const closedAt = await Promise.race([slow.closed, sleep(25_000).then(() => 0)]);
    clearInterval(trickle);
    slow.socket.destroy();
    assert.ok(closedAt > 0, 'closed by the server');
    assert.ok(closedAt - started < 20_000, `closed after ${closedAt - started} ms`);
    assert.match(slow.data(), /^HTTP\/1\.1 408/);
    assert.match(slow.data(), /"code":"REQUEST_TIMEOUT"/);
  });

  test('beyond 1,024 open connections newcomers are closed at once; once they let go, the token holder is served', async () => {
    const held: ReturnType<typeof open>[] = [];
    for (let i = 0; i < 1030; i++) held.push(open(divert.admin.port));
    await Promise.all(held.map((c) => Promise.race([new Promise((resolve) => c.socket.once('connect', resolve)), c.closed])));
    await sleep(300);
    const stillOpen = held.filter((c) => !c.socket.destroyed && c.socket.readyState === 'open');
    const closed = await Promise.all(held.map((c) => Promise.race([c.closed, sleep(50).then(() => 0)])));
    assert.ok(closed.filter((t) => t > 0).length >= 6, `${closed.filter((t) => t > 0).length} of 1030 closed at once`);
    assert.ok(stillOpen.length <= 1024, `${stillOpen.length} kept open`);
    for (const c of held) c.socket.destroy();
    await sleep(200);
    const res = await divert.api('/v1/names');
    assert.equal(res.status, 200);
  });
});

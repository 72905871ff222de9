// GET /v1/events within limits: streams beyond --events-max-streams are refused, and a
// client that stops reading is sent resync and closed while a reading client gets every
// change of a large import; the same with the real binary, whose memory it reports.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDivert, TEST_TOKEN, type TestServer } from './helpers/divert.js';
import { runDivert } from './helpers/process.js';
import { openEvents } from './helpers/sse.js';
import { sumOf } from './helpers/metrics.js';
import { eventually } from './redis-scenarios.js';

const BULK_NAMES = 40_000;

/** A zone file of `count` names under bulk.test. */
function bulkZone(count: number): string {
  const lines = ['$ORIGIN bulk.test.'];
  for (let i = 0; i < count; i++) lines.push(`n${i} IN A 192.0.2.${(i % 250) + 1}`);
  return lines.join('\n') + '\n';
}

interface Stalled {
  socket: Socket;
  /** Reads again at last; resolves with everything the server sent once it has closed the connection. */
  readToEnd(timeoutMs: number): Promise<string>;
}

/** A client that asks for the event stream, reads the response's head, and then stops reading. */
async function stalledClient(adminPort: number, token: string): Promise<Stalled> {
  const socket = connect({ host: '127.0.0.1', port: adminPort });
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  const collect = (chunk: Buffer) => chunks.push(chunk);
  socket.on('data', collect);
  socket.write(`GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  const deadline = Date.now() + 5000;
  while (!Buffer.concat(chunks).includes('\r\n\r\n')) {
    if (Date.now() > deadline) throw new Error(`no response head within 5000 ms: ${Buffer.concat(chunks).toString()}`);
    await sleep(10);
  }
  assert.match(Buffer.concat(chunks).toString(), /^HTTP\/1\.1 200 /);
  socket.pause();
  return {
    socket,
    readToEnd: (timeoutMs) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`the connection was not closed within ${timeoutMs} ms (${Buffer.concat(chunks).length} bytes read)`)),
          timeoutMs,
        );
        socket.once('end', () => {
          clearTimeout(timer);
          resolve(Buffer.concat(chunks).toString('utf8'));
        });
        socket.resume();
      }),
  };
}

const changesIn = (text: string) => text.split('event: change\n').length - 1;

async function metricsOf(url: string, token: string): Promise<string> {
  return (await fetch(url + '/metrics', { headers: { authorization: `Bearer ${token}` } })).text();
}

async function importBulk(url: string, token: string, count: number): Promise<void> {
  const response = await fetch(url + '/v1/import?file=bulk.zone', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'text/dns' },
    body: bulkZone(count),
  });
  assert.equal(response.status, 200);
  // read to the end: a reply left half-read keeps its connection busy, and the server's close waits for it
  await response.text();
}

describe('/v1/events limits', () => {
  test("one stream over --events-max-streams is refused in the API's error format; the open ones keep working", async (t) => {
    const divert = await startDivert({ upstream: ['127.0.0.1:9'], 'events-max-streams': '2' });
    t.after(() => divert.close());
    const url = divert.adminUrl + '/v1/events';
    const first = await openEvents(url, TEST_TOKEN);
    const second = await openEvents(url, TEST_TOKEN);
    t.after(() => [first, second].forEach((s) => s.close()));

    const refused = await divert.api('/v1/events');
    assert.equal(refused.status, 503);
    const { error } = (await refused.json()) as { error: { code: string; message: string } };
    assert.equal(error.code, 'TOO_MANY_STREAMS');
    assert.match(error.message, /--events-max-streams \(2\)/);

    const put = await divert.api('/v1/names/cap.test', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ a: ['192.0.2.1'] }),
    });
    assert.equal(put.status, 200);
    for (const stream of [first, second]) assert.equal(((await stream.waitFor(1))[0].data as { name: string }).name, 'cap.test');

    const metrics = await metricsOf(divert.adminUrl, TEST_TOKEN);
    assert.equal(sumOf(metrics, 'divert_event_streams'), 2);
    assert.equal(sumOf(metrics, 'divert_event_streams_refused_total'), 1);

    // a closed stream frees its place
    first.close();
    await eventually(
      'the closed stream counted out',
      5000,
      async () => sumOf(await metricsOf(divert.adminUrl, TEST_TOKEN), 'divert_event_streams') === 1,
    );
    const third = await openEvents(url, TEST_TOKEN);
    t.after(() => third.close());
    await divert.api('/v1/names/cap.test', { method: 'DELETE' });
    assert.equal(((await third.waitFor(1))[0].data as { name: string }).name, 'cap.test');
  });

  test('during a 40,000-name import, clients that stop reading are sent resync and closed; a reading client gets every change', async (t) => {
    const divert: TestServer = await startDivert({ upstream: ['127.0.0.1:9'] });
    t.after(() => divert.close());
    const reader = await openEvents(divert.adminUrl + '/v1/events', TEST_TOKEN);
    t.after(() => reader.close());
    const stalled = [await stalledClient(divert.admin.port, TEST_TOKEN), await stalledClient(divert.admin.port, TEST_TOKEN)];
    t.after(() => stalled.forEach((s) => s.socket.destroy()));

    await importBulk(divert.adminUrl, TEST_TOKEN, BULK_NAMES);
    const got = await reader.waitFor(BULK_NAMES, 60_000);
    assert.ok(
      got.every((e) => e.event === 'change'),
      'changes only, no resync',
    );
    assert.equal(new Set(got.map((e) => (e.data as { name: string }).name)).size, BULK_NAMES, 'every imported name, once');

    await eventually(
      'both stalled streams closed as too slow',
      30_000,
      async () => sumOf(await metricsOf(divert.adminUrl, TEST_TOKEN), 'divert_event_streams_slow_closed_total') === 2,
    );
    for (const client of stalled) {
      const text = await client.readToEnd(15_000);
      const changes = changesIn(text);
      t.diagnostic(`a stalled client read ${text.length} bytes: ${changes} changes, then resync`);
      assert.ok(changes < BULK_NAMES, `it fell behind (${changes} changes)`);
      assert.ok(text.lastIndexOf('event: resync\n') > text.lastIndexOf('event: change\n'), 'resync after the last change it got');
    }

    // the reader is still served
    await divert.api('/v1/names/after.bulk.test', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ a: ['192.0.2.9'] }),
    });
    assert.equal(((await reader.waitFor(BULK_NAMES + 1))[BULK_NAMES].data as { name: string }).name, 'after.bulk.test');
    assert.ok(!reader.ended());
    await eventually(
      'only the reader open',
      5000,
      async () => sumOf(await metricsOf(divert.adminUrl, TEST_TOKEN), 'divert_event_streams') === 1,
    );
  });
});

describe('/v1/events memory with the real binary', () => {
  test("8 stalled streams during a 40,000-name import: all sent resync and closed (the primary's RSS is reported, not asserted: it varies with the machine)", async (t) => {
    const token = 'events-token-0123456789abcdef';
    const serve = runDivert(['serve', '--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--admin-token', token, '--workers', '2']);
    t.after(() => serve.stop());
    const adminUrl = `http://${(await serve.listeningLine()).admin}`;
    const adminPort = Number(/:(\d+)$/.exec(adminUrl)![1]);
    const rssMb = () => Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${serve.child.pid}/status`, 'utf8'))![1]) / 1024;

    const stalled: Stalled[] = [];
    t.after(() => stalled.forEach((s) => s.socket.destroy()));
    for (let i = 0; i < 8; i++) stalled.push(await stalledClient(adminPort, token));

    const before = rssMb();
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb())), 50);
    try {
      await importBulk(adminUrl, token, BULK_NAMES);
      await eventually(
        'the stalled streams closed as too slow',
        30_000,
        async () => sumOf(await metricsOf(adminUrl, token), 'divert_event_streams_slow_closed_total') === 8,
      );
    } finally {
      clearInterval(sampler);
    }
    t.diagnostic(`primary RSS ${before.toFixed(0)} MB before the import, ${peak.toFixed(0)} MB at most during it`);
    for (const client of stalled) assert.match(await client.readToEnd(15_000), /event: resync\n/);
    await eventually('no stream left open', 5000, async () => sumOf(await metricsOf(adminUrl, token), 'divert_event_streams') === 0);
  });
});

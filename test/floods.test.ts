// Floods: per-client rate limiting (one flooding network must not starve the others),
// per-client TCP connection caps, and a client trickling a message byte by byte.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { RateLimiter } from '../src/pipeline/rate-limit.js';
import { decode, query, startDivert, TEST_WORKERS, udpAsk, type TestServer } from './helpers/divert.js';
import { sumOf } from './helpers/metrics.js';
import { runLoadScript } from './helpers/load-script.js';

/**
 * A child process sending queries for `name` from `source` at `rate` per second for `ms`.
 * Bounded in rate as well as time: a flood beyond what the host can read fills the
 * kernel's socket buffer, and then the kernel drops everyone's datagrams alike, which no
 * user-space limit can prevent.
 */
function flood(port: number, source: string, name: string, rate: number, ms: number): Promise<number> {
  const script = `
    import { createSocket } from 'node:dgram';
    const [port, source, name, rate, ms] = process.argv.slice(1);
    const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
    const msg = Buffer.concat([Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
    const socket = createSocket('udp4');
    socket.bind({ address: source, port: 0 }, async () => {
      const start = Date.now();
      const end = start + Number(ms);
      let sent = 0;
      while (Date.now() < end) {
        // catch up to the rate every few ms
        const due = Math.floor(((Date.now() - start) * Number(rate)) / 1000);
        for (; sent < due; sent++) socket.send(msg, Number(port), '127.0.0.1');
        await new Promise((r) => setTimeout(r, 2));
      }
      socket.close(() => { process.stdout.write(String(sent)); process.exit(0); });
    });`;
  return runLoadScript(script, [port, source, name, rate, ms], ms + 10_000).then(Number);
}

describe('per-client rate limiting', () => {
  let divert: TestServer;

  before(async () => {
    divert = await startDivert({ 'rate-limit': '500', upstream: ['127.0.0.1:9'] });
    const res = await divert.api('/v1/names/flood.test', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ a: ['192.0.2.1'] }),
    });
    assert.equal(res.status, 200);
  });
  after(async () => divert?.close());

  test('a flood from one address: a client in another /24 still gets ≥ 99 % of its answers, and the flood is cut to the limit', async (t) => {
    const before = (await divert.stats()).counts.limited;
    const flooding = flood(divert.port, '127.0.0.2', 'flood.test', 10_000, 3000);
    await sleep(200); // the flood is under way
    let answered = 0;
    const asked = 200;
    for (let i = 0; i < asked; i++) {
      // 2 s, well inside a stub resolver's 5 s: a flood queued in the socket buffer delays a query before it is dropped
      const reply = await udpAsk(divert.port, query('flood.test'), 2000, '127.0.0.1', '127.0.1.3');
      const first = reply ? decode(reply).answers?.[0] : undefined;
      if (first?.type === 'A' && first.data === '192.0.2.1') answered++;
      else t.diagnostic(`query ${i}: ${reply ? 'wrong answer' : 'no answer'}`);
      await sleep(5);
    }
    const sent = await flooding;
    assert.ok(answered >= asked * 0.99, `the second client got ${answered} of ${asked} answers`);
    const limited = (await divert.stats()).counts.limited - before;
    // at 500 queries/s with a one-second burst, at most ~500 + 500 × seconds get through
    assert.ok(sent > 20_000, `the flood sent ${sent} queries`);
    assert.ok(limited > sent / 2, `${limited} of the flood's ${sent} queries were over the limit`);
    t.diagnostic(
      `flood: ${sent} queries from 127.0.0.2 in 3 s (10,000/s), ${limited} over the limit; second client: ${answered} of ${asked} answered`,
    );
    const metrics = await (await divert.api('/metrics')).text();
    assert.ok(sumOf(metrics, 'divert_queries_total', { outcome: 'limited' }) >= limited, 'the limited queries are counted in /metrics');
  });
});

describe('the rate limiter', () => {
  test('counts IPv4 clients per /24 and IPv6 per /56, refills at the rate, and bounds a burst to one second', () => {
    const limiter = new RateLimiter({ qps: 10, v4Prefix: 24, v6Prefix: 56 });
    const take = (address: string, now: number, n: number) =>
      Array.from({ length: n }, () => limiter.allows(address, now)).filter(Boolean).length;
    assert.equal(take('192.0.2.1', 0, 15), 10, 'a burst of one second: 10');
    assert.equal(take('192.0.2.200', 0, 5), 0, 'the same /24 shares the bucket');
    assert.equal(take('198.51.100.1', 0, 5), 5, 'another /24 has its own');
    assert.equal(take('::ffff:192.0.2.9', 0, 1), 0, 'an IPv4-mapped address counts as its IPv4 network');
    assert.equal(take('192.0.2.1', 500, 10), 5, 'half a second refills half the bucket');
    assert.equal(take('2001:db8:0:ff00::1', 0, 10), 10);
    assert.equal(take('2001:db8:0:ffaa::2', 0, 1), 0, 'the same /56');
    assert.equal(take('2001:db8:0:fe00::1', 0, 1), 1, 'another /56');
    assert.ok(limiter.limited >= 17);
  });

  test('--rate-limit-action refuse answers REFUSED over the limit', async () => {
    const divert = await startDivert({ 'rate-limit': '1', 'rate-limit-action': 'refuse', upstream: ['127.0.0.1:9'] });
    try {
      await divert.api('/v1/names/one.test', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ a: ['192.0.2.1'] }),
      });
      const rcodes: string[] = [];
      for (let i = 0; i < 5; i++) rcodes.push(decode(await udpAsk(divert.port, query('one.test'))).rcode ?? '');
      // one query a second, shared out among the workers (each keeps room for one)
      assert.equal(rcodes[0], 'NOERROR');
      assert.ok(rcodes.filter((r) => r === 'NOERROR').length <= Number(TEST_WORKERS), rcodes.join(' '));
      assert.ok(rcodes.slice(1).includes('REFUSED'), rcodes.join(' '));
    } finally {
      await divert.close();
    }
  });
});

describe('the rate limit and replies of refusal', () => {
  test('REFUSED (outside --allow) and FORMERR replies count against the rate limit: a flood of them is cut to the rate', async () => {
    // 127.0.0.1 may query; 127.0.3.x may not. A rate of 20 a second (shared out among the workers)
    const divert = await startDivert({ 'rate-limit': '20', allow: ['127.0.0.1/32'], upstream: ['127.0.0.1:9'] });
    try {
      const before = await metricsOf(divert);
      const refused = await Promise.all(
        Array.from({ length: 100 }, () => udpAsk(divert.port, query('refused.test'), 1500, '127.0.0.1', '127.0.3.7')),
      );
      const garbage = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00]), Buffer.from('not a question')]);
      const formerr = await Promise.all(Array.from({ length: 100 }, () => udpAsk(divert.port, garbage, 1500, '127.0.0.1', '127.0.4.7')));
      const answered = (replies: (Buffer | null)[]) => replies.filter((r) => r !== null).length;
      // each network's bucket holds one second's worth: about 20, and a little more refilled meanwhile
      assert.ok(answered(refused) <= 40, `${answered(refused)} of 100 queries from outside --allow got REFUSED`);
      assert.ok(answered(refused) >= 5, `${answered(refused)} REFUSED: the first are answered`);
      assert.ok(refused.every((r) => r === null || decode(r).rcode === 'REFUSED'));
      assert.ok(answered(formerr) <= 40, `${answered(formerr)} of 100 malformed queries got FORMERR`);
      assert.ok(formerr.every((r) => r === null || decode(r).rcode === 'FORMERR'));
      const after = await metricsOf(divert);
      assert.ok(
        sumOf(after, 'divert_queries_total', { outcome: 'limited' }) - sumOf(before, 'divert_queries_total', { outcome: 'limited' }) >= 120,
        'the rest were dropped as limited',
      );
      // another network, allowed, is not held back by them
      assert.equal(decode(await udpAsk(divert.port, query('refused.test'))).rcode, 'SERVFAIL');
    } finally {
      await divert.close();
    }
  });
});

async function metricsOf(divert: TestServer): Promise<string> {
  return (await divert.api('/metrics')).text();
}

describe('TCP limits per client', () => {
  let divert: TestServer;

  before(async () => {
    divert = await startDivert({ 'tcp-max-per-client': '3', 'tcp-idle-timeout-ms': '400', upstream: ['127.0.0.1:9'] });
  });
  after(async () => divert?.close());

  const open = (source: string) => {
    const socket = connect({ port: divert.port, host: '127.0.0.1', localAddress: source });
    socket.on('error', () => {});
    const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
    return { socket, closed };
  };

  /** Resolves true once connected, false when the connection is closed (reset) first. */
  const connected = (c: ReturnType<typeof open>) =>
    Promise.race([new Promise<boolean>((resolve) => c.socket.once('connect', () => resolve(true))), c.closed.then(() => false)]);

  test('a client network beyond --tcp-max-per-client connections is cut off at once; another network still connects', async () => {
    // one /24 (the --rate-limit-v4-prefix default): 127.0.0.2 and 127.0.0.5 count together
    const held = [open('127.0.0.2'), open('127.0.0.2'), open('127.0.0.5')];
    assert.deepEqual(await Promise.all(held.map(connected)), [true, true, true]);
    await sleep(50);
    for (const source of ['127.0.0.2', '127.0.0.6']) {
      const extra = open(source);
      const cut = await Promise.race([extra.closed, sleep(2000).then(() => 0)]);
      assert.ok(cut > 0, `a fourth connection from the same /24 (${source}) was closed`);
    }
    const other = open('127.0.1.3');
    assert.ok(await connected(other), 'a connection from another /24 connects');
    const stillOpen = await Promise.race([other.closed.then(() => false), sleep(200).then(() => true)]);
    assert.ok(stillOpen, 'a connection from 127.0.1.3 is kept');
    for (const c of [...held, other]) c.socket.destroy();
  });

  test('a message trickled a byte at a time is cut off after the idle timeout, though bytes keep coming', async () => {
    const conn = open('127.0.2.4');
    await new Promise((resolve) => conn.socket.once('connect', resolve));
    const started = Date.now();
    const bytes = Buffer.concat([Buffer.from([0, 40]), Buffer.alloc(40)]);
    let closedAt = 0;
    void conn.closed.then((t) => (closedAt = t));
    for (let i = 0; i < bytes.length && closedAt === 0 && Date.now() - started < 5000; i++) {
      conn.socket.write(bytes.subarray(i, i + 1));
      await sleep(100);
    }
    assert.ok(closedAt > 0, 'the trickling connection was closed');
    assert.ok(closedAt - started < 2000, `closed after ${closedAt - started} ms (idle timeout 400 ms)`);
  });
});

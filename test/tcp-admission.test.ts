// Who gets a TCP connection: clients outside --allow are reset at accept, before a byte is
// read, so they cannot hold the slots allowed clients need; when every slot is taken, the
// least recently active idle connection makes room for a newcomer (RFC 7766 6.2.3), and a
// newcomer is refused only when every connection has a query in flight.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { decode, query, startDivert, tcpAsk, tcpSession, type TestServer } from './helpers/divert.js';
import { startUpstream, replyTo, type TestUpstream } from './helpers/upstream.js';
import { sumOf } from './helpers/metrics.js';
import { runLoadScript } from './helpers/load-script.js';

async function listenerEvents(divert: TestServer, event: string): Promise<number> {
  return sumOf(await (await divert.api('/metrics')).text(), 'divert_listener_events_total', { listener: 'dns', event });
}

describe('TCP clients outside --allow', () => {
  let upstream: TestUpstream;
  let divert: TestServer;

  before(async () => {
    upstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 60, data: '203.0.113.7' }] }),
    );
    divert = await startDivert({ upstream: [`127.0.0.1:${upstream.port}`], allow: ['127.0.0.1/32'], 'tcp-max-connections': '200' });
    await divert.table.put('www.adm.test', { a: ['192.0.2.7'], aaaa: [], ttl: 30 });
  });
  after(async () => {
    await divert?.close();
    await upstream?.close();
  });

  test('are reset at accept: no reply, nothing read or forwarded, and counted', async () => {
    const before = await listenerEvents(divert, 'tcp_not_allowed');
    const session = tcpSession(divert.port, '127.0.0.1', '127.0.0.2');
    session.send(query('fwd.adm.example'));
    await Promise.race([session.closed, sleep(3000)]);
    assert.ok(session.isClosed(), 'the connection was closed by the server');
    assert.equal(session.replies.length, 0, 'no reply, not even REFUSED');
    assert.equal(upstream.queries.length, 0, 'nothing reached the upstream');
    assert.equal(await listenerEvents(divert, 'tcp_not_allowed'), before + 1);
    // over UDP the same client still gets REFUSED (there is no connection to refuse)
    assert.equal(decode(await tcpAsk(divert.port, query('www.adm.test'))).answers!.length, 1, 'an allowed client is served');
  });

  test('a flood of them while an allowed client queries over new connections: ≥ 99 % answered', async (t) => {
    const flood = tcpFlood(divert.port, 4000);
    await sleep(300); // the flood is under way
    const asked = 200;
    let answered = 0;
    for (let i = 0; i < asked; i++) {
      try {
        const reply = decode(await tcpAsk(divert.port, query(i % 2 === 0 ? 'www.adm.test' : `f${i}.adm.example`), 3000));
        if (reply.rcode === 'NOERROR' && reply.answers!.length === 1) answered++;
      } catch (err) {
        t.diagnostic(`query ${i}: ${(err as Error).message}`);
      }
    }
    const { connections } = await flood;
    t.diagnostic(`flood: ${connections} connections from 127.0.x.y (outside --allow); allowed client: ${answered} of ${asked} answered`);
    assert.ok(connections > 1000, `the flood made ${connections} connections`);
    assert.ok(answered >= asked * 0.99, `the allowed client got ${answered} of ${asked} answers`);
    assert.ok((await listenerEvents(divert, 'tcp_not_allowed')) >= connections * 0.9, 'the flood was reset at accept');
  });
});

describe('when every TCP slot is taken', () => {
  let divert: TestServer;
  let upstream: TestUpstream;

  before(async () => {
    // an upstream that never answers: a forwarded query stays in flight for the query timeout
    upstream = await startUpstream(() => null);
    divert = await startDivert({
      upstream: [`127.0.0.1:${upstream.port}`],
      'tcp-max-connections': '3',
      'query-timeout-ms': '3000',
      'upstream-timeout-ms': '3000',
      workers: '1',
    });
    await divert.table.put('www.slots.test', { a: ['192.0.2.8'], aaaa: [], ttl: 30 });
  });
  after(async () => {
    await divert?.close();
    await upstream?.close();
  });

  test('a newcomer closes the least recently active idle connection, not one just used', async () => {
    const [a, b, c] = [0, 1, 2].map((i) => tcpSession(divert.port, '127.0.0.1', `127.0.${20 + i}.1`));
    for (const s of [a, b, c]) await s.connected;
    await sleep(50);
    // a asks and is answered: b is now the least recently active
    a.send(query('www.slots.test'));
    await a.waitFor(1);
    const before = await listenerEvents(divert, 'tcp_evicted_idle');
    const d = tcpSession(divert.port, '127.0.0.1', '127.0.23.1');
    await d.connected;
    d.send(query('www.slots.test'));
    assert.equal(decode((await d.waitFor(1))[0]).answers!.length, 1, 'the newcomer is served');
    await Promise.race([b.closed, sleep(2000)]);
    assert.ok(b.isClosed(), 'b, the least recently active, was closed');
    assert.ok(!a.isClosed() && !c.isClosed(), 'a (just used) and c are kept');
    assert.equal(await listenerEvents(divert, 'tcp_evicted_idle'), before + 1);
    for (const s of [a, b, c, d]) s.close();
    await sleep(100);
  });

  test('a newcomer is refused only when every connection has a query in flight', async () => {
    const busy = [0, 1, 2].map((i) => tcpSession(divert.port, '127.0.0.1', `127.0.${30 + i}.1`));
    for (const s of busy) {
      await s.connected;
      s.send(query(`silent-${s.socket.localAddress}.slots.example`)); // forwarded to the silent upstream
    }
    await sleep(200);
    const before = await listenerEvents(divert, 'tcp_full');
    const late = tcpSession(divert.port, '127.0.0.1', '127.0.33.1');
    await Promise.race([late.closed, sleep(2000)]);
    assert.ok(late.isClosed(), 'the newcomer was reset');
    assert.ok(
      busy.every((s) => !s.isClosed()),
      'the busy connections are kept',
    );
    assert.equal(await listenerEvents(divert, 'tcp_full'), before + 1);
    // each busy connection still gets its answer (SERVFAIL when the query times out)
    for (const s of busy) assert.equal(decode((await s.waitFor(1, 6000))[0]).rcode, 'SERVFAIL');
    for (const s of busy) s.close();
  });
});

/**
 * A child process opening TCP connections to `port` from random 127.0.x.y addresses for
 * `ms`, at most 400 open at once and 2,000 new ones a second, each left open (sending
 * nothing) until the server closes it. Resolves with the connections made.
 */
function tcpFlood(port: number, ms: number): Promise<{ connections: number }> {
  const script = `
    import { connect } from 'node:net';
    const [port, ms] = process.argv.slice(1).map(Number);
    const end = Date.now() + ms;
    let open = 0, made = 0;
    const started = Date.now();
    const tick = () => {
      const due = Math.min(Math.floor(((Date.now() - started) * 2000) / 1000), 40_000);
      while (open < 400 && made < due && Date.now() < end) {
        const local = '127.0.' + (1 + Math.floor(Math.random() * 250)) + '.' + (1 + Math.floor(Math.random() * 250));
        const socket = connect({ port, host: '127.0.0.1', localAddress: local });
        open++; made++;
        socket.on('error', () => {});
        socket.on('close', () => open--);
      }
      if (Date.now() < end) setTimeout(tick, 5);
      else { process.stdout.write(String(made)); process.exit(0); }
    };
    tick();`;
  return runLoadScript(script, [port, ms], ms + 10_000).then((out) => ({ connections: Number(out) }));
}

// A datagram from source port 0 (sent with a raw socket: anyone on the network can) used
// to kill the process that read it: sending a reply to port 0 throws. Now such a datagram
// is counted and dropped by every UDP listener — DNS (forwarded, intercepted, FORMERR and
// REFUSED paths, IPv4 and IPv6) and DNS UPDATE — and the server goes on answering.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { processTree } from '../bench/netfuzz.js';
import { decode, query, udpAsk } from './helpers/divert.js';
import { runDivert, type DivertProcess } from './helpers/process.js';
import { RawUdp, rawUdpUnavailable } from './helpers/raw-udp.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';
import { sumOf } from './helpers/metrics.js';

const TOKEN = 'port-zero-token-0123456789';

function hostPort(text: string): { address: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(text)!;
  return { address: m[1], port: Number(m[2]) };
}

/** An UPDATE message for zone "zero.test" with nothing in it (unsigned: REFUSED when it can be answered). */
function unsignedUpdate(): Buffer {
  const header = Buffer.from([0x43, 0x21, 0x28, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, Buffer.from([4, 0x7a, 0x65, 0x72, 0x6f, 4, 0x74, 0x65, 0x73, 0x74, 0, 0, 6, 0, 1])]);
}

for (const workers of ['1', '2']) {
  describe(`datagrams from source port 0 (--workers ${workers})`, { skip: rawUdpUnavailable() }, () => {
    let upstream: TestUpstream;
    let divert: DivertProcess;
    let dns4: { address: string; port: number };
    let dns6: { address: string; port: number };
    let update: { address: string; port: number };
    let admin: string;
    let pidsBefore: number[];
    let raw: RawUdp;

    before(async () => {
      upstream = await startUpstream((q) =>
        replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 60, data: '203.0.113.9' }] }),
      );
      const dir = mkdtempSync(join(tmpdir(), 'divert-zero-'));
      const zone = join(dir, 'zero.zone');
      writeFileSync(zone, '$ORIGIN zero.test.\nwww 30 IN A 192.0.2.80\n');
      const keyFile = join(dir, 'update.key');
      writeFileSync(keyFile, `key "zero" { algorithm hmac-sha256; secret "${randomBytes(32).toString('base64')}"; };\n`, { mode: 0o600 });
      divert = runDivert([
        'serve',
        '--listen',
        '127.0.0.1:0',
        '--listen',
        '[::1]:0',
        '--upstream',
        `127.0.0.1:${upstream.port}`,
        '--zones',
        zone,
        '--allow',
        '127.0.0.1/32',
        '--allow',
        '::1/128',
        '--admin-token',
        TOKEN,
        '--workers',
        workers,
        '--update-listen',
        '127.0.0.1:0',
        '--update-key-file',
        keyFile,
      ]);
      const line = await divert.listeningLine(20_000);
      [dns4, dns6] = line.listen.map(hostPort);
      update = hostPort(line.update!);
      admin = `http://${line.admin}`;
      pidsBefore = processTree(divert.child.pid!);
      raw = RawUdp.start();
    });
    after(async () => {
      await raw?.close();
      await divert?.stop();
      await upstream?.close();
    });

    /** The server is alive, no process was replaced, and it answers both an intercepted and a forwarded name. */
    async function stillServes(): Promise<void> {
      await sleep(200); // let the server read what was sent
      assert.equal(divert.child.exitCode, null, `the server exited: ${divert.stderr()}`);
      assert.deepEqual(processTree(divert.child.pid!), pidsBefore, 'no process died or was replaced');
      const intercepted = decode(await udpAsk(dns4.port, query('www.zero.test'), 3000));
      assert.deepEqual(
        intercepted.answers!.map((a) => (a as { data: unknown }).data),
        ['192.0.2.80'],
      );
      const forwarded = decode(await udpAsk(dns6.port, query('fwd.zero.example'), 3000, '::1'));
      assert.deepEqual(
        forwarded.answers!.map((a) => (a as { data: unknown }).data),
        ['203.0.113.9'],
      );
    }

    const cases: [string, () => void][] = [
      ['a query for a forwarded name', () => raw.send({ address: '127.0.0.1', port: 0 }, dns4, query('fwd.zero.example'))],
      ['a query for an intercepted name', () => raw.send({ address: '127.0.0.1', port: 0 }, dns4, query('www.zero.test'))],
      [
        'garbage (FORMERR when answered)',
        () => raw.send({ address: '127.0.0.1', port: 0 }, dns4, Buffer.from('this is not DNS at all, just bytes')),
      ],
      [
        'a query from outside --allow (REFUSED when answered)',
        () => raw.send({ address: '127.0.0.9', port: 0 }, dns4, query('www.zero.test')),
      ],
      ['a query over IPv6', () => raw.send({ address: '::1', port: 0 }, dns6, query('fwd.zero.example'))],
      [
        'an unsigned UPDATE to the DNS UPDATE port (served by the primary)',
        () => raw.send({ address: '127.0.0.1', port: 0 }, update, unsignedUpdate()),
      ],
      ['a query to the DNS UPDATE port', () => raw.send({ address: '127.0.0.1', port: 0 }, update, query('www.zero.test'))],
    ];

    for (const [title, sendIt] of cases) {
      test(`${title}: dropped and counted; the server keeps serving`, async () => {
        for (let i = 0; i < 3; i++) sendIt();
        await raw.flushed();
        await stillServes();
      });
    }

    test('seven of them 0.7 s apart, as the review sent: nothing restarts, and /metrics counts them all', async () => {
      for (let i = 0; i < 7; i++) {
        raw.send({ address: '127.0.0.1', port: 0 }, dns4, query('fwd.zero.example'));
        await raw.flushed();
        await sleep(700);
      }
      await stillServes();
      const metrics = await (await fetch(`${admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
      const dns = sumOf(metrics, 'divert_listener_events_total', { listener: 'dns', event: 'unreplyable_source' });
      const updates = sumOf(metrics, 'divert_listener_events_total', { listener: 'update', event: 'unreplyable_source' });
      // 5 DNS cases × 3, and these 7; 2 UPDATE cases × 3
      assert.equal(dns, 5 * 3 + 7);
      assert.equal(updates, 2 * 3);
      assert.equal(sumOf(metrics, 'divert_listener_events_total', { event: 'send_error' }), 0);
      assert.equal(sumOf(metrics, 'divert_listener_events_total', { event: 'handler_error' }), 0);
      // nothing of them reached the upstream: only the control queries did
      assert.ok(upstream.queries.every((q) => q.from.port !== 0));
    });
  });
}

// A DoT upstream that misbehaves. RFC 5452 over DoT: queries go up to a tls:// upstream
// with random IDs of divert's choosing, and a reply is taken only with the ID and
// question of a query in flight on its connection (the upstream here is a Node TLS server
// that answers every query with a reply of the wrong ID, then one of the wrong question,
// then the right one). And one that accepts connections but never starts TLS costs a
// few connections, not one per query, and its queries get SERVFAIL in time.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server } from 'node:tls';
import dnsPacket from 'dns-packet';
import { lengthPrefix, TcpFramer } from '../src/transport/tcp-framer.js';
import { decode, query, startDivert, tcpAsk, udpAsk, type TestServer } from './helpers/divert.js';
import { selfSignedCertificate } from './helpers/certificate.js';
import { sumOf } from './helpers/metrics.js';

const framed = (msg: Buffer) => Buffer.concat([lengthPrefix(msg), msg]);

describe('a DoT upstream that sends forged replies first', () => {
  const dir = mkdtempSync(join(tmpdir(), 'divert-dot-replies-'));
  const { cert, key } = selfSignedCertificate(dir, 'forger.test', 'DNS:forger.test,IP:127.0.0.1');
  const received: number[] = [];
  let server: Server;
  let divert: TestServer;

  before(async () => {
    server = createTlsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (socket) => {
      const framer = new TcpFramer();
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        for (const msg of framer.push(chunk)) {
          const q = dnsPacket.decode(msg);
          const id = q.id ?? 0;
          received.push(id);
          const question = q.questions![0];
          const answer = (name: string, address: string) => [{ type: 'A' as const, name, ttl: 60, data: address }];
          const reply = (replyId: number, name: string, address: string) =>
            dnsPacket.encode({
              type: 'response',
              id: replyId,
              flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
              questions: [{ ...question, name }],
              answers: answer(name, address),
            });
          socket.write(framed(reply((id + 1) & 0xffff, question.name, '192.0.2.66'))); // wrong ID
          socket.write(framed(reply(id, `other.${question.name}`, '192.0.2.67'))); // wrong question
          socket.write(framed(reply(id, question.name, '198.51.100.9'))); // the answer
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    divert = await startDivert({ workers: 1, upstream: [`tls://127.0.0.1:${port}#forger.test`], 'upstream-ca': cert });
  });

  after(async () => {
    await divert?.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('only the reply with the right ID and question reaches the client; the IDs sent up are random', async () => {
    const clientIds = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const q = query(`name${i}.forger.test`);
      clientIds.add(q.readUInt16BE(0));
      const reply = i % 2 ? await tcpAsk(divert.port, q) : await udpAsk(divert.port, q);
      assert.ok(reply);
      assert.equal(reply.readUInt16BE(0), q.readUInt16BE(0), "the client's own ID");
      const answers = decode(reply).answers ?? [];
      assert.deepEqual(
        answers.map((a) => [a.name, (a as { data?: unknown }).data]),
        [[`name${i}.forger.test`, '198.51.100.9']],
      );
    }
    assert.equal(received.length, 20);
    assert.ok(new Set(received).size >= 18, `IDs sent up: ${received.join(', ')}`);
    assert.ok(received.filter((id) => clientIds.has(id)).length <= 2, 'the IDs are not the clients’');
    const metrics = await (await divert.api('/metrics')).text();
    assert.ok(sumOf(metrics, 'divert_forward_rejected_replies_total') >= 40, 'the forged replies were counted as rejected');
  });
});

describe('a DoT upstream that accepts connections and never answers the TLS handshake', () => {
  const held = new Set<Socket>();
  let accepted = 0;
  const silent = createTcpServer((socket) => {
    accepted++;
    held.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => held.delete(socket));
  });
  let divert: TestServer;

  before(async () => {
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    divert = await startDivert({ workers: 1, upstream: [`tls://127.0.0.1:${port}`], 'upstream-timeout-ms': 200, 'query-timeout-ms': 600 });
  });

  after(async () => {
    await divert?.close();
    for (const s of held) s.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  });

  test('30 queries at once get SERVFAIL within the query timeout, over at most 4 connections', async () => {
    const started = Date.now();
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 2 ? tcpAsk(divert.port, query(`q${i}.silent.test`)) : udpAsk(divert.port, query(`q${i}.silent.test`)),
      ),
    );
    for (const reply of replies) assert.equal(decode(reply).rcode, 'SERVFAIL');
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
    assert.ok(accepted >= 1 && accepted <= 4, `${accepted} connections for 30 queries`);
    // the server is alive, and says its only upstream is not answering
    const health = await divert.api('/healthz');
    assert.equal(health.status, 503);
    assert.match(JSON.stringify(await health.json()), /no upstream is answering/);
  });
});

// bench/reference-relay.c, the floor `npm run bench:proxy` sets divert proxy against: built
// and started as the bench starts it, it must relay what a proxy relays (4 MB each way
// through an echo server, to a client that stops reading for a moment; the client's FIN
// passed on and the target's passed back), or the bench's reference figures mean
// nothing; and its processes end with the first.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo } from 'node:net';
import { startReferenceRelay } from '../bench/proxy-peers.js';
import { freePort } from '../bench/redis-server.js';
import { childrenOf, isRunning } from './helpers/process.js';
import { waitFor } from './monitor-fixtures.js';
import { tempDir } from './helpers/temp-files.js';

test('the reference relay relays both ways with half-close, and its processes go with the first', async (t) => {
  const echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  t.after(() => echo.close());
  const echoPort = (echo.address() as AddressInfo).port;
  const started: ChildProcess[] = [];
  t.after(() => started.forEach((child) => child.kill('SIGKILL')));
  const ctx = { dir: tempDir('reference-relay'), track: (child: ChildProcess) => void started.push(child) };
  const ports = { bulk: await freePort(), short: await freePort() };
  const peer = await startReferenceRelay(ctx, 2, ports, { iperf: echoPort, http: echoPort });
  assert.notEqual(typeof peer, 'string', `the reference relay did not start: ${String(peer)}`);
  if (typeof peer === 'string') return;

  for (const port of [ports.bulk, ports.short]) {
    const sent = randomBytes(4 << 20);
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // a client that reads nothing for a moment: the relay must hold what it cannot send, and stop reading
    socket.pause();
    setTimeout(() => socket.resume(), 300);
    // the echo server ends its side when the client's FIN reaches it: 'end' here means both FINs went through
    const ended = new Promise<void>((resolve, reject) => {
      socket.once('end', resolve);
      socket.once('error', reject);
      setTimeout(
        () => reject(new Error(`port ${port}: no FIN back within 10 s (${Buffer.concat(chunks).length} bytes came back)`)),
        10_000,
      ).unref();
    });
    socket.end(sent);
    await ended;
    socket.destroy();
    assert.ok(Buffer.concat(chunks).equals(sent), `port ${port}: ${Buffer.concat(chunks).length} bytes came back of ${sent.length}`);
  }

  const pid = peer.child.pid!;
  const workers = childrenOf(pid);
  assert.equal(workers.length, 1, 'one process forked besides the first');
  peer.child.kill('SIGTERM');
  await waitFor(() => !isRunning(workers[0]), 5000, `process ${workers[0]} ended with the first`);
});

// A short run of the network fuzzer (bench/netfuzz.ts) against the built binary: random,
// mutated and well-formed queries over UDP and TCP with hostile framing for a few
// seconds, at every listener (DNS over IPv4 and IPv6, DNS UPDATE, the admin port) and,
// as root, from edge sources (port 0, the server's own ports, outside --allow). The
// server stays up, answers every control query right, gives no admin response over 499,
// and closes every connection it should within its idle timeout. `npm run fuzz:net` is
// the long run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { fuzzNetwork, processTree, serverSockets, startTarget } from '../bench/netfuzz.js';
import { rawUdpUnavailable } from './helpers/raw-udp.js';

const SECONDS = Number(process.env.NETFUZZ_TEST_SECONDS ?? 5);

test(
  `network fuzz for ${SECONDS} s at every listener: server alive, control queries right, no connection left open`,
  { timeout: 90_000 },
  async (t) => {
    const idleTimeoutMs = 500;
    const target = await startTarget({ workers: 1, idleTimeoutMs, queryTimeoutMs: 600 });
    try {
      const primary = target.process.child.pid!;
      const pidsBefore = processTree(primary);
      const report = await fuzzNetwork({
        port: target.port,
        seconds: SECONDS,
        seed: 6,
        udpRate: 1000,
        tcpConcurrency: 8,
        idleTimeoutMs,
        queryTimeoutMs: target.queryTimeoutMs,
        target,
        rawRate: 200,
      });
      assert.ok(
        report.updateSent > 0 && report.updateReplies > 0,
        `DNS UPDATE port: ${report.updateSent} sent, ${report.updateReplies} replies`,
      );
      if (rawUdpUnavailable() === false) assert.ok(report.rawSent > SECONDS * 100, `${report.rawSent} datagrams from edge sources`);
      else t.diagnostic(`no datagrams from edge sources: ${report.rawSkipped}`);
      assert.ok(report.admin && report.admin.conversations >= 10, `${report.admin?.conversations} admin conversations`);
      assert.deepEqual(report.admin.bad, [], "no admin response over 499 or out of divert's error format");
      assert.deepEqual(report.admin.controlFailed, [], 'the token holder is served throughout');
      // the fuzzer itself sends at 1000/s; on a machine busy with other work it gets less done
      assert.ok(report.udpSent > SECONDS * 100, `${report.udpSent} datagrams sent`);
      assert.ok(report.udpReplies > 0 && report.tcpReplies > 0, 'replies over UDP and TCP');
      assert.ok(report.tcpConnections >= 8, `${report.tcpConnections} TCP connections`);
      assert.deepEqual(report.controlFailed, [], 'every control query is answered right');
      assert.ok(report.controlOk >= 4 * (SECONDS - 1), `${report.controlOk} control queries answered right`);
      assert.deepEqual(report.tcpStuck, [], 'the server closes idle and half-closed connections in time');

      // every client is gone: within the idle timeout (and a query's time) the server holds no connection
      await sleep(idleTimeoutMs + target.queryTimeoutMs + 500);
      const sockets = serverSockets(target.port);
      assert.equal(
        (sockets.ESTABLISHED ?? 0) + (sockets.CLOSE_WAIT ?? 0) + (sockets.SYN_RECV ?? 0),
        0,
        `server-side sockets: ${JSON.stringify(sockets)}`,
      );

      const child = target.process.child;
      assert.equal(child.exitCode, null, 'the server is alive');
      assert.equal(child.signalCode, null);
      assert.deepEqual(processTree(primary), pidsBefore, 'no worker was replaced');
      const errors = (target.process.stdout() + target.process.stderr()).split('\n').filter((l) => /"level":(50|60)/.test(l));
      assert.deepEqual(errors, [], 'no error logged');
    } finally {
      await target.stop();
    }
  },
);

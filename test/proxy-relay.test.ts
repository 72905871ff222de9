// How `divert proxy` relays TCP, as a client and a target see it, whichever relay carries
// the service: divert's native addon (the default for plain TCP) or node:net (TLS, onChange
// move, --no-native-relay, and npm test's second pass, DIVERT_TEST_UDP_BATCH=0). A FIN is
// passed on as a FIN with the other way still open, a reset as a reset, a target that
// speaks first is heard, and /status says which relay carries each service.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { childrenOf, runDivert } from './helpers/process.js';
import { waitFor, writeConfig } from './monitor-fixtures.js';
import { startProxy, type ProxyProcess } from './proxy-fixtures.js';
import { workerOf } from '../src/proxy/workers.js';

const TARGET = '127.0.0.2';
/** The relay a plain TCP service gets in this run of the suite. */
const PLAIN = process.env.DIVERT_TEST_UDP_BATCH === '0' ? 'node' : 'native';
/** No divert serve: address targets relay without it. */
const NO_ADMIN = { adminUrl: 'http://127.0.0.1:9' };

/** A target on 127.0.0.2 whose connections `onConnection` handles (half-open allowed). */
async function target(onConnection: (socket: Socket) => void): Promise<{ server: Server; port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  server.listen(0, TARGET);
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as { port: number }).port,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A target on 127.0.0.2 whose connections `onConnection` handles, a proxy to it (one
 * process unless `args` say otherwise), `run` with the proxy, then both stopped. */
async function throughProxy(onConnection: (socket: Socket) => void, run: (proxy: ProxyProcess) => Promise<void>, args: string[] = []) {
  const t = await target(onConnection);
  let proxy: ProxyProcess | undefined;
  try {
    proxy = await startProxy(
      { services: [{ name: 'tcp', listen: '127.0.0.1:0', target: { address: TARGET, port: t.port }, onChange: 'keep' }] },
      NO_ADMIN,
      args.includes('--workers') ? args : ['--workers', '1', ...args],
    );
    await run(proxy);
  } finally {
    await proxy?.stop();
    await t.stop();
  }
}

/** Writes `text` and resolves with the first bytes that come back (within 3 s). */
async function firstReply(client: Socket, text: string): Promise<string> {
  client.write(text);
  const [back] = (await once(client, 'data', { signal: AbortSignal.timeout(3000) })) as [Buffer];
  return back.toString();
}

/** Everything the client reads until the proxy ends its side, and how it ended: 'fin', or the error's code. */
function readAll(socket: Socket): Promise<{ text: string; ended: string }> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.once('end', () => resolve({ text, ended: 'fin' }));
    socket.once('error', (err: NodeJS.ErrnoException) => resolve({ text, ended: err.code ?? err.message }));
  });
}

describe('divert proxy: how TCP is relayed', () => {
  test('a FIN is passed on with the other way open: the target answers after the client has finished sending', async () => {
    // the target reads to the client's FIN, then answers with what it got and ends
    const answerAtFin = (socket: Socket) => {
      let got = '';
      socket.on('data', (chunk: Buffer) => (got += chunk.toString()));
      socket.on('end', () => setTimeout(() => socket.end(`got ${got.length} bytes: ${got}`), 50));
    };
    await throughProxy(answerAtFin, async (proxy) => {
      const client = connect({ port: proxy.port('tcp'), host: '127.0.0.1', allowHalfOpen: true });
      await once(client, 'connect');
      const reply = readAll(client);
      client.end('hello, then FIN');
      assert.deepEqual(await reply, { text: 'got 15 bytes: hello, then FIN', ended: 'fin' });
      client.destroy();
    });
  });

  test('a reset is passed on as a reset, both ways', async () => {
    let targetSaw: Promise<string> | undefined;
    // "reset": the target resets; anything else: it waits to see how the client leaves
    const resetOrWatch = (socket: Socket) =>
      socket.once('data', (chunk: Buffer) => {
        if (chunk.toString() === 'reset') socket.resetAndDestroy();
        else
          targetSaw = new Promise((resolve) => {
            socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
            socket.once('end', () => resolve('fin'));
          });
      });
    await throughProxy(resetOrWatch, async (proxy) => {
      const port = proxy.port('tcp');
      const first = connect({ port, host: '127.0.0.1' });
      await once(first, 'connect');
      const ended = readAll(first);
      first.write('reset');
      assert.deepEqual(await ended, { text: '', ended: 'ECONNRESET' }, "the target's reset reaches the client");

      const second = connect({ port, host: '127.0.0.1' });
      await once(second, 'connect');
      second.write('wait');
      await waitFor(() => targetSaw !== undefined, 3000, 'the target reading the second client');
      second.resetAndDestroy();
      assert.equal(await targetSaw, 'ECONNRESET', "the client's reset reaches the target");
    });
  });

  test('a target that speaks first is heard before the client sends anything', async () => {
    await throughProxy(
      (socket) => socket.write('220 ready\r\n'),
      async (proxy) => {
        const client = connect({ port: proxy.port('tcp'), host: '127.0.0.1' });
        const [banner] = (await once(client, 'data', { signal: AbortSignal.timeout(3000) })) as [Buffer];
        assert.equal(banner.toString(), '220 ready\r\n');
        client.destroy();
      },
    );
  });

  test('/status and `divert proxy status` say which relay carries each service; --no-native-relay puts them all on node:net', async () => {
    const t = await target((socket) => socket.pipe(socket));
    const services = [
      { name: 'plain', listen: '127.0.0.1:0', target: { address: TARGET, port: t.port } },
      { name: 'moving', listen: '127.0.0.1:0', target: { address: TARGET, port: t.port }, onChange: 'move' },
    ];
    const relays = async (p: ProxyProcess) =>
      Object.fromEntries(
        ((await (await p.get('/status')).json()) as { services: { name: string; relay: string }[] }).services.map((s) => [s.name, s.relay]),
      );
    let proxy: ProxyProcess | undefined;
    try {
      proxy = await startProxy({ services }, NO_ADMIN);
      assert.deepEqual(await relays(proxy), { plain: PLAIN, moving: 'node' });
      const status = runDivert(['proxy', 'status', '--status', proxy.statusAt]);
      assert.equal(await status.exited(), 0, status.stderr());
      assert.match(status.stdout(), /SERVICE +PROTOCOL +LISTEN +TARGET +ON CHANGE +OPEN +RELAY/);
      assert.match(status.stdout(), new RegExp(`plain +tcp .* ${PLAIN}\n`));
      await proxy.stop();
      proxy = await startProxy({ services }, NO_ADMIN, ['--workers', '1', '--no-native-relay']);
      assert.deepEqual(await relays(proxy), { plain: 'node', moving: 'node' });
      // and both relay
      for (const name of ['plain', 'moving']) {
        const client: Socket = connect({ port: proxy.port(name), host: '127.0.0.1' });
        await once(client, 'connect');
        assert.equal(await firstReply(client, 'echo'), 'echo');
        client.destroy();
      }
    } finally {
      await proxy?.stop();
      await t.stop();
    }
  });

  test('--workers 2: a worker that dies is started again and accepts from the same listener as the other', async () => {
    const echo = (socket: Socket) => socket.pipe(socket);
    await throughProxy(
      echo,
      async (proxy) => {
        const primary = proxy.proc.child.pid!;
        await waitFor(() => childrenOf(primary).length === 2, 5000, 'two workers');
        const [victim] = childrenOf(primary);
        process.kill(victim, 'SIGKILL');
        await waitFor(() => childrenOf(primary).length === 2 && !childrenOf(primary).includes(victim), 10_000, 'the worker started again');
        const port = proxy.port('tcp');
        // 20 connections open at once, each echoing: once the new worker listens, both take some
        const batch = async () => {
          const clients = await Promise.all(
            Array.from({ length: 20 }, async () => {
              const client = connect({ port, host: '127.0.0.1' });
              client.on('error', () => {});
              await once(client, 'connect');
              return client;
            }),
          );
          try {
            for (const [i, client] of clients.entries()) assert.equal(await firstReply(client, `c${i}`), `c${i}`);
            return new Set((await proxy.connections()).map((c) => workerOf(c.id))).size === 2;
          } finally {
            for (const client of clients) client.destroy();
          }
        };
        await waitFor(batch, 10_000, 'connections taken by both workers, the new one too');
      },
      ['--workers', '2'],
    );
  });

  test('--workers 2: long-lived connections opened one after another are spread over both workers, not piled on the first', async () => {
    await throughProxy(
      (socket) => socket.pipe(socket),
      async (proxy) => {
        await waitFor(() => childrenOf(proxy.proc.child.pid!).length === 2, 5000, 'two workers');
        const port = proxy.port('tcp');
        const clients: Socket[] = [];
        try {
          // one at a time, each answered (so accepted) before the next: both workers are idle at every connect
          for (let i = 0; i < 20; i++) {
            const client = connect({ port, host: '127.0.0.1' });
            client.on('error', () => {});
            clients.push(client);
            await once(client, 'connect');
            assert.equal(await firstReply(client, `c${i}`), `c${i}`);
          }
          const perWorker = new Map<number, number>();
          for (const c of await proxy.connections()) {
            const worker = workerOf(c.id);
            perWorker.set(worker, (perWorker.get(worker) ?? 0) + 1);
          }
          const counts = [...perWorker.values()];
          assert.equal(
            counts.reduce((a, b) => a + b, 0),
            20,
            'all 20 in the table',
          );
          assert.equal(counts.length, 2, `both workers hold some: ${JSON.stringify([...perWorker])}`);
          // each connection stays with the worker that accepted it: a lopsided split leaves one core to relay most of them
          assert.ok(Math.min(...counts) >= 5, `each worker holds at least 5 of 20: ${JSON.stringify([...perWorker])}`);
        } finally {
          for (const client of clients) client.destroy();
        }
      },
      ['--workers', '2'],
    );
  });

  test('DIVERT_PROXY_NATIVE_RELAY takes true or false; anything else stops the start with one line naming it', async () => {
    const config = writeConfig({ services: [{ name: 'tcp', listen: '127.0.0.1:0', target: { address: TARGET, port: 9 } }] });
    const proc = runDivert(['proxy', '--config', config, '--admin', NO_ADMIN.adminUrl, '--token', 'x', '--status', '127.0.0.1:0'], {
      env: { DIVERT_PROXY_NATIVE_RELAY: 'maybe' },
    });
    assert.equal(await proc.exited(), 2);
    assert.equal(proc.stderr().trim(), 'divert: DIVERT_PROXY_NATIVE_RELAY="maybe": expected true or false');
  });
});

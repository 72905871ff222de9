// The one place divert connects to Redis: the command connection (with the write
// scripts), a second one for seed and import scripts (one script can run for seconds on
// a large import, longer than a lookup may wait), and the subscriber of the change feed.
// Resolves once the store can be read and its changes are heard, or fails within the
// connect timeout with BACKEND_UNAVAILABLE naming where.

import { maskUrl } from '../../redact.js';
import { createClient, createSubscriber, type TableClient } from './redis-client.js';
import { ChangeFeed } from './redis-feed.js';
import { RedisReporter } from './redis-reporter.js';
import { RedisStore, type RedisStoreOptions } from './redis-store.js';
import { parseRedisUrl } from './redis-url.js';

export interface OpenRedisOptions extends RedisStoreOptions {
  /** redis://, rediss://, redis-sentinel:// or redis-cluster:// (see parseRedisUrl). */
  url: string;
  /** Per command; a dead Redis must not stall the query path. Default 500. */
  commandTimeoutMs?: number;
  /** For seed and import scripts, which grow with the file: default 120 s. */
  bulkTimeoutMs?: number;
  /** How long the connect keeps trying before giving up. Default 5000. */
  connectTimeoutMs?: number;
  /** Unreadable stored entries, listener exceptions and connection loss (once per outage). */
  onError?: (err: Error) => void;
}

async function quit(client: TableClient): Promise<void> {
  if (client.status === 'ready') {
    try {
      await client.quit();
      return;
    } catch {
      // fall through: drop the socket instead
    }
  }
  client.disconnect();
}

export async function openRedisStore(options: OpenRedisOptions): Promise<RedisStore> {
  const target = parseRedisUrl(options.url);
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  const timeouts = { connectTimeoutMs, commandTimeoutMs: options.commandTimeoutMs ?? 500 };
  const reporter = new RedisReporter(`redis at ${maskUrl(options.url)}`, target.password, options.onError);
  const client = createClient(target, timeouts);
  // Without a listener an 'error' event would crash the process.
  client.on('error', (err: Error) => reporter.connectionError('main', err));
  client.on('node error', (err: Error) => reporter.connectionError('main', err));
  client.on('ready', () => reporter.connectionReady('main'));
  let bulk: TableClient | undefined;
  const store = new RedisStore(
    {
      client,
      reporter,
      bulk: () => {
        if (!bulk) {
          bulk = createClient(target, { connectTimeoutMs, commandTimeoutMs: options.bulkTimeoutMs ?? 120_000 }, { offlineQueue: true });
          bulk.on('error', (err: Error) => reporter.connectionError('main', err));
          bulk.connect().catch(() => {}); // queued until ready; a failure fails the write
        }
        return bulk;
      },
      close: async () => {
        await Promise.all([quit(client), bulk ? quit(bulk) : undefined]);
      },
    },
    options,
  );

  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), connectTimeoutMs);
  });
  try {
    const ready = new Promise<void>((resolve) => client.once('ready', () => resolve()));
    client.connect().catch(() => {}); // failures are retried by the retry strategy until the deadline
    if ((await Promise.race([ready, timedOut])) === 'timeout') throw reporter.unreachable(connectTimeoutMs);
    const feed = new ChangeFeed(createSubscriber(target, client, timeouts), store.channels, {
      message: (channel, raw) => store.received(channel, raw),
      resync: () => {
        reporter.connectionReady('feed');
        store.resync();
      },
      error: (err) => reporter.connectionError('feed', err),
    });
    store.attach(feed);
    feed.start();
    // Changes made after this resolves must reach the store: wait for the subscription.
    if ((await Promise.race([feed.ready, timedOut])) === 'timeout') throw reporter.unreachable(connectTimeoutMs, 'change feed ');
    await store.index();
    reporter.connected = true;
  } catch (err) {
    await store.close();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return store;
}

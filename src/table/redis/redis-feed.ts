// The change feed of a RedisTable: one subscriber connection on its channels (the entries'
// changes, the diversion records') that delivers every message, in the order Redis
// published them, and says when messages may have been missed.

import type { Cluster, Redis } from 'ioredis';

export interface FeedHandlers {
  message(channel: string, raw: string): void;
  /** The subscription is back after a loss: messages sent meanwhile are gone. */
  resync(): void;
  /** Connection trouble; the feed keeps trying by itself. */
  error(err: Error): void;
}

export class ChangeFeed {
  private subscribedOnce = false;
  /** Bumped on every connect, so a subscribe reply from an older connection is ignored. */
  private generation = 0;
  private closed = false;
  private firstSubscribed!: () => void;
  /** Resolves once the first subscription is in place. */
  readonly ready = new Promise<void>((resolve) => (this.firstSubscribed = resolve));

  constructor(
    private readonly client: Redis | Cluster,
    private readonly channels: string[],
    private readonly handlers: FeedHandlers,
  ) {
    // Without error listeners an 'error' event would crash the process.
    client.on('error', (err: Error) => this.handlers.error(err));
    client.on('node error', (err: Error) => this.handlers.error(err));
    client.on('message', (channel: string, message: string) => {
      if (this.channels.includes(channel) && !this.closed) this.handlers.message(channel, message);
    });
    // After every (re)connect of a single server or Sentinel master, and after a Cluster
    // client reconnected as a whole.
    client.on('ready', () => this.subscribe());
    if (isCluster(client) && !watchClusterSubscriber(client, (connection) => this.clusterResubscribed(connection))) {
      this.handlers.error(new Error('ioredis Cluster internals changed: reconnects of the change feed go unnoticed (no resync)'));
    }
  }

  start(): void {
    this.client.connect().catch(() => {}); // failures are retried by the client's retry strategy
  }

  /**
   * Resolves once every message Redis had published before this call has been handled:
   * a PING on the subscriber connection is answered after the messages queued on it.
   * (A Cluster spreads messages over its bus asynchronously; there this is best effort.)
   */
  async barrier(): Promise<void> {
    if (isCluster(this.client) || this.client.status !== 'ready') return;
    await this.client.ping();
  }

  close(): void {
    this.closed = true;
    // Nothing to flush on a subscribe-only connection.
    this.client.disconnect();
  }

  private subscribe(): void {
    const generation = ++this.generation;
    this.client.subscribe(...this.channels).then(
      () => {
        if (generation !== this.generation || this.closed) return;
        this.subscribed();
      },
      (err: unknown) => {
        if (generation !== this.generation || this.closed) return;
        this.handlers.error(err instanceof Error ? err : new Error(String(err)));
        // Connected but not subscribed would lose every change silently: start over.
        if (!isCluster(this.client) && this.client.status === 'ready') this.client.disconnect(true);
      },
    );
  }

  private subscribed(): void {
    if (this.subscribedOnce) this.handlers.resync();
    this.subscribedOnce = true;
    this.firstSubscribed();
  }

  /**
   * The Cluster client replaced its subscribe connection (the old one dropped) and queued
   * its own re-subscribe there. Subscribing once more is harmless (one subscription per
   * channel and connection) and tells us when it is in place, whatever ioredis remembered.
   */
  private clusterResubscribed(connection: Redis): void {
    if (!this.subscribedOnce || this.closed) return;
    connection.subscribe(...this.channels).then(
      () => {
        if (!this.closed) this.handlers.resync();
      },
      () => {}, // that connection failed too; the Cluster client picks another one
    );
  }
}

function isCluster(client: Redis | Cluster): client is Cluster {
  return (client as Cluster).isCluster === true;
}

interface ClusterSubscriberInternals {
  selectSubscriber?: () => void;
  getInstance?: () => Redis | null;
}

/**
 * ioredis keeps a Cluster's pub/sub connection private and replaces it without any event
 * when it drops, re-subscribing on the new one. Messages published in between are lost,
 * and this is the only place to learn of it: wrap the method that makes the new one.
 */
function watchClusterSubscriber(cluster: Cluster, replaced: (connection: Redis) => void): boolean {
  const inner = (cluster as unknown as { subscriber?: ClusterSubscriberInternals }).subscriber;
  const select = inner?.selectSubscriber;
  if (!inner || typeof select !== 'function' || typeof inner.getInstance !== 'function') return false;
  inner.selectSubscriber = function (this: ClusterSubscriberInternals) {
    select.call(this);
    const connection = this.getInstance?.();
    if (connection) replaced(connection);
  };
  return true;
}

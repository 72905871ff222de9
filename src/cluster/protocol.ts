// Messages between the primary of `divert serve --workers N` and its workers, over the
// cluster's IPC channel (structured clone: Buffers arrive as Uint8Arrays).

import type { HostPort } from '../net/host-port.js';
import type { UpstreamSpec } from '../net/upstream-spec.js';
import type { ServeConfig } from '../config/options.js';
import type { ServingStats } from '../serving/stats.js';
import type { ChangeEvent, Entry } from '../entry/entry.js';
import type { PoolNews } from '../upstream/upstream-pool.js';
import type { Outcome } from '../pipeline/outcome.js';
import type { WorkerTable } from '../table/backend.js';
import type { EncryptedAddresses } from '../transport/listener-set.js';
import type { TlsPem } from '../transport/tls-settings.js';

export type ToWorker =
  /** Start serving, reading the table from a replica the primary feeds, or from Redis;
   * udpFds: --udp-batch's UDP sockets, bound by the primary, as this worker's descriptors (one per listen address);
   * tls: the DoT and DoH certificate and key, checked by the primary. */
  | {
      t: 'start';
      config: ServeConfig;
      upstreams: UpstreamSpec[];
      table: WorkerTable;
      workerId: number;
      udpFds?: number[];
      /** The first worker's pid, to a worker other than the first (it reads a shared UDP socket only while the first falls behind). */
      firstReader?: number;
      tls: TlsPem | null;
    }
  /** The primary's whole in-process table, before any change. */
  | { t: 'snapshot'; entries: Entry[] }
  /** Changes in the order they were made. */
  | { t: 'changes'; events: ChangeEvent[] }
  | { t: 'stats'; id: number }
  /** Run one query through the worker's query path, as if it came from `address` over UDP. */
  | { t: 'probe'; id: number; query: Uint8Array; address: string }
  /** Answer once every change acknowledged before this message is applied. */
  | { t: 'sync'; id: number }
  /** Another worker's upstream failure or recovery. */
  | { t: 'upstream'; news: PoolNews }
  /** A reload (src/reload.ts), already validated by the primary: apply it, then say so. */
  | { t: 'reconfigure'; id: number; config: ServeConfig; upstreams: UpstreamSpec[] }
  /** A new DoT and DoH certificate (SIGHUP), checked by the primary: use it for new connections, then say so. */
  | { t: 'certificate'; id: number; pem: TlsPem }
  /** The first worker is process `pid` from now (it was restarted): to the others. */
  | { t: 'first-reader'; pid: number }
  | { t: 'close' };

export type FromWorker =
  /** Listening for the primary's messages: anything sent before this would be lost. */
  | { t: 'ready' }
  | { t: 'listening'; listening: HostPort[]; encrypted: EncryptedAddresses }
  | { t: 'failed'; code: string; message: string }
  | { t: 'stats'; id: number; stats: ServingStats }
  | { t: 'probe'; id: number; result: { reply: Uint8Array | null; outcome: Outcome } | null }
  | { t: 'synced'; id: number }
  | { t: 'reconfigured'; id: number }
  | { t: 'certified'; id: number }
  | { t: 'upstream'; news: PoolNews };

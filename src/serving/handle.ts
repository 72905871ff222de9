// The serving half as the rest of `divert serve` sees it, whether it runs in this
// process (--workers 1) or in worker processes (cluster/primary.ts): its figures, its
// workers, a reload, and settle — the moment a write may be acknowledged, once every
// process answering queries answers with it.

import type { ServeConfig } from '../config/options.js';
import type { HostPort } from '../net/host-port.js';
import type { UpstreamSpec } from '../net/upstream-spec.js';
import type { Result } from '../pipeline/outcome.js';
import type { EncryptedAddresses } from '../transport/listener-set.js';
import type { TlsPem } from '../transport/tls-settings.js';
import type { Serving } from './serving.js';
import type { ServingStats } from './stats.js';

/** A worker slot whose worker is not serving after a crash: waiting for its start, or starting. */
export interface SlotRestart {
  /** 1-based. */
  worker: number;
  /** Crashes in a row (a failed start counts as one), since its worker last served long enough to be forgiven them. */
  crashes: number;
  state: 'waiting' | 'starting';
  /** When 'waiting': when its next worker is started. */
  nextStartAt?: string;
  nextStartInMs?: number;
}

export interface WorkersState {
  configured: number;
  /** Serving (a worker still starting is not). */
  running: number;
  restarting: SlotRestart[];
  /** Per worker slot: workers started to replace one that exited. */
  restarts: number[];
}

/** What a settle found: the workers (1-based) that did not confirm in time that they answer with every change so far. */
export interface Settled {
  unconfirmed: number[];
}

export interface ServingHandle {
  listening: HostPort[];
  /** The DoT and DoH addresses bound. */
  encrypted: EncryptedAddresses;
  /** A new DoT and DoH certificate (checked: tls-credentials.ts), for the connections from now
   * on, in every worker (and a worker started later starts with it). Resolves with the
   * workers (1-based) that did not confirm in time. */
  setCertificate: (pem: TlsPem) => Promise<number[]>;
  /** Query and cache figures, summed over the workers. */
  stats: () => Promise<ServingStats>;
  /** Resolves once every worker has applied every change made so far, or says which did not in time. */
  settle: () => Promise<Settled>;
  /** The processes answering queries, against those configured, and the ones being replaced. */
  workers: () => WorkersState;
  /** A reload, validated: every worker applies it (and a worker started later starts with
   * it). Resolves with the workers (1-based) that did not confirm in time. */
  reconfigure: (config: ServeConfig, upstreams: UpstreamSpec[]) => Promise<number[]>;
  close: () => Promise<void>;
  /** For tests and debugging, not for serving: each worker's own figures, its reply to a
   * query run through its query path without a socket, and its process ID. */
  readonly debug: {
    statsEach(): Promise<ServingStats[]>;
    probe(query: Buffer, address?: string): Promise<(Result | null)[]>;
    pids(): number[];
  };
}

/** The serving half in this process: nothing to replace, nothing to wait for. */
export function inProcess(serving: Serving): ServingHandle {
  return {
    listening: serving.listening,
    encrypted: serving.encrypted,
    setCertificate: async (pem) => {
      serving.setCertificate(pem);
      return [];
    },
    stats: async () => serving.stats(),
    // the table tells the query path of a change before the write returns
    settle: async () => ({ unconfirmed: [] }),
    // nothing to replace: when this process dies, DNS goes with it (its supervisor restarts it)
    workers: () => ({ configured: 1, running: 1, restarting: [], restarts: [0] }),
    reconfigure: async (config, upstreams) => {
      serving.reconfigure(config, upstreams);
      return [];
    },
    close: () => serving.close(),
    debug: {
      statsEach: async () => [serving.stats()],
      probe: async (query, address = '127.0.0.1') => [await serving.debug.probe(query, address)],
      pids: () => [process.pid],
    },
  };
}

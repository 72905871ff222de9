// `divert proxy` in one process: the services of the config, each listening and relaying,
// on one view of divert serve's table; the figures the status endpoint shows. With
// --workers N each worker runs one of these (src/proxy/workers.ts).

import type { Logger } from 'pino';
import type { AdminClient } from '../client/admin-client.js';
import type { Connection } from '../client/connection.js';
import { formatHostPort, type HostPort } from '../net/host-port.js';
import type { ProxyConfig } from './config.js';
import { ConnectionTable } from './connections.js';
import { figuresOf, type ProxyFigures } from './figures.js';
import { TableView, type AdminState } from './table-view.js';
import { targetKey } from './targets.js';
import { NativeTcpService } from './native-tcp-service.js';
import { relaysNatively, type TcpRelayAddon } from './native-relay.js';
import { TcpService } from './tcp-service.js';
import { UdpService } from './udp-service.js';

/** GET /status of the proxy: each service, where it listens and what it targets now. */
export interface ProxyStatus {
  startedAt: string;
  workers: number;
  admin: AdminState & { url: string };
  services: {
    name: string;
    protocol: string;
    listen: string[];
    target: string;
    onChange: string;
    open: number;
    /** What relays it: divert's native addon, or node:net / node:dgram. */
    relay: 'native' | 'node';
  }[];
  connections: number;
}

export interface ProxyOptions {
  /** Where this process's connection ids start. */
  firstId: number;
  /** The limits are shared by this many processes: each takes its part. */
  share: number;
  /** UDP listeners bound with SO_REUSEPORT, one per worker (a flow stays with one worker). */
  reusePort: boolean;
  /** The native TCP relay, for the services it can carry (null: node:net relays every one). */
  nativeRelay?: TcpRelayAddon | null;
  /** In a worker: the native services' listeners the primary opened, as this process's descriptors (by listenKey). */
  inherited?: Record<string, number>;
}

export class Proxy {
  readonly table: ConnectionTable;
  readonly view: TableView;
  private readonly services: { name: string; relay: TcpService | NativeTcpService | UdpService; bound: HostPort[] }[] = [];

  constructor(
    private readonly config: ProxyConfig,
    client: AdminClient,
    connection: Connection,
    private readonly log: Logger,
    private readonly options: ProxyOptions = { firstId: 1, share: 1, reusePort: false },
  ) {
    const part = (limit: number) => Math.max(1, Math.ceil(limit / options.share));
    this.table = new ConnectionTable(part(config.maxConnections), part(config.maxConnectionsPerNetwork), options.firstId);
    const names = config.services.flatMap((s) => ('name' in s.target ? [s.target.name] : []));
    this.view = new TableView(client, connection, names, log);
  }

  /** Reads the table (true: it was reached), then listens on every service's addresses; rejects naming the address that failed. */
  async start(): Promise<boolean> {
    const reached = await this.view.start();
    if (reached) {
      for (const s of this.config.services)
        if ('name' in s.target && !this.view.entry(s.target.name))
          this.log.warn(
            { service: s.name, name: s.target.name },
            `service "${s.name}": ${s.target.name} has no entry in the table: its clients are reset until it has one`,
          );
    }
    for (const config of this.config.services) {
      const { nativeRelay, inherited } = this.options;
      const relay =
        config.protocol === 'udp'
          ? new UdpService(config, this.view, this.table, this.log, this.options.reusePort)
          : nativeRelay && relaysNatively(config)
            ? new NativeTcpService(config, this.view, this.table, this.log, nativeRelay, inherited)
            : new TcpService(config, this.view, this.table, this.log);
      const service = { name: config.name, relay, bound: [] as HostPort[] };
      this.services.push(service);
      try {
        service.bound = await relay.listen();
      } catch (err) {
        await this.stop();
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        const at = config.listen.map(formatHostPort).join(', ');
        throw Object.assign(new Error(`service "${config.name}": cannot listen on ${config.protocol} ${at} (${code})`), { code });
      }
    }
    this.view.onChange((change) => {
      this.config.services.forEach((config, i) => {
        const concerned =
          change.kind === 'all' ||
          (change.kind === 'diversions' && 'address' in config.target) ||
          (change.kind === 'name' && targetKey(config) === change.name);
        if (concerned) this.services[i].relay.changed();
      });
    });
    return reached;
  }

  /** SIGHUP: every TLS service reads its certificate and key again (see TcpService.reloadTls). */
  reloadTls(): void {
    for (const s of this.services) if (s.relay instanceof TcpService) s.relay.reloadTls();
  }

  async stop(): Promise<void> {
    this.view.stop();
    await Promise.all(this.services.map((s) => s.relay.close()));
  }

  /** Where each service listens, as bound (port 0 in the config becomes the OS's choice). */
  listening(): Record<string, HostPort[]> {
    return Object.fromEntries(this.services.map((s) => [s.name, s.bound]));
  }

  figures(): ProxyFigures {
    return figuresOf(this.table, this.view.admin());
  }
}

/** The status page from the config, where the services listen and the figures of every process. */
export function statusOf(
  config: ProxyConfig,
  listening: Record<string, HostPort[]>,
  figures: ProxyFigures,
  started: { at: string; workers: number; adminUrl: string; nativeRelay: boolean },
): ProxyStatus {
  const open = new Map<string, number>();
  for (const c of figures.connections) open.set(c.service, (open.get(c.service) ?? 0) + 1);
  return {
    startedAt: started.at,
    workers: started.workers,
    admin: { ...figures.admin, url: started.adminUrl },
    services: config.services.map((s) => ({
      name: s.name,
      protocol: s.protocol,
      listen: (listening[s.name] ?? []).map(formatHostPort),
      target:
        'name' in s.target ? `${s.target.name} port ${s.target.port}` : formatHostPort({ host: s.target.address, port: s.target.port }),
      onChange: s.onChange,
      open: open.get(s.name) ?? 0,
      relay: started.nativeRelay && relaysNatively(s) ? 'native' : 'node',
    })),
    connections: figures.connections.length,
  };
}

// `divert proxy`: the services of the config, each listening and relaying, on one view of
// divert serve's table; the connection table and the status endpoint read from them.

import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AdminClient } from '../client/admin-client.js';
import type { Connection } from '../client/connection.js';
import { formatHostPort, type HostPort } from '../net/host-port.js';
import type { ProxyConfig, ProxyService } from './config.js';
import { ConnectionTable, type Connection as Relayed } from './connections.js';
import { proxyRegistry } from './metrics.js';
import { TableView, type AdminState } from './table-view.js';
import { targetKey } from './targets.js';
import { TcpService } from './tcp-service.js';
import { UdpService } from './udp-service.js';

/** GET /status of the proxy: each service, where it listens and what it targets now. */
export interface ProxyStatus {
  startedAt: string;
  admin: AdminState & { url: string };
  services: { name: string; protocol: string; listen: string[]; target: string; onChange: string; open: number }[];
  connections: number;
}

export class Proxy {
  readonly table: ConnectionTable;
  readonly view: TableView;
  readonly registry: Registry;
  private readonly services: { config: ProxyService; relay: TcpService | UdpService; bound: HostPort[] }[] = [];
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly config: ProxyConfig,
    client: AdminClient,
    private readonly connection: Connection,
    private readonly log: Logger,
  ) {
    this.table = new ConnectionTable(config.maxConnections, config.maxConnectionsPerNetwork);
    const names = config.services.flatMap((s) => ('name' in s.target ? [s.target.name] : []));
    this.view = new TableView(client, connection, names, log);
    this.registry = proxyRegistry(this.table, this.view);
  }

  /** Reads the table, then listens on every service's addresses; rejects naming the address that failed. */
  async start(): Promise<boolean> {
    const reached = await this.view.start();
    for (const config of this.config.services) {
      const relay =
        config.protocol === 'tcp'
          ? new TcpService(config, this.view, this.table, this.log)
          : new UdpService(config, this.view, this.table, this.log);
      this.services.push({ config, relay, bound: [] });
    }
    for (const service of this.services) {
      try {
        service.bound = await service.relay.listen();
      } catch (err) {
        await this.stop();
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        const at = service.config.listen.map(formatHostPort).join(', ');
        throw Object.assign(new Error(`service "${service.config.name}": cannot listen on ${service.config.protocol} ${at} (${code})`), {
          code,
        });
      }
    }
    this.view.onChange((change) => {
      for (const { config, relay } of this.services) {
        const concerned =
          change.kind === 'all' ||
          (change.kind === 'diversions' && 'address' in config.target) ||
          (change.kind === 'name' && targetKey(config) === change.name);
        if (concerned) relay.changed();
      }
    });
    return reached;
  }

  async stop(): Promise<void> {
    this.view.stop();
    await Promise.all(this.services.map((s) => s.relay.close()));
  }

  /** Where each service listens, as bound (port 0 in the config becomes the OS's choice). */
  listening(): Record<string, HostPort[]> {
    return Object.fromEntries(this.services.map((s) => [s.config.name, s.bound]));
  }

  connections(): { connections: Relayed[] } {
    return { connections: this.table.list() };
  }

  status(): ProxyStatus {
    const open = new Map<string, number>();
    for (const c of this.table.list()) open.set(c.service, (open.get(c.service) ?? 0) + 1);
    return {
      startedAt: this.startedAt,
      admin: { ...this.view.admin(), url: this.connection.url.href },
      services: this.services.map(({ config, bound }) => ({
        name: config.name,
        protocol: config.protocol,
        listen: bound.map(formatHostPort),
        target:
          'name' in config.target
            ? `${config.target.name} port ${config.target.port}`
            : formatHostPort({ host: config.target.address, port: config.target.port }),
        onChange: config.onChange,
        open: open.get(config.name) ?? 0,
      })),
      connections: this.table.size,
    };
  }
}

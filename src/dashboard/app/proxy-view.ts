// The proxy panel (--dashboard-proxy): each service of a divert proxy with where it
// listens, what it targets and its open connections; each target's connects, failures,
// connect time and bytes; and the newest open connections (divert serve passes at most
// 50). From the proxy's status pages as divert serve relays them. Hidden when no proxy is
// configured.

import type { Api, ApiError } from './api.js';
import { byId, el, say } from './dom.js';
import { RelayPanel } from './relay-panel.js';

/** The parts of the proxy's pages shown here (docs: README, "divert proxy" status endpoint). */
interface ProxyReport {
  status: {
    startedAt: string;
    workers: number;
    admin: { url: string; up: boolean; error: string | null };
    services: { name: string; protocol: string; listen: string[]; target: string; onChange: string; open: number }[];
    connections: number;
  };
  targets: Record<
    string,
    { connects: number; connectFailures: number; connectMsAverage: number | null; bytesIn: number; bytesOut: number; open: number }
  >;
  /** Newest first; null when the proxy has too many open to list. */
  connections:
    | {
        id: number;
        service: string;
        protocol: string;
        client: string;
        target: string | null;
        startedAt: number;
        bytesIn: number;
        bytesOut: number;
      }[]
    | null;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

const cells = (texts: string[]) =>
  el(
    'tr',
    {},
    texts.map((text) => el('td', { text })),
  );

export class ProxyPanel extends RelayPanel<ProxyReport> {
  private readonly services = byId('proxy-services');
  private readonly targets = byId('proxy-targets');
  private readonly connections = byId('proxy-connections');
  private readonly connectionsNote = byId('proxy-connections-note');

  constructor(api: Api, onAuthFailed: (err: ApiError) => void) {
    super(api, 'proxy', onAuthFailed);
  }

  protected clear(): void {
    for (const body of [this.services, this.targets, this.connections]) body.replaceChildren();
    this.connectionsNote.textContent = '';
  }

  protected show(url: string, report: ProxyReport): void {
    const { status } = report;
    say(
      this.summary,
      `proxy at ${url}, since ${status.startedAt}, ${status.workers} worker${status.workers === 1 ? '' : 's'}, ${status.connections} open connection${status.connections === 1 ? '' : 's'}; divert serve ${status.admin.url} ${status.admin.up ? 'reachable' : `UNREACHABLE${status.admin.error ? ` (${status.admin.error})` : ''}`}`,
      status.admin.up ? 'note' : 'error',
    );
    this.services.replaceChildren(
      ...status.services.map((s) => cells([s.name, s.protocol, s.listen.join(' '), s.target, s.onChange, String(s.open)])),
    );
    this.targets.replaceChildren(
      ...Object.entries(report.targets).map(([target, t]) => {
        const row = cells([
          target,
          String(t.connects),
          String(t.connectFailures),
          t.connectMsAverage === null ? '–' : `${t.connectMsAverage.toFixed(1)} ms`,
          bytes(t.bytesIn),
          bytes(t.bytesOut),
          String(t.open),
        ]);
        row.classList.toggle('failing', t.connectFailures > 0);
        row.dataset.target = target;
        return row;
      }),
    );
    const list = report.connections;
    this.connections.replaceChildren(
      ...(list ?? []).map((c) =>
        cells([
          String(c.id),
          c.service,
          c.protocol,
          c.client,
          c.target ?? 'connecting',
          new Date(c.startedAt).toLocaleTimeString(),
          bytes(c.bytesIn),
          bytes(c.bytesOut),
        ]),
      ),
    );
    this.connectionsNote.textContent =
      list === null
        ? `${status.connections} open: too many to list`
        : list.length < status.connections
          ? `the newest ${list.length} of ${status.connections}`
          : '';
  }
}

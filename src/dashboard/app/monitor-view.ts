// The monitor panel (--dashboard-monitor): each service's answer and state and each
// mirror's health, from the monitor's GET /status as divert serve passes it on. Hidden
// when no monitor is configured.

import type { Api, ApiError } from './api.js';
import { byId, el, say } from './dom.js';
import { RelayPanel } from './relay-panel.js';

/** The part of the monitor's status report shown here (docs: README, "divert monitor" status). */
interface MonitorReport {
  id: string;
  startedAt: string;
  admin: { url: string; up: boolean };
  services: {
    name: string;
    policy: string;
    ready: boolean;
    allDown: boolean;
    answer: string[] | null;
    mirrors: { address: string; port: number; state: string; inAnswer: boolean; latencyMs: number | null; error: string | null }[];
  }[];
}

function serviceState(service: MonitorReport['services'][number]): string {
  if (service.allDown) return 'ALL MIRRORS DOWN';
  return service.ready ? 'ok' : 'starting';
}

export class MonitorPanel extends RelayPanel<MonitorReport> {
  private readonly services = byId('monitor-services');

  constructor(api: Api, onAuthFailed: (err: ApiError) => void) {
    super(api, 'monitor', onAuthFailed);
  }

  protected clear(): void {
    this.services.replaceChildren();
  }

  protected show(url: string, report: MonitorReport): void {
    say(
      this.summary,
      `monitor "${report.id}" at ${url}, since ${report.startedAt}; admin API ${report.admin.url} ${report.admin.up ? 'reachable' : 'UNREACHABLE'}`,
      report.admin.up ? 'note' : 'error',
    );
    this.services.replaceChildren(
      ...report.services.map((service) =>
        el('li', { class: service.allDown ? 'down' : 'up' }, [
          el('strong', { text: service.name }),
          el('span', { text: ` ${service.policy}, answer ${service.answer?.join(' ') || 'none'}, ${serviceState(service)}` }),
          el(
            'ul',
            {},
            service.mirrors.map((m) =>
              el('li', {
                class: m.state === 'up' ? 'up' : 'down',
                text: `${m.address.includes(':') ? `[${m.address}]` : m.address}:${m.port} ${m.state}${m.inAnswer ? ', in answer' : ''}${m.latencyMs === null ? '' : `, ${m.latencyMs.toFixed(1)} ms`}${m.error ? `, ${m.error}` : ''}`,
              }),
            ),
          ),
        ]),
      ),
    );
  }
}

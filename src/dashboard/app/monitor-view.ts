// The monitor panel (--dashboard-monitor): each service's answer and state and each
// mirror's health, from the monitor's GET /status as divert serve passes it on. Hidden
// when no monitor is configured.

import { Api, ApiError, type MonitorView } from './api.js';
import { byId, el, say } from './dom.js';

const POLL_MS = 5000;

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

export class MonitorPanel {
  private readonly section = byId('monitor');
  private readonly summary = byId('monitor-summary');
  private readonly services = byId('monitor-services');
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly api: Api,
    private readonly onAuthFailed: (err: ApiError) => void,
  ) {}

  start(): void {
    void this.poll(true);
    this.timer = setInterval(() => void this.poll(false), POLL_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async poll(first: boolean): Promise<void> {
    let view: MonitorView;
    try {
      view = await this.api.monitor();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.stop();
        return this.onAuthFailed(err);
      }
      return say(this.summary, `monitor status unavailable: ${err instanceof Error ? err.message : String(err)}`, 'error');
    }
    if (view.url === null) {
      if (first) this.stop(); // not configured: nothing to show, nothing to poll
      return;
    }
    this.section.hidden = false;
    if (!view.ok) {
      say(this.summary, `monitor at ${view.url} unreachable: ${view.error ?? 'no answer'}`, 'error');
      this.services.replaceChildren();
      return;
    }
    this.show(view.url, view.status as MonitorReport);
  }

  private show(url: string, report: MonitorReport): void {
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

// The load panel: queries per second over the last minutes (total, intercepted,
// forwarded) from GET /v1/stats/recent, drawn with uPlot; the busiest names below it; the
// upstreams' health and each worker's memory and event-loop load beside it. Polled while
// the page is open.

import { Api, ApiError, type RecentLoad } from './api.js';
import { rateChart, type uPlot } from './chart.js';
import { byId, el } from './dom.js';
import { NamesLoad } from './names-load.js';

const POLL_MS = 2000;
const MB = 1024 * 1024;

export class LoadView {
  private readonly chartBox = byId('chart');
  private readonly upstreams = byId('upstreams');
  private readonly workers = byId('workers');
  private chart: uPlot | undefined;
  private readonly names = new NamesLoad();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly api: Api,
    private readonly onAuthFailed: (err: ApiError) => void,
  ) {}

  start(): void {
    void this.poll();
    this.timer = setInterval(() => void this.poll(), POLL_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.chart?.destroy();
    this.chart = undefined;
    this.names.stop();
  }

  private async poll(): Promise<void> {
    try {
      this.show(await this.api.recentLoad());
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.stop();
        return this.onAuthFailed(err);
      }
      this.upstreams.replaceChildren(
        el('li', { class: 'error', text: `load unavailable: ${err instanceof Error ? err.message : String(err)}` }),
      );
    }
  }

  private show(load: RecentLoad): void {
    const s = load.samples;
    const data: uPlot.AlignedData = [
      s.map((x) => x.at / 1000),
      s.map((x) => x.total),
      s.map((x) => x.intercepted),
      s.map((x) => x.forwarded),
    ];
    if (!this.chart)
      this.chart = rateChart(
        this.chartBox,
        [
          { label: 'total', stroke: '#1f5fa8', width: 2 },
          { label: 'intercepted', stroke: '#c2410c' },
          { label: 'forwarded', stroke: '#15803d' },
        ],
        data,
      );
    else this.chart.setData(data);
    this.names.show(s);
    this.upstreams.replaceChildren(
      ...load.upstreams.map((u) =>
        el('li', {
          class: u.up ? 'up' : 'down',
          text: `${u.upstream} ${u.up ? 'up' : 'DOWN'}, srtt ${u.srttMs.toFixed(1)} ms, ${u.answered} answered, ${u.failed} failed`,
        }),
      ),
    );
    this.workers.replaceChildren(
      ...load.processes.map((p) =>
        el('li', {
          text: `worker ${p.worker}: ${(p.residentBytes / MB).toFixed(0)} MB resident, ${(p.heapUsedBytes / MB).toFixed(0)} MB heap, CPU ${(p.cpuUtilization * 100).toFixed(0)} %, event loop ${(p.eventLoopUtilization * 100).toFixed(0)} % busy, connections open: TCP ${p.openConnections.tcp}, DoT ${p.openConnections.dot}, DoH ${p.openConnections.doh}`,
        }),
      ),
    );
  }
}

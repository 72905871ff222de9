// The busiest names: each sample of GET /v1/stats/recent names the busiest intercepted
// names of its second; this ranks them over the last few seconds (a list with each one's
// queries/s, busiest first) and draws the leaders' rates over the whole ring.

import type { LoadSample } from './api.js';
import { PALETTE, rateChart, type uPlot } from './chart.js';
import { byId, el } from './dom.js';

/** Names ranked and drawn. */
const SHOWN = 6;
/** The ranking is the mean over this many of the newest samples (one second each). */
const RANK_OVER = 5;

/** The busiest names of the newest samples: mean queries/s (a name missing from a sample had none to speak of then), busiest first. */
export function busiest(samples: LoadSample[], over = RANK_OVER, shown = SHOWN): [string, number][] {
  const recent = samples.slice(-over);
  const sums = new Map<string, number>();
  for (const s of recent) for (const [name, rate] of Object.entries(s.names)) sums.set(name, (sums.get(name) ?? 0) + rate);
  return [...sums]
    .map(([name, sum]): [string, number] => [name, sum / recent.length])
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1))
    .slice(0, shown);
}

export class NamesLoad {
  private readonly box = byId('names-chart');
  private readonly list = byId('top-names');
  private chart: uPlot | undefined;
  /** The names the chart draws, in its series' order: another set makes another chart. */
  private drawn = '';

  show(samples: LoadSample[]): void {
    const top = busiest(samples);
    this.list.replaceChildren(
      ...(top.length === 0
        ? [el('li', { class: 'quiet', text: 'no intercepted queries in the last seconds' })]
        : top.map(([name, rate]) =>
            el('li', {}, [el('span', { class: 'name', text: name }), el('span', { class: 'rate', text: `${rate.toFixed(1)} q/s` })]),
          )),
    );
    const names = top.map(([name]) => name);
    const data: uPlot.AlignedData = [samples.map((s) => s.at / 1000), ...names.map((name) => samples.map((s) => s.names[name] ?? 0))];
    const key = JSON.stringify(names);
    if (this.chart && key === this.drawn) return this.chart.setData(data);
    this.chart?.destroy();
    this.chart = undefined;
    this.drawn = key;
    if (names.length > 0)
      this.chart = rateChart(
        this.box,
        names.map((label, i) => ({ label, stroke: PALETTE[i % PALETTE.length] })),
        data,
        180,
      );
  }

  stop(): void {
    this.chart?.destroy();
    this.chart = undefined;
  }
}

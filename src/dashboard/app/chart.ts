// A queries-per-second line chart over time, drawn with uPlot: the one shape every chart
// of the dashboard has (time on x, rates from 0 up on y), so each view only names its lines.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Line {
  label: string;
  stroke: string;
  width?: number;
}

/** Distinct colours for lines that have no meaning of their own (the busiest names). */
export const PALETTE = ['#1f5fa8', '#c2410c', '#15803d', '#7c3aed', '#be185d', '#0e7490', '#a16207', '#4b5563'];

export function rateChart(box: HTMLElement, lines: Line[], data: uPlot.AlignedData, height = 220): uPlot {
  const width = Math.max(320, box.clientWidth || 640);
  return new uPlot(
    {
      width,
      height,
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      axes: [{}, { label: 'queries/s', size: 70 }],
      series: [{}, ...lines.map((line) => ({ label: line.label, stroke: line.stroke, width: line.width ?? 1.5 }))],
    },
    data,
    box,
  );
}

export type { uPlot };

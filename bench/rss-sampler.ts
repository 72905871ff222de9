// Resident set size of the server under test while run.sh has it up: run.sh writes its
// PID to $RUNDIR/sut.pid; every sample walks that process's tree (/proc/PID/task/*/children)
// and keeps the largest VmRSS seen for each process.

import { readFileSync, readdirSync } from 'node:fs';

export interface RssSummary {
  /** Largest RSS of the process run.sh started (the cluster primary), MB; undefined if never seen. */
  primaryMb: number | undefined;
  /** Largest RSS of any of its descendants (the workers), MB. */
  largestWorkerMb: number | undefined;
  /** Distinct descendant processes seen. */
  workers: number;
  samples: number;
}

export class RssSampler {
  private readonly maxKb = new Map<number, number>();
  private readonly primaries = new Set<number>();
  private samples = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pidFile: string,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): RssSummary {
    clearInterval(this.timer);
    let primaryKb: number | undefined;
    let workerKb: number | undefined;
    let workers = 0;
    for (const [pid, kb] of this.maxKb) {
      if (this.primaries.has(pid)) {
        primaryKb = Math.max(primaryKb ?? 0, kb);
      } else {
        workers++;
        workerKb = Math.max(workerKb ?? 0, kb);
      }
    }
    const mb = (kb: number | undefined) => (kb === undefined ? undefined : kb / 1024);
    return { primaryMb: mb(primaryKb), largestWorkerMb: mb(workerKb), workers, samples: this.samples };
  }

  private sample(): void {
    const primary = Number(readOrEmpty(this.pidFile).trim());
    if (!Number.isInteger(primary) || primary <= 0) return;
    let seen = false;
    for (const pid of treePids(primary)) {
      const kb = rssKb(pid);
      if (kb === undefined) continue;
      seen = true;
      if (pid === primary) this.primaries.add(pid);
      this.maxKb.set(pid, Math.max(this.maxKb.get(pid) ?? 0, kb));
    }
    if (seen) this.samples++;
  }
}

function treePids(root: number): number[] {
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      return; // gone
    }
    for (const task of tasks) {
      for (const child of readOrEmpty(`/proc/${pid}/task/${task}/children`).split(/\s+/)) {
        if (child) walk(Number(child));
      }
    }
  };
  walk(root);
  return out;
}

function rssKb(pid: number): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readOrEmpty(`/proc/${pid}/status`));
  return m ? Number(m[1]) : undefined;
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

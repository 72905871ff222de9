// What local rules cost: intercepted QPS of 1,000 names with rules against 1,000 plain
// names with the same answers, in one `divert serve`, measured with dnsperf in
// alternating runs so that both see the same machine.
//
//   npm run bench:rules           (BENCH_SECONDS per run, default 10; BENCH_REPS pairs, default 3;
//                                  BENCH_WORKERS, default 2)
//
// Each rules name has two rules the loopback client meets on every query: a network rule
// that does not match it (three networks checked), and an all-day window in Europe/London
// that does, answering the same two addresses as the plain name with equal weights (so
// one of two orders per query). Replies are the same size either way.

import { execChild, spawnChild } from '../test/helpers/children.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Processes } from './processes.js';
import { freePort } from './redis-server.js';

const NAMES = 1000;
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const reps = Number(process.env.BENCH_REPS ?? 3);
const workers = process.env.BENCH_WORKERS ?? '2';
const main = fileURLToPath(new URL('../src/main.js', import.meta.url));

function zones(dir: string): { plain: string; rules: string } {
  const plain: string[] = ['$ORIGIN plain.test.', '$TTL 30'];
  const rules: string[] = ['$ORIGIN rules.test.', '$TTL 30'];
  for (let i = 1; i <= NAMES; i++) {
    const a = [`10.${i >> 8}.${i & 255}.1`, `10.${i >> 8}.${i & 255}.2`];
    for (const address of a) {
      plain.push(`p${i} IN A ${address}`);
      rules.push(`r${i} IN A ${address}`);
    }
    const extra = {
      rules: [
        { networks: ['10.1.0.0/16', '192.168.0.0/16', 'fd00::/8'], a: ['192.0.2.9'] },
        {
          days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'],
          from: '00:00',
          to: '24:00',
          tz: 'Europe/London',
          a,
          weights: { [a[0]]: 1, [a[1]]: 1 },
        },
      ],
    };
    rules.push(`;divert r${i} ${JSON.stringify(extra)}`);
  }
  writeFileSync(join(dir, 'plain.zone'), plain.join('\n') + '\n');
  writeFileSync(join(dir, 'rules.zone'), rules.join('\n') + '\n');
  const queries = (prefix: string, origin: string) =>
    Array.from({ length: NAMES }, (_, k) => `${prefix}${k + 1}.${origin} A`).join('\n') + '\n';
  writeFileSync(join(dir, 'plain.queries'), queries('p', 'plain.test'));
  writeFileSync(join(dir, 'rules.queries'), queries('r', 'rules.test'));
  return { plain: join(dir, 'plain.queries'), rules: join(dir, 'rules.queries') };
}

function dnsperf(port: number, file: string): Promise<{ qps: number; lost: number }> {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(seconds), '-c', '20', '-T', '1', '-q', '200'];
  return execChild('dnsperf', args, { timeout: (seconds + 30) * 1000 }).then(
    ({ stdout }) => {
      const qps = /Queries per second:\s+([\d.]+)/.exec(stdout);
      const lost = /Queries lost:\s+\d+ \(([\d.]+)%\)/.exec(stdout);
      if (!qps) throw new Error(`dnsperf printed no QPS: ${stdout}`);
      return { qps: Number(qps[1]), lost: lost ? Number(lost[1]) : 0 };
    },
    (err: Error) => {
      throw new Error(`dnsperf: ${err.message}`);
    },
  );
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

async function main_(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'divert-bench-rules-'));
  const processes = new Processes();
  try {
    const files = zones(dir);
    const port = await freePort();
    const child = processes.track(
      spawnChild(
        process.execPath,
        [
          main,
          'serve',
          '--listen',
          `127.0.0.1:${port}`,
          '--admin',
          '127.0.0.1:0',
          '--admin-token',
          'bench-token-0123456789abcdef',
          '--upstream',
          '127.0.0.1:9',
          '--zones',
          dir,
          '--workers',
          workers,
          '--log-level',
          'warn',
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 3000));
    if (child.exitCode !== null) throw new Error(`divert serve exited with ${child.exitCode}`);
    // warm both name sets into every worker's cache
    await dnsperf(port, files.plain);
    await dnsperf(port, files.rules);
    const plain: number[] = [];
    const rules: number[] = [];
    for (let rep = 1; rep <= reps; rep++) {
      for (const [label, file, into] of [
        ['plain', files.plain, plain],
        ['rules', files.rules, rules],
      ] as const) {
        const { qps, lost } = await dnsperf(port, file);
        into.push(qps);
        process.stderr.write(`rep ${rep} ${label}: ${qps.toFixed(0)} QPS, ${lost} % lost\n`);
      }
    }
    const [p, r] = [median(plain), median(rules)];
    console.log(
      `Intercepted QPS, ${NAMES} names each, --workers ${workers}, dnsperf -c 20 -q 200, ${seconds} s × ${reps} alternating runs (median):`,
    );
    console.log('');
    console.log('| names | QPS | runs |');
    console.log('|---|---:|---|');
    console.log(`| plain (two addresses) | ${p.toFixed(0)} | ${plain.map((x) => x.toFixed(0)).join(', ')} |`);
    console.log(`| with 2 rules (network miss, window hit, weights) | ${r.toFixed(0)} | ${rules.map((x) => x.toFixed(0)).join(', ')} |`);
    console.log('');
    console.log(`rules / plain: ${(r / p).toFixed(3)} (target: at least 0.90)`);
  } finally {
    await processes.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main_();

// Soak: `divert serve` (2 workers) under steady load for a long time, with a table change
// every second, watching RSS and open files of every process and the error log.
//
//   npm run soak        SOAK_MINUTES (default 30), SOAK_QPS (default 25000: half of the
//                       measured maximum of mix (c), 90 % forwarded / 10 % intercepted)
//
// dnsperf sends at a fixed rate (-Q) for the whole run; a loopback upstream in this process
// answers the forwarded names. RSS and fds are sampled every 30 s; "flat" compares the last
// sample with the one taken after the first 5 minutes (warm-up: JIT, caches, socket pools).

import { execChild } from '../test/helpers/children.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runDivert } from '../test/helpers/process.js';
import { sampleProcesses, startRawUpstream, type ProcessSample } from './netfuzz.js';

const minutes = Number(process.env.SOAK_MINUTES ?? 30);
const qps = Number(process.env.SOAK_QPS ?? 25_000);
const TOKEN = 'soak-token-0123456789abcdef';
const NAMES = 1000;

interface Sample {
  at: number;
  processes: ProcessSample[];
}

function dnsperf(port: number, file: string, seconds: number): Promise<string> {
  const args = [
    '-s',
    '127.0.0.1',
    '-p',
    String(port),
    '-d',
    file,
    '-l',
    String(seconds),
    '-c',
    '20',
    '-T',
    '1',
    '-q',
    '500',
    '-Q',
    String(qps),
    '-S',
    '60',
  ];
  return execChild('dnsperf', args, { timeout: (seconds + 60) * 1000, maxBuffer: 16 * 1024 * 1024 }).then(({ stdout }) => stdout);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'divert-soak-'));
  const upstream = await startRawUpstream();
  const zone = ['$ORIGIN soak.test.', '$TTL 30'];
  for (let i = 1; i <= NAMES; i++) zone.push(`w${i} IN A 192.0.2.${i % 250}`);
  writeFileSync(join(dir, 'soak.zone'), zone.join('\n') + '\n');
  const lines: string[] = [];
  for (let i = 0; i < 10_000; i++) lines.push(i % 10 === 0 ? `w${(i % NAMES) + 1}.soak.test A` : `f${i}.up.example A`);
  writeFileSync(join(dir, 'queries'), lines.join('\n') + '\n');

  const serve = runDivert([
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--upstream',
    `127.0.0.1:${upstream.port}`,
    '--zones',
    join(dir, 'soak.zone'),
    '--workers',
    '2',
    '--admin-token',
    TOKEN,
  ]);
  const port = await serve.listening(20_000);
  const admin = `http://${(await serve.listeningLine()).admin}`;
  const root = serve.child.pid!;
  console.log(`soak: ${minutes} min at ${qps} queries/s (90 % forwarded), a table change every second; divert pid ${root}, port ${port}`);

  const samples: Sample[] = [];
  let writes = 0;
  let failedWrites = 0;
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      const started = Date.now();
      try {
        const res = await fetch(`${admin}/v1/names/moving${i % 100}.soak.test`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ a: [`198.51.100.${i % 250}`] }),
        });
        await res.body?.cancel();
        if (res.ok) writes++;
        else failedWrites++;
      } catch {
        failedWrites++;
      }
      await sleep(Math.max(0, 1000 - (Date.now() - started)));
    }
  })();
  const sampler = (async () => {
    const t0 = Date.now();
    while (!stop) {
      samples.push({ at: Math.round((Date.now() - t0) / 1000), processes: sampleProcesses(root) });
      const last = samples[samples.length - 1];
      console.log(
        `t=${last.at}s ${last.processes.map((p) => `pid ${p.pid} rss ${p.rssKb === null ? '?' : (p.rssKb / 1024).toFixed(1)} MB fds ${p.fds}`).join(' | ')}`,
      );
      for (let waited = 0; waited < 30_000 && !stop; waited += 1000) await sleep(1000);
    }
  })();

  let perf = '';
  try {
    perf = await dnsperf(port, join(dir, 'queries'), minutes * 60);
  } finally {
    stop = true;
    await Promise.all([writer, sampler]);
  }
  const final = sampleProcesses(root);
  samples.push({ at: minutes * 60, processes: final });
  const alive = serve.child.exitCode === null;
  await serve.stop();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });

  const errors = (serve.stdout() + serve.stderr()).split('\n').filter((l) => /"level":(50|60)/.test(l));
  const pick = (re: RegExp) => re.exec(perf)?.[1] ?? '?';
  console.log('');
  console.log(
    `dnsperf: ${pick(/Queries sent:\s+(\d+)/)} sent, ${pick(/Queries completed:\s+(\d+ \([\d.]+%\))/)} completed, ${pick(/Queries lost:\s+(\d+ \([\d.]+%\))/)} lost, ${pick(/Queries per second:\s+([\d.]+)/)} QPS, average latency ${pick(/Average Latency \(s\):\s+([\d.]+)/)} s`,
  );
  console.log(
    `table changes: ${writes} acknowledged, ${failedWrites} failed; error log lines: ${errors.length}; server alive at the end: ${alive}`,
  );
  const warm = samples.find((s) => s.at >= Math.min(300, (minutes * 60) / 6)) ?? samples[0];
  console.log('');
  console.log('| process | RSS after warm-up | RSS at the end | change | max RSS | fds after warm-up | fds at the end |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const p of warm.processes) {
    const end = final.find((f) => f.pid === p.pid);
    const series = samples.map((s) => s.processes.find((x) => x.pid === p.pid)?.rssKb ?? 0);
    const max = Math.max(...series);
    const change = end?.rssKb && p.rssKb ? ((end.rssKb - p.rssKb) / p.rssKb) * 100 : NaN;
    console.log(
      `| ${p.pid === root ? 'primary' : 'worker'} ${p.pid} | ${((p.rssKb ?? 0) / 1024).toFixed(1)} MB | ${((end?.rssKb ?? 0) / 1024).toFixed(1)} MB | ${change.toFixed(1)} % | ${(max / 1024).toFixed(1)} MB | ${p.fds} | ${end?.fds ?? '?'} |`,
    );
  }
  for (const line of errors.slice(0, 5)) console.log(`error: ${line}`);
}

await main();

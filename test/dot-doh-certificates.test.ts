// The DoT and DoH certificate as an operator handles it, with the real binary: a bad
// pair stops the start with one line; SIGHUP after an ACME renewal replaces it with no
// query lost, while queries run over a connection kept open and over new ones (new
// connections see the new certificate, open ones keep theirs), in two workers; a bad
// pair on SIGHUP is refused with one line and the old one kept; `divert validate`
// checks the pair and its expiry.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decode, query } from './helpers/divert.js';
import { runDivert, type DivertProcess } from './helpers/process.js';
import { logLinesOf, waitFor, type LogLine } from './monitor-fixtures.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';
import { tempFiles } from './helpers/temp-files.js';
import { certFolder, dotAsk, dotSession, h2Request, makeCert, makeExpiredCert, post, type CertFiles } from './helpers/tls.js';

const NAME = 'www.shop.divert.test';
const ADDRESS = '192.0.2.10';

const folder = certFolder();
let upstream: TestUpstream;
let zone: string;
let first: CertFiles;
let second: CertFiles;
let third: CertFiles;
let expired: CertFiles;

before(async () => {
  [first, second, third, expired] = await Promise.all([
    makeCert(folder.dir, 'first'),
    makeCert(folder.dir, 'second'),
    makeCert(folder.dir, 'third'),
    makeExpiredCert(folder.dir, 'expired'),
  ]);
  upstream = await startUpstream((q) => replyTo(q));
  zone = join(folder.dir, 'shop.zone');
  writeFileSync(zone, `$ORIGIN shop.divert.test.\nwww 30 IN A ${ADDRESS}\n`);
});

after(async () => {
  await upstream?.close();
  folder.remove();
});

/** `divert serve` with a DoT and a DoH listener and the given certificate files. */
function serve(certPath: string, keyPath: string, extra: string[] = []): DivertProcess {
  return runDivert([
    'serve',
    ...['--listen', '127.0.0.1:0', '--listen-tls', '127.0.0.1:0', '--listen-https', '127.0.0.1:0'],
    ...['--upstream', `127.0.0.1:${upstream.port}`, '--zones', zone, '--no-udp-batch'],
    ...['--tls-cert', certPath, '--tls-key', keyPath],
    ...extra,
  ]);
}

/** Sends SIGHUP; resolves with the reload's outcome line (applied or refused) among the log lines from index `mark`. */
function hangUp(proc: DivertProcess, mark: number): Promise<LogLine> {
  proc.child.kill('SIGHUP');
  const outcome = (l: LogLine) => l.msg.startsWith('configuration reloaded') || l.msg.startsWith('reload refused');
  return waitFor(() => logLinesOf(proc).slice(mark).find(outcome), 10_000, 'the reload outcome line');
}

const portOf = (address: string | undefined) => Number(/:(\d+)$/.exec(address ?? '')![1]);

/** The A addresses of an answer. */
const addresses = (reply: Buffer) => (decode(reply).answers ?? []).map((a) => (a as { data: string }).data);

describe('a bad certificate at start', () => {
  const cases: [string, () => [string, string], RegExp][] = [
    [
      'a key of another certificate',
      () => [first.cert, second.key],
      /--tls-key ".*second\.key" is not the key of --tls-cert ".*first\.pem"/,
    ],
    [
      'a certificate file that is not PEM',
      () => [tempFiles('dot-doh-garbage', '.pem')('not a certificate\n'), first.key],
      /--tls-cert ".*": not a PEM certificate/,
    ],
    [
      'a key file that is not PEM',
      () => [first.cert, tempFiles('dot-doh-garbage', '.key')('not a key\n')],
      /--tls-key ".*": not a PEM private key/,
    ],
    [
      'a certificate file that is missing',
      () => [join(folder.dir, 'missing.pem'), first.key],
      /--tls-cert ".*missing\.pem": cannot read it \(ENOENT\)/,
    ],
  ];
  for (const [what, files, message] of cases) {
    test(`${what}: refused with one line, exit 2`, async () => {
      const [certPath, keyPath] = files();
      const proc = serve(certPath, keyPath);
      try {
        assert.equal(await proc.exited(20_000), 2, proc.stderr());
        const lines = proc.stderr().trim().split('\n');
        assert.equal(lines.length, 1, proc.stderr());
        assert.match(lines[0], message);
        assert.doesNotMatch(proc.stdout(), /listening on/);
      } finally {
        await proc.stop();
      }
    });
  }

  test('--listen-tls without --tls-key: refused with one line naming both flags', async () => {
    const proc = runDivert(['serve', '--listen', '127.0.0.1:0', '--listen-tls', '127.0.0.1:0', '--tls-cert', first.cert]);
    try {
      assert.equal(await proc.exited(20_000), 2, proc.stderr());
      assert.match(proc.stderr().trim(), /^divert: --listen-tls and --listen-https need --tls-cert FILE and --tls-key FILE/);
    } finally {
      await proc.stop();
    }
  });
});

describe('an expired certificate at start', () => {
  test('served with one error line (plain DNS must not go down with it); /healthz names the problem', async () => {
    const token = 'dot-doh-test-token-0123456789abcdef';
    const proc = serve(expired.cert, expired.key, ['--admin-token', token, '--workers', '1']);
    try {
      const line = await proc.listeningLine(20_000);
      const errors = logLinesOf(proc).filter((l) => l.level >= 50);
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.match(errors[0].msg, /^--tls-cert ".*expired\.pem" expired on 2020-01-02T00:00:00\.000Z: DoT and DoH clients will refuse it$/);
      const { reply, fingerprint256 } = await dotAsk(portOf(line.dot?.[0]), query(NAME));
      assert.equal(fingerprint256, expired.fingerprint256);
      assert.deepEqual(addresses(reply), [ADDRESS]);
      const health = (await (await fetch(`http://${line.admin}/healthz`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
        problems: string[];
      };
      assert.ok(
        health.problems.includes('the DoT and DoH certificate expired on 2020-01-02T00:00:00.000Z: encrypted clients refuse it'),
        JSON.stringify(health.problems),
      );
    } finally {
      await proc.stop();
    }
  });
});

describe('SIGHUP replaces the certificate (two workers)', () => {
  test('no query lost while the files are replaced; new connections get the new certificate, a bad pair is refused and the old kept', async () => {
    const certPath = join(folder.dir, 'live.pem');
    const keyPath = join(folder.dir, 'live.key');
    copyFileSync(first.cert, certPath);
    copyFileSync(first.key, keyPath);
    const proc = serve(certPath, keyPath, ['--workers', '2']);
    try {
      const line = await proc.listeningLine(20_000);
      const dotPort = portOf(line.dot?.[0]);
      const dohPort = portOf(line.doh?.[0]);
      const kept = await dotSession(dotPort);
      assert.equal(kept.fingerprint256, first.fingerprint256);

      // queries over the kept connection, and over new DoT and DoH connections, until told to stop
      let running = true;
      const failures: string[] = [];
      const seen = { kept: 0, dot: 0, doh: 0 };
      const fingerprints = new Set<string>();
      const loop = async (kind: keyof typeof seen, ask: () => Promise<Buffer>) => {
        for (let i = 0; running && i < 5000; i++) {
          try {
            const reply = await ask();
            if (addresses(reply)[0] === ADDRESS) seen[kind]++;
            else failures.push(`${kind}: ${JSON.stringify(decode(reply))}`);
          } catch (err) {
            failures.push(`${kind}: ${(err as Error).message}`);
          }
        }
      };
      const loops = Promise.all([
        loop('kept', () => kept.ask(query(NAME))),
        loop('dot', async () => {
          const { reply, fingerprint256 } = await dotAsk(dotPort, query(NAME));
          fingerprints.add(fingerprint256);
          return reply;
        }),
        loop('doh', async () => (await h2Request(dohPort, post(query(NAME, 'A', { id: 0 })))).body),
      ]);
      await sleep(300);

      // an ACME client's renewal: new files moved into place, then the hangup
      const mark = logLinesOf(proc).length;
      copyFileSync(second.key, `${keyPath}.new`);
      copyFileSync(second.cert, `${certPath}.new`);
      renameSync(`${keyPath}.new`, keyPath);
      renameSync(`${certPath}.new`, certPath);
      const reloaded = await hangUp(proc, mark);
      assert.match(reloaded.msg, /^configuration reloaded: .*TLS certificate/);
      // every worker confirmed before that line: a new connection now gets the new certificate, whichever worker takes it
      for (let i = 0; i < 10; i++) assert.equal((await dotAsk(dotPort, query(NAME))).fingerprint256, second.fingerprint256);
      await sleep(300);
      running = false;
      await loops;
      assert.deepEqual(failures, []);
      assert.ok(seen.kept > 0 && seen.dot > 0 && seen.doh > 0, JSON.stringify(seen));
      assert.deepEqual([...fingerprints].sort(), [first.fingerprint256, second.fingerprint256].sort());
      // the connection kept open through the reload still answers
      assert.deepEqual(addresses(await kept.ask(query(NAME))), [ADDRESS]);
      kept.close();

      // a bad pair: the key of another certificate
      const refusedMark = logLinesOf(proc).length;
      copyFileSync(third.key, keyPath);
      const refused = await hangUp(proc, refusedMark);
      assert.match(
        refused.msg,
        /^reload refused; still serving with the previous configuration: --tls-key ".*live\.key" is not the key of --tls-cert/,
      );
      await sleep(200);
      const errors = logLinesOf(proc)
        .slice(refusedMark)
        .filter((l: LogLine) => l.level >= 50);
      assert.equal(errors.length, 1, JSON.stringify(errors));
      const after = await dotAsk(dotPort, query(NAME));
      assert.equal(after.fingerprint256, second.fingerprint256);
      assert.deepEqual(addresses(after.reply), [ADDRESS]);
      const overDoh = await h2Request(dohPort, post(query(NAME, 'A', { id: 0 })));
      assert.deepEqual(addresses(overDoh.body), [ADDRESS]);
    } finally {
      await proc.stop();
    }
  });
});

describe('divert validate', () => {
  const validate = (certPath: string, keyPath: string) =>
    runDivert([
      'validate',
      '--listen',
      '127.0.0.1:53',
      '--listen-tls',
      '127.0.0.1:853',
      '--upstream',
      '127.0.0.1',
      '--tls-cert',
      certPath,
      '--tls-key',
      keyPath,
    ]);

  test('a good pair: exit 0, the summary names the listener, the subject and the expiry', async () => {
    const proc = validate(first.cert, first.key);
    assert.equal(await proc.exited(), 0, proc.stderr());
    assert.match(
      proc.stdout(),
      /; TLS DoT 127\.0\.0\.1:853 with CN=divert\.test, expires \d{4}-\d\d-\d\dT[\d:.]+Z \(1 days — renew it soon\)\n$/,
    );
  });

  test('a mismatched pair: exit 2, one line naming both files', async () => {
    const proc = validate(first.cert, second.key);
    assert.equal(await proc.exited(), 2);
    assert.match(proc.stderr(), /^divert: --tls-key ".*second\.key" is not the key of --tls-cert ".*first\.pem" \(CN=divert\.test\)\n$/);
  });

  test('an expired certificate: exit 2, one line with the date it expired', async () => {
    const proc = validate(expired.cert, expired.key);
    assert.equal(await proc.exited(), 2);
    assert.match(proc.stderr(), /^divert: --tls-cert ".*expired\.pem" expired on 2020-01-02T00:00:00\.000Z\n$/);
  });
});

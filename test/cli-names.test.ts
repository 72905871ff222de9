// `divert names …` and `divert divert` end to end: a real `divert serve` process, and the CLI as separate processes finding its token file by themselves.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseZone } from '../src/table/zone/parse.js';
import type { Entry, HistoryRecord } from '../src/entry/entry.js';
import { freePort } from './helpers/redis.js';
import { runDivert, type DivertProcess } from './helpers/process.js';
import { tempDir } from './helpers/temp-files.js';
import { decode, udpAsk } from './helpers/divert.js';
import { LONGEST_NAME, rawQuery } from './helpers/raw.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let serve: DivertProcess;
let adminUrl: string;
let home: string;
let resolver: Resolver;
let dnsPort: number;

const tmp = () => tempDir('names');

/** The CLI as an operator runs it: same XDG_CONFIG_HOME as serve, so the token is found without flags. */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const run = runDivert(args, { env: { XDG_CONFIG_HOME: home, DIVERT_ADMIN_URL: adminUrl, ...env } });
  const code = await run.exited(30_000);
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

async function ok(args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const run = await cli(args, env);
  assert.equal(run.code, 0, `divert ${args.join(' ')}: exit status; stderr: ${run.stderr}`);
  return run.stdout;
}

async function json<T>(args: string[], env?: NodeJS.ProcessEnv): Promise<T> {
  return JSON.parse(await ok([...args, '--json'], env)) as T;
}

/** A failed run: the exit status, and one line on stderr matching `pattern`. */
async function fails(args: string[], code: number, pattern: RegExp, env?: NodeJS.ProcessEnv): Promise<Run> {
  const run = await cli(args, env);
  const stderr = run.stderr.trim();
  assert.equal(run.code, code, `divert ${args.join(' ')}: exit status; stderr: ${stderr}`);
  assert.equal(stderr.split('\n').length, 1, `one line: ${stderr}`);
  assert.match(stderr, /^divert: /);
  assert.match(stderr, pattern);
  return run;
}

/** Rows of a table on stdout, split on runs of blanks (cells hold none). */
function rows(stdout: string): string[][] {
  return stdout
    .trimEnd()
    .split('\n')
    .map((line) => line.split(/\s{2,}/));
}

function assertEntry(value: unknown): asserts value is Entry {
  const entry = value as Entry;
  assert.equal(typeof entry.name, 'string');
  assert.ok(Array.isArray(entry.a) && Array.isArray(entry.aaaa));
  assert.equal(typeof entry.ttl, 'number');
  assert.equal(typeof entry.version, 'number');
  assert.ok(!Number.isNaN(Date.parse(entry.updatedAt)));
}

before(async () => {
  serve = runDivert(['serve', '--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9']);
  const line = await serve.listeningLine();
  adminUrl = `http://${line.admin}`;
  home = serve.env.XDG_CONFIG_HOME!;
  resolver = new Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([line.listen[0]]);
  dnsPort = Number(line.listen[0].split(':').pop());
});

after(() => serve.stop());

describe('help', () => {
  test('divert --help lists serve, names, divert, diversions and monitor', async () => {
    const out = await ok(['--help']);
    for (const command of ['serve', 'names', 'divert', 'diversions', 'monitor'])
      assert.match(out, new RegExp(`^ +divert ${command}\\b`, 'm'));
  });

  test('every command has a description and examples', async () => {
    const names = await ok(['names', '--help']);
    for (const sub of ['list', 'get', 'set', 'delete', 'import', 'export', 'history']) {
      assert.match(names, new RegExp(`divert names ${sub}\\b.*  \\w`), `names --help lists ${sub}`);
      const out = await ok(['names', sub, '--help']);
      assert.match(out, /Examples:\n +divert names /, `names ${sub} --help`);
      assert.match(out, /--admin .*DIVERT_ADMIN_URL/);
      assert.match(out, /--token .*DIVERT_ADMIN_TOKEN/);
    }
    assert.match(await ok(['divert', '--help']), /Examples:\n +divert divert 192\.0\.2\.10 192\.0\.2\.20/);
    const diversions = await ok(['diversions', '--help']);
    for (const sub of ['list', 'delete']) {
      assert.match(diversions, new RegExp(`divert diversions ${sub}\\b.*  \\w`), `diversions --help lists ${sub}`);
      assert.match(await ok(['diversions', sub, '--help']), /Examples:\n +divert diversions /, `diversions ${sub} --help`);
    }
    assert.match(await ok(['diversions', 'delete', '--help']), /names keep their answers/);
  });
});

describe('divert names', () => {
  test('set, then get shows it, and DNS answers it', async () => {
    const set = rows(await ok(['names', 'set', 'www.set.test', '192.0.2.10', '192.0.2.11', '--ttl', '60']));
    assert.deepEqual(set[0], ['NAME', 'A', 'AAAA', 'TTL', 'VERSION', 'UPDATED', 'BY']);
    assert.deepEqual(set[1].slice(0, 4), ['www.set.test', '192.0.2.10,192.0.2.11', '-', '60']);

    const got = rows(await ok(['names', 'get', 'WWW.set.test.']));
    assert.deepEqual(got, set, 'get shows what set wrote (the name in any case, with or without the dot)');
    const entry = await json<Entry>(['names', 'get', 'www.set.test']);
    assertEntry(entry);
    assert.deepEqual(
      { name: entry.name, a: entry.a, aaaa: entry.aaaa, ttl: entry.ttl, version: String(entry.version) },
      {
        name: 'www.set.test',
        a: ['192.0.2.10', '192.0.2.11'],
        aaaa: [],
        ttl: 60,
        version: set[1][4],
      },
    );
    assert.deepEqual((await resolver.resolve4('www.set.test')).sort(), ['192.0.2.10', '192.0.2.11']);
  });

  test('set with IPv6 addresses sorts them into AAAA', async () => {
    const entry = await json<Entry>(['names', 'set', 'v6.set.test', '2001:DB8::1', '192.0.2.12', '2001:db8::2']);
    assert.deepEqual([entry.a, entry.aaaa, entry.ttl], [['192.0.2.12'], ['2001:db8::1', '2001:db8::2'], 30]);
    assert.deepEqual((await resolver.resolve6('v6.set.test')).sort(), ['2001:db8::1', '2001:db8::2']);
    assert.deepEqual(await resolver.resolve4('v6.set.test'), ['192.0.2.12']);
  });

  test('set over an existing name replaces its addresses and keeps its TTL', async () => {
    const first = await json<Entry>(['names', 'set', 'over.set.test', '192.0.2.20', '2001:db8::20', '--ttl', '120']);
    const second = await json<Entry>(['names', 'set', 'over.set.test', '192.0.2.21']);
    assert.deepEqual([second.a, second.aaaa, second.ttl], [['192.0.2.21'], [], 120]);
    assert.ok(second.version > first.version, 'the version grows');
    assert.deepEqual(await resolver.resolve4('over.set.test'), ['192.0.2.21']);
    await assert.rejects(resolver.resolve6('over.set.test'), { code: 'ENODATA' }, 'the old AAAA is gone');
    const third = await json<Entry>(['names', 'set', 'over.set.test', '192.0.2.22', '--ttl', '5']);
    assert.equal(third.ttl, 5);
  });

  test('set with --rules, --weight and --pick; get shows them; a later set keeps them; export and import carry them', async () => {
    const rulesFile = join(tmp(), 'rules.json');
    writeFileSync(
      rulesFile,
      JSON.stringify([
        { networks: ['10.1.0.0/16'], a: ['192.0.2.90'] },
        { days: ['sat', 'sun'], tz: 'Europe/London', aaaa: [] },
      ]),
    );
    const entry = await json<Entry>([
      'names',
      'set',
      'ruled.set.test',
      '192.0.2.80',
      '192.0.2.81',
      '--weight',
      '192.0.2.80=3',
      '--pick',
      '1',
      '--rules',
      `@${rulesFile}`,
    ]);
    assert.deepEqual(entry.weights, { '192.0.2.80': 3 });
    assert.equal(entry.pick, 1);
    assert.deepEqual(entry.rules, [
      { networks: ['10.1.0.0/16'], a: ['192.0.2.90'] },
      { days: ['sat', 'sun'], tz: 'Europe/London', aaaa: [] },
    ]);

    const shown = await ok(['names', 'get', 'ruled.set.test']);
    assert.match(shown, /^default answer: weights 192\.0\.2\.80=3 pick 1$/m);
    assert.match(shown, /^rule 1: from 10\.1\.0\.0\/16 → A 192\.0\.2\.90$/m);
    assert.match(shown, /^rule 2: sat,sun Europe\/London → AAAA -$/m);

    // new addresses: the rules and pick stay, the weight of an address still listed stays
    const next = await json<Entry>(['names', 'set', 'ruled.set.test', '192.0.2.80', '192.0.2.82']);
    assert.deepEqual(next.rules, entry.rules);
    assert.deepEqual(next.weights, { '192.0.2.80': 3 });
    assert.equal(next.pick, 1);

    const zone = await ok(['names', 'export', '--prefix', 'ruled.']);
    assert.match(zone, /^;divert ruled\.set\.test\. \{/m);
    const cleared = await json<Entry>(['names', 'set', 'ruled.set.test', '192.0.2.80', '--rules', '[]', '--weight', '192.0.2.80=1']);
    assert.equal(cleared.rules, undefined, '--rules [] removes them');
    const file = join(tmp(), 'ruled.zone');
    writeFileSync(file, zone);
    await ok(['names', 'import', file]);
    const back = await json<Entry>(['names', 'get', 'ruled.set.test']);
    assert.deepEqual(
      { a: back.a, weights: back.weights, pick: back.pick, rules: back.rules },
      { a: next.a, weights: next.weights, pick: next.pick, rules: next.rules },
    );

    await fails(
      ['names', 'set', 'ruled.set.test', '192.0.2.80', '--rules', '[{"networks":["10.1.2.3/16"]}]'],
      1,
      /rules\[0\]\.networks\[0\].*HTTP 400 BAD_RULE/,
    );
    await fails(['names', 'set', 'ruled.set.test', '192.0.2.80', '--weight', 'heavy'], 2, /--weight "heavy" is not ADDRESS=WEIGHT/);
    await fails(['names', 'set', 'ruled.set.test', '192.0.2.80', '--rules', '{oops'], 2, /--rules is not valid JSON/);
  });

  test('set without an address that rules weigh: those weights go, and a rule of nothing but them goes too', async () => {
    const rules = JSON.stringify([{ days: ['sat'], weights: { '192.0.2.60': 2, '192.0.2.61': 5 } }, { weights: { '192.0.2.61': 4 } }]);
    await json<Entry>(['names', 'set', 'pruned.set.test', '192.0.2.60', '192.0.2.61', '--rules', rules]);
    const next = await json<Entry>(['names', 'set', 'pruned.set.test', '192.0.2.60', '192.0.2.62']);
    assert.deepEqual(next.rules, [{ days: ['sat'], weights: { '192.0.2.60': 2 } }]);
  });

  test('--if-version: the right one applies, a wrong one is refused with 412', async () => {
    const entry = await json<Entry>(['names', 'set', 'cas.set.test', '192.0.2.30']);
    const run = await fails(['names', 'set', 'cas.set.test', '192.0.2.31', '--if-version', String(entry.version + 100)], 1, /HTTP 412/);
    assert.match(run.stderr, new RegExp(`current version is ${entry.version}`), "the server's message as it came");
    assert.equal(run.stdout, '');
    assert.deepEqual((await json<Entry>(['names', 'get', 'cas.set.test'])).a, ['192.0.2.30'], 'nothing changed');
    const next = await json<Entry>(['names', 'set', 'cas.set.test', '192.0.2.31', '--if-version', String(entry.version)]);
    assert.deepEqual(next.a, ['192.0.2.31']);
    await fails(['names', 'set', 'cas.set.test', '192.0.2.32', '--if-version', '0'], 1, /HTTP 412/);
    await fails(['names', 'delete', 'cas.set.test', '--if-version', String(entry.version)], 1, /HTTP 412/);
  });

  test('delete, then get is refused with 404', async () => {
    await ok(['names', 'set', 'gone.set.test', '192.0.2.40']);
    assert.equal(await ok(['names', 'delete', 'gone.set.test']), 'deleted gone.set.test\n');
    await fails(['names', 'get', 'gone.set.test'], 1, /"gone\.set\.test" is not intercepted \(HTTP 404 NOT_FOUND\)/);
    await fails(['names', 'delete', 'gone.set.test'], 1, /HTTP 404/);
  });

  test('list: every page, with a prefix, as a table and as JSON', async () => {
    for (let i = 0; i < 3; i++) await ok(['names', 'set', `n${i}.list.test`, `192.0.2.${50 + i}`]);
    await ok(['names', 'set', 'other.test', '192.0.2.59']);
    const table = rows(await ok(['names', 'list', '--prefix', 'n']));
    assert.deepEqual(table[0], ['NAME', 'A', 'AAAA', 'TTL', 'VERSION', 'UPDATED', 'BY']);
    assert.deepEqual(
      table.slice(1).map((r) => r[0]),
      ['n0.list.test', 'n1.list.test', 'n2.list.test'],
    );
    const entries = await json<Entry[]>(['names', 'list', '--prefix', 'n']);
    assert.ok(Array.isArray(entries));
    entries.forEach(assertEntry);
    assert.deepEqual(
      entries.map((e) => e.name),
      ['n0.list.test', 'n1.list.test', 'n2.list.test'],
    );
    const all = await json<Entry[]>(['names', 'list']);
    assert.ok(all.some((e) => e.name === 'other.test') && all.some((e) => e.name === 'n2.list.test'));
    const none = await cli(['names', 'list', '--prefix', 'nothing-here']);
    assert.equal(none.code, 0);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /no intercepted name starts with "nothing-here"/);
  });

  test('import: a zone file, then list shows its names', async () => {
    const file = join(tmp(), 'shop.zone');
    writeFileSync(
      file,
      '$ORIGIN imp.test.\n$TTL 45\nwww IN A 192.0.2.60\n    IN AAAA 2001:db8::60\napi 90 IN A 192.0.2.61\n@ IN SOA ns hostmaster 1 2 3 4 5\n',
    );
    const table = rows(await ok(['names', 'import', file]));
    assert.deepEqual(
      table
        .slice(1)
        .map((r) => r[0])
        .sort(),
      ['api.imp.test', 'www.imp.test'],
    );
    const entries = await json<Entry[]>(['names', 'list', '--prefix', 'www.imp']);
    assert.deepEqual(
      entries.map((e) => [e.name, e.a, e.aaaa, e.ttl]),
      [['www.imp.test', ['192.0.2.60'], ['2001:db8::60'], 45]],
    );
    assert.deepEqual(await resolver.resolve4('api.imp.test'), ['192.0.2.61']);
  });

  test('import with one bad line changes nothing and names FILE:LINE', async () => {
    const file = join(tmp(), 'bad.zone');
    writeFileSync(file, 'a.bad.test. IN A 192.0.2.70\nb.bad.test. IN A 192.0.2.71\nc.bad.test. IN A 192.0.2.300\n');
    await fails(
      ['names', 'import', file],
      1,
      new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: .*192\\.0\\.2\\.300.*HTTP 400 BAD_ZONE`),
    );
    const none = await cli(['names', 'list', '--prefix', 'a.bad', '--json']);
    assert.deepEqual(JSON.parse(none.stdout), [], 'nothing of the file was applied');
    await fails(['names', 'get', 'b.bad.test'], 1, /HTTP 404/);
  });

  test('import of a file that cannot be read is bad usage', async () => {
    await fails(['names', 'import', '/nonexistent/divert.zone'], 2, /\/nonexistent\/divert\.zone: cannot read the zone file \(ENOENT\)/);
  });

  test('export prints a zone that import accepts back', async () => {
    await ok(['names', 'set', '*.cdn.exp.test', '192.0.2.80', '2001:db8::80', '--ttl', '300']);
    const listed = await json<Entry[]>(['names', 'list']);
    const zone = await ok(['names', 'export']);
    const parsed = parseZone(zone, 'export');
    assert.deepEqual(
      [...parsed].map(([name, data]) => ({ name, ...data })).sort((x, y) => x.name.localeCompare(y.name)),
      // a zone file holds the answers, not when or by whom they were last changed
      listed.map(({ version: _v, updatedAt: _u, updatedBy: _b, ...entry }) => entry).sort((x, y) => x.name.localeCompare(y.name)),
      'the zone holds every entry: names without addresses, rules and weights too',
    );
    await ok(['names', 'delete', '*.cdn.exp.test']);
    const file = join(tmp(), 'backup.zone');
    writeFileSync(file, zone);
    const imported = await json<{ changed: Entry[] }>(['names', 'import', file]);
    assert.equal(imported.changed.length, parsed.size);
    const back = await json<Entry>(['names', 'get', '*.cdn.exp.test']);
    assert.deepEqual([back.a, back.aaaa, back.ttl], [['192.0.2.80'], ['2001:db8::80'], 300]);
    assert.deepEqual(await resolver.resolve4('img.cdn.exp.test'), ['192.0.2.80']);
  });

  test('history: three changes, newest first, with the --client name', async () => {
    await ok(['names', 'set', 'hist.test', '192.0.2.90', '--client', 'ops-alice']);
    await ok(['names', 'set', 'hist.test', '192.0.2.91', '--client', 'ops-alice']);
    await ok(['names', 'set', 'hist.test', '192.0.2.92', '2001:db8::92'], { DIVERT_CLIENT: 'ops-bob' });
    const reply = await json<{ name: string; history: HistoryRecord[] }>(['names', 'history', 'hist.test']);
    assert.equal(reply.name, 'hist.test');
    assert.equal(reply.history.length, 3);
    assert.deepEqual(
      reply.history.map((r) => r.by),
      ['ops-bob', 'ops-alice', 'ops-alice'],
    );
    assert.ok(reply.history[0].version > reply.history[1].version && reply.history[1].version > reply.history[2].version, 'newest first');
    assert.deepEqual(
      reply.history.map((r) => r.new?.a),
      [['192.0.2.92'], ['192.0.2.91'], ['192.0.2.90']],
    );
    assert.equal(reply.history[2].old, null);

    const table = rows(await ok(['names', 'history', 'hist.test']));
    assert.deepEqual(table[0], ['VERSION', 'AT', 'OP', 'BY', 'OLD → NEW']);
    assert.deepEqual(
      table.slice(1).map((r) => [r[0], r[2], r[3], r[4]]),
      [
        [String(reply.history[0].version), 'put', 'ops-bob', '192.0.2.91 ttl 30 → 192.0.2.92,2001:db8::92 ttl 30'],
        [String(reply.history[1].version), 'put', 'ops-alice', '192.0.2.90 ttl 30 → 192.0.2.91 ttl 30'],
        [String(reply.history[2].version), 'put', 'ops-alice', '(none) → 192.0.2.90 ttl 30'],
      ],
    );

    // the entry names its last author, as the newest history record does
    assert.equal((await json<Entry>(['names', 'get', 'hist.test'])).updatedBy, 'ops-bob');
    const got = rows(await ok(['names', 'get', 'hist.test']));
    assert.deepEqual([got[0][6], got[1][6]], ['BY', 'ops-bob']);
    await ok(['names', 'set', 'hist.test', '192.0.2.93', '--client', 'ops-alice']);
    const listed = rows(await ok(['names', 'list', '--prefix', 'hist.']));
    assert.deepEqual(
      listed.map((r) => [r[0], r[6]]),
      [
        ['NAME', 'BY'],
        ['hist.test', 'ops-alice'],
      ],
    );
    assert.deepEqual(
      (await json<Entry[]>(['names', 'list', '--prefix', 'hist.'])).map((e) => e.updatedBy),
      ['ops-alice'],
    );
  });

  test('without --client, the change is recorded as cli:<user name>', async () => {
    await ok(['names', 'set', 'who.test', '192.0.2.93']);
    const [record] = (await json<{ history: HistoryRecord[] }>(['names', 'history', 'who.test'])).history;
    assert.match(record.by, /^cli:./);
    assert.equal((await json<Entry>(['names', 'get', 'who.test'])).updatedBy, record.by);
  });
});

describe('divert names with any DNS name', () => {
  const high = Buffer.from([200, ...Buffer.from('high')]);
  // as typed, as the query carries it, as divert writes it
  // (each CLI run starts a process: two names carry every case)
  const names: [string, (string | Buffer)[], string][] = [
    [LONGEST_NAME, LONGEST_NAME.split('.'), LONGEST_NAME],
    ['Sp\\032Ace.dot\\.in.\\200high.cli.test', ['SP ACE', 'dot.in', high, 'cli', 'test'], 'sp\\032ace.dot\\046in.\\200high.cli.test'],
  ];

  /** The addresses DNS answers for a name given as its wire labels. */
  async function answered(wire: (string | Buffer)[]): Promise<string[]> {
    const reply = decode(await udpAsk(dnsPort, rawQuery(wire)));
    return (reply.answers ?? []).map((a) => (a as { data: string }).data);
  }

  test('set, get, history and delete a 253-character name and names with escapes; DNS answers them meanwhile', async () => {
    for (const [given, wire, canonical] of names) {
      const set = rows(await ok(['names', 'set', given, '192.0.2.60']));
      assert.deepEqual(set[1].slice(0, 2), [canonical, '192.0.2.60'], `set ${given}`);
      assert.deepEqual(await answered(wire), ['192.0.2.60'], `the query for ${given}`);
      const entry = await json<Entry>(['names', 'get', given]);
      assert.deepEqual([entry.name, entry.a], [canonical, ['192.0.2.60']]);
      const history = await json<{ name: string; history: HistoryRecord[] }>(['names', 'history', given]);
      assert.deepEqual([history.name, history.history.map((r) => r.version)], [canonical, [entry.version]]);
      assert.equal(await ok(['names', 'delete', given]), `deleted ${given}\n`);
      await fails(['names', 'get', given], 1, /is not intercepted/);
    }
    await fails(['names', 'set', `${'x'.repeat(64)}.cli.test`, '192.0.2.60'], 1, /has a label of 64 octets/);
    await fails(['names', 'set', 'bad\\25x.cli.test', '192.0.2.60'], 1, /has a bad escape "\\25x"/);
  });

  test('export writes them so that import reads them back the same, and DNS answers them again', async () => {
    for (const [i, [given]] of names.entries()) await ok(['names', 'set', given, `192.0.2.${70 + i}`, `2001:db8::${70 + i}`]);
    const zone = await ok(['names', 'export']);
    const exported = parseZone(zone, 'export');
    for (const [given] of names) await ok(['names', 'delete', given]);
    const file = join(tmp(), 'escaped.zone');
    writeFileSync(file, zone);
    const imported = new Map((await json<{ changed: Entry[] }>(['names', 'import', file])).changed.map((e) => [e.name, e]));
    for (const [i, [, wire, canonical]] of names.entries()) {
      assert.deepEqual(
        exported.get(canonical),
        { a: [`192.0.2.${70 + i}`], aaaa: [`2001:db8::${70 + i}`], ttl: 30 },
        `${canonical} in the export`,
      );
      assert.deepEqual(
        [imported.get(canonical)?.a, imported.get(canonical)?.aaaa],
        [[`192.0.2.${70 + i}`], [`2001:db8::${70 + i}`]],
        `${canonical} imported`,
      );
      assert.deepEqual(await answered(wire), [`192.0.2.${70 + i}`], `the query for ${canonical}`);
    }
  });
});

describe('divert divert', () => {
  test('changes exactly the names that answer FROM', async () => {
    await ok(['names', 'set', 'd1.div.test', '198.51.100.7']);
    await ok(['names', 'set', 'd2.div.test', '198.51.100.8', '198.51.100.7', '2001:db8::7']);
    const untouched = await json<Entry>(['names', 'set', 'd3.div.test', '198.51.100.8']);
    const table = rows(await ok(['divert', '198.51.100.7', '198.51.100.9']));
    assert.deepEqual(
      table
        .slice(1)
        .map((r) => r[0])
        .sort(),
      ['d1.div.test', 'd2.div.test'],
    );

    const reply = await json<{ from: string; to: string; changed: Entry[] }>(['divert', '198.51.100.9', '198.51.100.10']);
    assert.deepEqual([reply.from, reply.to], ['198.51.100.9', '198.51.100.10']);
    reply.changed.forEach(assertEntry);
    assert.deepEqual(reply.changed.map((e) => e.name).sort(), ['d1.div.test', 'd2.div.test']);
    const d2 = reply.changed.find((e) => e.name === 'd2.div.test')!;
    assert.deepEqual([d2.a.slice().sort(), d2.aaaa], [['198.51.100.10', '198.51.100.8'], ['2001:db8::7']]);
    assert.deepEqual(await json<Entry>(['names', 'get', 'd3.div.test']), untouched, 'a name not answering FROM is left alone');
    assert.deepEqual(await resolver.resolve4('d1.div.test'), ['198.51.100.10']);

    const none = await cli(['divert', '198.51.100.7', '198.51.100.9']);
    assert.equal(none.code, 0);
    assert.match(none.stderr, /no intercepted name answers 198\.51\.100\.7; no name changed/);
    assert.match(none.stderr, /198\.51\.100\.9 is diverted to 198\.51\.100\.10: traffic for 198\.51\.100\.7 goes there/);
  });
});

describe('divert diversions', () => {
  test('list shows the records divert divert keeps (a table, or --json); delete forgets one, then refuses it (exit 1)', async () => {
    await ok(['divert', '198.51.100.50', '198.51.100.51', '--client', 'op-1']);
    await ok(['divert', '2001:DB8::50', '2001:db8::51', '--client', 'op-2']);
    const table = rows(await ok(['diversions', 'list']));
    assert.deepEqual(table[0], ['FROM', 'TO', 'BY', 'AT']);
    const row = table.find((r) => r[0] === '198.51.100.50');
    assert.deepEqual(row?.slice(0, 3), ['198.51.100.50', '198.51.100.51', 'op-1']);
    assert.match(row[3], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const v6 = table.findIndex((r) => r[0] === '2001:db8::50');
    assert.ok(v6 > table.indexOf(row), 'IPv6 after IPv4');

    const records = await json<{ from: string; to: string; by: string; at: string }[]>(['diversions', 'list']);
    assert.deepEqual(
      records.find((r) => r.from === '2001:db8::50'),
      { from: '2001:db8::50', to: '2001:db8::51', by: 'op-2', at: records.find((r) => r.from === '2001:db8::50')!.at },
    );

    const deleted = await ok(['diversions', 'delete', '198.51.100.50']);
    assert.match(deleted, /^deleted the diversion 198\.51\.100\.50 → 198\.51\.100\.51 \(.*divert divert 198\.51\.100\.51 198\.51\.100\.50/);
    assert.equal(
      (await json<{ from: string }[]>(['diversions', 'list'])).find((r) => r.from === '198.51.100.50'),
      undefined,
    );
    await fails(['diversions', 'delete', '198.51.100.50'], 1, /no diversion of 198\.51\.100\.50 is in force \(HTTP 404 NOT_FOUND\)/);
    await fails(['diversions', 'delete', 'nowhere'], 2, /FROM "nowhere" is not an IPv4 or IPv6 address/);
    await fails(['diversions', 'frobnicate'], 2, /Unknown argument: frobnicate/);
    assert.equal((await cli(['diversions', 'delete', '2001:db8:0::50'])).code, 0, 'IPv6 in any spelling');
  });
});

describe('failures', () => {
  test('bad usage exits with 2', async () => {
    await fails(['names', 'frobnicate'], 2, /Unknown argument: frobnicate/);
    await fails(['names'], 2, /names command/);
    await fails(['names', 'set', 'bad.test', '192.0.2.1', 'not-an-address'], 2, /"not-an-address" is not an IPv4 or IPv6 address/);
    await fails(['names', 'set', 'bad.test'], 2, /Not enough non-option arguments/);
    await fails(['names', 'set', 'bad.test', '192.0.2.1', '--ttl', 'ten'], 2, /--ttl "ten" is not a whole number/);
    await fails(['names', 'list', '--limit', '5'], 2, /Unknown argument: limit/);
    await fails(['divert', '192.0.2.1', '2001:db8::1'], 2, /different families/);
    await fails(['divert', '192.0.2.1', 'nowhere'], 2, /TO "nowhere" is not an IPv4 or IPv6 address/);
    await fails(['names', 'list', '--admin', 'ftp://127.0.0.1/'], 2, /--admin "ftp:\/\/127\.0\.0\.1\/"/);
  });

  test('no token anywhere: exit 2, saying where it looked and which flag to use', async () => {
    const empty = tmp();
    await fails(['names', 'list'], 2, new RegExp(`${empty}/divert/admin-token.*--token TOKEN`), { XDG_CONFIG_HOME: empty });
    await fails(['names', 'list', '--token-file', join(empty, 'nope')], 2, /--token-file ".*nope" does not exist/, {
      XDG_CONFIG_HOME: empty,
    });
  });

  test('the token from --token-file or DIVERT_ADMIN_TOKEN, without the default file', async () => {
    const elsewhere = tmp();
    const tokenFile = join(home, 'divert', 'admin-token');
    await ok(['names', 'list', '--token-file', tokenFile], { XDG_CONFIG_HOME: elsewhere });
    await ok(['names', 'list'], { XDG_CONFIG_HOME: elsewhere, DIVERT_ADMIN_TOKEN_FILE: tokenFile });
    await ok(['names', 'list'], { XDG_CONFIG_HOME: elsewhere, DIVERT_ADMIN_TOKEN: readFileSync(tokenFile, 'utf8').trim() });
    await fails(['names', 'list', '--token', 'wrong-token-0123456789'], 1, /HTTP 401/, {
      DIVERT_ADMIN_TOKEN: readFileSync(tokenFile, 'utf8').trim(),
    });
  });

  test('a wrong --token is refused with 401 and exit 1', async () => {
    await fails(
      ['names', 'list', '--token', 'wrong-token-0123456789'],
      1,
      /missing or wrong bearer token .*HTTP 401 UNAUTHORIZED; the token came from --token/,
    );
  });

  test('a closed admin port: exit 1 naming the URL', async () => {
    const port = await freePort();
    await fails(
      ['names', 'list', '--admin', `http://127.0.0.1:${port}`],
      1,
      new RegExp(`cannot reach the admin API at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`),
    );
    await fails(['divert', '192.0.2.1', '192.0.2.2'], 1, new RegExp(`http://127\\.0\\.0\\.1:${port}`), {
      DIVERT_ADMIN_URL: `127.0.0.1:${port}`,
    });
  });
});

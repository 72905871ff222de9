// Who may change what by DNS UPDATE: the update-policy grants of the key file (read, and
// refused with FILE:LINE when malformed), the real `nsupdate` refused outside its key's
// grants, and the write policy (--max-addresses, --allow-tld-wildcards) held against
// updates as against the admin API, with each table backend. Checked as a user would:
// nsupdate's verdict, the admin API's entry and history, DNS answers, the log.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isDivertError } from '../src/errors.js';
import { parseKeyFile } from '../src/update/key-file.js';
import { BACKENDS } from './helpers/backends.js';
import { startDivert, type LogSink, type TestServer } from './helpers/divert.js';
import { assertApplied, entryOf, historyOf, keyText, nsupdate, type NsupdateRun } from './helpers/nsupdate.js';
import { runDivert } from './helpers/process.js';
import { tempFiles } from './helpers/temp-files.js';

const writeTemp = tempFiles('grants');

const secretOf = () => randomBytes(32).toString('base64');
const KEYS = ['monitor', 'nogrant', 'everything', 'v4only'] as const;
type KeyName = (typeof KEYS)[number];

const POLICY = `update-policy {
    deny monitor name admin.shop.test.;      // carved out of the grant below
    grant monitor subdomain shop.test.;      // the name and every name below it
    grant monitor name www.other.test.;      // exactly this name
    grant everything subdomain .;            // every name: only when written out
    grant v4only subdomain v4.test. A;       // A records only
};
`;

/** divert's key file (every key and the policy) and, for nsupdate, each key alone. */
function keyFiles(): { server: string; client: Record<KeyName, string> } {
  const secrets = KEYS.map(secretOf);
  const server = writeTemp(KEYS.map((k, i) => keyText(k, secrets[i])).join('') + POLICY);
  const client = Object.fromEntries(KEYS.map((k, i) => [k, writeTemp(keyText(k, secrets[i]))])) as Record<KeyName, string>;
  return { server, client };
}

describe('update-policy in the key file', () => {
  const secret = secretOf();

  test('rules are read in order, names in lower case without the dot, types A, AAAA and ANY', () => {
    const { keys, grants } = parseKeyFile(
      `${keyText('a', secret)}${keyText('b', secret)}
update-policy {
\tgrant A subdomain Shop.Example.;
\tdeny a name www.shop.example AAAA;
};
update-policy { grant b subdomain .; grant b name *.shop.example. a any; };
`,
      'F',
    );
    assert.deepEqual([...keys.keys()], ['a', 'b']);
    assert.deepEqual(grants, [
      { allow: true, key: 'a', match: 'subdomain', name: 'shop.example', families: ['a', 'aaaa'], line: 11 },
      { allow: false, key: 'a', match: 'name', name: 'www.shop.example', families: ['aaaa'], line: 12 },
      { allow: true, key: 'b', match: 'subdomain', name: '', families: ['a', 'aaaa'], line: 14 },
      { allow: true, key: 'b', match: 'name', name: '*.shop.example', families: ['a', 'aaaa'], line: 14 },
    ]);
  });

  test('a malformed rule is BAD_CONFIG naming FILE:LINE and what is wrong', () => {
    const key = keyText('monitor', secret); // four lines, then a blank one and update-policy: the rule is on line 7
    const cases: [string, RegExp][] = [
      [
        'grant monitor zonesub shop.test.;',
        /^--update-key-file F:7: rule type "zonesub" is not supported: divert takes name \(exactly that name\) and subdomain/,
      ],
      ['grant ghost subdomain shop.test.;', /^--update-key-file F:7: grant for key "ghost": no key of that name in this file$/],
      ['grant monitor subdomain shop.test. TXT;', /^--update-key-file F:7: record type "TXT": divert holds only A and AAAA records/],
      ['grant monitor name .;', /^--update-key-file F:7: name "\.": the root is never a table name/],
      [
        'grant monitor subdomain *.shop.test.;',
        /^--update-key-file F:7: subdomain "\*\.shop\.test\.": give the domain \(subdomain shop\.test\. covers \*\.shop\.test too\)$/,
      ],
      [
        'grant monitor subdomain shop..test.;',
        /^--update-key-file F:7: name "shop\.\.test\." has an empty label( \(two dots in a row\))?$/,
      ],
      ['grant monitor subdomain;', /^--update-key-file F:7: expected the name after "subdomain", found ";"$/],
      [
        'allow monitor subdomain shop.test.;',
        /^--update-key-file F:7: expected a rule of update-policy \(\(grant\|deny\) KEY \(name\|subdomain\) NAME/,
      ],
      ['grant monitor subdomain shop.test.\n', /^--update-key-file F:9: expected ";" after the rule, found "}"$/],
    ];
    for (const [rule, message] of cases) {
      const text = `${key}\nupdate-policy {\n${rule}\n};\n`;
      assert.throws(
        () => parseKeyFile(text, 'F'),
        (err: unknown) => {
          assert.ok(isDivertError(err, 'BAD_CONFIG'), rule);
          assert.match(err.message, message, rule);
          return true;
        },
      );
    }
    const whole: [string, RegExp][] = [
      [`${key}update-policy local;\n`, /^--update-key-file F:5: expected "\{" after update-policy, found "local"/],
      [`${key}update-policy { };\n`, /^--update-key-file F:5: update-policy has no rule/],
      [
        `${key}update-policy { grant monitor subdomain shop.test.; }\n`,
        /^--update-key-file F:5: the file ends where ";" after the closing "\}" of update-policy was expected$/,
      ],
    ];
    for (const [text, message] of whole) {
      assert.throws(
        () => parseKeyFile(text, 'F'),
        (err: unknown) => isDivertError(err, 'BAD_CONFIG') && message.test(err.message),
        text,
      );
    }
  });

  test('a malformed update-policy stops `divert serve` with one line naming FILE:LINE (exit 2); `divert validate` says the same', async () => {
    const bad = writeTemp(
      `${keyText('monitor', secret)}update-policy {\n\tgrant monitor subdomain shop.test.;\n\tgrant monitor self shop.test.;\n};\n`,
    );
    const expected = `divert: --update-key-file ${bad}:7: rule type "self" is not supported: divert takes name (exactly that name) and subdomain (the name and every name below it), as in (grant|deny) KEY (name|subdomain) NAME [A] [AAAA] [ANY];\n`;
    const args = ['--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--update-listen', '127.0.0.1:0', '--update-key-file', bad];
    const serve = runDivert(['serve', '--workers', '1', ...args]);
    try {
      assert.equal(await serve.exited(), 2);
      assert.equal(serve.stderr(), expected);
      assert.ok(!serve.stderr().includes(secret));
    } finally {
      await serve.stop();
    }
    const validate = runDivert(['validate', ...args]);
    assert.equal(await validate.exited(), 2);
    assert.equal(validate.stderr(), expected);
  });

  test('`divert validate` counts the rules and names a key without a grant', async () => {
    const file = writeTemp(`${keyText('a', secret)}${keyText('b', secret)}update-policy { grant a subdomain shop.test.; };\n`);
    const run = runDivert([
      'validate',
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      '127.0.0.1:9',
      '--update-listen',
      '127.0.0.1:0',
      '--update-key-file',
      file,
    ]);
    assert.equal(await run.exited(), 0, run.stderr());
    assert.match(
      run.stdout(),
      /DNS UPDATE 127\.0\.0\.1:0, 2 TSIG keys, 1 update-policy rule \(key "b" has no grant: may change nothing\); TLS off\n$/,
    );
  });
});

interface LogLine {
  level: number;
  msg: string;
  key?: string;
  rcode?: string;
}

for (const [backend, makeBackend] of BACKENDS) {
  describe(`DNS UPDATE grants with nsupdate (${backend} table)`, () => {
    let divert: TestServer;
    let cleanup: () => Promise<void>;
    let keys: ReturnType<typeof keyFiles>;
    const lines: string[] = [];
    const logStream: LogSink = { write: (line) => void lines.push(line) };
    const logged = () => lines.map((l) => JSON.parse(l) as LogLine);

    before(async () => {
      const b = await makeBackend('grants');
      cleanup = b.cleanup;
      keys = keyFiles();
      divert = await startDivert(
        {
          ...b.options,
          upstream: ['127.0.0.1:9'],
          'query-timeout-ms': '200',
          'log-level': 'info',
          'max-addresses': '4',
          'update-listen': '127.0.0.1:0',
          'update-key-file': keys.server,
        },
        { logStream },
      );
    });
    after(async () => {
      await divert?.close();
      await cleanup?.();
    });

    const update = (key: KeyName, zone: string, commands: string[]) =>
      nsupdate([`server 127.0.0.1 ${divert.update!.port}`, `zone ${zone}`, ...commands], ['-k', keys.client[key]]);

    const entry = (name: string) => entryOf(divert, name);
    const history = (name: string) => historyOf(divert, name);

    /** Runs `attempt`, which must be REFUSED, and checks that `names` are as they were; resolves with the log line about it. */
    async function refused(names: string[], attempt: () => Promise<NsupdateRun>): Promise<LogLine> {
      const before = await Promise.all(names.map(async (n) => [await entry(n), (await history(n)).length]));
      const seen = lines.length;
      const run = await attempt();
      assert.notEqual(run.code, 0, 'nsupdate reports the failure');
      assert.match(run.output, /update failed: REFUSED/);
      assert.deepEqual(await Promise.all(names.map(async (n) => [await entry(n), (await history(n)).length])), before, 'nothing changed');
      const about = lines
        .slice(seen)
        .map((l) => JSON.parse(l) as LogLine)
        .filter((l) => l.rcode === 'REFUSED');
      assert.equal(about.length, 1, 'one log line says why');
      return about[0];
    }

    test('the start warns about the key without a grant', () => {
      const warning = logged().find((l) => l.msg.includes('"nogrant"'));
      assert.ok(warning, 'a warning names it');
      assert.equal(warning.level, 40);
      assert.match(warning.msg, /^DNS UPDATE key "nogrant" has no grant in the update-policy of .*: it may change nothing$/);
    });

    test('a granted key changes names below its subdomain grant, the domain itself, and the name of its name grant', async () => {
      assertApplied(
        await update('monitor', 'shop.test.', [
          'update add www.shop.test. 60 A 192.0.2.1',
          'update add shop.test. 60 A 192.0.2.2',
          'update add a.b.shop.test. 60 AAAA 2001:db8::1',
        ]),
      );
      assertApplied(await update('monitor', 'other.test.', ['update add www.other.test. 60 A 192.0.2.3']));
      assert.deepEqual(await divert.resolver.resolve4('www.shop.test'), ['192.0.2.1']);
      assert.deepEqual(await divert.resolver.resolve4('shop.test'), ['192.0.2.2']);
      assert.deepEqual(await divert.resolver.resolve6('a.b.shop.test'), ['2001:db8::1']);
      assert.deepEqual(await divert.resolver.resolve4('www.other.test'), ['192.0.2.3']);
      assert.equal((await history('www.other.test'))[0].by, 'dnsupdate:monitor');
    });

    test('the same key is REFUSED for a name outside its grants; the log names the key and the name; nothing of the update is written', async () => {
      // below a name grant, beside it, another domain, and a granted name in the same message as one that is not
      const belowName = await refused(['x.www.other.test'], () =>
        update('monitor', 'other.test.', ['update add x.www.other.test. 60 A 192.0.2.9']),
      );
      assert.equal(belowName.key, 'monitor');
      assert.equal(belowName.msg, 'DNS UPDATE not applied: key "monitor" has no grant for "x.www.other.test" (A)');
      await refused(['mail.other.test'], () => update('monitor', 'other.test.', ['update add mail.other.test. 60 A 192.0.2.9']));
      const elsewhere = await refused(['evil.test'], () => update('monitor', 'test.', ['update add evil.test. 60 A 192.0.2.9']));
      assert.match(elsewhere.msg, /key "monitor" has no grant for "evil\.test" \(A\)$/);
      await refused(['www.shop.test', 'evil.test'], () =>
        update('monitor', 'test.', ['update add www.shop.test. 60 A 192.0.2.9', 'update add evil.test. 60 A 192.0.2.9']),
      );
      // a deletion needs the grant as much as an addition
      assertApplied(await update('everything', 'other.test.', ['update add del.other.test. 60 A 192.0.2.8']));
      await refused(['del.other.test'], () => update('monitor', 'other.test.', ['update delete del.other.test.']));
    });

    test('a deny before the grant carves a name out of it', async () => {
      const denied = await refused(['admin.shop.test'], () =>
        update('monitor', 'shop.test.', ['update add admin.shop.test. 60 A 192.0.2.9']),
      );
      assert.match(denied.msg, /key "monitor" may not change "admin\.shop\.test" \(A\): denied by the update-policy rule on line \d+$/);
      assertApplied(await update('monitor', 'shop.test.', ['update add x.admin.shop.test. 60 A 192.0.2.9']));
    });

    test('zone ".": REFUSED for a key without a root grant, even for names it may change', async () => {
      const root = await refused(['www.shop.test'], () => update('monitor', '.', ['update add www.shop.test. 60 A 192.0.2.10']));
      assert.equal(root.msg, 'DNS UPDATE not applied: key "monitor" has no grant in zone "."');
      await refused(['evil.com'], () => update('monitor', '.', ['update add evil.com. 60 A 192.0.2.10']));
      // a zone above a granted name is fine: the names decide
      assertApplied(await update('monitor', 'test.', ['update add zone.shop.test. 60 A 192.0.2.10']));
      await refused(['x.net'], () => update('monitor', 'net.', ['update add x.net. 60 A 192.0.2.10']));
    });

    test('a key without any grant may change nothing', async () => {
      const line = await refused(['www.shop.test', 'fresh.shop.test'], () =>
        update('nogrant', 'shop.test.', ['update add fresh.shop.test. 60 A 192.0.2.11', 'update delete www.shop.test.']),
      );
      assert.equal(
        line.msg,
        'DNS UPDATE not applied: key "nogrant" has no grant in the update-policy of the key file, so it may change nothing',
      );
    });

    test('subdomain . (written out) grants every name, zone "." too; *.com still needs --allow-tld-wildcards', async () => {
      assertApplied(await update('everything', '.', ['update add anything.example. 60 A 192.0.2.12']));
      assert.deepEqual(await divert.resolver.resolve4('anything.example'), ['192.0.2.12']);
      const tld = await refused(['*.com'], () => update('everything', 'com.', ['update add *.com. 60 A 192.0.2.12']));
      assert.equal(
        tld.msg,
        'DNS UPDATE not applied: update "*.com": a wildcard directly below the top-level domain "com" would answer for every name under it; refused unless the operator gives --allow-tld-wildcards',
      );
      assertApplied(await update('everything', 'shop.com.', ['update add *.shop.com. 60 A 192.0.2.13']));
    });

    test('a grant with record types: A only lets the key add A, not AAAA, nor delete the whole name', async () => {
      assertApplied(await update('v4only', 'v4.test.', ['update add www.v4.test. 60 A 192.0.2.14']));
      const aaaa = await refused(['www.v4.test'], () => update('v4only', 'v4.test.', ['update add www.v4.test. 60 AAAA 2001:db8::14']));
      assert.match(aaaa.msg, /key "v4only" has no grant for "www\.v4\.test" \(AAAA\)$/);
      await refused(['www.v4.test'], () => update('v4only', 'v4.test.', ['update delete www.v4.test.']));
      assertApplied(await update('v4only', 'v4.test.', ['update delete www.v4.test. A']));
    });

    test('the address cap: the add one over --max-addresses is REFUSED and changes nothing', async () => {
      assertApplied(
        await update('monitor', 'shop.test.', [
          'update add cap.shop.test. 60 A 192.0.2.21',
          'update add cap.shop.test. 60 A 192.0.2.22',
          'update add cap.shop.test. 60 AAAA 2001:db8::21',
          'update add cap.shop.test. 60 AAAA 2001:db8::22',
        ]),
      );
      assert.equal((await entry('cap.shop.test'))!.a.length + (await entry('cap.shop.test'))!.aaaa.length, 4, 'at the cap');
      const over = await refused(['cap.shop.test'], () => update('monitor', 'shop.test.', ['update add cap.shop.test. 60 A 192.0.2.23']));
      assert.equal(
        over.msg,
        'DNS UPDATE not applied: update "cap.shop.test": a and aaaa hold 5 addresses (3 IPv4, 2 IPv6); the limit is 4 (--max-addresses)',
      );
      assert.deepEqual((await divert.resolver.resolve4('cap.shop.test')).sort(), ['192.0.2.21', '192.0.2.22']);
      // replacing one within the cap is fine
      assertApplied(
        await update('monitor', 'shop.test.', ['update delete cap.shop.test. A 192.0.2.21', 'update add cap.shop.test. 60 A 192.0.2.23']),
      );
    });
  });
}

describe('DNS UPDATE with --allow-tld-wildcards', () => {
  test('a key granted the TLD may create *.com, and divert answers every name below it', async () => {
    const keys = keyFiles();
    const divert = await startDivert({
      upstream: ['127.0.0.1:9'],
      'query-timeout-ms': '200',
      'allow-tld-wildcards': 'true',
      'update-listen': '127.0.0.1:0',
      'update-key-file': keys.server,
    });
    try {
      const run = await nsupdate(
        [`server 127.0.0.1 ${divert.update!.port}`, 'zone com.', 'update add *.com. 60 A 192.0.2.30'],
        ['-k', keys.client.everything],
      );
      assert.equal(run.code, 0, run.output);
      assert.deepEqual(await divert.resolver.resolve4('www.example.com'), ['192.0.2.30']);
    } finally {
      await divert.close();
    }
  });
});

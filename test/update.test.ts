// DNS UPDATE (RFC 2136) with TSIG (RFC 8945): the key file, signing and checking, and
// the real `nsupdate` against a divert on loopback, with each table backend. What an
// update did is checked as a user would: DNS answers and the admin API's entry and history.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { isDivertError } from '../src/errors.js';
import { memoryTable } from './helpers/tables.js';
import type { Settled } from '../src/serving/handle.js';
import type { AddressTable } from '../src/table/address-table.js';
import { parseKeyFile, readKeyFile } from '../src/update/key-file.js';
import { appendUnsignedError, signMessage, signReply, verifyMessage, TsigError, type TsigKey } from '../src/update/tsig.js';
import { startUpdateServer } from '../src/update/update-server.js';
import { BACKENDS } from './helpers/backends.js';
import { startDivert, tcpAsk, udpAsk, type LogSink, type TestServer } from './helpers/divert.js';
import { runDivert } from './helpers/process.js';
import { execChild } from './helpers/children.js';
import { assertApplied, entryOf, historyOf, keyText, makeKeyFile, nsupdate, type NsupdateRun } from './helpers/nsupdate.js';
import { encodeName, ipv4, rr } from './helpers/raw.js';
import { startUpstream, replyTo, RCODE, type TestUpstream } from './helpers/upstream.js';

const KEY_NAME = 'divert-update';

const dir = mkdtempSync(join(tmpdir(), 'divert-update-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function writeTemp(text: string): string {
  const path = join(dir, `file-${++files}.conf`);
  writeFileSync(path, text);
  return path;
}

// ---- raw UPDATE messages, for the tests that need exact control ---------------------

const CLASS = { IN: 1, NONE: 254, ANY: 255 } as const;

function updateMessage(id: number, zone: string, prerequisites: Buffer[], updates: Buffer[], opcode = 5): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(opcode << 11, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(prerequisites.length, 6);
  header.writeUInt16BE(updates.length, 8);
  const zoneType = Buffer.alloc(4);
  zoneType.writeUInt16BE(6, 0); // SOA
  zoneType.writeUInt16BE(CLASS.IN, 2);
  return Buffer.concat([header, encodeName(zone), zoneType, ...prerequisites, ...updates]);
}

const addA = (name: string, address: string, ttl = 60) => rr(name, 1, CLASS.IN, ttl, ipv4(address));

function rcodeOf(reply: Buffer): number {
  return reply.readUInt16BE(2) & 0xf;
}

const RCODES = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NOTIMP: 4, REFUSED: 5, NXRRSET: 8, NOTAUTH: 9 } as const;

// ---- the key file ------------------------------------------------------------------

describe('TSIG key file', () => {
  const secret = randomBytes(32).toString('base64');

  test("reads several keys in BIND's format, with every comment style", () => {
    const keys = parseKeyFile(
      [
        '# made by tsig-keygen',
        'key "Monitor.Example." {',
        '\talgorithm hmac-sha256; // the only one divert takes',
        `\tsecret "${secret}";`,
        '};',
        '/* a second key,',
        '   for the operator */',
        `key operator { algorithm HMAC-SHA256; secret "${randomBytes(32).toString('base64')}"; };`,
      ].join('\n'),
      'keys.conf',
    );
    assert.deepEqual([...keys.keys.keys()], ['monitor.example', 'operator']);
    assert.equal(keys.keys.get('monitor.example')!.algorithm, 'hmac-sha256');
    assert.deepEqual(keys.keys.get('monitor.example')!.secret, Buffer.from(secret, 'base64'));
  });

  test('an error names the file, the line and what is wrong, and never shows the secret', async () => {
    const cases: [string, RegExp][] = [
      [
        `key "a" {\n\talgorithm hmac-md5;\n\tsecret "${secret}";\n};\n`,
        /^--update-key-file F:2: key "a": algorithm "hmac-md5" is not supported; divert accepts hmac-sha256 only/,
      ],
      [
        `key "a" {\n\talgorithm hmac-sha256;\n\tsecret "${secret.slice(1)}!";\n};\n`,
        /^--update-key-file F:3: key "a": the secret is not valid base64$/,
      ],
      [
        `key "a" {\n\talgorithm hmac-sha256\n\tsecret "${secret}";\n};\n`,
        /^--update-key-file F:3: expected ";" after algorithm of key "a", found "secret"$/,
      ],
      [`key "a" {\n\tsecret "${secret}";\n};\n`, /^--update-key-file F:1: key "a" has no algorithm/],
      [`key "a" {\n\talgorithm hmac-sha256;\n};\n`, /^--update-key-file F:1: key "a" has no secret/],
      [
        `key "a" {\n\talgorithm hmac-sha256;\n\tsecret "${secret}";\n\tpolicy open;\n};\n`,
        /^--update-key-file F:4: key "a": unknown clause "policy"/,
      ],
      [`${keyText('a', secret)}${keyText('A.', secret)}`, /^--update-key-file F:5: key "a" is defined twice$/],
      [`options { };\n`, /^--update-key-file F:1: expected a key statement/],
      [`/* never closed\n${keyText('a', secret)}`, /^--update-key-file F:1: a "\/\*" comment is never closed$/],
      [`key "a" {\n\talgorithm hmac-sha256;\n`, /^--update-key-file F:2: the file ends where a clause of key "a" or "}" was expected$/],
      ['# nothing but a comment\n', /^--update-key-file F: no key in it/],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => parseKeyFile(text, 'F'),
        (err: unknown) => {
          assert.ok(isDivertError(err, 'BAD_CONFIG'), text);
          assert.match(err.message, message, text);
          assert.ok(!err.message.includes(secret.slice(2, 20)), 'the secret is not in the message');
          return true;
        },
      );
    }
    await assert.rejects(readKeyFile(join(dir, 'absent.key')), (err: unknown) => {
      assert.ok(isDivertError(err, 'BAD_CONFIG'));
      assert.match(err.message, /^--update-key-file .*absent\.key: cannot read it \(ENOENT\)$/);
      return true;
    });
  });
});

// ---- signing and checking ----------------------------------------------------------

describe('TSIG sign and verify', () => {
  const key: TsigKey = { name: 'k1.example', algorithm: 'hmac-sha256', secret: randomBytes(32) };
  const keys = new Map([[key.name, key]]);
  const now = 1_800_000_000;
  const request = updateMessage(4242, 'shop.test', [], [addA('www.shop.test', '192.0.2.1')]);

  test('a signed request verifies; any changed byte, another secret or an unknown key does not', () => {
    const { message, mac } = signMessage(request, key, { now });
    assert.equal(mac.length, 32);
    assert.equal(message.readUInt16BE(10), 1, 'ARCOUNT counts the TSIG');
    const ok = verifyMessage(message, keys, { now });
    assert.equal(ok.status, 'verified');

    // the header ID may change on the way (a forwarder's): the MAC covers the original ID in the TSIG
    const newId = Buffer.from(message);
    newId.writeUInt16BE(7, 0);
    assert.equal(verifyMessage(newId, keys, { now }).status, 'verified');
    const originalIdAt = message.length - 6;
    for (const at of [2, 3, 13, request.length - 1, originalIdAt]) {
      const tampered = Buffer.from(message);
      tampered[at] ^= 0x01;
      const result = verifyMessage(tampered, keys, { now });
      assert.equal(result.status, 'rejected', `byte ${at}`);
      assert.equal((result as { error: number }).error, TsigError.BADSIG, `byte ${at}`);
    }
    const otherSecret = new Map([[key.name, { ...key, secret: randomBytes(32) }]]);
    assert.equal((verifyMessage(message, otherSecret, { now }) as { error: number }).error, TsigError.BADSIG);
    const otherName = new Map([['k2.example', { ...key, name: 'k2.example' }]]);
    assert.equal((verifyMessage(message, otherName, { now }) as { error: number }).error, TsigError.BADKEY);
    assert.equal(verifyMessage(request, keys, { now }).status, 'unsigned');
  });

  test('the key name is compared in canonical (lower-case) form', () => {
    const { message } = signMessage(request, { ...key, name: 'K1.Example' }, { now });
    assert.equal(verifyMessage(message, keys, { now }).status, 'verified');
  });

  test("the time must be within the fudge (the request's, at most 300 s)", () => {
    const { message } = signMessage(request, key, { now, fudge: 300 });
    assert.equal(verifyMessage(message, keys, { now: now + 300 }).status, 'verified');
    const late = verifyMessage(message, keys, { now: now + 301 });
    assert.equal(late.status, 'signed-error');
    assert.equal((late as { error: number }).error, TsigError.BADTIME);
    const narrow = signMessage(request, key, { now, fudge: 10 }).message;
    assert.equal(verifyMessage(narrow, keys, { now: now - 11 }).status, 'signed-error');
    const wide = signMessage(request, key, { now, fudge: 3600 }).message;
    assert.equal(verifyMessage(wide, keys, { now: now + 301 }).status, 'signed-error', 'a fudge above 300 s is not granted');
  });

  test("a reply is signed over the request's MAC: it verifies with that MAC only", () => {
    const { message, mac } = signMessage(request, key, { now });
    const verified = verifyMessage(message, keys, { now });
    assert.equal(verified.status, 'verified');
    const { tsig } = verified;
    const reply = Buffer.from(request);
    reply.writeUInt16BE(0x8000 | (5 << 11), 2);
    const signed = signReply(reply, key, tsig, 0, now + 1);
    assert.equal(verifyMessage(signed, keys, { now: now + 1, requestMac: mac }).status, 'verified');
    assert.equal(verifyMessage(signed, keys, { now: now + 1 }).status, 'rejected', 'without the request MAC');
    assert.equal(verifyMessage(signed, keys, { now: now + 1, requestMac: randomBytes(32) }).status, 'rejected');
  });

  test("a BADTIME reply is signed, keeps the client's time and carries the server's as other data", () => {
    const { message, mac } = signMessage(request, key, { now });
    const late = verifyMessage(message, keys, { now: now + 1000 });
    assert.equal(late.status, 'signed-error');
    const { tsig } = late;
    const signed = signReply(Buffer.from(request), key, tsig, TsigError.BADTIME, now + 1000);
    // the client checks it at its own time: the reply's Time Signed is its own
    const check = verifyMessage(signed, keys, { now, requestMac: mac });
    assert.equal(check.status, 'verified');
    const { tsig: replyTsig } = check;
    assert.equal(replyTsig.error, TsigError.BADTIME);
    assert.equal(replyTsig.timeSigned, now);
    assert.equal(replyTsig.other.readUInt16BE(0) * 2 ** 32 + replyTsig.other.readUInt32BE(2), now + 1000);
  });

  test('a BADKEY or BADSIG reply carries the error in a TSIG without a MAC', () => {
    const { message } = signMessage(request, key, { now });
    const rejected = verifyMessage(message, new Map(), { now });
    assert.equal(rejected.status, 'rejected');
    const { tsig } = rejected;
    const reply = appendUnsignedError(Buffer.from(request), tsig, TsigError.BADKEY);
    assert.equal(reply.readUInt16BE(10), 1, 'ARCOUNT counts the TSIG');
    // read back as a client would: the same key name, the error, and no MAC
    const read = verifyMessage(reply, new Map(), { now });
    assert.equal(read.status, 'rejected');
    const { tsig: replyTsig } = read;
    assert.equal(replyTsig.error, TsigError.BADKEY);
    assert.equal(replyTsig.mac.length, 0);
    assert.equal(replyTsig.keyName.join('.'), 'k1.example');
  });

  test('a TSIG that is not the last record, or is cut short, is malformed', () => {
    const { message } = signMessage(request, key, { now });
    const tsigStart = request.length;
    const extra = rr('x.shop.test', 1, CLASS.IN, 0, ipv4('192.0.2.9'));
    const notLast = Buffer.concat([message, extra]);
    notLast.writeUInt16BE(2, 10);
    assert.equal(verifyMessage(notLast, keys, { now }).status, 'malformed');
    const cut = message.subarray(0, tsigStart + 20);
    assert.equal(verifyMessage(cut, keys, { now }).status, 'malformed');
  });
});

// ---- nsupdate against divert, with each table backend -------------------------------

for (const [backend, makeBackend] of BACKENDS) {
  describe(`DNS UPDATE with nsupdate (${backend} table)`, () => {
    let divert: TestServer;
    let upstream: TestUpstream;
    let cleanup: () => Promise<void>;
    let key: { path: string; client: string; secret: string };
    const lines: string[] = [];
    const logStream: LogSink = { write: (line) => void lines.push(line) };

    before(async () => {
      const b = await makeBackend('update');
      cleanup = b.cleanup;
      key = await makeKeyFile(KEY_NAME, `update-policy {\n\tgrant ${KEY_NAME} subdomain shop.test.;\n};\n`, writeTemp);
      // every forwarded name is NXDOMAIN upstream: a name divert lets go of answers NXDOMAIN
      upstream = await startUpstream((q) => replyTo(q, {}, RCODE.NXDOMAIN));
      divert = await startDivert(
        {
          ...b.options,
          upstream: [`127.0.0.1:${upstream.port}`],
          'log-level': 'info',
          'update-listen': '127.0.0.1:0',
          'update-key-file': key.path,
        },
        { logStream },
      );
    });
    after(async () => {
      await divert?.close();
      await upstream?.close();
      await cleanup?.();
    });

    const signed = (commands: string[], args: string[] = []) =>
      nsupdate([`server 127.0.0.1 ${divert.update!.port}`, 'zone shop.test.', ...commands], ['-k', key.client, ...args]);

    const entry = (name: string) => entryOf(divert, name);
    const history = (name: string) => historyOf(divert, name);

    test('the update port is on a port of its own, UDP and TCP', () => {
      assert.ok(divert.update);
      assert.notEqual(divert.update.port, divert.port);
    });

    test("adds an address to a new name, with the record's TTL; the history says dnsupdate:<key>", async () => {
      assertApplied(await signed(['update add new.shop.test. 120 A 192.0.2.10']));
      assert.deepEqual(await divert.resolver.resolve4('new.shop.test', { ttl: true }), [{ address: '192.0.2.10', ttl: 120 }]);
      await assert.rejects(divert.resolver.resolve6('new.shop.test'), { code: 'ENODATA' });
      const [change] = await history('new.shop.test');
      assert.equal(change.by, `dnsupdate:${KEY_NAME}`);
      assert.equal(change.op, 'put');
      assert.equal(change.old, null);
      assert.deepEqual(change.new, { a: ['192.0.2.10'], aaaa: [], ttl: 120 });
    });

    test('adds a second address; the entry keeps its TTL; adding one it has changes nothing', async () => {
      assertApplied(await signed(['update add new.shop.test. 999 A 192.0.2.11']));
      const records = await divert.resolver.resolve4('new.shop.test', { ttl: true });
      assert.deepEqual(records.map((r) => r.address).sort(), ['192.0.2.10', '192.0.2.11']);
      assert.ok(records.every((r) => r.ttl === 120));
      const version = (await entry('new.shop.test'))!.version;
      assertApplied(await signed(['update add new.shop.test. 120 A 192.0.2.11']));
      assert.equal((await entry('new.shop.test'))!.version, version, 'no new version');
    });

    test('replaces the addresses: delete the RRset and add, in one update, one change in the history', async () => {
      const before = (await history('new.shop.test')).length;
      assertApplied(await signed(['update delete new.shop.test. A', 'update add new.shop.test. 60 A 192.0.2.20']));
      assert.deepEqual(await divert.resolver.resolve4('new.shop.test'), ['192.0.2.20']);
      const changes = await history('new.shop.test');
      assert.equal(changes.length, before + 1);
      assert.deepEqual(changes[0].old?.a.sort(), ['192.0.2.10', '192.0.2.11']);
      assert.deepEqual(changes[0].new?.a, ['192.0.2.20']);
      assert.equal(changes[0].by, `dnsupdate:${KEY_NAME}`);
    });

    test('AAAA: added and deleted over TCP too', async () => {
      assertApplied(
        await signed(['update add new.shop.test. 60 AAAA 2001:DB8:0:0::20', 'update add new.shop.test. 60 AAAA 2001:db8::21'], ['-v']),
      );
      assert.deepEqual((await divert.resolver.resolve6('new.shop.test')).sort(), ['2001:db8::20', '2001:db8::21']);
      assert.deepEqual(await divert.resolver.resolve4('new.shop.test'), ['192.0.2.20'], 'A untouched');
      assertApplied(await signed(['update delete new.shop.test. AAAA 2001:db8::20'], ['-v']));
      assert.deepEqual(await divert.resolver.resolve6('new.shop.test'), ['2001:db8::21']);
    });

    test('deletes one address', async () => {
      assertApplied(await signed(['update add new.shop.test. 60 A 192.0.2.21']));
      assertApplied(await signed(['update delete new.shop.test. A 192.0.2.20']));
      assert.deepEqual(await divert.resolver.resolve4('new.shop.test'), ['192.0.2.21']);
    });

    test('deletes an RRset: the name stays intercepted, answered NODATA for that family', async () => {
      assertApplied(await signed(['update delete new.shop.test. A']));
      await assert.rejects(divert.resolver.resolve4('new.shop.test'), { code: 'ENODATA' });
      assert.deepEqual(await divert.resolver.resolve6('new.shop.test'), ['2001:db8::21']);
      assertApplied(await signed(['update delete new.shop.test. AAAA']));
      await assert.rejects(divert.resolver.resolve6('new.shop.test'), { code: 'ENODATA' });
      const left = await entry('new.shop.test');
      assert.deepEqual([left!.a, left!.aaaa], [[], []], 'a name with no records');
    });

    test('deletes the name: it is forwarded again, and the history says who', async () => {
      assertApplied(await signed(['update delete new.shop.test.']));
      assert.equal(await entry('new.shop.test'), null);
      await assert.rejects(divert.resolver.resolve4('new.shop.test'), { code: 'ENOTFOUND' }, "the upstream's NXDOMAIN");
      const [change] = await history('new.shop.test');
      assert.deepEqual([change.op, change.by, change.new], ['delete', `dnsupdate:${KEY_NAME}`, null]);
    });

    test('an entry keeps its TTL, pick, rules and the weights of the addresses still listed', async () => {
      const put = await divert.api('/v1/names/shared.shop.test', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          a: ['192.0.2.1', '192.0.2.2', '192.0.2.3'],
          ttl: 45,
          weights: { '192.0.2.1': 5, '192.0.2.2': 3 },
          pick: 2,
          rules: [
            { networks: ['10.1.0.0/16'], a: ['192.0.2.30'] },
            { days: ['sat'], weights: { '192.0.2.1': 2, '192.0.2.2': 7 } },
            { weights: { '192.0.2.2': 4 } },
          ],
        }),
      });
      assert.equal(put.status, 200);
      assertApplied(await signed(['update delete shared.shop.test. A 192.0.2.2', 'update add shared.shop.test. 300 AAAA 2001:db8::1']));
      const after = await entry('shared.shop.test');
      assert.deepEqual(after!.a, ['192.0.2.1', '192.0.2.3']);
      assert.deepEqual(after!.aaaa, ['2001:db8::1']);
      assert.equal(after!.ttl, 45);
      assert.equal(after!.pick, 2);
      assert.deepEqual(after!.weights, { '192.0.2.1': 5 });
      // rules lose the weights of the address that went; one that was nothing but those weights goes
      assert.deepEqual(after!.rules, [
        { networks: ['10.1.0.0/16'], a: ['192.0.2.30'] },
        { days: ['sat'], weights: { '192.0.2.1': 2 } },
      ]);
    });

    test('several names in one update are each written, in order', async () => {
      assertApplied(
        await signed([
          'update add one.shop.test. 60 A 192.0.2.41',
          'update add two.shop.test. 60 A 192.0.2.42',
          'update add shop.test. 60 A 192.0.2.40',
        ]),
      );
      assert.deepEqual(await divert.resolver.resolve4('one.shop.test'), ['192.0.2.41']);
      assert.deepEqual(await divert.resolver.resolve4('two.shop.test'), ['192.0.2.42']);
      assert.deepEqual(await divert.resolver.resolve4('shop.test'), ['192.0.2.40'], "the zone's own name is in the zone");
      const versions = await Promise.all(['one.shop.test', 'two.shop.test', 'shop.test'].map(async (n) => (await entry(n))!.version));
      assert.ok(versions[0] < versions[1] && versions[1] < versions[2]);
    });

    /** Runs `attempt` and checks that it changed nothing the admin API or DNS can see. */
    async function unchanged(name: string, attempt: () => Promise<NsupdateRun>): Promise<NsupdateRun> {
      const before = await entry(name);
      const changes = (await history(name)).length;
      const run = await attempt();
      assert.notEqual(run.code, 0, 'nsupdate reports the failure');
      assert.deepEqual(await entry(name), before, 'the entry is unchanged');
      assert.equal((await history(name)).length, changes, 'no change in the history');
      assert.deepEqual(await divert.resolver.resolve4(name), before!.a);
      return run;
    }

    test('an unsigned update is REFUSED and changes nothing', async () => {
      const run = await unchanged('one.shop.test', () =>
        nsupdate([`server 127.0.0.1 ${divert.update!.port}`, 'zone shop.test.', 'update add one.shop.test. 60 A 192.0.2.66']),
      );
      assert.match(run.output, /update failed: REFUSED/);
    });

    test('a wrong secret gets NOTAUTH (BADSIG), an unknown key NOTAUTH (BADKEY); neither changes anything', async () => {
      const wrong = writeTemp(keyText(KEY_NAME, randomBytes(32).toString('base64')));
      const commands = [`server 127.0.0.1 ${divert.update!.port}`, 'zone shop.test.', 'update add one.shop.test. 60 A 192.0.2.66'];
      const badSig = await unchanged('one.shop.test', () => nsupdate(commands, ['-k', wrong]));
      assert.match(badSig.output, /update failed: NOTAUTH\(BADSIG\)/);
      const stranger = writeTemp(keyText('stranger', randomBytes(32).toString('base64')));
      const badKey = await unchanged('one.shop.test', () => nsupdate(commands, ['-k', stranger]));
      assert.match(badKey.output, /update failed: NOTAUTH\(BADKEY\)/);
    });

    test('a prerequisite that fails changes nothing; one that holds lets the update through', async () => {
      const yx = await unchanged('one.shop.test', () =>
        signed(['prereq nxdomain one.shop.test.', 'update add one.shop.test. 60 A 192.0.2.66']),
      );
      assert.match(yx.output, /update failed: YXDOMAIN/);
      const nx = await unchanged('one.shop.test', () =>
        signed(['prereq yxrrset one.shop.test. A 192.0.2.99', 'update delete one.shop.test. A']),
      );
      assert.match(nx.output, /update failed: NXRRSET/);
      const yxrrset = await unchanged('one.shop.test', () =>
        signed(['prereq nxrrset one.shop.test. A', 'update add one.shop.test. 60 A 192.0.2.66']),
      );
      assert.match(yxrrset.output, /update failed: YXRRSET/);
      const nxdomain = await unchanged('one.shop.test', () =>
        signed(['prereq yxdomain absent.shop.test.', 'update add one.shop.test. 60 A 192.0.2.66']),
      );
      assert.match(nxdomain.output, /update failed: NXDOMAIN/);
      // compare-and-swap from DNS: replace the address only while it is the one expected
      assertApplied(
        await signed([
          'prereq yxrrset one.shop.test. A 192.0.2.41',
          'prereq nxrrset one.shop.test. AAAA',
          'update delete one.shop.test. A',
          'update add one.shop.test. 60 A 192.0.2.51',
        ]),
      );
      assert.deepEqual(await divert.resolver.resolve4('one.shop.test'), ['192.0.2.51']);
    });

    test('a name outside the zone gets NOTZONE, and nothing of the update is written', async () => {
      const run = await unchanged('two.shop.test', () =>
        signed(['update add two.shop.test. 60 A 192.0.2.67', 'update add www.other.test. 60 A 192.0.2.67']),
      );
      assert.match(run.output, /update failed: NOTZONE/);
      assert.equal(await entry('www.other.test'), null);
    });

    test('a record type other than A or AAAA is REFUSED, the log says why, and nothing is written', async () => {
      const run = await unchanged('two.shop.test', () =>
        signed(['update add two.shop.test. 60 A 192.0.2.68', 'update add two.shop.test. 60 TXT "hello"']),
      );
      assert.match(run.output, /update failed: REFUSED/);
      const line = lines.map((l) => JSON.parse(l) as { msg: string; rcode?: string }).find((l) => l.rcode === 'REFUSED');
      assert.ok(line, 'a log line about it');
      assert.match(line.msg, /update "two\.shop\.test" TXT: divert holds only A and AAAA records/);
    });

    test('the log names the key and what was written, and never holds a secret', () => {
      const applied = lines
        .map((l) => JSON.parse(l) as { msg: string; key?: string; written?: string[] })
        .filter((l) => l.msg === 'DNS UPDATE applied');
      assert.ok(applied.length > 5);
      assert.ok(applied.every((l) => l.key === KEY_NAME && Array.isArray(l.written)));
      assert.ok(!lines.some((l) => l.includes(key.secret)), 'no secret in the log');
    });
  });
}

// ---- the update server on its own: races, retransmissions, the clock -----------------

describe('update server', () => {
  const key: TsigKey = { name: 'k1', algorithm: 'hmac-sha256', secret: randomBytes(32) };
  const keys = new Map([[key.name, key]]);
  const { grants } = parseKeyFile(
    `${keyText(key.name, key.secret.toString('base64'))}update-policy { grant k1 subdomain shop.test.; };\n`,
    'k1.key',
  );
  let nextId = 100;

  /** A table whose reads are followed by `meanwhile(name)` before the caller sees them: a concurrent writer. */
  function racing(table: AddressTable, meanwhile: (name: string) => Promise<void>): AddressTable {
    return new Proxy(table, {
      get(target, prop) {
        if (prop === 'get') {
          return async (name: string) => {
            const entry = await target.get(name);
            await meanwhile(name);
            return entry;
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  async function start(table: AddressTable, options: { settle?: () => Promise<Settled>; clock?: () => number; lines?: string[] } = {}) {
    const lines = options.lines ?? [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    return startUpdateServer({
      listen: { host: '127.0.0.1', port: 0 },
      keys,
      grants,
      table,
      settle: options.settle ?? (async () => ({ unconfirmed: [] })),
      log,
      clock: options.clock,
    });
  }

  /** Signs `message`, sends it, and checks the reply's signature; resolves with the reply. */
  async function ask(port: number, message: Buffer, transport: 'udp' | 'tcp' = 'udp'): Promise<Buffer> {
    const { message: signedMessage, mac } = signMessage(message, key);
    const reply = transport === 'udp' ? await udpAsk(port, signedMessage) : await tcpAsk(port, signedMessage);
    assert.ok(reply, 'a reply');
    assert.equal(reply.readUInt16BE(0), message.readUInt16BE(0), "the request's ID");
    assert.equal(verifyMessage(reply, keys, { requestMac: mac }).status, 'verified', "the reply is signed with the request's key");
    return reply;
  }

  test('a concurrent change makes the update fail with SERVFAIL instead of being overwritten', async () => {
    const table = memoryTable();
    await table.put('www.shop.test', { a: ['192.0.2.1'], aaaa: [], ttl: 30 });
    const server = await start(
      racing(table, async (name) => {
        await table.put(name, { a: ['198.51.100.1'], aaaa: [], ttl: 30 }, { by: 'monitor' });
      }),
    );
    try {
      const reply = await ask(server.address.port, updateMessage(nextId++, 'shop.test', [], [addA('www.shop.test', '192.0.2.2')]));
      assert.equal(rcodeOf(reply), RCODES.SERVFAIL);
      const entry = await table.get('www.shop.test');
      assert.deepEqual(entry!.a, ['198.51.100.1'], "the monitor's change stands");
      assert.equal((await table.history('www.shop.test'))[0].by, 'monitor');
    } finally {
      await server.close();
    }
  });

  test('several names: one failing part way gets SERVFAIL, and the log names what was written', async () => {
    const table = memoryTable();
    const lines: string[] = [];
    const server = await start(
      racing(table, async (name) => {
        if (name === 'second.shop.test') await table.put(name, { a: ['198.51.100.2'], aaaa: [], ttl: 30 }, { by: 'monitor' });
      }),
      { lines },
    );
    try {
      const reply = await ask(
        server.address.port,
        updateMessage(nextId++, 'shop.test', [], [addA('first.shop.test', '192.0.2.1'), addA('second.shop.test', '192.0.2.2')]),
      );
      assert.equal(rcodeOf(reply), RCODES.SERVFAIL);
      assert.deepEqual((await table.get('first.shop.test'))!.a, ['192.0.2.1'], 'the first name was written');
      assert.deepEqual((await table.get('second.shop.test'))!.a, ['198.51.100.2'], 'the second was not');
      const line = lines
        .map((l) => JSON.parse(l) as { msg: string; written?: string[]; notWritten?: string[] })
        .find((l) => l.written && l.notWritten);
      assert.deepEqual([line?.written, line?.notWritten], [['first.shop.test'], ['second.shop.test']]);
      assert.match(line!.msg, /failed part way: first\.shop\.test written, second\.shop\.test not/);
    } finally {
      await server.close();
    }
  });

  test('NOERROR only once settle() has resolved', async () => {
    let settled = false;
    const server = await start(memoryTable(), {
      settle: () =>
        new Promise((resolve) =>
          setTimeout(() => {
            settled = true;
            resolve({ unconfirmed: [] });
          }, 150),
        ),
    });
    try {
      const reply = await ask(server.address.port, updateMessage(nextId++, 'shop.test', [], [addA('www.shop.test', '192.0.2.1')]), 'tcp');
      assert.equal(rcodeOf(reply), RCODES.NOERROR);
      assert.ok(settled);
    } finally {
      await server.close();
    }
  });

  test('a retransmitted (or replayed) request gets the same reply and is not applied twice', async () => {
    const table = memoryTable();
    const server = await start(table);
    try {
      const { message } = signMessage(updateMessage(nextId++, 'shop.test', [], [addA('www.shop.test', '192.0.2.1')]), key);
      const first = await udpAsk(server.address.port, message);
      await table.delete('www.shop.test', { by: 'admin' });
      const again = await udpAsk(server.address.port, message);
      assert.deepEqual(again, first);
      assert.equal(await table.get('www.shop.test'), null, 'the replay did not bring the name back');
    } finally {
      await server.close();
    }
  });

  test('other opcodes: QUERY gets REFUSED, NOTIFY NOTIMP, signed; a malformed update FORMERR', async () => {
    const server = await start(memoryTable());
    try {
      const port = server.address.port;
      assert.equal(rcodeOf(await ask(port, updateMessage(nextId++, 'shop.test', [], [], 0))), RCODES.REFUSED);
      assert.equal(rcodeOf(await ask(port, updateMessage(nextId++, 'shop.test', [], [], 4))), RCODES.NOTIMP);
      // an A record of 5 bytes
      const bad = updateMessage(nextId++, 'shop.test', [], [rr('www.shop.test', 1, CLASS.IN, 60, Buffer.alloc(5))]);
      assert.equal(rcodeOf(await ask(port, bad)), RCODES.FORMERR);
      // class ANY with data is not a deletion
      const anyWithData = updateMessage(nextId++, 'shop.test', [], [rr('www.shop.test', 1, CLASS.ANY, 0, ipv4('192.0.2.1'))]);
      assert.equal(rcodeOf(await ask(port, anyWithData)), RCODES.FORMERR);
      // a prerequisite divert cannot check (MX)
      const mx = updateMessage(nextId++, 'shop.test', [rr('www.shop.test', 15, CLASS.ANY, 0, Buffer.alloc(0))], []);
      assert.equal(rcodeOf(await ask(port, mx)), RCODES.FORMERR);
      // value-dependent prerequisite on an absent name
      const equals = updateMessage(nextId++, 'shop.test', [rr('www.shop.test', 1, CLASS.IN, 0, ipv4('192.0.2.1'))], []);
      assert.equal(rcodeOf(await ask(port, equals)), RCODES.NXRRSET);
    } finally {
      await server.close();
    }
  });

  test('a request signed outside the time window gets NOTAUTH (BADTIME), signed; nsupdate says so', async () => {
    const table = memoryTable();
    const keyFile = writeTemp(keyText(key.name, key.secret.toString('base64')));
    const server = await start(table, { clock: () => Math.floor(Date.now() / 1000) + 3600 });
    try {
      const run = await nsupdate(
        [`server 127.0.0.1 ${server.address.port}`, 'zone shop.test.', 'update add www.shop.test. 60 A 192.0.2.1'],
        ['-k', keyFile],
      );
      assert.notEqual(run.code, 0);
      assert.match(run.output, /BADTIME/);
      // nsupdate checked the reply's signature: it says why, not that the signature failed
      assert.match(run.output, /clocks are unsynchronized/);
      assert.doesNotMatch(run.output, /verify failure|expected a TSIG/);
      assert.equal(await table.get('www.shop.test'), null);
    } finally {
      await server.close();
    }
  });

  test('dig checks the signature of a reply to a signed query (REFUSED: the port takes updates only)', async () => {
    const server = await start(memoryTable());
    try {
      const { stdout: out } = await execChild('dig', [
        '@127.0.0.1',
        '-p',
        String(server.address.port),
        '+time=3',
        '+tries=1',
        '-y',
        `hmac-sha256:${key.name}:${key.secret.toString('base64')}`,
        'www.shop.test',
        'A',
      ]);
      assert.match(out, /status: REFUSED/);
      assert.match(out, /TSIG PSEUDOSECTION/);
      assert.doesNotMatch(out, /Couldn't verify|tsig verify failure|expected a TSIG/i);
    } finally {
      await server.close();
    }
  });
});

// ---- start-up --------------------------------------------------------------------

describe('DNS UPDATE start-up', () => {
  test('--update-listen without --update-key-file stops the start', async () => {
    await assert.rejects(startDivert({ upstream: ['127.0.0.1:9'], 'update-listen': '127.0.0.1:0' }), (err: unknown) => {
      assert.ok(isDivertError(err, 'BAD_CONFIG'));
      assert.match(err.message, /^--update-listen 127\.0\.0\.1:0 needs --update-key-file FILE/);
      return true;
    });
  });

  test('a bad key file stops `divert serve` with one line naming file and line, exit status 2', async () => {
    const secret = randomBytes(32).toString('base64');
    const bad = writeTemp(`key "monitor" {\n\talgorithm hmac-sha512;\n\tsecret "${secret}";\n};\n`);
    const serve = runDivert([
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      '127.0.0.1:9',
      '--workers',
      '1',
      '--update-listen',
      '127.0.0.1:0',
      '--update-key-file',
      bad,
    ]);
    assert.equal(await serve.exited(), 2);
    assert.equal(
      serve.stderr(),
      `divert: --update-key-file ${bad}:2: key "monitor": algorithm "hmac-sha512" is not supported; divert accepts hmac-sha256 only (tsig-keygen -a hmac-sha256 NAME)\n`,
    );
    assert.ok(!serve.stdout().includes(secret) && !serve.stderr().includes(secret));
  });
});

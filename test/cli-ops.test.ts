// `divert healthcheck` and `divert validate` as an operator (or a container's HEALTHCHECK)
// runs them: separate processes, exit statuses and the one line each prints. Everything
// listens on 127.0.0.1 on ports the OS picks; every address given is a loopback one.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type AddressInfo } from 'node:net';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planHealthcheck } from '../src/cli/healthcheck-command.js';
import { readZones } from '../src/table/zone/read.js';
import { query, startDivert, TEST_TOKEN, udpAsk, type TestServer } from './helpers/divert.js';
import { ROOT, runDivert } from './helpers/process.js';
import { tempDir } from './helpers/temp-files.js';
import { freePort } from './helpers/redis.js';
import { replyTo, startUpstream, type TestUpstream } from './helpers/upstream.js';

const tmp = () => tempDir('ops');
const ZONES = join(ROOT, 'zones');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function divert(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const child = runDivert(args, { env });
  const code = await child.exited(30_000);
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

/** Exit status `code`, nothing on stdout, and one line on stderr matching every pattern. */
async function fails(args: string[], code: number, patterns: RegExp[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const run = await divert(args, env);
  const line = run.stderr.trim();
  assert.equal(run.code, code, `divert ${args.join(' ')}: exit status; stderr: ${run.stderr}`);
  assert.equal(run.stdout, '', 'nothing on stdout');
  assert.equal(line.split('\n').length, 1, `one line: ${line}`);
  for (const pattern of patterns) assert.match(line, pattern);
  return line;
}

async function succeeds(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const run = await divert(args, env);
  assert.equal(run.code, 0, `divert ${args.join(' ')}: exit status; stderr: ${run.stderr}`);
  assert.equal(run.stderr, '', 'nothing on stderr');
  const line = run.stdout.trim();
  assert.equal(line.split('\n').length, 1, `one line: ${line}`);
  return line;
}

const esc = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('divert healthcheck', () => {
  let upstream: TestUpstream;
  let server: TestServer;
  let flags: string[];

  before(async () => {
    // an upstream that answers, so that only the checks' own subject can fail
    upstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 5, data: '203.0.113.7' }] }),
    );
    server = await startDivert({ zones: [ZONES], upstream: [`127.0.0.1:${upstream.port}`] });
    flags = ['--server', `127.0.0.1:${server.port}`, '--admin', `127.0.0.1:${server.admin.port}`, '--admin-token', TEST_TOKEN];
  });
  after(async () => {
    await server.close();
    await upstream.close();
  });

  test('exit 0 against a running divert: /healthz is ready and a name of its table is answered, without asking the upstream', async () => {
    const asked = upstream.queries.length;
    const line = await succeeds(['healthcheck', ...flags]);
    assert.match(
      line,
      new RegExp(
        `^divert healthcheck: ok: admin 127\\.0\\.0\\.1:${server.admin.port} ready \\(memory table\\); DNS 127\\.0\\.0\\.1:${server.port} answered "[a-z.]+shop\\.example" A with NOERROR in \\d+ ms$`,
      ),
    );
    assert.equal(upstream.queries.length, asked, 'the name asked is one divert answers itself: no network needed');
  });

  test('--name: any reply but SERVFAIL or REFUSED counts, NXDOMAIN included', async () => {
    upstream.respond = (q) => replyTo(q, {}, 3);
    try {
      const line = await succeeds(['healthcheck', ...flags, '--name', 'nowhere.test']);
      assert.match(line, /DNS 127\.0\.0\.1:\d+ answered "nowhere\.test" A with NXDOMAIN/);
    } finally {
      upstream.respond = (q) => replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 5, data: '203.0.113.7' }] });
    }
  });

  test("with no flags: the same DIVERT_* variables as serve (what a container's HEALTHCHECK has)", async () => {
    await succeeds(['healthcheck'], {
      DIVERT_LISTEN: `127.0.0.1:${server.port}`,
      DIVERT_ADMIN: `127.0.0.1:${server.admin.port}`,
      DIVERT_ADMIN_TOKEN: TEST_TOKEN,
    });
    // or serve's --config file
    const file = join(tmp(), 'divert.yaml');
    writeFileSync(
      file,
      `listen: 127.0.0.1:${server.port}\nadmin: 127.0.0.1:${server.admin.port}\nadmin-token: ${TEST_TOKEN}\nzones: ${ZONES}\n`,
    );
    await succeeds(['healthcheck'], { DIVERT_CONFIG: file });
  });

  test('with no flags: the token file divert serve generated, as the same user', async () => {
    const home = tmp();
    const serve = runDivert(
      ['serve', '--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${upstream.port}`, '--zones', ZONES, '--workers', '1'],
      { env: { XDG_CONFIG_HOME: home } },
    );
    try {
      const line = await serve.listeningLine();
      const line2 = await succeeds(['healthcheck'], { XDG_CONFIG_HOME: home, DIVERT_LISTEN: line.listen[0], DIVERT_ADMIN: line.admin });
      assert.match(line2, /^divert healthcheck: ok: /);
    } finally {
      await serve.stop();
    }
  });

  test('a wildcard listener is asked on loopback; the defaults are 127.0.0.1:53 and 127.0.0.1:5380', () => {
    const env = { DIVERT_ADMIN_TOKEN: TEST_TOKEN };
    const plan = planHealthcheck({}, { ...env, DIVERT_LISTEN: '0.0.0.0:5353', DIVERT_ADMIN: '0.0.0.0:5380' });
    assert.deepEqual(
      [plan.server, plan.admin],
      [
        { host: '127.0.0.1', port: 5353 },
        { host: '127.0.0.1', port: 5380 },
      ],
    );
    assert.deepEqual(planHealthcheck({}, { ...env, DIVERT_LISTEN: '[::]:53' }).server, { host: '::1', port: 53 });
    const defaults = planHealthcheck({}, env);
    assert.deepEqual(
      [defaults.server, defaults.admin, defaults.timeoutMs],
      [{ host: '127.0.0.1', port: 53 }, { host: '127.0.0.1', port: 5380 }, 3000],
    );
    assert.equal(
      planHealthcheck({ server: '127.0.0.1:5399' }, { ...env, DIVERT_LISTEN: '127.0.0.1:5353' }).server.port,
      5399,
      'a flag wins',
    );
    const file = join(tmp(), 'token');
    writeFileSync(file, 'token-from-the-file-0123\n', { mode: 0o600 });
    assert.equal(
      planHealthcheck({ 'admin-token-file': file }, env).token,
      'token-from-the-file-0123',
      '--admin-token-file wins over DIVERT_ADMIN_TOKEN',
    );
    assert.equal(
      planHealthcheck({}, { DIVERT_ADMIN_TOKEN_FILE: file }).token,
      'token-from-the-file-0123',
      "serve's DIVERT_ADMIN_TOKEN_FILE",
    );
  });

  test('exit 1 with the server down: both checks say nothing listens', async () => {
    const [dns, admin] = [await freePort(), await freePort()];
    await fails(['healthcheck', '--server', `127.0.0.1:${dns}`, '--admin', `127.0.0.1:${admin}`, '--admin-token', TEST_TOKEN], 1, [
      /^divert healthcheck: FAILED: /,
      new RegExp(`admin 127\\.0\\.0\\.1:${admin}: nothing listening \\(connection refused\\)`),
      new RegExp(`DNS 127\\.0\\.0\\.1:${dns}: nothing listening \\(connection refused\\)`),
    ]);
  });

  test('exit 1 with the admin port down: only the admin check fails', async () => {
    const admin = await freePort();
    const line = await fails(
      [
        'healthcheck',
        '--server',
        `127.0.0.1:${server.port}`,
        '--admin',
        `127.0.0.1:${admin}`,
        '--admin-token',
        TEST_TOKEN,
        '--name',
        'www.shop.example',
      ],
      1,
      [new RegExp(`^divert healthcheck: FAILED: admin 127\\.0\\.0\\.1:${admin}: nothing listening \\(connection refused\\)$`)],
    );
    assert.doesNotMatch(line, /DNS/);
  });

  test('exit 1 when the admin port accepts but does not answer; the DNS check still gets its share of the time', async () => {
    const stuck = createServer(() => {});
    await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
    const port = (stuck.address() as AddressInfo).port;
    try {
      const line = await fails(
        [
          'healthcheck',
          '--server',
          `127.0.0.1:${server.port}`,
          '--admin',
          `127.0.0.1:${port}`,
          '--admin-token',
          TEST_TOKEN,
          '--timeout-ms',
          '1500',
        ],
        1,
        [new RegExp(`^divert healthcheck: FAILED: admin 127\\.0\\.0\\.1:${port}: no answer within 1000 ms$`)],
      );
      assert.doesNotMatch(line, /DNS/, 'the root NS was asked instead of a name of the table, and answered');
    } finally {
      stuck.close();
    }
  });

  test('exit 1 when DNS does not answer: no reply within --timeout-ms', async () => {
    const silent: Socket = createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    let received = 0;
    silent.on('message', () => received++);
    try {
      const port = silent.address().port;
      const started = Date.now();
      const line = await fails(
        [
          'healthcheck',
          '--server',
          `127.0.0.1:${port}`,
          '--admin',
          `127.0.0.1:${server.admin.port}`,
          '--admin-token',
          TEST_TOKEN,
          '--timeout-ms',
          '800',
        ],
        1,
        [new RegExp(`^divert healthcheck: FAILED: DNS 127\\.0\\.0\\.1:${port}: no reply to "[a-z.]+shop\\.example" A within 800 ms$`)],
      );
      assert.doesNotMatch(line, /admin 127/);
      assert.equal(received, 1, 'one real DNS query was sent');
      assert.ok(Date.now() - started < 10_000);
    } finally {
      silent.close();
    }
  });

  test('exit 1 when DNS answers SERVFAIL, or /healthz says not ready (no upstream answering)', async () => {
    const dead = await startUpstream(() => null);
    const stuck = await startDivert({
      zones: [ZONES],
      upstream: [`127.0.0.1:${dead.port}`],
      'query-timeout-ms': '200',
      'upstream-timeout-ms': '100',
    });
    try {
      await fails(
        [
          'healthcheck',
          '--server',
          `127.0.0.1:${stuck.port}`,
          '--admin',
          `127.0.0.1:${stuck.admin.port}`,
          '--admin-token',
          TEST_TOKEN,
          '--name',
          'forwarded.test',
        ],
        1,
        [new RegExp(`^divert healthcheck: FAILED: DNS 127\\.0\\.0\\.1:${stuck.port}: "forwarded\\.test" A answered SERVFAIL`)],
      );
      // a few more failures and the upstream is out of service: /healthz says so too
      for (let i = 0; i < 3; i++) await udpAsk(stuck.port, query(`again${i}.test`), 2000);
      const line = await fails(
        ['healthcheck', '--server', `127.0.0.1:${stuck.port}`, '--admin', `127.0.0.1:${stuck.admin.port}`, '--admin-token', TEST_TOKEN],
        1,
        [
          new RegExp(
            `^divert healthcheck: FAILED: admin 127\\.0\\.0\\.1:${stuck.admin.port}: GET /healthz says not ready \\(503\\): no upstream is answering: forwarded queries get SERVFAIL$`,
          ),
        ],
      );
      assert.doesNotMatch(line, /DNS/, 'a name of the table is still answered');
    } finally {
      await stuck.close();
      await dead.close();
    }
  });

  test('exit 1 with a wrong token, or none to be found', async () => {
    await fails(
      [
        'healthcheck',
        '--server',
        `127.0.0.1:${server.port}`,
        '--admin',
        `127.0.0.1:${server.admin.port}`,
        '--admin-token',
        'not-the-token-0123456789',
      ],
      1,
      [/admin 127\.0\.0\.1:\d+: the token from --admin-token was refused \(401\)/],
    );
    const home = tmp();
    await fails(
      ['healthcheck', '--server', `127.0.0.1:${server.port}`, '--admin', `127.0.0.1:${server.admin.port}`],
      1,
      [new RegExp(`admin 127\\.0\\.0\\.1:\\d+: no admin token: .*${esc(join(home, 'divert', 'admin-token'))} does not exist`)],
      { XDG_CONFIG_HOME: home },
    );
  });

  test('exit 2 on bad usage', async () => {
    await fails(['healthcheck', '--server', 'nowhere'], 2, [/^divert: --server "nowhere": "nowhere" is not an IPv4 or IPv6 address$/]);
    await fails(['healthcheck', '--timeout-ms', 'soon'], 2, [/--timeout-ms "soon": expected a whole number of milliseconds/]);
    await fails(['healthcheck', '--srever', '127.0.0.1:53'], 2, [/Unknown argument: srever/]);
    await fails(['healthcheck'], 2, [/--listen "127\.0\.0\.1" \(from DIVERT_LISTEN\): a port is required/], { DIVERT_LISTEN: '127.0.0.1' });
  });
});

describe('divert validate', () => {
  const KEY =
    `key "divert-update" {\n\talgorithm hmac-sha256;\n\tsecret "${randomBytes(32).toString('base64')}";\n};\n` +
    'update-policy {\n\tgrant divert-update subdomain shop.example.;\n};\n';
  let zoneNames: number;

  before(async () => {
    zoneNames = (await readZones([ZONES])).size;
  });

  test('exit 0 on a good config file: one summary line; nothing is written', async () => {
    const dir = tmp();
    const home = tmp();
    writeFileSync(join(dir, 'update.key'), KEY);
    const file = join(dir, 'divert.yaml');
    writeFileSync(
      file,
      [
        'listen: [127.0.0.1:5353, "[::1]:5353"]',
        'admin: 127.0.0.1:5380',
        'upstream: 127.0.0.1:5399',
        `zones: ${ZONES}`,
        'redis: redis://:secret-password@127.0.0.1:6390/2',
        'update-listen: 127.0.0.1:5354',
        `update-key-file: ${join(dir, 'update.key')}`,
        '',
      ].join('\n'),
    );
    const line = await succeeds(['validate', '--config', file], { XDG_CONFIG_HOME: home });
    assert.equal(
      line,
      `config OK: ${zoneNames} zone names from ${ZONES}; listen 127.0.0.1:5353, [::1]:5353; admin 127.0.0.1:5380; upstreams 127.0.0.1:5399; ` +
        'table redis redis://:***@127.0.0.1:6390/2 (standalone; not contacted); DNS UPDATE 127.0.0.1:5354, 1 TSIG key, 1 update-policy rule; TLS off',
    );
    assert.doesNotMatch(line, /secret-password/);
    assert.deepEqual(readdirSync(home), [], 'no admin token generated');
  });

  test("exit 0 on the repository's zones/, from flags or variables", async () => {
    const fromFlags = await succeeds(['validate', '--zones', 'zones/', '--upstream', '127.0.0.1']);
    assert.match(
      fromFlags,
      new RegExp(
        `^config OK: ${zoneNames} zone names from zones/; listen 0\\.0\\.0\\.0:53; admin 127\\.0\\.0\\.1:5380; upstreams 127\\.0\\.0\\.1:53; table memory; DNS UPDATE off; TLS off$`,
      ),
    );
    assert.ok(zoneNames >= 5);
    const fromEnv = await succeeds(['validate'], { DIVERT_ZONES: 'zones/', DIVERT_UPSTREAM: '127.0.0.1' });
    assert.equal(fromEnv, fromFlags);
    // without --upstream: the nameservers of --resolv-conf, minus divert itself
    const resolv = join(tmp(), 'resolv.conf');
    writeFileSync(resolv, 'nameserver 127.0.0.1\nnameserver 127.0.0.2\n');
    const fromResolv = await succeeds(['validate', '--listen', '127.0.0.1:53', '--resolv-conf', resolv]);
    assert.match(fromResolv, new RegExp(`upstreams 127\\.0\\.0\\.2:53 \\(from ${esc(resolv)}\\)`));
  });

  test('exit 2 on a bad option: flag, variable or config key, named with its value', async () => {
    await fails(['validate', '--listen', '127.0.0.1'], 2, [/^divert: --listen "127\.0\.0\.1": a port is required/]);
    await fails(
      ['validate', '--upstream', '127.0.0.1'],
      2,
      [/--query-timeout-ms "soon" \(from DIVERT_QUERY_TIMEOUT_MS\): expected a whole number/],
      { DIVERT_QUERY_TIMEOUT_MS: 'soon' },
    );
    await fails(['validate', '--lisen', '127.0.0.1:53'], 2, [/Unknown argument: lisen/]);
    const file = join(tmp(), 'divert.yaml');
    writeFileSync(file, 'listen: 127.0.0.1:53\nlisten-port: 53\n');
    await fails(['validate', '--config', file], 2, [new RegExp(`--config "${esc(file)}": unknown option "listen-port"`)]);
    await fails(['validate', '--upstream', '127.0.0.1', '--redis', 'http://127.0.0.1:6379'], 2, [
      /--redis "http:\/\/127\.0\.0\.1:6379": expected a redis:\/\//,
    ]);
  });

  test('exit 2 where divert serve would refuse to start', async () => {
    await fails(['validate', '--upstream', '127.0.0.1', '--admin', '0.0.0.0:5380'], 2, [
      /--admin 0\.0\.0\.0:5380 is reachable from other machines: give --admin-token/,
    ]);
    const resolv = join(tmp(), 'resolv.conf');
    writeFileSync(resolv, 'nameserver 127.0.0.1\n');
    await fails(['validate', '--listen', '0.0.0.0:53', '--resolv-conf', resolv], 2, [
      /no upstream resolver: .*resolv\.conf lists no nameserver other than divert itself/,
    ]);
    await fails(['validate', '--upstream', '127.0.0.1', '--update-listen', '127.0.0.1:5354'], 2, [
      /--update-listen 127\.0\.0\.1:5354 needs --update-key-file/,
    ]);
  });

  test('exit 2 on a bad zone file or key file: file and line', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'bad.zone'), '$ORIGIN corp.test.\nwww IN A 192.0.2.1\napi IN A 300.1.2.3\n');
    await fails(['validate', '--upstream', '127.0.0.1', '--zones', dir], 2, [/bad\.zone:3: "300\.1\.2\.3" is not an IPv4 address/]);
    const key = join(dir, 'bad.key');
    writeFileSync(key, 'key "k" {\n\talgorithm hmac-md5;\n\tsecret "AAAA";\n};\n');
    await fails(['validate', '--upstream', '127.0.0.1', '--update-key-file', key], 2, [
      new RegExp(`--update-key-file ${esc(key)}:2: key "k": algorithm "hmac-md5" is not supported`),
    ]);
  });

  test('exit 2 on an unreadable file: config, zone file, key file', async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'folder.yaml'));
    await fails(['validate', '--config', join(dir, 'folder.yaml')], 2, [/--config ".*folder\.yaml": cannot read it \(EISDIR\)/]);
    await fails(['validate', '--config', join(dir, 'missing.yaml')], 2, [/--config ".*missing\.yaml": cannot read it \(ENOENT\)/]);
    await fails(['validate', '--upstream', '127.0.0.1', '--zones', join(dir, 'missing.zone')], 2, [/missing\.zone: cannot read zone file/]);
    await fails(['validate', '--upstream', '127.0.0.1', '--update-key-file', join(dir, 'missing.key')], 2, [
      /--update-key-file .*missing\.key: cannot read it \(ENOENT\)/,
    ]);
  });
});

describe('divert --help', () => {
  test('lists healthcheck and validate with one line each', async () => {
    const run = await divert(['--help']);
    assert.equal(run.code, 0);
    assert.match(
      run.stdout,
      /^ {2}divert validate +check a configuration, its zone files and key file as divert serve would read them, without starting it$/m,
    );
    assert.match(
      run.stdout,
      /^ {2}divert healthcheck +check that the divert serve on this machine answers DNS and its admin \/healthz \(exit 0 or 1; for HEALTHCHECK\)$/m,
    );
    const validate = await divert(['validate', '--help']);
    for (const flag of ['--config', '--listen', '--zones', '--update-key-file'])
      assert.match(validate.stdout, new RegExp(`${flag}\\b`), `validate takes serve's ${flag}`);
    const healthcheck = await divert(['healthcheck', '--help']);
    for (const text of ['--server', '--admin', '--admin-token', '--name', '--timeout-ms', 'DIVERT_LISTEN', 'DIVERT_ADMIN'])
      assert.ok(healthcheck.stdout.includes(text), text);
  });
});

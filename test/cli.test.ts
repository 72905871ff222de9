// `divert serve` as a process: start-up errors are one line naming the problem, with a
// non-zero exit and nothing left listening; the README's commands work as written.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort } from './helpers/redis.js';
import { MAIN, ROOT, runDivert } from './helpers/process.js';
import { findDig } from './helpers/divert.js';
import { execChild as run } from './helpers/children.js';
import { replyTo, startUpstream } from './helpers/upstream.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'divert-cli-'));

async function fails(args: string[], pattern: RegExp, code: number, env: NodeJS.ProcessEnv = {}) {
  const divert = runDivert(args, { env });
  const exitCode = await divert.exited();
  const stderr = divert.stderr().trim();
  assert.equal(exitCode, code, `exit status; stderr: ${stderr}`);
  assert.equal(stderr.split('\n').length, 1, `one line: ${stderr}`);
  assert.match(stderr, pattern);
}

describe('start-up errors', () => {
  test('an unknown flag', () => fails(['serve', '--listne', '127.0.0.1:0'], /Unknown argument: listne/, 2));

  test('bad flag values name the option, the value and what is expected', async () => {
    await fails(['serve', '--listen', '127.0.0.1'], /--listen "127\.0\.0\.1": a port is required/, 2);
    await fails(
      ['serve', '--listen', '127.0.0.1:0', '--upstream', 'dns.example:53'],
      /--upstream "dns\.example:53": "dns\.example" is not an IPv4 or IPv6 address/,
      2,
    );
    await fails(['serve', '--listen', '127.0.0.1:0', '--allow', '10.0.0.0/33'], /--allow "10\.0\.0\.0\/33"/, 2);
    await fails(['serve', '--listen', '127.0.0.1:0', '--query-timeout-ms', 'soon'], /--query-timeout-ms "soon"/, 2);
  });

  test('a bad environment variable names the variable', () =>
    fails(['serve'], /--listen "nowhere" \(from DIVERT_LISTEN\)/, 2, { DIVERT_LISTEN: 'nowhere' }));

  test('a config file with an unknown key', async () => {
    const file = join(tmp(), 'divert.yaml');
    writeFileSync(file, 'listen: 127.0.0.1:0\nlisten-port: 53\n');
    await fails(['serve', '--config', file], /unknown option "listen-port"/, 2);
  });

  test('an invalid zone file: file and line', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'bad.zone'), '$ORIGIN corp.test.\nwww IN A 192.0.2.1\napi IN A 300.1.2.3\n');
    await fails(
      ['serve', '--listen', '127.0.0.1:0', '--upstream', '127.0.0.1', '--zones', dir],
      /bad\.zone:3: "300\.1\.2\.3" is not an IPv4 address/,
      2,
    );
  });

  test('an unreadable zone file', () =>
    fails(
      ['serve', '--listen', '127.0.0.1:0', '--upstream', '127.0.0.1', '--zones', '/nonexistent/divert.zone'],
      /\/nonexistent\/divert\.zone: cannot read zone file/,
      2,
    ));

  test('a port in use: the message says so, and the other listener is released', async () => {
    const busy = createSocket('udp4');
    await new Promise<void>((resolve) => busy.bind(0, '127.0.0.1', resolve));
    const taken = busy.address().port;
    const free = await freePort();
    try {
      await fails(
        ['serve', '--listen', `127.0.0.1:${free}`, '--listen', `127.0.0.1:${taken}`, '--upstream', '127.0.0.1'],
        new RegExp(`127\\.0\\.0\\.1:${taken} is already in use`),
        1,
      );
    } finally {
      busy.close();
    }
    // nothing left listening: the first port can be bound again
    const again = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.bind(free, '127.0.0.1', resolve);
    });
    again.close();
  });

  test('no permission for port 53', async (t) => {
    const unprivilegedFrom = Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'));
    const isRoot = process.getuid?.() === 0;
    if (!isRoot && unprivilegedFrom <= 53) {
      t.skip('any user may bind port 53 on this machine (ip_unprivileged_port_start ≤ 53)');
      return;
    }
    // as root, drop the capability to bind low ports, as an unprivileged user lacks it
    const prefix = isRoot ? ['setpriv', '--inh-caps=-net_bind_service', '--bounding-set=-net_bind_service'] : [];
    const divert = runDivert(['serve', '--listen', '127.0.0.1:53', '--upstream', '127.0.0.1:5399'], { prefix });
    assert.equal(await divert.exited(), 1);
    assert.match(divert.stderr(), /no permission to listen on 127\.0\.0\.1:53: ports below 1024 need root or CAP_NET_BIND_SERVICE/);
  });

  test('no upstream left after removing divert itself from resolv.conf', async () => {
    const file = join(tmp(), 'resolv.conf');
    writeFileSync(file, '# only ourselves\nnameserver 127.0.0.1\n');
    await fails(
      ['serve', '--listen', '0.0.0.0:53', '--resolv-conf', file],
      /no upstream resolver: .*resolv\.conf lists no nameserver other than divert itself; give one with --upstream/,
      1,
    );
  });

  test('an admin port reachable from other machines needs an explicit token', () =>
    fails(
      ['serve', '--listen', '127.0.0.1:0', '--upstream', '127.0.0.1', '--admin', '0.0.0.0:0'],
      /--admin 0\.0\.0\.0:0 is reachable from other machines: give --admin-token/,
      2,
    ));

  test('--help lists every option with its variable', async () => {
    const { stdout } = await run(process.execPath, [MAIN, 'serve', '--help']);
    for (const flag of [
      'listen',
      'admin',
      'admin-token',
      'upstream',
      'zones',
      'allow',
      'redis',
      'redis-prefix',
      'config',
      'listen-tls',
      'listen-https',
      'tls-cert',
      'tls-key',
    ]) {
      assert.match(stdout, new RegExp(`--${flag}\\b`));
    }
    assert.match(stdout, /DIVERT_REDIS_PREFIX/);
  });
});

describe('configuration sources', () => {
  test('config file, environment and flags combine, the flag winning', async () => {
    const upstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 5, data: '203.0.113.44' }] }),
    );
    const file = join(tmp(), 'divert.json');
    writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:1', zones: 'zones/', upstream: '127.0.0.1:9' }));
    const divert = runDivert(['serve', '--config', file, '--listen', '127.0.0.1:0'], {
      env: { DIVERT_UPSTREAM: `127.0.0.1:${upstream.port}` },
    });
    try {
      const port = await divert.listening();
      const { Resolver } = await import('node:dns/promises');
      const resolver = new Resolver({ timeout: 2000, tries: 1 });
      resolver.setServers([`127.0.0.1:${port}`]);
      assert.deepEqual((await resolver.resolve4('www.shop.example')).sort(), ['192.0.2.10', '192.0.2.11'], 'zones from the file');
      assert.deepEqual(await resolver.resolve4('elsewhere.test'), ['203.0.113.44'], 'upstream from the environment');
    } finally {
      await divert.stop();
      await upstream.close();
    }
  });
});

describe('admin token', () => {
  test('generated on first start into a 0600 file, kept across restarts, never logged', async () => {
    const home = tmp();
    const args = ['serve', '--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9'];
    const first = runDivert(args, { env: { XDG_CONFIG_HOME: home } });
    await first.listening();
    await first.stop();
    const file = join(home, 'divert', 'admin-token');
    const token = readFileSync(file, 'utf8').trim();
    assert.ok(token.length >= 32);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.ok(!first.stdout().includes(token) && !first.stderr().includes(token), 'the token is not in the log');

    const second = runDivert(args, { env: { XDG_CONFIG_HOME: home } });
    await second.listening();
    await second.stop();
    assert.equal(readFileSync(file, 'utf8').trim(), token, 'the same token after a restart');
  });
});

describe('README', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const startScript: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start;

  test('the set-up commands are `npm ci && npm start` and `npm test`', () => {
    assert.match(readme, /^ {4}npm ci && npm start$/m);
    assert.match(readme, /^ {4}npm test$/m);
  });

  test('npm start serves zones/ and the README dig line shows an intercepted and a forwarded answer', async (t) => {
    const upstream = await startUpstream((q) =>
      replyTo(q, { answers: [{ name: q.packet.questions![0].name, type: 'A', ttl: 5, data: '203.0.113.80' }] }),
    );
    // the start script as written, on a free port and with the test upstream (never the real network)
    const serve = startScript
      .split('&&')
      .pop()!
      .trim()
      .replace(/^node dist\/src\/main\.js /, '')
      .split(/\s+/);
    const args = serve.map((word) => (word === '127.0.0.1:5353' ? '127.0.0.1:0' : word));
    const divert = runDivert([...args, '--upstream', `127.0.0.1:${upstream.port}`]);
    try {
      const port = await divert.listening();
      assert.match(divert.stdout(), /listening on 127\.0\.0\.1:\d+ \(UDP and TCP\)/);
      if (!(await findDig())) {
        t.diagnostic('dig not installed: the dig line was not run');
        return;
      }
      const digLine = /^ {4}(dig @127\.0\.0\.1 -p 5353 .*)$/m.exec(readme)![1];
      const digArgs = digLine
        .split(/\s+/)
        .slice(1)
        .map((w) => (w === '5353' ? String(port) : w));
      const { stdout } = await run('dig', digArgs);
      assert.match(stdout, /^www\.shop\.example\.\s+30\s+IN\s+A\s+192\.0\.2\.10$/m);
      assert.match(stdout, /^example\.com\.\s+5\s+IN\s+A\s+203\.0\.113\.80$/m);
    } finally {
      await divert.stop();
      await upstream.close();
    }
  });
});

describe('the compile cache', () => {
  const help = async (env: NodeJS.ProcessEnv) => {
    const d = runDivert(['--help'], { env: { NODE_COMPILE_CACHE: '', ...env } });
    assert.equal(await d.exited(30_000), 0, d.stderr());
    return d.stdout();
  };

  test("is kept in the user's own cache folder, readable by no one else, and reused", async () => {
    const cacheHome = mkdtempSync(join(tmpdir(), 'divert-cache-'));
    const first = await help({ XDG_CACHE_HOME: cacheHome });
    const folder = join(cacheHome, 'divert', 'compile-cache');
    assert.equal(statSync(join(cacheHome, 'divert')).mode & 0o777, 0o700);
    assert.equal(statSync(folder).mode & 0o777, 0o700);
    assert.ok(readdirSync(folder, { recursive: true }).length > 0, 'compiled code was written there');
    assert.equal(await help({ XDG_CACHE_HOME: cacheHome }), first, 'the same help from the cache');
  });

  test('a folder it cannot use is skipped: the command still runs', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'divert-cache-')), 'a-file');
    writeFileSync(file, '');
    assert.match(await help({ XDG_CACHE_HOME: file }), /divert <command>/);
    assert.match(await help({ XDG_CACHE_HOME: '/proc/self/nowhere' }), /divert <command>/);
    assert.match(await help({ XDG_CACHE_HOME: 'relative/path' }), /divert <command>/);
  });
});

describe('the CLI start', () => {
  test('yargs comes bundled into one module by npm run build: divert --help reads no file from node_modules', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'divert-loads-'));
    const hook = join(dir, 'hook.mjs');
    const loaded = join(dir, 'loaded.txt');
    writeFileSync(
      hook,
      `import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({ load(url, context, next) { appendFileSync(${JSON.stringify(loaded)}, url + '\\n'); return next(url, context); } });
`,
    );
    const d = runDivert(['--help'], { env: { NODE_OPTIONS: `--import=${pathToFileURL(hook).href}` } });
    assert.equal(await d.exited(30_000), 0, d.stderr());
    assert.match(d.stdout(), /divert <command>/);
    const urls = readFileSync(loaded, 'utf8').split('\n').filter(Boolean);
    assert.ok(
      urls.some((url) => url.endsWith('/dist/src/cli/yargs.js')),
      urls.join('\n'),
    );
    assert.deepEqual(
      urls.filter((url) => url.includes('/node_modules/')),
      [],
    );
  });
});

// Configuration as an operator meets it: defaults, flags over DIVERT_* variables over a
// config file, and one BAD_CONFIG line that says which option, which value and where from.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DivertError, isDivertError } from '../src/errors.js';
import { formatHostPort, parseHostPort, type HostPort } from '../src/net/host-port.js';
import { loadServeConfig } from '../src/config/load.js';
import { maskUrl } from '../src/redact.js';
import { envName, SERVE_OPTIONS, type ServeConfig, DEFAULT_ALLOW } from '../src/config/options.js';

let dir = '';
const files: Record<string, string> = {};

/** Writes `text` as `name` in the test folder; returns its path. */
function fileOf(name: string): string {
  return files[name];
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'divert-config-test-'));
  const write = (name: string, text: string) => {
    files[name] = join(dir, name);
    writeFileSync(files[name], text);
  };
  write(
    'tls.yaml',
    'listen-tls: ["0.0.0.0:853"]\nlisten-https: 0.0.0.0:443, [::]:443\ntls-cert: /etc/tls/fullchain.pem\ntls-key: /etc/tls/privkey.pem\n',
  );
  write(
    'full.json',
    JSON.stringify({
      listen: ['127.0.0.1:5300', '[::1]:5300'],
      upstream: ['9.9.9.9'],
      'log-level': 'warn',
      'upstream-timeout-ms': 700,
      'redis-prefix': 'from-json:',
    }),
  );
  write(
    'full.yaml',
    [
      '# a comment',
      'listen:',
      '  - 127.0.0.1:5301',
      'upstream: 1.1.1.1, [2606:4700:4700::1111]:53',
      'allow: [10.0.0.0/8, 192.168.0.0/16]',
      'log-level: error',
      'query-timeout-ms: 900',
      'zones: zones/',
      '',
    ].join('\n'),
  );
  write('empty.yaml', '');
  write('list.yaml', '- listen\n- upstream\n');
  write('scalar.json', '42\n');
  write('broken.yaml', 'listen: [127.0.0.1:53\n');
  write('unknown.json', JSON.stringify({ listen: ['127.0.0.1:53'], lisen: ['127.0.0.1:54'] }));
  write('twice.yaml', 'log-level:\n  - info\n  - debug\n');
  write('bad-timeout.yaml', 'upstream-timeout-ms: 5\n');
  write('bad-listen.json', JSON.stringify({ listen: ['127.0.0.1:99999'] }));
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs the loader and returns the BAD_CONFIG error it must throw. */
function badConfig(argv: Record<string, unknown>, env: NodeJS.ProcessEnv): DivertError {
  try {
    loadServeConfig(argv, env);
  } catch (err) {
    assert.ok(isDivertError(err), `expected a DivertError, got ${String(err)}`);
    assert.equal(err.code, 'BAD_CONFIG');
    return err;
  }
  assert.fail('expected a BAD_CONFIG error');
}

const hp = (host: string, port: number): HostPort => ({ host, port });

describe('defaults', () => {
  test('nothing given: every option takes its default', () => {
    const config = loadServeConfig({}, {});
    const expected: ServeConfig = {
      listen: [hp('0.0.0.0', 53)],
      listenTls: [],
      listenHttps: [],
      tlsCert: undefined,
      tlsKey: undefined,
      admin: hp('127.0.0.1', 5380),
      adminToken: undefined,
      adminTokenFile: undefined,
      upstream: undefined,
      upstreamCa: undefined,
      zones: [],
      allow: DEFAULT_ALLOW,
      trustEcs: [],
      redis: undefined,
      redisPrefix: 'divert:',
      resolvConf: '/etc/resolv.conf',
      upstreamTimeoutMs: 1000,
      queryTimeoutMs: 2500,
      forwardMaxInFlight: 10_000,
      upstreamSockets: 64,
      tcpIdleTimeoutMs: 10_000,
      tcpMaxConnections: 1000,
      tcpMaxPerClient: 64,
      rateLimit: 0,
      rateLimitV4Prefix: 24,
      rateLimitV6Prefix: 56,
      rateLimitAction: 'drop',
      maxUdpSize: 1232,
      cacheNames: 100_000,
      workers: availableParallelism(),
      udpBatch: true,
      queryLog: undefined,
      queryLogSample: 1,
      metricsMaxNames: 1000,
      eventsMaxStreams: 64,
      maxAddresses: 64,
      allowTldWildcards: false,
      updateListen: undefined,
      updateKeyFile: undefined,
      dashboardMonitor: undefined,
      dashboardProxy: undefined,
      logLevel: 'info',
    };
    assert.deepEqual({ ...config }, { ...expected });
    assert.ok(Object.isFrozen(config));
  });

  test('an empty config file is the same as none', () => {
    assert.deepEqual({ ...loadServeConfig({ config: fileOf('empty.yaml') }, {}) }, { ...loadServeConfig({}, {}) });
  });

  test('unrelated environment variables are ignored', () => {
    const config = loadServeConfig({}, { PATH: '/bin', LISTEN: 'nonsense', DIVERT: 'x', divert_log_level: 'nonsense' });
    assert.equal(config.logLevel, 'info');
    assert.deepEqual(config.listen, [hp('0.0.0.0', 53)]);
  });

  test('every option has a DIVERT_* variable named after its flag', () => {
    assert.equal(envName('listen'), 'DIVERT_LISTEN');
    assert.equal(envName('upstream-timeout-ms'), 'DIVERT_UPSTREAM_TIMEOUT_MS');
    for (const spec of Object.values(SERVE_OPTIONS)) assert.match(envName(spec.flag), /^DIVERT_[A-Z0-9_]+$/);
  });
});

describe('precedence: flag > DIVERT_* variable > config file > default', () => {
  const cases: {
    name: string;
    argv: (file: string) => Record<string, unknown>;
    env: (file: string) => NodeJS.ProcessEnv;
    check: (c: ServeConfig) => void;
  }[] = [
    {
      name: 'all three set log-level: the flag wins',
      argv: (file) => ({ config: file, 'log-level': 'debug' }),
      env: () => ({ DIVERT_LOG_LEVEL: 'trace' }),
      check: (c) => assert.equal(c.logLevel, 'debug'),
    },
    {
      name: 'variable and file set log-level: the variable wins',
      argv: (file) => ({ config: file }),
      env: () => ({ DIVERT_LOG_LEVEL: 'trace' }),
      check: (c) => assert.equal(c.logLevel, 'trace'),
    },
    {
      name: 'only the file sets log-level',
      argv: (file) => ({ config: file }),
      env: () => ({}),
      check: (c) => assert.equal(c.logLevel, 'warn'),
    },
    {
      name: 'repeatable listen: the flag list replaces the variable and the file',
      argv: (file) => ({ config: file, listen: ['127.0.0.1:1053'] }),
      env: () => ({ DIVERT_LISTEN: '127.0.0.1:2053' }),
      check: (c) => assert.deepEqual(c.listen, [hp('127.0.0.1', 1053)]),
    },
    {
      name: 'repeatable listen: the variable replaces the file',
      argv: (file) => ({ config: file }),
      env: () => ({ DIVERT_LISTEN: '127.0.0.1:2053' }),
      check: (c) => assert.deepEqual(c.listen, [hp('127.0.0.1', 2053)]),
    },
    {
      name: 'each option is taken from its own highest source',
      argv: (file) => ({ config: file, 'upstream-timeout-ms': '800' }),
      env: () => ({ DIVERT_REDIS_PREFIX: 'from-env:' }),
      check: (c) => {
        assert.equal(c.upstreamTimeoutMs, 800);
        assert.equal(c.redisPrefix, 'from-env:');
        assert.deepEqual(c.listen, [hp('127.0.0.1', 5300), hp('::1', 5300)]);
        assert.deepEqual(c.upstream, [hp('9.9.9.9', 53)]);
        assert.equal(c.queryTimeoutMs, 2500);
      },
    },
    {
      name: 'DIVERT_CONFIG names the config file',
      argv: () => ({}),
      env: (file) => ({ DIVERT_CONFIG: file }),
      check: (c) => {
        assert.equal(c.logLevel, 'warn');
        assert.equal(c.upstreamTimeoutMs, 700);
      },
    },
    {
      name: '--config wins over DIVERT_CONFIG',
      argv: (file) => ({ config: file }),
      env: () => ({ DIVERT_CONFIG: join(dir, 'no-such-file.json') }),
      check: (c) => assert.equal(c.logLevel, 'warn'),
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const file = fileOf('full.json');
      c.check(loadServeConfig(c.argv(file), c.env(file)));
    });
  }

  test('a YAML config file: lists, a comma-separated string, numbers', () => {
    const config = loadServeConfig({ config: fileOf('full.yaml') }, {});
    assert.deepEqual(config.listen, [hp('127.0.0.1', 5301)]);
    assert.deepEqual(config.upstream, [hp('1.1.1.1', 53), hp('2606:4700:4700::1111', 53)]);
    assert.deepEqual(config.allow, ['10.0.0.0/8', '192.168.0.0/16']);
    assert.equal(config.logLevel, 'error');
    assert.equal(config.queryTimeoutMs, 900);
    assert.deepEqual(config.zones, ['zones/']);
  });
});

test('DoT and DoH in a YAML config file', () => {
  const config = loadServeConfig({ config: fileOf('tls.yaml') }, {});
  assert.deepEqual(config.listenTls, [hp('0.0.0.0', 853)]);
  assert.deepEqual(config.listenHttps, [hp('0.0.0.0', 443), hp('::', 443)]);
  assert.equal(config.tlsCert, '/etc/tls/fullchain.pem');
  assert.equal(config.tlsKey, '/etc/tls/privkey.pem');
});

describe('repeatable options from a DIVERT_* variable', () => {
  const cases: { name: string; env: NodeJS.ProcessEnv; check: (c: ServeConfig) => void }[] = [
    {
      name: 'comma separated',
      env: { DIVERT_UPSTREAM: '1.1.1.1,9.9.9.9:5353' },
      check: (c) => assert.deepEqual(c.upstream, [hp('1.1.1.1', 53), hp('9.9.9.9', 5353)]),
    },
    {
      name: 'space separated',
      env: { DIVERT_LISTEN: '127.0.0.1:53 [::1]:53' },
      check: (c) => assert.deepEqual(c.listen, [hp('127.0.0.1', 53), hp('::1', 53)]),
    },
    {
      name: 'commas, spaces, tabs and newlines mixed, with empty items',
      env: { DIVERT_ALLOW: ' 10.0.0.0/8 ,\t192.168.0.0/16,,\nfd00::/8 ' },
      check: (c) => assert.deepEqual(c.allow, ['10.0.0.0/8', '192.168.0.0/16', 'fd00::/8']),
    },
    {
      name: 'IPv6 upstreams with and without port',
      env: { DIVERT_UPSTREAM: '2001:db8::53, [2001:db8::54]:5353' },
      check: (c) => assert.deepEqual(c.upstream, [hp('2001:db8::53', 53), hp('2001:db8::54', 5353)]),
    },
    {
      name: 'zones',
      env: { DIVERT_ZONES: 'a.zone b.zone' },
      check: (c) => assert.deepEqual(c.zones, ['a.zone', 'b.zone']),
    },
    {
      name: 'DoT and DoH listeners, with their certificate and key',
      env: {
        DIVERT_LISTEN_TLS: '0.0.0.0:853,[::]:853',
        DIVERT_LISTEN_HTTPS: '127.0.0.1:443',
        DIVERT_TLS_CERT: '/etc/tls/fullchain.pem',
        DIVERT_TLS_KEY: '/etc/tls/privkey.pem',
      },
      check: (c) => {
        assert.deepEqual(c.listenTls, [hp('0.0.0.0', 853), hp('::', 853)]);
        assert.deepEqual(c.listenHttps, [hp('127.0.0.1', 443)]);
        assert.equal(c.tlsCert, '/etc/tls/fullchain.pem');
        assert.equal(c.tlsKey, '/etc/tls/privkey.pem');
      },
    },
  ];
  for (const c of cases) {
    test(c.name, () => c.check(loadServeConfig({}, c.env)));
  }

  test('a repeatable flag given once or several times', () => {
    assert.deepEqual(loadServeConfig({ listen: ['127.0.0.1:53'] }, {}).listen, [hp('127.0.0.1', 53)]);
    assert.deepEqual(loadServeConfig({ listen: ['127.0.0.1:53', '[::1]:54'] }, {}).listen, [hp('127.0.0.1', 53), hp('::1', 54)]);
  });

  test('numbers from variables and flags are strings turned into numbers', () => {
    const config = loadServeConfig({ 'cache-names': '5000' }, { DIVERT_TCP_MAX_CONNECTIONS: '20', DIVERT_TCP_IDLE_TIMEOUT_MS: '100' });
    assert.equal(config.cacheNames, 5000);
    assert.equal(config.tcpMaxConnections, 20);
    assert.equal(config.tcpIdleTimeoutMs, 100);
  });
});

describe('bad values: BAD_CONFIG naming the flag, the value and the source', () => {
  const cases: { name: string; argv?: Record<string, unknown>; env?: NodeJS.ProcessEnv; parts: string[]; absent?: string[] }[] = [
    {
      name: 'listen address that is a host name',
      env: { DIVERT_LISTEN: 'localhost:53' },
      parts: ['--listen', '"localhost:53"', '(from DIVERT_LISTEN)', 'not an IPv4 or IPv6 address'],
    },
    {
      name: 'listen address that is not an address at all',
      argv: { listen: ['999.1.1.1:53'] },
      parts: ['--listen', '"999.1.1.1:53"', 'not an IPv4 or IPv6 address'],
      absent: ['(from'],
    },
    {
      name: 'listen without a port',
      env: { DIVERT_LISTEN: '127.0.0.1' },
      parts: ['--listen', '"127.0.0.1"', '(from DIVERT_LISTEN)', 'port is required'],
    },
    {
      name: 'listen on port 70000',
      env: { DIVERT_LISTEN: '127.0.0.1:70000' },
      parts: ['--listen', '"127.0.0.1:70000"', '(from DIVERT_LISTEN)', '"70000" is not a port number'],
    },
    {
      name: 'the second of several listen values is bad',
      env: { DIVERT_LISTEN: '127.0.0.1:53,[::1]:70000' },
      parts: ['--listen', '"[::1]:70000"', '(from DIVERT_LISTEN)'],
    },
    {
      name: 'upstream that is a host name',
      argv: { upstream: ['dns.google'] },
      parts: ['--upstream', '"dns.google"', 'not an IPv4 or IPv6 address'],
    },
    {
      name: 'CIDR with a prefix too long',
      env: { DIVERT_ALLOW: '10.0.0.0/8,10.0.0.0/33' },
      parts: ['--allow', '"10.0.0.0/33"', '(from DIVERT_ALLOW)', 'CIDR'],
    },
    {
      name: 'CIDR that is a word',
      argv: { allow: ['office'] },
      parts: ['--allow', '"office"', 'CIDR'],
    },
    {
      name: 'non-numeric timeout',
      env: { DIVERT_UPSTREAM_TIMEOUT_MS: 'soon' },
      parts: ['--upstream-timeout-ms', '"soon"', '(from DIVERT_UPSTREAM_TIMEOUT_MS)', 'whole number'],
    },
    {
      name: 'fractional timeout',
      argv: { 'query-timeout-ms': '12.5' },
      parts: ['--query-timeout-ms', '"12.5"', 'whole number'],
    },
    {
      // The reason must be the minimum, not "expected a whole number": 5 is a whole number.
      name: 'timeout below the minimum of 10',
      env: { DIVERT_UPSTREAM_TIMEOUT_MS: '5' },
      parts: ['--upstream-timeout-ms', '"5"', '(from DIVERT_UPSTREAM_TIMEOUT_MS)', '10'],
      absent: ['whole number'],
    },
    {
      name: 'TCP idle timeout above the maximum of 600000',
      argv: { 'tcp-idle-timeout-ms': '600001' },
      parts: ['--tcp-idle-timeout-ms', '"600001"', '600000'],
      absent: ['whole number'],
    },
    {
      name: 'bad log level',
      env: { DIVERT_LOG_LEVEL: 'verbose' },
      parts: ['--log-level', '"verbose"', '(from DIVERT_LOG_LEVEL)', 'info'],
    },
    {
      name: 'redis URL of another scheme',
      env: { DIVERT_REDIS: 'memcached://cache:11211' },
      parts: ['--redis', '"memcached://cache:11211"', '(from DIVERT_REDIS)', 'redis://'],
    },
    {
      name: 'dashboard monitor that is not an http://HOST:PORT',
      env: { DIVERT_DASHBOARD_MONITOR: 'http://127.0.0.1:5381/status?x' },
      parts: ['--dashboard-monitor', '"http://127.0.0.1:5381/status?x"', '(from DIVERT_DASHBOARD_MONITOR)', 'http://HOST:PORT'],
    },
    {
      name: 'dashboard proxy that is not an http://HOST:PORT',
      env: { DIVERT_DASHBOARD_PROXY: '127.0.0.1:5382' },
      parts: ['--dashboard-proxy', '"127.0.0.1:5382"', '(from DIVERT_DASHBOARD_PROXY)', "a divert proxy's --status address"],
    },
    {
      name: 'redis prefix with a space',
      argv: { 'redis-prefix': 'my app:' },
      parts: ['--redis-prefix', '"my app:"', 'no spaces or braces'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const err = badConfig(c.argv ?? {}, c.env ?? {});
      for (const part of c.parts) assert.ok(err.message.includes(part), `"${err.message}" should contain ${part}`);
      for (const part of c.absent ?? []) assert.ok(!err.message.includes(part), `"${err.message}" should not contain ${part}`);
    });
  }

  test('a bad value in the config file names the file as its source', () => {
    const file = fileOf('bad-listen.json');
    const err = badConfig({ config: file }, {});
    assert.ok(err.message.includes('--listen "127.0.0.1:99999"'), err.message);
    assert.ok(err.message.includes(`(from ${file})`), err.message);
  });

  test('a bad value in a lower source does not matter when a higher one sets the option', () => {
    const config = loadServeConfig({ config: fileOf('bad-listen.json') }, { DIVERT_LISTEN: '127.0.0.1:53' });
    assert.deepEqual(config.listen, [hp('127.0.0.1', 53)]);
  });

  const secrets: { name: string; url: string; shown: string }[] = [
    { name: 'user and password', url: 'http://admin:hunter2@cache:6379/0', shown: 'http://admin:***@cache:6379/0' },
    { name: 'password only', url: 'https://:hunter2@cache:6379', shown: 'https://:***@cache:6379' },
    { name: 'upper-case scheme', url: 'REDIS://:hunter2@cache', shown: 'REDIS://:***@cache' },
    // A scheme other tools use for Redis; it is rejected, and the error must not print the password.
    { name: 'redis+sentinel scheme', url: 'redis+sentinel://:hunter2@cache:26379', shown: 'redis+sentinel://:***@cache:26379' },
  ];
  for (const c of secrets) {
    test(`a rejected redis URL with a password is masked: ${c.name}`, () => {
      const err = badConfig({}, { DIVERT_REDIS: c.url });
      assert.ok(!err.message.includes('hunter2'), `password shown in: ${err.message}`);
      assert.ok(err.message.includes(`--redis "${c.shown}" (from DIVERT_REDIS)`), err.message);
    });
  }

  const masks: { url: string; shown: string }[] = [
    { url: 'redis://user:hunter2@cache:6379/0', shown: 'redis://user:***@cache:6379/0' },
    { url: 'rediss://:hunter2@cache', shown: 'rediss://:***@cache' },
    { url: 'redis://cache:6379', shown: 'redis://cache:6379' },
    // ioredis (WHATWG URL) reads the password as "hunter@2": the last '@' ends it.
    { url: 'redis://:hunter@2@cache:6379', shown: 'redis://:***@cache:6379' },
  ];
  for (const c of masks) {
    test(`maskUrl (used for the redis URL in logs): ${c.url}`, () => {
      assert.equal(maskUrl(c.url), c.shown);
    });
  }
});

describe('config file problems and repeated values', () => {
  const cases: { name: string; file: string; parts: string[] }[] = [
    { name: 'unknown key', file: 'unknown.json', parts: ['--config', 'unknown option "lisen"', 'listen'] },
    { name: 'not readable (missing)', file: 'missing.yaml', parts: ['--config', 'cannot read it', 'ENOENT'] },
    { name: 'not a map (a list)', file: 'list.yaml', parts: ['--config', 'expected a map'] },
    { name: 'not a map (a number)', file: 'scalar.json', parts: ['--config', 'expected a map'] },
    { name: 'not JSON or YAML', file: 'broken.yaml', parts: ['--config', 'not valid JSON or YAML'] },
    { name: 'below-minimum value', file: 'bad-timeout.yaml', parts: ['--upstream-timeout-ms "5"', '(from '] },
    { name: 'non-repeatable option given as a list', file: 'twice.yaml', parts: ['--log-level', 'more than once', '(from '] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const path = c.file === 'missing.yaml' ? join(dir, 'missing.yaml') : fileOf(c.file);
      const err = badConfig({ config: path }, {});
      for (const part of [...c.parts, path]) assert.ok(err.message.includes(part), `"${err.message}" should contain ${part}`);
    });
  }

  test('a folder as config file cannot be read', () => {
    const err = badConfig({ config: dir }, {});
    assert.ok(err.message.includes(dir) && err.message.includes('cannot read it'), err.message);
  });

  test('a config file named by DIVERT_CONFIG that cannot be read', () => {
    const path = join(dir, 'nope.json');
    const err = badConfig({}, { DIVERT_CONFIG: path });
    assert.ok(err.message.includes(path) && err.message.includes('cannot read it'), err.message);
  });

  test('a non-repeatable flag given twice', () => {
    const err = badConfig({ 'log-level': ['info', 'debug'] }, {});
    assert.ok(err.message.startsWith('--log-level'), err.message);
    assert.ok(err.message.includes('more than once'), err.message);
  });

  test('a non-repeatable number flag given twice', () => {
    const err = badConfig({ 'upstream-timeout-ms': ['100', '200'] }, {});
    assert.ok(err.message.includes('--upstream-timeout-ms') && err.message.includes('more than once'), err.message);
  });
});

describe('parseHostPort', () => {
  const cases: { text: string; defaultPort?: number; expect: HostPort | RegExp }[] = [
    { text: '1.2.3.4:53', expect: hp('1.2.3.4', 53) },
    { text: '1.2.3.4:53', defaultPort: 5353, expect: hp('1.2.3.4', 53) },
    { text: '[::1]:53', expect: hp('::1', 53) },
    { text: '[2001:db8::1]:5353', expect: hp('2001:db8::1', 5353) },
    { text: '::1', defaultPort: 53, expect: hp('::1', 53) },
    { text: '2001:db8::1', defaultPort: 53, expect: hp('2001:db8::1', 53) },
    { text: '[::1]', defaultPort: 53, expect: hp('::1', 53) },
    { text: '1.2.3.4', defaultPort: 53, expect: hp('1.2.3.4', 53) },
    { text: '0.0.0.0:0', expect: hp('0.0.0.0', 0) },
    { text: '1.2.3.4:65535', expect: hp('1.2.3.4', 65535) },
    { text: '1.2.3.4', expect: /port is required/ },
    { text: '::1', expect: /port is required/ },
    { text: '[::1]', expect: /port is required/ },
    { text: 'localhost:53', expect: /"localhost" is not an IPv4 or IPv6 address/ },
    { text: 'localhost', defaultPort: 53, expect: /"localhost" is not an IPv4 or IPv6 address/ },
    { text: 'dns.example.com:53', defaultPort: 53, expect: /"dns.example.com" is not an IPv4 or IPv6 address/ },
    { text: '', defaultPort: 53, expect: /is not an IPv4 or IPv6 address/ },
    { text: '1.2.3.4:65536', expect: /"65536" is not a port number/ },
    { text: '1.2.3.4:70000', defaultPort: 53, expect: /"70000" is not a port number/ },
    { text: '1.2.3.4:', defaultPort: 53, expect: /"" is not a port number/ },
    { text: '1.2.3.4:-1', expect: /"-1" is not a port number/ },
    { text: '1.2.3.4:dns', expect: /"dns" is not a port number/ },
    { text: '[::1]:70000', expect: /"70000" is not a port number/ },
  ];
  for (const c of cases) {
    test(`${JSON.stringify(c.text)}${c.defaultPort === undefined ? '' : ` (default port ${c.defaultPort})`}`, () => {
      const result = parseHostPort(c.text, c.defaultPort);
      if (c.expect instanceof RegExp) {
        assert.equal(typeof result, 'string', `expected an error, got ${JSON.stringify(result)}`);
        assert.match(result as string, c.expect);
      } else {
        assert.deepEqual(result, c.expect);
      }
    });
  }

  const formats: { hp: HostPort; text: string }[] = [
    { hp: hp('1.2.3.4', 53), text: '1.2.3.4:53' },
    { hp: hp('::1', 5353), text: '[::1]:5353' },
  ];
  for (const c of formats) {
    test(`formatHostPort ${c.text} round-trips`, () => {
      assert.equal(formatHostPort(c.hp), c.text);
      assert.deepEqual(parseHostPort(c.text), c.hp);
    });
  }
});

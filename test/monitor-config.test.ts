// The monitor's config file: the example in the repo validates, defaults apply, and a bad
// file stops `divert monitor` with one line naming the field (exit 2).

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadMonitorConfig, parseDuration, parseMonitorConfig } from '../src/monitor/config.js';
import { parseLoad } from '../src/monitor/probe.js';
import { ROOT, runDivert } from './helpers/process.js';
import { rejectsConfig as rejects, writeConfig } from './monitor-fixtures.js';

const minimal = (service: Record<string, unknown> = {}, top: Record<string, unknown> = {}) => ({
  ...top,
  services: [
    { name: 'web', names: ['www.shop.example'], check: { type: 'http', port: 8080 }, mirrors: [{ address: '192.0.2.1' }], ...service },
  ],
});

describe('the example config', () => {
  test('docker/monitor.example.yaml validates with the loader divert monitor uses', () => {
    const config = loadMonitorConfig(join(ROOT, 'docker', 'monitor.example.yaml'));
    assert.deepEqual(
      config.services.map((s) => s.policy),
      ['failover', 'all-healthy', 'weighted', 'least-loaded'],
    );
    assert.equal(config.manualHold, 600_000);
    const cdn = config.services[3];
    assert.equal(cdn.check.interval, 1000);
    assert.equal(cdn.check.timeout, 500);
    assert.equal(cdn.names[0], '*.cdn.shop.example');
  });
});

describe('defaults and forms', () => {
  test('defaults as documented', () => {
    const config = parseMonitorConfig(minimal(), 'm.yaml');
    const s = config.services[0];
    assert.equal(config.id, 'monitor');
    assert.equal(config.manualHold, 600_000);
    assert.deepEqual(
      { ttl: s.ttl, policy: s.policy, count: s.count, overload: s.overload, hysteresis: s.hysteresis },
      { ttl: 30, policy: 'failover', count: 1, overload: 0.9, hysteresis: 0.1 },
    );
    assert.deepEqual(
      {
        interval: s.check.interval,
        timeout: s.check.timeout,
        rise: s.check.rise,
        fall: s.check.fall,
        expect: s.check.expect,
        path: s.check.path,
        insecure: s.check.insecure,
      },
      { interval: 5000, timeout: 2000, rise: 2, fall: 3, expect: 200, path: '/', insecure: false },
    );
    assert.deepEqual(s.mirrors[0], { address: '192.0.2.1', priority: 0, weight: 1 });
  });

  test('durations as "500ms", "5s", "2m" or seconds', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('5s'), 5000);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration(1.5), 1500);
    assert.equal(parseDuration('fast'), undefined);
  });

  test('names are normalised and IPv6 addresses made canonical', () => {
    const s = parseMonitorConfig(minimal({ names: ['WWW.Shop.Example.'], mirrors: [{ address: '2001:DB8:0::1' }] }), 'm').services[0];
    assert.deepEqual(s.names, ['www.shop.example']);
    assert.equal(s.mirrors[0].address, '2001:db8::1');
  });

  test('any DNS name, escapes and all, in the form the table keeps it; two spellings of one name are one name', () => {
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    const s = parseMonitorConfig(minimal({ names: ['Sp\\ Ace.Shop.Example', 'dot\\.in.shop.example', '\\200.shop.example', long] }), 'm')
      .services[0];
    assert.deepEqual(s.names, ['sp\\032ace.shop.example', 'dot\\046in.shop.example', '\\200.shop.example', long]);
    rejects(
      minimal({ names: ['sp\\032ace.shop.example', 'SP\\ ACE.shop.example.'] }),
      /names\[1\]: "sp\\032ace\.shop\.example" is already steered by service "web"/,
    );
    rejects(minimal({ names: [`${long}x`] }), /services\[0\]\.names\[0\]: name ".*" is 256 octets long on the wire/);
  });

  test('a JSON file is read as well', () => {
    const path = writeConfig(minimal(), 'json');
    assert.equal(loadMonitorConfig(path).services[0].name, 'web');
  });

  test('a load figure: a plain number, or a JSON field', () => {
    assert.equal(parseLoad('0.42\n', 'load'), 0.42);
    assert.equal(parseLoad('{"load": 0.7}', 'load'), 0.7);
    assert.equal(parseLoad('{"cpu": "0.3"}', 'cpu'), 0.3);
    assert.match(String(parseLoad('{"other": 1}', 'load')), /expected a number/);
    assert.match(String(parseLoad('<html>', 'load')), /neither a number nor JSON/);
  });
});

describe('errors name the field and what is expected', () => {
  test('a bad duration', () =>
    rejects(
      minimal({ check: { type: 'http', port: 80, interval: 'fast' } }),
      /^m\.yaml: services\[0\]\.check\.interval: expected a duration such as "500ms".*got "fast"/,
    ));
  test('an unknown key', () =>
    rejects(minimal({ check: { type: 'http', port: 80, intervall: '1s' } }), /services\[0\]\.check\.intervall: unknown field/));
  test('a missing field', () =>
    rejects(
      { services: [{ name: 'web', check: { type: 'tcp', port: 1 }, mirrors: [{ address: '192.0.2.1' }] }] },
      /services\[0\]\.names: required/,
    ));
  test('a bad address', () =>
    rejects(
      minimal({ mirrors: [{ address: 'mirror1.example' }] }),
      /services\[0\]\.mirrors\[0\]\.address: expected an IPv4 or IPv6 address \(got "mirror1\.example"\)/,
    ));
  test('no port for a mirror', () => rejects(minimal({ check: { type: 'tcp' } }), /services\[0\]\.mirrors\[0\]\.port: expected a port/));
  test('least-loaded without a load figure', () =>
    rejects(minimal({ policy: 'least-loaded' }), /services\[0\]\.check\.load: the least-loaded policy needs a load figure/));
  test('an unknown policy', () =>
    rejects(minimal({ policy: 'random' }), /services\[0\]\.policy: expected "failover", "all-healthy", "weighted" or "least-loaded"/));
  test('a timeout longer than the interval', () =>
    rejects(
      minimal({ check: { type: 'tcp', port: 1, interval: '1s', timeout: '2s' } }),
      /services\[0\]\.check\.timeout: expected at most the interval/,
    ));
  test('a weight out of range', () =>
    rejects(
      minimal({ policy: 'weighted', mirrors: [{ address: '192.0.2.1', weight: 5000 }] }),
      /mirrors\[0\]\.weight: expected at most 1000/,
    ));
  test('one name steered by two services', () =>
    rejects(
      { services: [minimal().services[0], { ...minimal().services[0], name: 'web2' }] },
      /services\[1\]\.names\[0\]: "www\.shop\.example" is already steered by service "web"/,
    ));
  test('a mirror listed twice', () =>
    rejects(
      minimal({ mirrors: [{ address: '192.0.2.1' }, { address: '192.0.2.1', port: 81 }] }),
      /mirrors\[1\]\.address: 192\.0\.2\.1 is listed twice/,
    ));
  test('no services', () => rejects({ services: [] }, /services: expected at least one service/));
  test('a value of the wrong type is not called missing', () =>
    rejects(minimal({ check: { type: 'tcp', port: 1, fall: 'x' } }), /services\[0\]\.check\.fall: expected a whole number$/));
});

describe('divert monitor, started wrongly', () => {
  async function fails(args: string[], code: number, pattern: RegExp): Promise<void> {
    const run = runDivert(args, { env: { DIVERT_ADMIN_TOKEN: 'x'.repeat(20) } });
    assert.equal(await run.exited(15_000), code, run.stderr());
    const stderr = run.stderr().trim();
    assert.equal(stderr.split('\n').length, 1, stderr);
    assert.match(stderr, pattern);
  }

  test('a bad config file: one line naming the field, exit 2', async () => {
    const path = writeConfig(minimal({ check: { type: 'http', port: 80, fall: 0 } }));
    await fails(
      ['monitor', '--config', path, '--status', '127.0.0.1:0'],
      2,
      new RegExp(`^divert: ${path.replace(/[.]/g, '\\.')}: services\\[0\\]\\.check\\.fall: expected at least 1$`),
    );
  });

  test('no --config: exit 2', () => fails(['monitor'], 2, /^divert: divert monitor needs --config FILE/));

  test('a file that does not exist: exit 2', () =>
    fails(['monitor', '--config', '/nonexistent/m.yaml'], 2, /--config "\/nonexistent\/m\.yaml": cannot read it \(ENOENT\)/));

  test('a bad --status: exit 2', () =>
    fails(
      ['monitor', '--config', writeConfig(minimal()), '--status', 'localhost'],
      2,
      /--status "localhost": "localhost" is not an IPv4 or IPv6 address/,
    ));

  test('status of a monitor that is not running: exit 1 and where it looked', () =>
    fails(
      ['monitor', 'status', '--status', '127.0.0.1:1'],
      1,
      /^divert: cannot read the monitor's status at http:\/\/127\.0\.0\.1:1\/status \(ECONNREFUSED\); is divert monitor running/,
    ));
});

// The proxy's config file, and the pure parts of choosing a target: the example in the
// repo validates, defaults apply, a bad file names its field in one line; a name's answer
// for one client follows its rules; diversions are followed; client networks are counted.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadProxyConfig, parseProxyConfig } from '../src/proxy/config.js';
import { answerFor, divertedAddress, knownEntry } from '../src/proxy/answer.js';
import { clientNetwork } from '../src/proxy/connections.js';
import { isDivertError } from '../src/errors.js';
import { ROOT } from './helpers/process.js';

const service = (extra: Record<string, unknown> = {}) => ({
  services: [{ name: 'web', listen: '127.0.0.1:8443', target: { name: 'www.shop.example', port: 443 }, ...extra }],
});

function rejects(data: unknown, pattern: RegExp): void {
  assert.throws(
    () => parseProxyConfig(data, 'p.yaml'),
    (err: unknown) => {
      assert.ok(isDivertError(err, 'BAD_CONFIG'), String(err));
      assert.match((err as Error).message, pattern);
      assert.doesNotMatch((err as Error).message, /\n/);
      return true;
    },
  );
}

describe('the proxy config', () => {
  test('docker/proxy.example.yaml validates with the loader divert proxy uses', () => {
    const config = loadProxyConfig(join(ROOT, 'docker', 'proxy.example.yaml'));
    assert.deepEqual(
      config.services.map((s) => [s.name, s.protocol, s.onChange]),
      [
        ['www', 'tcp', 'drain'],
        ['syslog', 'udp', 'drain'],
      ],
    );
    assert.deepEqual(config.services[1].target, { address: '192.0.2.10', port: 514 });
  });

  test('defaults: tcp, drain after 30 s, connect timeout 3 s, one listen address as a list', () => {
    const config = parseProxyConfig(service(), 'p.yaml');
    const [s] = config.services;
    assert.equal(s.protocol, 'tcp');
    assert.equal(s.onChange, 'drain');
    assert.equal(s.drainSeconds, 30);
    assert.equal(s.connectTimeout, 3000);
    assert.deepEqual(s.listen, [{ host: '127.0.0.1', port: 8443 }]);
    assert.equal(config.maxConnections, 10_000);
  });

  test("timeouts: a service's own win; the proxy-wide ones fill the others; a flag wins over the file", () => {
    const data = {
      connectTimeout: '2s',
      udpIdleTimeout: '30s',
      services: [
        { name: 'a', listen: '127.0.0.1:1', target: { address: '192.0.2.1', port: 1 }, connectTimeout: '500ms' },
        { name: 'b', listen: '127.0.0.1:2', protocol: 'udp', target: { address: '192.0.2.1', port: 1 } },
        { name: 'c', listen: '127.0.0.1:3', target: { address: '192.0.2.1', port: 1 } },
      ],
    };
    const config = parseProxyConfig(data, 'p.yaml');
    assert.deepEqual(
      config.services.map((s) => [s.connectTimeout, s.idleTimeout]),
      [
        [500, 3_600_000],
        [2000, 30_000],
        [2000, 3_600_000],
      ],
    );
    const flagged = parseProxyConfig(data, 'p.yaml', { connectTimeout: 100, maxConnections: 5 });
    assert.deepEqual(
      flagged.services.map((s) => s.connectTimeout),
      [500, 100, 100],
    );
    assert.equal(flagged.maxConnections, 5);
  });

  test('bad files name the field', () => {
    rejects({}, /services: required/);
    rejects(service({ listen: 'localhost:80' }), /services\[0\]\.listen\[0\]: "localhost:80": "localhost" is not an IPv4 or IPv6 address/);
    rejects(service({ onChange: 'migrate' }), /services\[0\]\.onChange: expected one of "keep", "drain", "close", "move"/);
    rejects(service({ target: { name: 'www.shop.example' } }), /services\[0\]\.target: expected \{ name, port \}/);
    rejects(service({ target: { address: 'not-an-address', port: 1 } }), /services\[0\]\.target/);
    rejects(service({ protocol: 'sctp' }), /services\[0\]\.protocol: expected "tcp" or "udp"/);
    rejects(service({ extra: 1 }), /services\[0\]\.extra: unknown field/);
    const twice = service();
    twice.services.push({ ...twice.services[0] });
    rejects(twice, /services\[1\]\.name: service "web" is defined twice/);
    const sameListen = service();
    sameListen.services.push({ ...sameListen.services[0], name: 'other' });
    rejects(sameListen, /services\[1\]\.listen\[0\]: tcp 127\.0\.0\.1:8443 is listed twice/);
  });
});

describe('choosing a target', () => {
  test("a name's answer for one client: its rules decide, as for a DNS query", () => {
    const entry = knownEntry({
      a: ['192.0.2.10', '192.0.2.11'],
      aaaa: ['2001:db8::10'],
      ttl: 30,
      rules: [{ networks: ['10.1.0.0/16'], a: ['192.0.2.99'] }],
    });
    assert.deepEqual(answerFor(entry, '10.1.2.3'), ['192.0.2.99', '2001:db8::10']);
    assert.deepEqual(answerFor(entry, '10.2.0.1'), ['192.0.2.10', '192.0.2.11', '2001:db8::10']);
    // an IPv6 client is answered from AAAA first
    assert.deepEqual(answerFor(entry, '2001:db8:1::1'), ['2001:db8::10', '192.0.2.10', '192.0.2.11']);
    // every address any client may get counts as in the answer
    assert.deepEqual([...entry.all].sort(), ['192.0.2.10', '192.0.2.11', '192.0.2.99', '2001:db8::10']);
  });

  test('a plain entry answers its lists in order, its own family first, IPv4-mapped clients as IPv4', () => {
    assert.deepEqual(answerFor(knownEntry({ a: ['192.0.2.1'], aaaa: [], ttl: 30 }), '127.0.0.1'), ['192.0.2.1']);
    const both = knownEntry({ a: ['192.0.2.1', '192.0.2.2'], aaaa: ['2001:db8::1'], ttl: 30 });
    assert.deepEqual(answerFor(both, '127.0.0.1'), ['192.0.2.1', '192.0.2.2', '2001:db8::1']);
    assert.deepEqual(answerFor(both, '::ffff:127.0.0.1'), ['192.0.2.1', '192.0.2.2', '2001:db8::1']);
    assert.deepEqual(answerFor(both, '::1'), ['2001:db8::1', '192.0.2.1', '192.0.2.2']);
  });

  test('diversions are followed to their end, and a loop stops where it would repeat', () => {
    const map = new Map([
      ['192.0.2.1', '192.0.2.2'],
      ['192.0.2.2', '192.0.2.3'],
      ['192.0.2.7', '192.0.2.8'],
      ['192.0.2.8', '192.0.2.7'],
    ]);
    assert.equal(divertedAddress(map, '192.0.2.1'), '192.0.2.3');
    assert.equal(divertedAddress(map, '192.0.2.5'), '192.0.2.5');
    assert.equal(divertedAddress(map, '192.0.2.7'), '192.0.2.8');
  });

  test('client networks for the per-network limit: /24 and /56', () => {
    assert.equal(clientNetwork('192.0.2.77'), clientNetwork('192.0.2.1'));
    assert.notEqual(clientNetwork('192.0.2.77'), clientNetwork('192.0.3.1'));
    assert.equal(clientNetwork('2001:db8:1:ff::1'), clientNetwork('2001:db8:1:0::2'));
    assert.notEqual(clientNetwork('2001:db8:1:100::1'), clientNetwork('2001:db8:1:0::2'));
  });
});

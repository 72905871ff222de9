// --upstream tls://HOST[:PORT][#NAME] and --upstream-ca as an operator writes them (flag,
// DIVERT_* variable, config file), the one-line messages for bad ones, `divert validate`'s
// check of the CA file, and the truncation of a DoT reply too large for a UDP client.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { isDivertError } from '../src/errors.js';
import { formatUpstream, parseUpstream, sameUpstreams, type UpstreamSpec } from '../src/net/upstream-spec.js';
import { loadServeConfig } from '../src/config/load.js';
import { validateConfig } from '../src/cli/validate-command.js';
import { resolveUpstreams } from '../src/upstream/resolv-conf.js';
import { fitUdp } from '../src/wire/reply.js';
import { readQuery, type Query } from '../src/wire/query.js';
import { selfSignedCertificate } from './helpers/certificate.js';

describe('parsing --upstream', () => {
  const good: [string, UpstreamSpec, string][] = [
    ['9.9.9.9', { host: '9.9.9.9', port: 53 }, '9.9.9.9:53'],
    ['[::1]:5353', { host: '::1', port: 5353 }, '[::1]:5353'],
    ['tls://9.9.9.9', { host: '9.9.9.9', port: 853, tls: {} }, 'tls://9.9.9.9:853'],
    ['tls://127.0.0.1:8853', { host: '127.0.0.1', port: 8853, tls: {} }, 'tls://127.0.0.1:8853'],
    [
      'TLS://1.1.1.1#One.One.One.One.',
      { host: '1.1.1.1', port: 853, tls: { name: 'one.one.one.one' } },
      'tls://1.1.1.1:853#one.one.one.one',
    ],
    [
      'tls://2620:fe::fe#dns.quad9.net',
      { host: '2620:fe::fe', port: 853, tls: { name: 'dns.quad9.net' } },
      'tls://[2620:fe::fe]:853#dns.quad9.net',
    ],
    [
      'tls://[2620:fe::9]:8853#dns.quad9.net',
      { host: '2620:fe::9', port: 8853, tls: { name: 'dns.quad9.net' } },
      'tls://[2620:fe::9]:8853#dns.quad9.net',
    ],
  ];
  for (const [text, spec, label] of good) {
    test(`"${text}"`, () => {
      assert.deepEqual(parseUpstream(text), spec);
      assert.equal(formatUpstream(spec), label);
      // the label reads back as the same upstream
      assert.deepEqual(parseUpstream(label), spec);
    });
  }

  const bad: [string, RegExp][] = [
    ['tls://dns.google', /tls:\/\/ upstream: "dns.google" is not an IPv4 or IPv6 address/],
    ['tls://1.1.1.1:99999', /tls:\/\/ upstream: "99999" is not a port number/],
    ['tls://1.1.1.1#', /tls:\/\/ upstream: "" is not a DNS name/],
    ['tls://1.1.1.1#bad name', /"bad name" is not a DNS name/],
    ['tls://1.1.1.1#1.1.1.1', /is an address: the part after # is the name the certificate carries/],
    ['https://1.1.1.1/dns-query', /"https:\/\/" is not a known scheme: use HOST\[:PORT\] or tls:\/\/HOST\[:PORT\]\[#NAME\]/],
    ['1.1.1.1#one.one.one.one', /#NAME is for DoT upstreams only/],
  ];
  for (const [text, message] of bad) {
    test(`"${text}" is refused with one line saying what is wrong`, () => {
      const parsed = parseUpstream(text);
      assert.equal(typeof parsed, 'string');
      assert.match(parsed as string, message);
      assert.throws(
        () => loadServeConfig({ upstream: [text] }, {}),
        (err) => isDivertError(err, 'BAD_CONFIG') && err.message.startsWith(`--upstream "${text}": `) && !err.message.includes('\n'),
      );
    });
  }

  test('a flag, a DIVERT_UPSTREAM variable and a config file all take tls:// and --upstream-ca', () => {
    const dir = mkdtempSync(join(tmpdir(), 'divert-upstream-spec-'));
    const file = join(dir, 'divert.yaml');
    writeFileSync(file, 'upstream: [127.0.0.1, "tls://127.0.0.1:8853#dot.test"]\nupstream-ca: /etc/divert/ca.pem\n');
    const expected = [
      { host: '127.0.0.1', port: 53 },
      { host: '127.0.0.1', port: 8853, tls: { name: 'dot.test' } },
    ];
    for (const config of [
      loadServeConfig({ upstream: ['127.0.0.1', 'tls://127.0.0.1:8853#dot.test'], 'upstream-ca': '/etc/divert/ca.pem' }, {}),
      loadServeConfig({}, { DIVERT_UPSTREAM: '127.0.0.1,tls://127.0.0.1:8853#dot.test', DIVERT_UPSTREAM_CA: '/etc/divert/ca.pem' }),
      loadServeConfig({ config: file }, {}),
    ]) {
      assert.deepEqual(config.upstream, expected);
      assert.equal(config.upstreamCa, '/etc/divert/ca.pem');
    }
  });

  test('upstreams differ when their protocol, name or CAs do', () => {
    const plain = { host: '127.0.0.1', port: 853 };
    const dot = { ...plain, tls: {} };
    assert.ok(sameUpstreams([dot], [{ ...plain, tls: {} }]));
    assert.ok(!sameUpstreams([plain], [dot]));
    assert.ok(!sameUpstreams([dot], [{ ...plain, tls: { name: 'a.test' } }]));
    assert.ok(!sameUpstreams([dot], [{ ...plain, tls: { ca: 'PEM' } }]));
  });
});

describe('--upstream-ca', () => {
  const dir = mkdtempSync(join(tmpdir(), 'divert-upstream-ca-'));
  const { cert } = selfSignedCertificate(dir, 'ca.test', 'DNS:ca.test');
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const argv = (ca: string) => ({ upstream: ['127.0.0.1', 'tls://127.0.0.1#dot.test'], 'upstream-ca': ca, listen: ['127.0.0.1:5353'] });

  test('its certificates go with every tls:// upstream, not with plain ones', async () => {
    const [plain, dot] = await resolveUpstreams(loadServeConfig(argv(cert), {}));
    assert.equal(plain.tls, undefined);
    assert.equal(dot.tls?.name, 'dot.test');
    assert.match(dot.tls?.ca ?? '', /^-----BEGIN CERTIFICATE-----/);
    assert.equal(dot.tls?.ca?.trim(), readFileSync(cert, 'utf8').trim());
  });

  test('divert validate reads it: a good file is named in the summary', async () => {
    const line = await validateConfig(argv(cert), {});
    assert.match(
      line,
      /upstreams 127\.0\.0\.1:53, tls:\/\/127\.0\.0\.1:853#dot\.test \(CAs of tls:\/\/ upstreams from .*ca\.test-cert\.pem\)/,
    );
  });

  const broken: [string, () => string, RegExp][] = [
    ['a missing file', () => join(dir, 'no-such.pem'), /cannot read it \(ENOENT\)/],
    ['a file with no certificate', () => write('empty.pem', 'not a certificate\n'), /holds no PEM certificate/],
    [
      'a certificate that does not parse',
      () => write('garbled.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'),
      /certificate 1 does not parse/,
    ],
  ];
  for (const [what, path, message] of broken) {
    test(`divert validate refuses ${what} in one line naming the option`, async () => {
      const file = path();
      await assert.rejects(
        validateConfig(argv(file), {}),
        (err) => isDivertError(err, 'BAD_CONFIG') && err.message.startsWith(`--upstream-ca "${file}": `) && message.test(err.message),
      );
    });
  }
});

describe('a DoT reply to a UDP query', () => {
  const ask = (fields: Partial<dnsPacket.Packet> = {}) =>
    dnsPacket.encode({
      type: 'query',
      id: 7,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: 'TXT', name: 'big.dot.test', class: 'IN' }],
      ...fields,
    });
  const answer = (records: number, edns: boolean) =>
    dnsPacket.encode({
      type: 'response',
      id: 7,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: 'TXT', name: 'big.dot.test', class: 'IN' }],
      answers: Array.from({ length: records }, (_, i) => ({
        type: 'TXT' as const,
        name: 'big.dot.test',
        ttl: 60,
        data: `record ${i} ${'x'.repeat(60)}`,
      })),
      additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as unknown as dnsPacket.Answer] : [],
    });
  const questionEnd = (msg: Buffer) => (readQuery(msg) as Query).questionEnd;
  const withEdns = (size: number) => ({ additionals: [{ type: 'OPT', name: '.', udpPayloadSize: size } as unknown as dnsPacket.Answer] });

  test('passes unchanged when it fits the client', () => {
    const small = answer(2, false);
    assert.equal(fitUdp(small, ask(), questionEnd(ask())), small);
    const q = ask(withEdns(1232));
    const medium = answer(12, true);
    assert.ok(medium.length > 512 && medium.length <= 1232);
    assert.equal(fitUdp(medium, q, questionEnd(q), 1232), medium);
  });

  test('larger than 512 (no EDNS), the EDNS size, or --max-udp-size: header and question with TC', () => {
    for (const [q, max] of [
      [ask(), 1232],
      [ask(withEdns(600)), 1232],
      [ask(withEdns(4096)), 1232],
    ] as const) {
      const big = answer(30, true);
      const fitted = fitUdp(big, q, questionEnd(q), max);
      assert.equal(fitted.length, questionEnd(q));
      const decoded = dnsPacket.decode(fitted);
      assert.equal(decoded.flag_tc, true);
      assert.equal(fitted.readUInt16BE(2) & 0x000f, 0, 'the rcode kept');
      assert.equal(decoded.questions?.[0]?.name, 'big.dot.test');
      assert.deepEqual([decoded.answers?.length, decoded.authorities?.length, decoded.additionals?.length], [0, 0, 0]);
    }
    // a client offering 4096 under --max-udp-size 4096 gets the whole reply
    const q = ask(withEdns(4096));
    const big = answer(30, true);
    assert.equal(fitUdp(big, q, questionEnd(q), 4096), big);
  });
});

// readHead (doh-request.ts) on its own: the path, the method, the content type and a
// GET's dns parameter, read without URLSearchParams unless something is percent-encoded —
// and with the same result as URLSearchParams for every target below.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readHead } from '../src/transport/doh-request.js';

const QUERY = Buffer.from('abcd01000001000000000000076578616d706c6500000f0001', 'hex');
const DNS = QUERY.toString('base64url');

/** What the request asks, as URLSearchParams reads the target's query. */
function bySearchParams(target: string): string {
  const at = target.indexOf('?');
  const dns = new URLSearchParams(at === -1 ? '' : target.slice(at + 1)).get('dns');
  return dns === null || dns === '' ? 'none' : dns;
}

function summary(target: string, method = 'GET', type?: string): string {
  const head = readHead(method, target, type);
  if (head === 'body') return 'body';
  return 'status' in head ? String(head.status) : head.query.toString('base64url');
}

test('GET targets: the dns parameter is found as URLSearchParams finds it', () => {
  const targets = [
    `/dns-query?dns=${DNS}`,
    `/dns-query?ct=application/dns-message&dns=${DNS}`,
    `/dns-query?dns=${DNS}&dns=AAAA`,
    `/dns-query?xdns=AAAA&dns=${DNS}`,
    `/dns-query?dn%73=${DNS}`,
    `/dns-query?dns=${DNS.slice(0, 4)}%2D${DNS.slice(4)}`,
  ];
  for (const target of targets) assert.equal(summary(target), bySearchParams(target).replace('%2D', '-'), target);
  for (const [target, status] of [
    ['/dns-query', '400'],
    ['/dns-query?', '400'],
    ['/dns-query?dns', '400'],
    ['/dns-query?dns=', '400'],
    ['/dns-query?xdns=AAAA', '400'],
    [`/dns-query?dns=${DNS}=`, '400'],
    [`/dns-query?dns=${DNS.slice(0, 5)}+${DNS.slice(5)}`, '400'],
  ])
    assert.equal(summary(target), status, target);
});

test('paths, methods and content types', () => {
  for (const [target, method, type, want] of [
    ['/dns-queryx?dns=AAAA', 'GET', undefined, '404'],
    ['/dns-query/?dns=AAAA', 'GET', undefined, '404'],
    ['/dns?dns-query', 'GET', undefined, '404'],
    ['/', 'GET', undefined, '404'],
    ['/dns-query', 'PUT', undefined, '405'],
    ['/dns-query', 'POST', 'text/plain', '415'],
    ['/dns-query', 'POST', 'Application/DNS-Message; charset=x', 'body'],
    ['/dns-query?ignored=1', 'POST', 'application/dns-message', 'body'],
  ] as const)
    assert.equal(summary(target, method, type), want, `${method} ${target}`);
});

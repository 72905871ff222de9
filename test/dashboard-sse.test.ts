// The dashboard's reader of /v1/events (src/dashboard/app/sse.ts): events split across
// chunks anywhere, CRLF split between chunks, comments and heartbeats skipped.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from '../src/dashboard/app/sse.js';

const STREAM =
  ': divert change events\n\n' +
  'event: change\nid: 7\ndata: {"name":"www.shop.example","entry":null,"version":7}\n\n' +
  ': heartbeat\n\n' +
  'event: diversion\r\nid: 8\r\ndata: {"action":"set"}\r\n\r\n' +
  'event: resync\ndata: {}\n\n';

const EXPECTED = [
  { event: 'change', id: '7', data: '{"name":"www.shop.example","entry":null,"version":7}' },
  { event: 'diversion', id: '8', data: '{"action":"set"}' },
  { event: 'resync', id: '8', data: '{}' },
];

test('the same events whole, one character at a time, and cut at every place', () => {
  assert.deepEqual(new SseParser().push(STREAM), EXPECTED);
  const parser = new SseParser();
  assert.deepEqual(
    [...STREAM].flatMap((c) => parser.push(c)),
    EXPECTED,
  );
  for (let cut = 0; cut <= STREAM.length; cut++) {
    const p = new SseParser();
    assert.deepEqual([...p.push(STREAM.slice(0, cut)), ...p.push(STREAM.slice(cut))], EXPECTED, `cut at ${cut}`);
  }
});

test('data on several lines is joined with newlines; an event without data is not dispatched', () => {
  assert.deepEqual(new SseParser().push('event: x\ndata: a\ndata: b\n\nevent: y\n\n'), [{ event: 'x', data: 'a\nb', id: undefined }]);
});

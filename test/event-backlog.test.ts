// The backlog of /v1/events: frames kept once, read in chunks from any position, and
// forgotten once every stream is past them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backlog } from '../src/admin/event-backlog.js';

const frame = (i: number) => `event: change\nid: ${i}\ndata: {"n":${i},"name":"é${i}"}\n\n`;

test('reads every frame once, in order, in chunks of about the size asked for', () => {
  const backlog = new Backlog();
  for (let i = 0; i < 5000; i++) backlog.append(frame(i));
  const total = Array.from({ length: 5000 }, (_, i) => Buffer.byteLength(frame(i))).reduce((a, b) => a + b, 0);
  assert.equal(backlog.bytes, total);
  assert.equal(backlog.behind(0), total);
  let seq = 0;
  let text = '';
  while (seq < backlog.head) {
    const chunk = backlog.read(seq, 1000);
    assert.ok(Buffer.byteLength(chunk.text) <= 1000, 'no larger than asked');
    assert.ok(chunk.next > seq);
    text += chunk.text;
    seq = chunk.next;
  }
  assert.equal(text, Array.from({ length: 5000 }, (_, i) => frame(i)).join(''));
  // a frame larger than the chunk still goes out whole
  backlog.append('x'.repeat(3000));
  assert.equal(backlog.read(5000, 1000).text.length, 3000);
});

test('trimming forgets what every stream has sent, and keeps the positions of the rest', () => {
  const backlog = new Backlog();
  for (let i = 0; i < 3000; i++) backlog.append(frame(i));
  backlog.trim(10);
  assert.equal(backlog.bytes, backlog.behind(10));
  backlog.trim(2500); // past half: the front is removed
  assert.equal(backlog.head, 3000);
  assert.equal(backlog.read(2500, 1).text, frame(2500));
  assert.equal(backlog.behind(2999), Buffer.byteLength(frame(2999)));
  backlog.append(frame(3000));
  assert.equal(backlog.read(2999, 10_000).text, frame(2999) + frame(3000));
  backlog.trim(backlog.head);
  assert.equal(backlog.bytes, 0);
  assert.equal(backlog.behind(backlog.head), 0);
});

// The forwarder's queue of first timers (src/upstream/fixed-delay-timers.ts): what is armed
// falls due in order and not before its time, what is cancelled never does, the queue
// keeps its order as it grows, and once nothing is armed no node timer holds the process
// (the one kept for the next timer is unref'd, and re-arms when it fires too soon).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { FixedDelayTimers, NO_TIMER } from '../src/upstream/fixed-delay-timers.js';

const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('1,000 timers fall due in the order armed, none early; the cancelled ones never', async () => {
  const timers = new FixedDelayTimers(300);
  const fired: { n: number; late: number }[] = [];
  const tickets: number[] = [];
  for (let n = 0; n < 1000; n++) {
    const armedAt = performance.now();
    tickets.push(timers.add({ due: () => fired.push({ n, late: performance.now() - armedAt }) }, armedAt));
    if (n % 3 === 0) timers.cancel(tickets[n]);
    if (n % 100 === 99) await sleep(2); // armed over a while: they fall due over a while
  }
  timers.cancel(tickets[0]); // twice: nothing more
  timers.cancel(NO_TIMER);
  assert.equal(timers.armed + fired.length, 1000 - 334);
  while (timers.armed > 0) await sleep(50);
  assert.deepEqual(
    fired.map((f) => f.n),
    Array.from({ length: 1000 }, (_, n) => n).filter((n) => n % 3 !== 0),
  );
  const early = fired.filter((f) => f.late < 300);
  assert.deepEqual(early, [], 'none before its 300 ms');
});

test('cancelling the last armed timer leaves no node timer holding the process; one armed from due() falls due later', async () => {
  const before = timeouts();
  const timers = new FixedDelayTimers(30);
  const a = timers.add({ due: () => assert.fail('cancelled') }, performance.now());
  const b = timers.add({ due: () => assert.fail('cancelled') }, performance.now());
  assert.equal(timeouts(), before + 1, 'one node timer for both');
  timers.cancel(a);
  assert.equal(timeouts(), before + 1, 'one still armed');
  timers.cancel(b);
  assert.equal(timeouts(), before, 'none left armed: no node timer holds the process');

  const order: string[] = [];
  timers.add(
    {
      due: () => {
        order.push('first');
        timers.add({ due: () => order.push('armed by the first') }, performance.now());
      },
    },
    performance.now(),
  );
  timers.add({ due: () => order.push('second') }, performance.now());
  await sleep(45);
  assert.deepEqual(order, ['first', 'second']);
  await sleep(45);
  assert.deepEqual(order, ['first', 'second', 'armed by the first']);
  assert.equal(timeouts(), before);
});

test('the queue grows while its head has moved on: what is armed still falls due in order', async () => {
  const timers = new FixedDelayTimers(20);
  const fired: number[] = [];
  const arm = (n: number) => timers.add({ due: () => fired.push(n) }, performance.now());
  for (let n = 0; n < 200; n++) arm(n);
  for (let i = 0; i < 500 && fired.length < 200; i++) await sleep(10);
  // the head is at 200 of 256 slots: 300 more wrap around the end and make it grow
  for (let n = 200; n < 500; n++) arm(n);
  for (let i = 0; i < 500 && timers.armed > 0; i++) await sleep(10);
  assert.deepEqual(
    fired,
    Array.from({ length: 500 }, (_, n) => n),
  );
});

test('a timer armed while the kept node timer is due sooner falls due at its own time, not that one', async () => {
  const before = timeouts();
  const timers = new FixedDelayTimers(80);
  timers.cancel(timers.add({ due: () => assert.fail('cancelled') }, performance.now()));
  assert.equal(timeouts(), before, 'the kept node timer holds nothing');
  await sleep(40); // the kept node timer is due in about 40 ms, the next timer in 80
  const armedAt = performance.now();
  const fired: number[] = [];
  timers.add({ due: () => fired.push(performance.now() - armedAt) }, armedAt);
  assert.equal(timeouts(), before + 1, 'held again while one is armed');
  await sleep(55); // the kept node timer has fired by now, with nothing due yet
  assert.equal(fired.length, 0, "not at the kept node timer's time");
  assert.equal(timers.armed, 1);
  while (timers.armed > 0) await sleep(10);
  assert.equal(fired.length, 1);
  assert.ok(fired[0] >= 80, `fell due after ${fired[0].toFixed(1)} ms, not before its 80`);
  assert.equal(timeouts(), before);
});

// The dashboard's busiest names, proxy panel and timeline end to end: a real `divert serve`
// (seeded from zones/, --dashboard-proxy set), a real `divert proxy` relaying to a TCP
// mirror and to an address that refuses, DNS queries from a real resolver, changes by the
// API and the CLI, and a headless Chromium reading it all from the page.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser, Page } from 'playwright-core';
import { bounded, launchBrowser, screenshot, watchConsole } from './helpers/browser.js';
import { TEST_TOKEN } from './helpers/divert.js';
import { ROOT, runDivert, type DivertProcess } from './helpers/process.js';
import { freePort } from './helpers/redis.js';
import { lineClient, startProxy, startTcpMirrors, type ProxyProcess, type TcpMirror } from './proxy-fixtures.js';

const WAIT_MS = 10_000;
/** The name the proxy's "web" service targets, answered by the mirror on 127.0.0.2. */
const WEB = 'web.panel.example';
/** An address where nothing listens on the mirror's port: connects to it are refused. */
const REFUSING = '127.0.0.9';

let serve: DivertProcess;
let adminUrl: string;
let resolver: Resolver;
let mirror: TcpMirror | undefined;
let proxy: ProxyProcess | undefined;
let browser: Browser | undefined;
let page: Page;
let consoleLog: { messages: string[]; errors: string[] };

const api = (path: string, init: RequestInit = {}) =>
  fetch(adminUrl + path, { ...init, headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(init.headers as Record<string, string>) } });

async function put(name: string, a: string[], by: string): Promise<void> {
  const res = await api(`/v1/names/${encodeURIComponent(name)}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'x-divert-client': by },
    body: JSON.stringify({ a, aaaa: [], ttl: 30 }),
  });
  assert.equal(res.status, 200, `PUT ${name}: ${await res.text()}`);
}

before(async () => {
  const proxyStatus = `127.0.0.1:${await freePort()}`;
  [mirror] = await startTcpMirrors(['127.0.0.2']);
  serve = runDivert(
    [
      'serve',
      ...['--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--zones', join(ROOT, 'zones')],
      ...['--dashboard-proxy', `http://${proxyStatus}`],
    ],
    { env: { DIVERT_ADMIN_TOKEN: TEST_TOKEN } },
  );
  const line = await serve.listeningLine();
  adminUrl = `http://${line.admin}`;
  resolver = new Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([line.listen[0]]);
  await put(WEB, ['127.0.0.2'], 'test');
  proxy = await startProxy(
    {
      services: [
        { name: 'web', listen: '127.0.0.1:0', protocol: 'tcp', target: { name: WEB, port: mirror.port } },
        { name: 'refused', listen: '127.0.0.1:0', protocol: 'tcp', target: { address: REFUSING, port: mirror.port } },
      ],
    },
    { adminUrl },
    ['--workers', '1'],
    proxyStatus,
  );
  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  consoleLog = watchConsole(page);
  await page.goto(adminUrl + '/');
  await page.locator('#token').fill(TEST_TOKEN);
  await page.locator('#login-form button[type=submit]').click();
  await page.locator('#live.on').waitFor();
});

after(async () => {
  await bounded(browser?.close());
  await bounded(proxy?.stop());
  await serve?.stop();
  await mirror?.stop();
});

describe('dashboard panels', () => {
  test('the busiest names are ranked by their queries/s, busiest first, and drawn over time', async () => {
    const ranked = page.locator('#top-names li');
    // www three times as often as api, until the page ranks both (its ranking is the mean of the last 5 s)
    const deadline = Date.now() + 20_000;
    let texts: string[] = [];
    while (Date.now() < deadline) {
      await Promise.all([
        ...Array.from({ length: 12 }, () => resolver.resolve4('www.shop.example')),
        ...Array.from({ length: 4 }, () => resolver.resolve4('api.shop.example')),
      ]);
      await sleep(100);
      texts = await ranked.allTextContents();
      if (texts.length >= 2 && texts[0].startsWith('www.shop.example') && texts[1].startsWith('api.shop.example')) break;
    }
    assert.ok(texts.length >= 2, `ranked: ${JSON.stringify(texts)}`);
    const rates = texts.slice(0, 2).map((t) => Number(/([\d.]+) q\/s$/.exec(t)?.[1]));
    assert.match(texts[0], /^www\.shop\.example[\d.]+ q\/s$/);
    assert.match(texts[1], /^api\.shop\.example[\d.]+ q\/s$/);
    assert.ok(rates[0] > rates[1] && rates[1] > 0, `rates ${JSON.stringify(texts)}`);
    // drawn: one line per ranked name, the busiest first in the legend
    await page.locator('#names-chart .uplot canvas').waitFor();
    const legend = await page.locator('#names-chart .u-legend .u-series .u-label').allTextContents();
    assert.deepEqual(legend.slice(1, 3), ['www.shop.example', 'api.shop.example']);
    // the API: each sample names the busiest names of its second
    const recent = (await (await api('/v1/stats/recent')).json()) as { samples: { names: Record<string, number> }[] };
    assert.ok(recent.samples.some((s) => (s.names['www.shop.example'] ?? 0) > 0));
    await screenshot(page, 'busiest-names');
  });

  test('the proxy panel shows its services, an open connection, and a target whose connects are refused', async () => {
    const client = await lineClient(proxy!.port('web'));
    try {
      assert.equal(await client.say('hello'), '127.0.0.2:hello');
      // a connection to the refusing target: the proxy resets it and counts the failed connect
      const refused = connect({ port: proxy!.port('refused'), host: '127.0.0.1' });
      refused.on('error', () => {}); // the reset (events.once would reject on it)
      await new Promise((resolve) => refused.once('close', resolve));
      const target = `127.0.0.2:${mirror!.port}`;
      const refusing = `${REFUSING}:${mirror!.port}`;
      await page.locator('#proxy-summary', { hasText: /1 open connection;.*reachable/ }).waitFor();
      const service = (name: string) => page.locator('#proxy-services tr', { has: page.locator('td:first-child', { hasText: name }) });
      assert.deepEqual(await service('web').locator('td').allTextContents(), [
        'web',
        'tcp',
        `127.0.0.1:${proxy!.port('web')}`,
        `${WEB} port ${mirror!.port}`,
        'drain',
        '1',
      ]);
      assert.equal(await service('refused').locator('td:nth-child(6)').textContent(), '0');
      // Target, Connects, Failed, Connect time, Bytes in, Bytes out, Open
      const good = await page.locator(`#proxy-targets tr[data-target="${target}"] td`).allTextContents();
      assert.deepEqual([good[1], good[2], good[6]], ['1', '0', '1']);
      assert.match(good[3], /^\d+\.\d ms$/);
      assert.equal(good[4], '6 B');
      const bad = page.locator(`#proxy-targets tr.failing[data-target="${refusing}"] td`);
      await bad.first().waitFor();
      assert.deepEqual((await bad.allTextContents()).slice(1, 4), ['0', '1', '–']);
      // the open connection, named by the client's address and port
      const open = page.locator('#proxy-connections tr', { hasText: `127.0.0.1:${client.socket.localPort}` });
      await open.waitFor();
      assert.match(
        (await open.textContent()) ?? '',
        new RegExp(`webtcp127\\.0\\.0\\.1:${client.socket.localPort}${target.replace(/\./g, '\\.')}`),
      );
      await screenshot(page, 'proxy');
    } finally {
      client.close();
    }
    const relayed = (await (await api('/v1/dashboard/proxy')).json()) as { url: string; ok: boolean; status: { targets: object } };
    assert.equal(relayed.ok, true);
    assert.ok(Object.hasOwn(relayed.status.targets, `${REFUSING}:${mirror!.port}`));
    assert.equal((await fetch(adminUrl + '/v1/dashboard/proxy')).status, 401, 'with the token only');
  });

  test("a name's timeline lists each change of its answers in order: when, from what to what, and who", async () => {
    const name = 'timeline.panel.example';
    await put(name, ['192.0.2.1'], 'operator-<b>a</b>');
    const cli = runDivert(['names', 'set', name, '192.0.2.2', '--client', 'operator-b'], {
      env: { DIVERT_ADMIN_URL: adminUrl, DIVERT_ADMIN_TOKEN: TEST_TOKEN },
    });
    assert.equal(await cli.exited(30_000), 0, `divert names set: ${cli.stderr()}`);
    await page.locator('#timeline-name').fill(name);
    await page.locator('#timeline-form button[type=submit]').click();
    const items = page.locator('#timeline-events li');
    await items.nth(1).waitFor();
    const read = async () =>
      Promise.all(
        (await items.all()).map(async (item) => ({
          version: Number(await item.getAttribute('data-version')),
          how: (await item.locator('.how').textContent())!.trim(),
          by: await item.locator('.by').textContent(),
          from: await item.locator('.from').textContent(),
          to: await item.locator('.to').textContent(),
          at: await item.locator('time').getAttribute('datetime'),
        })),
      );
    const first = await read();
    assert.deepEqual(
      first.map(({ how, by, from, to }) => ({ how, by, from, to })),
      [
        { how: 'set by', by: 'operator-<b>a</b>', from: 'absent', to: '192.0.2.1' },
        { how: 'set by', by: 'operator-b', from: '192.0.2.1', to: '192.0.2.2' },
      ],
    );
    assert.ok(first[0].version < first[1].version && first[0].at! <= first[1].at!, 'oldest first');
    assert.match((await items.nth(1).locator('.version').textContent()) ?? '', new RegExp(`^v${first[1].version}$`));
    assert.equal(await page.locator('#timeline-events b').count(), 0, 'the author is text, not markup');
    // a diversion while it is shown: the feed brings it, the timeline reads it again
    const divert = await api('/v1/diversions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-divert-client': 'monitor-x' },
      body: JSON.stringify({ from: '192.0.2.2', to: '192.0.2.3' }),
    });
    assert.equal(divert.status, 200);
    await items.nth(2).waitFor();
    const { how, by, from, to } = (await read())[2];
    assert.deepEqual({ how, by, from, to }, { how: 'diverted by', by: 'monitor-x', from: '192.0.2.2', to: '192.0.2.3' });
    await screenshot(page, 'timeline'); // the README's (test/screenshots/dashboard.png)
    // chosen from the names table too
    await page.locator('#timeline-name').fill('');
    await page
      .locator('#rows tr', { has: page.locator('td.name', { hasText: 'admin.shop.example' }) })
      .locator('button.timeline')
      .click();
    await page.locator('#timeline-events li .to', { hasText: '192.0.2.40' }).first().waitFor();
    assert.equal(await page.locator('#timeline-name').inputValue(), 'admin.shop.example');
  });

  test('the page ran under the CSP without a violation or an error', () => {
    assert.deepEqual(
      consoleLog.messages.filter((m) => /Content Security Policy|Refused to/i.test(m)),
      [],
    );
    assert.deepEqual(consoleLog.errors, []);
  });
});

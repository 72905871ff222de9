// The dashboard end to end: a real `divert serve` (seeded from zones/) and a real headless
// Chromium on loopback. What the page shows comes from the admin API with the token;
// what it writes, DNS answers; what others write, it shows live; markup in data stays text;
// a conflict is shown, not overwritten; and it all runs under the strict CSP.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { bounded, launchBrowser, screenshot, watchConsole } from './helpers/browser.js';
import { ROOT, runDivert, type DivertProcess } from './helpers/process.js';
import { DASHBOARD_CSP } from '../src/admin/dashboard-assets.js';

const TOKEN = 'dashboard-test-token-0123456789abcdef';
/** Every wait in the browser is bounded by this (a slow CI machine included). */
const WAIT_MS = 10_000;

let serve: DivertProcess;
let adminUrl: string;
let resolver: Resolver;
let browser: Browser | undefined;
let context: BrowserContext | undefined;
let page: Page;
let consoleLog: { messages: string[]; errors: string[] };
/** Every URL the page requested: its own origin only (nothing from a CDN, nothing off loopback). */
const requested: string[] = [];
/** A stand-in for `divert monitor`'s status listener (GET /status), on loopback. */
let monitorServer: Server | undefined;

/** What the stand-in monitor reports, in the shape of `divert monitor`'s GET /status. */
const MONITOR_REPORT = {
  id: 'monitor-<b>1</b>',
  startedAt: '2026-11-24T06:00:00.000Z',
  admin: { url: 'http://127.0.0.1:5380', up: true, since: null, error: null },
  services: [
    {
      name: 'www',
      policy: 'failover',
      ready: true,
      allDown: false,
      answer: ['192.0.2.10'],
      weights: null,
      passive: null,
      names: [],
      mirrors: [
        { address: '192.0.2.10', port: 443, state: 'up', inAnswer: true, latencyMs: 3.1, error: null },
        { address: '198.51.100.10', port: 443, state: 'down', inAnswer: false, latencyMs: 2.4, error: 'HTTP 503 (expected 200)' },
      ],
    },
  ],
};

function startMonitorStandIn(): Promise<number> {
  monitorServer = createServer((req, res) => {
    if (req.url !== '/status') return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(MONITOR_REPORT));
  });
  return new Promise((resolve) =>
    monitorServer!.listen(0, '127.0.0.1', () => resolve((monitorServer!.address() as { port: number }).port)),
  );
}

const api = (path: string, init: RequestInit = {}) =>
  fetch(adminUrl + path, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers as Record<string, string>) } });

async function entry(name: string): Promise<{ name: string; a: string[]; version: number }> {
  const res = await api(`/v1/names/${encodeURIComponent(name)}`);
  assert.equal(res.status, 200, `GET ${name}`);
  return (await res.json()) as { name: string; a: string[]; version: number };
}

/** The table row of `name` (the cell holds the name exactly, as text). */
const row = (name: string) => page.locator('#rows tr', { has: page.locator('td.name', { hasText: name }) }).filter({ hasText: name });

async function signIn(token: string): Promise<void> {
  await page.goto(adminUrl + '/');
  await page.locator('#token').fill(token);
  await page.locator('#login-form button[type=submit]').click();
}

/** Opens the editor on `name` and waits until it shows that entry. */
async function edit(name: string): Promise<void> {
  await row(name).locator('button.edit').click();
  await page.locator('#editor-name', { hasText: name }).waitFor({ timeout: WAIT_MS });
}

before(async () => {
  const monitorPort = await startMonitorStandIn();
  serve = runDivert(
    [
      'serve',
      ...['--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--zones', join(ROOT, 'zones')],
      ...['--dashboard-monitor', `http://127.0.0.1:${monitorPort}`],
    ],
    { env: { DIVERT_ADMIN_TOKEN: TOKEN } },
  );
  const line = await serve.listeningLine();
  adminUrl = `http://${line.admin}`;
  resolver = new Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([line.listen[0]]);
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  consoleLog = watchConsole(page);
  page.on('request', (request) => requested.push(request.url()));
});

after(async () => {
  // each step bounded: a hung browser must not keep the server (or the run) alive
  await bounded(context?.close());
  await bounded(browser?.close());
  await serve?.stop();
  monitorServer?.closeAllConnections();
  await new Promise((resolve) => (monitorServer ? monitorServer.close(resolve) : resolve(undefined)));
});

describe('dashboard', () => {
  test('the page is served with a strict CSP and nosniff, without the token; the data is not', async () => {
    const res = await fetch(adminUrl + '/');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(res.headers.get('content-security-policy'), DASHBOARD_CSP);
    assert.match(
      DASHBOARD_CSP,
      /default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'/,
    );
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const html = await res.text();
    assert.doesNotMatch(html, /<script>|style=|\son[a-z]+=/i, 'no inline script, style attribute or handler');
    for (const asset of ['/dashboard/app.js', '/dashboard/app.css']) {
      const got = await fetch(adminUrl + asset);
      assert.equal(got.status, 200, asset);
      assert.equal(got.headers.get('content-security-policy'), DASHBOARD_CSP, asset);
      assert.equal(got.headers.get('x-content-type-options'), 'nosniff', asset);
    }
    // the first load (page, script, styles, uPlot included) stays under 300 kB compressed
    let gzipped = Buffer.byteLength(gzipSync(html));
    for (const asset of ['/dashboard/app.js', '/dashboard/app.css'])
      gzipped += gzipSync(Buffer.from(await (await fetch(adminUrl + asset)).arrayBuffer())).length;
    assert.ok(gzipped < 300 * 1024, `first load ${gzipped} bytes gzip`);
    const names = await fetch(adminUrl + '/v1/names');
    assert.equal(names.status, 401, 'the API still demands the token');
    assert.equal(names.headers.get('x-content-type-options'), 'nosniff');
  });

  test('a wrong token is refused: the page says so and shows no data', async () => {
    await signIn('not-the-token');
    await page.locator('#login-message', { hasText: 'Token refused' }).waitFor();
    assert.equal(await page.locator('#app').isHidden(), true, 'the app stays hidden');
    assert.equal(await page.locator('#rows tr').count(), 0, 'no rows');
    assert.equal(await page.evaluate(() => JSON.stringify(sessionStorage)), '{}', 'nothing kept');
    await screenshot(page, 'wrong-token');
  });

  test('signing in with the token shows the seeded names, their addresses and versions; the token stays in sessionStorage only', async () => {
    await signIn(TOKEN);
    await row('www.shop.example').waitFor();
    const www = await entry('www.shop.example');
    assert.equal(await row('www.shop.example').locator('td.addresses').textContent(), '192.0.2.10 192.0.2.11 2001:db8::10');
    assert.equal(await row('www.shop.example').locator('td.version').textContent(), String(www.version));
    assert.equal(await row('www.shop.example').locator('td.updated .by').textContent(), 'by zone seed', 'who made the last change');
    for (const name of ['api.shop.example', '*.cdn.shop.example', 'admin.shop.example', 'downloads.example.net'])
      assert.equal(await row(name).count(), 1, name);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('divert-admin-token')), TOKEN);
    assert.equal((await context!.cookies()).length, 0, 'no cookie');
    assert.ok(!page.url().includes(TOKEN), 'not in the URL');
    await page.locator('#live.on').waitFor();
    await screenshot(page, 'signed-in');
  });

  test("changing a name's address on the page changes what DNS answers", async () => {
    await edit('api.shop.example');
    await page.locator('#editor-addresses').fill('192.0.2.77');
    await page.locator('#editor-form button[type=submit]').click();
    await page.locator('#editor-message', { hasText: 'Saved' }).waitFor();
    // the write was acknowledged: every worker answers with it
    assert.deepEqual(await resolver.resolve4('api.shop.example'), ['192.0.2.77']);
    const history = (await (await api('/v1/names/api.shop.example/history')).json()) as { history: { by: string }[] };
    assert.equal(history.history[0].by, 'dashboard', 'the history names the dashboard as the writer');
    await row('api.shop.example').locator('td.addresses', { hasText: '192.0.2.77' }).waitFor();
    assert.equal(await row('api.shop.example').locator('td.updated .by').textContent(), 'by dashboard');
  });

  test('a change made with the CLI appears in the feed, and its row is highlighted, within a second', async () => {
    const cli = runDivert(['names', 'set', 'admin.shop.example', '192.0.2.99', '--client', 'operator-b'], {
      env: { DIVERT_ADMIN_URL: adminUrl, DIVERT_ADMIN_TOKEN: TOKEN },
    });
    assert.equal(await cli.exited(30_000), 0, `divert names set: ${cli.stderr()}`);
    const acknowledged = Date.now();
    await page.locator('#feed li', { hasText: 'admin.shop.example → 192.0.2.99' }).waitFor({ timeout: 1000 });
    await row('admin.shop.example')
      .and(page.locator('.changed'))
      .locator('td.addresses', { hasText: '192.0.2.99' })
      .waitFor({ timeout: 1000 });
    assert.ok(Date.now() - acknowledged <= 1000, `shown ${Date.now() - acknowledged} ms after the CLI's write was acknowledged`);
    // the row says who made the change (the CLI's --client), from the entry the feed carried
    assert.equal(await row('admin.shop.example').locator('td.updated .by').textContent(), 'by operator-b');
    await screenshot(page, 'feed');
  });

  test('names and authors holding markup or escapes are shown as text, never run', async () => {
    const markup = '<script data-x>window.__pwned = 1</script><img src=x data-x onerror="window.__pwned = 2">';
    const put = await api(`/v1/names/${encodeURIComponent('<script\\032data-x>window.__pwned=3</script>.xss.example')}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'x-divert-client': markup },
      body: JSON.stringify({ a: ['192.0.2.66'], aaaa: [], ttl: 30 }),
    });
    assert.equal(put.status, 200);
    const created = (await put.json()) as { name: string };
    const escaped = await (
      await api(`/v1/names/${encodeURIComponent('tab\\009and\\034quote.xss.example')}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ a: ['192.0.2.67'], aaaa: [], ttl: 30 }),
      })
    ).json();
    // the names as the table keeps them: presentation form, octets as \DDD
    assert.ok(
      created.name.startsWith('\\060script\\032data-x\\062window.__pwned\\0613\\060\\047script\\062') && !created.name.includes('<'),
      created.name,
    );
    await page.locator('#feed li', { hasText: created.name }).waitFor();
    await row(created.name).waitFor();
    await row((escaped as { name: string }).name).waitFor();
    await edit(created.name);
    await page.locator('#editor-history li', { hasText: markup }).waitFor();
    assert.equal(await page.locator('[data-x]').count(), 0, 'no element made from the data');
    assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined, 'nothing ran');
    assert.equal(await row(created.name).locator('td.name').textContent(), created.name);
    assert.equal(await row(created.name).locator('td.updated .by').textContent(), `by ${markup}`, 'the author too');
    await page.locator('#editor-close').click();
  });

  test('a conflict (another writer changed the entry after the page read it) is shown, not overwritten', async () => {
    await edit('www.shop.example');
    const opened = await entry('www.shop.example');
    const other = await api('/v1/names/www.shop.example', {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'x-divert-client': 'monitor' },
      body: JSON.stringify({ a: ['192.0.2.50'], aaaa: [], ttl: 30 }),
    });
    assert.equal(other.status, 200);
    await page.locator('#editor-addresses').fill('192.0.2.60');
    await page.locator('#editor-form button[type=submit]').click();
    const message = page.locator('#editor-message.error', { hasText: 'Conflict' });
    await message.waitFor();
    assert.match((await message.textContent()) ?? '', new RegExp(`version ${opened.version}.*192\\.0\\.2\\.50`));
    assert.deepEqual((await entry('www.shop.example')).a, ['192.0.2.50'], "the other writer's change stands");
    assert.deepEqual(await resolver.resolve4('www.shop.example'), ['192.0.2.50']);
    // deleting from the stale editor is refused the same way
    await page.locator('#editor-delete').click();
    await page.locator('#editor-delete').click();
    await page.locator('#editor-message.error', { hasText: 'Conflict: not deleted' }).waitFor();
    assert.equal((await api('/v1/names/www.shop.example')).status, 200, 'still there');
    await screenshot(page, 'conflict');
    await page.locator('#editor-close').click();
  });

  test('diverting from the page moves every entry answering the address', async () => {
    await page.locator('#divert-from').fill('192.0.2.30');
    await page.locator('#divert-to').fill('192.0.2.130');
    await page.locator('#divert-form button[type=submit]').click();
    await page.locator('#divert-message', { hasText: 'Diverted: 1 entry changed' }).waitFor();
    assert.deepEqual((await resolver.resolve4('x.cdn.shop.example')).sort(), ['192.0.2.130', '192.0.2.31']);
    await page.locator('#diversions li', { hasText: '192.0.2.30 → 192.0.2.130' }).waitFor();
  });

  test("search by prefix, and paging 50 names at a time through the API's cursor", async () => {
    const zone = Array.from({ length: 60 }, (_, i) => `page-${String(i).padStart(2, '0')}.example. 30 IN A 192.0.2.${i + 1}`).join('\n');
    const imported = await api('/v1/import?file=pages.zone', {
      method: 'POST',
      headers: { 'content-type': 'text/dns' },
      body: zone + '\n',
    });
    assert.equal(imported.status, 200, await imported.text());
    const names = () => page.locator('#rows td.name').allTextContents();
    await page.locator('#search').fill('page-');
    await page.locator('#search-form button[type=submit]').click();
    await page.locator('#page-info', { hasText: 'page 1, 50 names' }).waitFor();
    assert.deepEqual(
      await names(),
      Array.from({ length: 50 }, (_, i) => `page-${String(i).padStart(2, '0')}.example`),
    );
    assert.equal(await page.locator('#prev-page').isDisabled(), true);
    await page.locator('#next-page').click();
    await page.locator('#page-info', { hasText: 'page 2, 10 names' }).waitFor();
    assert.deepEqual(
      await names(),
      Array.from({ length: 10 }, (_, i) => `page-${i + 50}.example`),
    );
    assert.equal(await page.locator('#next-page').isDisabled(), true, 'the last page');
    await page.locator('#prev-page').click();
    await page.locator('#page-info', { hasText: 'page 1, 50 names' }).waitFor();
    assert.equal((await names())[0], 'page-00.example');
    await page.locator('#search').fill('nothing-like-this');
    await page.locator('#search-form button[type=submit]').click();
    await page.locator('#table-message', { hasText: 'No names match.' }).waitFor();
    assert.equal(await page.locator('#rows tr').count(), 0);
    await page.locator('#search').fill('');
    await page.locator('#search-form button[type=submit]').click();
    await page.locator('#page-info', { hasText: 'page 1, 50 names' }).waitFor();
  });

  test('the load panel draws queries per second with uPlot and shows the upstream', async () => {
    const stop = Date.now() + 4000;
    // a few seconds of intercepted queries, so that the chart has a rate to draw
    while (Date.now() < stop) await Promise.all(Array.from({ length: 20 }, () => resolver.resolve4('api.shop.example')));
    await page.locator('#chart .uplot canvas').waitFor();
    await page.locator('#upstreams li', { hasText: '127.0.0.1:9' }).waitFor();
    await page
      .locator('#workers li', {
        hasText: /worker 1: \d+ MB resident, \d+ MB heap, CPU \d+ %, event loop \d+ % busy, connections open: TCP \d+, DoT \d+, DoH \d+/,
      })
      .waitFor();
    const recent = (await (await api('/v1/stats/recent')).json()) as { samples: { intercepted: number }[] };
    assert.ok(
      recent.samples.some((s) => s.intercepted > 0),
      `a second with intercepted queries: ${JSON.stringify(recent.samples)}`,
    );
    await page.waitForTimeout(2500); // the next poll draws them
    await screenshot(page, 'dashboard');
  });

  test("the monitor panel shows --dashboard-monitor's services and mirrors, as text", async () => {
    await page.locator('#monitor-summary', { hasText: 'monitor "monitor-<b>1</b>" at http://127.0.0.1:' }).waitFor();
    await page.locator('#monitor-services > li', { hasText: 'www failover, answer 192.0.2.10, ok' }).waitFor();
    await page.locator('#monitor-services li li.up', { hasText: '192.0.2.10:443 up, in answer, 3.1 ms' }).waitFor();
    await page.locator('#monitor-services li li.down', { hasText: '198.51.100.10:443 down, 2.4 ms, HTTP 503 (expected 200)' }).waitFor();
    assert.equal(await page.locator('#monitor b').count(), 0, 'the id is text, not markup');
    // the page asks divert serve, which asks the monitor: the browser talks to its own origin only
    const res = await api('/v1/dashboard/monitor');
    assert.deepEqual(await res.json(), {
      url: `http://127.0.0.1:${(monitorServer!.address() as { port: number }).port}`,
      ok: true,
      status: MONITOR_REPORT,
    });
    assert.equal((await fetch(adminUrl + '/v1/dashboard/monitor')).status, 401, 'with the token only');
  });

  test('the page ran under the CSP without a violation or an error', () => {
    const violations = consoleLog.messages.filter((m) => /Content Security Policy|Refused to/i.test(m));
    assert.deepEqual(violations, []);
    assert.deepEqual(consoleLog.errors, []);
    assert.ok(requested.length > 0);
    assert.deepEqual(
      requested.filter((url) => !url.startsWith(adminUrl + '/')),
      [],
      "every request to the page's own origin",
    );
  });
});

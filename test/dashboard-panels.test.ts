// The dashboard's busiest names end to end: a real `divert serve` (seeded from zones/),
// DNS queries from a real resolver, and a headless Chromium reading it all from the page.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser, Page } from 'playwright-core';
import { bounded, launchBrowser, screenshot, watchConsole } from './helpers/browser.js';
import { TEST_TOKEN } from './helpers/divert.js';
import { ROOT, runDivert, type DivertProcess } from './helpers/process.js';

const WAIT_MS = 10_000;

let serve: DivertProcess;
let adminUrl: string;
let resolver: Resolver;
let browser: Browser | undefined;
let page: Page;
let consoleLog: { messages: string[]; errors: string[] };

const api = (path: string, init: RequestInit = {}) =>
  fetch(adminUrl + path, { ...init, headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(init.headers as Record<string, string>) } });

before(async () => {
  serve = runDivert(['serve', ...['--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--zones', join(ROOT, 'zones')]], {
    env: { DIVERT_ADMIN_TOKEN: TEST_TOKEN },
  });
  const line = await serve.listeningLine();
  adminUrl = `http://${line.admin}`;
  resolver = new Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([line.listen[0]]);
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
  await serve?.stop();
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

  test('the page ran under the CSP without a violation or an error', () => {
    assert.deepEqual(
      consoleLog.messages.filter((m) => /Content Security Policy|Refused to/i.test(m)),
      [],
    );
    assert.deepEqual(consoleLog.errors, []);
  });
});

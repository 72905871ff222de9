// A headless Chromium for the dashboard tests, driven by playwright-core: the system's
// Debian chromium (CI installs it in .ci/run), never a downloaded browser. A missing
// browser fails the test with what to install; it is never a skip.

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type ConsoleMessage, type Page } from 'playwright-core';
import { ROOT } from './process.js';

export const CHROMIUM = process.env.DIVERT_TEST_CHROMIUM ?? '/usr/bin/chromium';

/** Screenshots and other artifacts of browser tests (gitignored). */
export const ARTIFACTS = join(ROOT, 'test-artifacts', 'dashboard');

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `no Chromium at ${CHROMIUM}: the dashboard tests need a real browser (apt-get install chromium, as .ci/run does; or set DIVERT_TEST_CHROMIUM)`,
    );
  // --no-sandbox: CI runs the tests as root, where Chromium's sandbox cannot start.
  // Loopback only: no proxy, no background traffic to the outside.
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--no-proxy-server', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
}

/** Everything the page logged, and its uncaught errors, for the assertions that none of it was a CSP violation. */
export function watchConsole(page: Page): { messages: string[]; errors: string[] } {
  const messages: string[] = [];
  const errors: string[] = [];
  page.on('console', (message: ConsoleMessage) => messages.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (err) => errors.push(err.message));
  return { messages, errors };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Waits for `p` (a browser's close, a server's stop) at most `ms`: a hung browser must not keep the run alive. */
export function bounded(p: Promise<unknown> | undefined, ms = 10_000): Promise<unknown> {
  return Promise.race([p?.catch(() => {}), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
}

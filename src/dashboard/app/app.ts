// The dashboard's entry point: sign in, then the names table, the editor, a name's
// timeline, diversions, the live feed, the load panel and the monitor and proxy panels,
// all on one API client. A refused token anywhere (it was changed on the server) drops
// everything shown and asks again.

import './style.css';
import type { Api, ApiError } from './api.js';
import { byId } from './dom.js';
import { Diversions } from './diversions.js';
import { Editor } from './editor.js';
import { Feed } from './feed.js';
import { LoadView } from './load-view.js';
import { MonitorPanel } from './monitor-view.js';
import { forgetToken, resume, signIn } from './login.js';
import { NamesTable } from './names-table.js';
import { ProxyPanel } from './proxy-view.js';
import { Timeline } from './timeline.js';

function startApp(api: Api): void {
  const app = byId('app');
  const signOut = byId('sign-out');
  let stopped = false;
  const stop = (reason = '') => {
    if (stopped) return;
    stopped = true;
    feed.stop();
    load.stop();
    monitor.stop();
    proxy.stop();
    forgetToken();
    if (reason) sessionStorage.setItem(REASON_KEY, reason);
    // nothing read with the old token stays on the page
    location.reload();
  };
  const authFailed = (err: ApiError) => stop(`Signed out: the server refused the token (${err.message}).`);

  const editor = new Editor(api, authFailed);
  const timeline = new Timeline(api, authFailed);
  const table = new NamesTable(
    api,
    (entry) => editor.open(entry),
    (name) => void timeline.show(name),
    authFailed,
  );
  const diversions = new Diversions(api, authFailed);
  const load = new LoadView(api, authFailed);
  const monitor = new MonitorPanel(api, authFailed);
  const proxy = new ProxyPanel(api, authFailed);
  const feed = new Feed(api, {
    change: (name, entry) => {
      table.apply(name, entry);
      timeline.changed(name);
    },
    diversion: () => void diversions.load(),
    resync: () => {
      void table.load();
      void diversions.load();
    },
    authFailed,
  });

  signOut.hidden = false;
  signOut.addEventListener('click', () => stop());
  app.hidden = false;
  void table.load();
  void diversions.load();
  feed.start();
  load.start();
  monitor.start();
  proxy.start();
}

/** Why the last session ended, shown on the login form after the reload. */
const REASON_KEY = 'divert-signed-out-reason';

async function main(): Promise<void> {
  const reason = sessionStorage.getItem(REASON_KEY) ?? '';
  sessionStorage.removeItem(REASON_KEY);
  const api = (await resume()) ?? (await signIn(reason));
  startApp(api);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => void main());
else void main();

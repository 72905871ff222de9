// The live feed: GET /v1/events read through fetch() with the bearer header, parsed as
// server-sent events. Each change is listed (newest first, bounded) and handed on so the
// table can update and highlight its row; `resync` (changes were missed) re-reads. A
// dropped stream reconnects with capped back-off; the header shows whether it is live.

import { Api, ApiError, type Entry } from './api.js';
import { byId, el } from './dom.js';
import { addressesOf } from './names-table.js';
import { SseParser } from './sse.js';

const MAX_ITEMS = 200;
const MAX_BACKOFF_MS = 15_000;

export interface FeedHandlers {
  change(name: string, entry: Entry | null): void;
  diversion(): void;
  resync(): void;
  authFailed(err: ApiError): void;
}

interface ChangeData {
  name: string;
  entry: Entry | null;
  version: number;
}

interface DiversionData {
  action: string;
  from: string;
  to: string;
  by: string;
}

function clock(): string {
  return new Date().toLocaleTimeString();
}

export class Feed {
  private readonly list = byId('feed');
  private readonly status = byId('live');
  private readonly abort = new AbortController();
  private backoffMs = 1000;

  constructor(
    private readonly api: Api,
    private readonly handlers: FeedHandlers,
  ) {}

  start(): void {
    void this.run();
  }

  stop(): void {
    this.abort.abort();
  }

  private setStatus(text: string, live: boolean): void {
    this.status.hidden = false;
    this.status.textContent = text;
    this.status.classList.toggle('on', live);
  }

  private async run(): Promise<void> {
    while (!this.abort.signal.aborted) {
      try {
        await this.read();
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (err instanceof ApiError && err.status === 401) return this.handlers.authFailed(err);
      }
      if (this.abort.signal.aborted) return;
      this.setStatus(`feed reconnecting in ${Math.round(this.backoffMs / 1000)} s`, false);
      await new Promise((resolve) => setTimeout(resolve, this.backoffMs));
      this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
      // what changed while away is not in the stream: re-read
      this.handlers.resync();
    }
  }

  private async read(): Promise<void> {
    const res = await this.api.events(this.abort.signal);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    this.setStatus('live', true);
    this.backoffMs = 1000;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      for (const event of parser.push(value)) this.dispatch(event.event, event.data);
    }
  }

  private dispatch(type: string, data: string): void {
    if (type === 'resync') {
      this.add('changes were missed: table re-read');
      return this.handlers.resync();
    }
    if (type === 'change') {
      const change = JSON.parse(data) as ChangeData;
      this.add(
        change.entry
          ? `${change.name} → ${addressesOf(change.entry) || 'no addresses'} (version ${change.version})`
          : `${change.name} deleted (version ${change.version})`,
      );
      return this.handlers.change(change.name, change.entry);
    }
    if (type === 'diversion') {
      const diversion = JSON.parse(data) as DiversionData;
      this.add(
        diversion.action === 'delete'
          ? `diversion of ${diversion.from} removed by ${diversion.by}`
          : `${diversion.from} diverted to ${diversion.to} by ${diversion.by}`,
      );
      return this.handlers.diversion();
    }
  }

  private add(text: string): void {
    this.list.prepend(el('li', {}, [el('time', { text: clock() }), ' ', el('span', { text })]));
    while (this.list.children.length > MAX_ITEMS) this.list.lastElementChild!.remove();
  }
}

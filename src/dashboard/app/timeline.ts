// A name's timeline: each change of what it answers, oldest first — when, from which
// addresses to which, how (put, divert, import…) and by whom — from the entry's history
// (GET /v1/names/{name}/history, its last 50 changes). A name is chosen by typing it, or
// from a row of the names table; a change of the shown name re-reads it.

import { Api, ApiError, type HistoryRecord } from './api.js';
import { byId, el, say } from './dom.js';
import { addressesOf } from './names-table.js';

type State = HistoryRecord['old'];

function answers(state: State, absent: string): string {
  return state ? addressesOf(state) || 'no addresses' : absent;
}

const HOW: Record<HistoryRecord['op'], string> = {
  put: 'set',
  delete: 'deleted',
  divert: 'diverted',
  import: 'imported',
  seed: 'seeded',
};

export class Timeline {
  private readonly input = byId<HTMLInputElement>('timeline-name');
  private readonly list = byId('timeline-events');
  private readonly message = byId('timeline-message');
  private shown: string | undefined;

  constructor(
    private readonly api: Api,
    private readonly onAuthFailed: (err: ApiError) => void,
  ) {
    byId('timeline-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const name = this.input.value.trim();
      if (name) void this.show(name);
    });
  }

  async show(name: string): Promise<void> {
    this.input.value = name;
    this.shown = name;
    try {
      const { history } = await this.api.history(name);
      if (this.shown !== name) return; // another name was asked for meanwhile
      this.list.replaceChildren(...[...history].reverse().map((record) => this.item(record)));
      say(this.message, history.length === 0 ? `${name} has no recorded changes.` : '');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return this.onAuthFailed(err);
      this.list.replaceChildren();
      say(this.message, `No timeline for ${name}: ${err instanceof Error ? err.message : String(err)}`, 'error');
    }
  }

  /** A change from the feed: the shown name's timeline is read again. */
  changed(name: string): void {
    if (name === this.shown) void this.show(name);
  }

  private item(record: HistoryRecord): HTMLLIElement {
    const item = el('li', { class: record.op }, [
      el('time', { text: new Date(record.at).toLocaleString(), attrs: { datetime: record.at, title: record.at } }),
      ' ',
      el('span', { class: 'version', text: `v${record.version}` }),
      el('span', { class: 'how', text: ` ${HOW[record.op] ?? record.op} by ` }),
      el('span', { class: 'by', text: record.by }),
      el('span', { class: 'from', text: answers(record.old, 'absent') }),
      ' → ',
      el('span', { class: 'to', text: answers(record.new, 'deleted') }),
    ]);
    item.dataset.version = String(record.version);
    return item;
  }
}

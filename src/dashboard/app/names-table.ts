// The names table: a page of entries from GET /v1/names (prefix search, cursor paging),
// kept current by the change feed; a row a change touched is highlighted for a while.

import { Api, ApiError, type Entry } from './api.js';
import { byId, button, el, say } from './dom.js';

const PAGE_SIZE = 50;
const HIGHLIGHT_MS = 4000;

export function addressesOf(entry: Pick<Entry, 'a' | 'aaaa'>): string {
  return [...entry.a, ...entry.aaaa].join(' ');
}

function sharingOf(entry: Entry): string {
  const parts: string[] = [];
  if (entry.rules?.length) parts.push(`${entry.rules.length} rule${entry.rules.length === 1 ? '' : 's'}`);
  if (entry.weights)
    parts.push(
      `weights ${Object.entries(entry.weights)
        .map(([address, weight]) => `${address}=${weight}`)
        .join(' ')}`,
    );
  if (entry.pick !== undefined) parts.push(`pick ${entry.pick}`);
  return parts.join('; ');
}

/** When the entry last changed and who made the change (an entry stored before the table kept the author has none), as text. */
function lastChange(entry: Entry): HTMLTableCellElement {
  return el('td', { class: 'updated', attrs: { title: entry.updatedAt } }, [
    el('span', { class: 'at', text: new Date(entry.updatedAt).toLocaleString() }),
    entry.updatedBy !== undefined && ' ',
    entry.updatedBy !== undefined && el('span', { class: 'by', text: `by ${entry.updatedBy}` }),
  ]);
}

export class NamesTable {
  private readonly rows = byId<HTMLTableSectionElement>('rows');
  private readonly message = byId('table-message');
  private readonly search = byId<HTMLInputElement>('search');
  private readonly prev = byId<HTMLButtonElement>('prev-page');
  private readonly next = byId<HTMLButtonElement>('next-page');
  private readonly info = byId('page-info');
  /** The cursors of the pages before this one (the first page has none). */
  private cursors: (string | undefined)[] = [];
  private cursor: string | undefined;
  private nextCursor: string | undefined;
  private prefix = '';

  constructor(
    private readonly api: Api,
    private readonly onEdit: (entry: Entry) => void,
    private readonly onTimeline: (name: string) => void,
    private readonly onAuthFailed: (err: ApiError) => void,
  ) {
    byId('search-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.prefix = this.search.value.trim();
      this.cursors = [];
      this.cursor = undefined;
      void this.load();
    });
    this.next.addEventListener('click', () => {
      this.cursors.push(this.cursor);
      this.cursor = this.nextCursor;
      void this.load();
    });
    this.prev.addEventListener('click', () => {
      this.cursor = this.cursors.pop();
      void this.load();
    });
  }

  /** (Re)reads the current page. */
  async load(): Promise<void> {
    try {
      const page = await this.api.listNames(this.prefix, this.cursor, PAGE_SIZE);
      this.nextCursor = page.cursor;
      this.rows.replaceChildren(...page.names.map((entry) => this.row(entry)));
      this.prev.disabled = this.cursors.length === 0;
      this.next.disabled = !page.cursor;
      this.count();
      say(this.message, page.names.length === 0 ? 'No names match.' : '');
    } catch (err) {
      this.failed(err);
    }
  }

  /** A change from the feed: the row is replaced (or removed, or added when it belongs on this page) and highlighted. */
  apply(name: string, entry: Entry | null): void {
    const existing = this.find(name);
    if (!entry) {
      if (existing) {
        existing.classList.add('deleted', 'changed');
        existing.querySelectorAll('button').forEach((b) => (b.disabled = true));
        setTimeout(() => {
          existing.remove();
          this.count();
        }, HIGHLIGHT_MS);
      }
      return;
    }
    const row = this.row(entry);
    row.classList.add('changed');
    setTimeout(() => row.classList.remove('changed'), HIGHLIGHT_MS);
    if (existing) return existing.replaceWith(row);
    if (!this.belongsHere(name)) return;
    const after = [...this.rows.children].find((r) => (r as HTMLElement).dataset.name! > name);
    this.rows.insertBefore(row, after ?? null);
    this.count();
  }

  private count(): void {
    const n = this.rows.children.length;
    this.info.textContent = `page ${this.cursors.length + 1}, ${n} name${n === 1 ? '' : 's'}`;
  }

  private belongsHere(name: string): boolean {
    if (this.prefix && !name.startsWith(this.prefix.toLowerCase())) return false;
    // a name past the last row belongs to a later page, unless this is the last one
    const last = this.rows.lastElementChild as HTMLElement | null;
    return !this.nextCursor || (last !== null && name < last.dataset.name!);
  }

  private find(name: string): HTMLTableRowElement | undefined {
    return [...this.rows.children].find((r) => (r as HTMLElement).dataset.name === name) as HTMLTableRowElement | undefined;
  }

  private row(entry: Entry): HTMLTableRowElement {
    const row = el('tr', {}, [
      el('td', { class: 'name', text: entry.name }),
      el('td', { class: 'addresses', text: addressesOf(entry) }),
      el('td', { text: String(entry.ttl) }),
      el('td', { text: sharingOf(entry) }),
      el('td', { class: 'version', text: String(entry.version) }),
      lastChange(entry),
      el('td', { class: 'actions' }, [
        button('Edit', () => this.onEdit(entry), { class: 'edit' }),
        ' ',
        button('Timeline', () => this.onTimeline(entry.name), { class: 'timeline' }),
      ]),
    ]);
    row.dataset.name = entry.name;
    return row;
  }

  private failed(err: unknown): void {
    if (err instanceof ApiError && err.status === 401) return this.onAuthFailed(err);
    say(this.message, `Could not read the names: ${err instanceof Error ? err.message : String(err)}`, 'error');
  }
}

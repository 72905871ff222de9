// The entry editor: change a name's addresses and TTL, or delete it, each conditional on
// the version the editor was opened with (If-Match). A 412 means another writer changed
// the entry meanwhile: that is shown, with what the entry holds now, and nothing is
// written until the operator reloads the entry and decides again.

import { Api, ApiError, type Entry } from './api.js';
import { byId, el, say } from './dom.js';
import { addressesOf } from './names-table.js';

/** The entry's data with new addresses: rules kept, weights kept for the addresses still there. */
function withAddresses(entry: Entry, addresses: string[], ttl: number) {
  const a = addresses.filter((x) => !x.includes(':'));
  const aaaa = addresses.filter((x) => x.includes(':'));
  const weights = entry.weights ? Object.fromEntries(Object.entries(entry.weights).filter(([x]) => addresses.includes(x))) : undefined;
  return {
    a,
    aaaa,
    ttl,
    ...(entry.rules ? { rules: entry.rules } : {}),
    ...(weights && Object.keys(weights).length > 0 ? { weights } : {}),
    ...(entry.pick !== undefined ? { pick: entry.pick } : {}),
  };
}

export class Editor {
  private readonly section = byId('editor');
  private readonly name = byId('editor-name');
  private readonly version = byId('editor-version');
  private readonly addresses = byId<HTMLInputElement>('editor-addresses');
  private readonly ttl = byId<HTMLInputElement>('editor-ttl');
  private readonly remove = byId<HTMLButtonElement>('editor-delete');
  private readonly message = byId('editor-message');
  private readonly history = byId('editor-history');
  /** The entry as it was when opened: its version is what every write is conditional on. */
  private entry: Entry | undefined;
  private confirmingDelete = false;

  constructor(
    private readonly api: Api,
    private readonly onAuthFailed: (err: ApiError) => void,
  ) {
    byId('editor-form').addEventListener('submit', (event) => {
      event.preventDefault();
      void this.save();
    });
    this.remove.addEventListener('click', () => void this.delete());
    byId('editor-reload').addEventListener('click', () => void this.reload());
    byId('editor-close').addEventListener('click', () => this.close());
  }

  open(entry: Entry): void {
    this.entry = entry;
    this.confirmingDelete = false;
    this.remove.textContent = 'Delete';
    this.name.textContent = entry.name;
    this.version.textContent = String(entry.version);
    this.addresses.value = addressesOf(entry);
    this.ttl.value = String(entry.ttl);
    say(this.message, '');
    this.section.hidden = false;
    this.addresses.focus();
    void this.showHistory(entry.name);
  }

  close(): void {
    this.section.hidden = true;
    this.entry = undefined;
  }

  private async save(): Promise<void> {
    const entry = this.entry;
    if (!entry) return;
    const addresses = this.addresses.value.split(/[\s,]+/).filter(Boolean);
    try {
      const saved = await this.api.putName(entry.name, withAddresses(entry, addresses, Number(this.ttl.value)), entry.version);
      this.open(saved);
      say(this.message, `Saved: version ${saved.version}.`);
    } catch (err) {
      await this.failed(err, 'saved');
    }
  }

  private async delete(): Promise<void> {
    const entry = this.entry;
    if (!entry) return;
    if (!this.confirmingDelete) {
      this.confirmingDelete = true;
      this.remove.textContent = `Really delete ${entry.name}?`;
      return;
    }
    try {
      await this.api.deleteName(entry.name, entry.version);
      this.close();
    } catch (err) {
      await this.failed(err, 'deleted');
    }
  }

  private async reload(): Promise<void> {
    if (!this.entry) return;
    try {
      this.open(await this.api.getName(this.entry.name));
    } catch (err) {
      await this.failed(err, 'reloaded');
    }
  }

  private async failed(err: unknown, what: string): Promise<void> {
    if (err instanceof ApiError && err.status === 401) return this.onAuthFailed(err);
    if (err instanceof ApiError && err.status === 412 && this.entry) {
      const name = this.entry.name;
      let now = 'it has been deleted';
      try {
        const current = await this.api.getName(name);
        now = `it is now at version ${current.version} with ${addressesOf(current) || 'no addresses'}`;
      } catch {
        // gone, or unreadable: "deleted" is the likely reading; the reload shows which
      }
      say(
        this.message,
        `Conflict: not ${what}. ${name} was changed by someone else after you opened it (version ${this.entry.version}); ${now}. Reload the entry, check it, and edit again.`,
        'error',
      );
      return;
    }
    say(this.message, `Not ${what}: ${err instanceof Error ? err.message : String(err)}`, 'error');
  }

  private async showHistory(name: string): Promise<void> {
    try {
      const { history } = await this.api.history(name);
      if (this.entry?.name !== name) return;
      this.history.replaceChildren(
        ...history.slice(0, 10).map((record) =>
          el('li', {
            text: `v${record.version} ${record.at} ${record.op} by ${record.by}: ${record.new ? addressesOf(record.new) || 'no addresses' : 'deleted'}`,
          }),
        ),
      );
    } catch {
      this.history.replaceChildren(el('li', { text: 'history unavailable' }));
    }
  }
}

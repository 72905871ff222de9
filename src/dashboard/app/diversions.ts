// Divert from the page: POST /v1/diversions (every entry answering FROM answers TO
// instead), and the diversions in force with a button to drop each record.

import { Api, ApiError } from './api.js';
import { byId, button, el, say } from './dom.js';

export class Diversions {
  private readonly from = byId<HTMLInputElement>('divert-from');
  private readonly to = byId<HTMLInputElement>('divert-to');
  private readonly message = byId('divert-message');
  private readonly list = byId('diversions');

  constructor(
    private readonly api: Api,
    private readonly onAuthFailed: (err: ApiError) => void,
  ) {
    byId('divert-form').addEventListener('submit', (event) => {
      event.preventDefault();
      void this.divert();
    });
  }

  async load(): Promise<void> {
    try {
      const { diversions } = await this.api.diversions();
      this.list.replaceChildren(
        ...diversions.map((d) =>
          el('li', {}, [
            el('span', { text: `${d.from} → ${d.to} (by ${d.by}, ${d.at})` }),
            ' ',
            button('Remove record', () => void this.remove(d.from)),
          ]),
        ),
      );
    } catch (err) {
      this.failed(err);
    }
  }

  private async divert(): Promise<void> {
    try {
      const result = await this.api.divert(this.from.value.trim(), this.to.value.trim());
      say(this.message, `Diverted: ${result.changed.length} entr${result.changed.length === 1 ? 'y' : 'ies'} changed.`);
      await this.load();
    } catch (err) {
      this.failed(err);
    }
  }

  private async remove(from: string): Promise<void> {
    try {
      await this.api.deleteDiversion(from);
      await this.load();
    } catch (err) {
      this.failed(err);
    }
  }

  private failed(err: unknown): void {
    if (err instanceof ApiError && err.status === 401) return this.onAuthFailed(err);
    say(this.message, `Refused: ${err instanceof Error ? err.message : String(err)}`, 'error');
  }
}

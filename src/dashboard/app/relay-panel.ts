// A panel of what divert serve relays from another divert process's status endpoint (the
// monitor's, the proxy's): polled while the page is open, hidden (and no longer polled)
// when its flag is not given, and saying so when the endpoint does not answer.

import { Api, ApiError, type RelayedStatus } from './api.js';
import { byId, say } from './dom.js';

const POLL_MS = 5000;

export abstract class RelayPanel<Report> {
  private readonly section: HTMLElement;
  protected readonly summary: HTMLElement;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly api: Api,
    private readonly of: 'monitor' | 'proxy',
    private readonly onAuthFailed: (err: ApiError) => void,
  ) {
    this.section = byId(of);
    this.summary = byId(`${of}-summary`);
  }

  start(): void {
    void this.poll(true);
    this.timer = setInterval(() => void this.poll(false), POLL_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Shows the report the endpoint at `url` gave. */
  protected abstract show(url: string, report: Report): void;
  /** Empties what show() filled, when the endpoint does not answer. */
  protected abstract clear(): void;

  private async poll(first: boolean): Promise<void> {
    let view: RelayedStatus;
    try {
      view = await this.api.relayed(this.of);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.stop();
        return this.onAuthFailed(err);
      }
      return say(this.summary, `${this.of} status unavailable: ${err instanceof Error ? err.message : String(err)}`, 'error');
    }
    if (view.url === null) {
      if (first) this.stop(); // not configured: nothing to show, nothing to poll
      return;
    }
    this.section.hidden = false;
    if (!view.ok) {
      say(this.summary, `${this.of} at ${view.url} unreachable: ${view.error ?? 'no answer'}`, 'error');
      return this.clear();
    }
    this.show(view.url, view.status as Report);
  }
}

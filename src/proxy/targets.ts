// Where a service sends a client now, and whether an open connection's target still holds:
// a name target follows the name's entry (the client's address deciding, as for a query),
// an address target follows the diversions in force.

import { answerFor, divertedAddress } from './answer.js';
import type { ProxyService } from './config.js';
import type { Connection } from './connections.js';
import type { TableView } from './table-view.js';

/** The addresses to try for a new connection from `client`, in order (empty: none known). */
export function targetsFor(service: ProxyService, view: TableView, client: string): readonly string[] {
  const { target } = service;
  if ('address' in target) return [divertedAddress(view.diversions, target.address)];
  const entry = view.entry(target.name);
  return entry ? answerFor(entry, client) : [];
}

/** Whether a connection relayed to `address` is still one the service would send clients to. */
export function stillTargeted(service: ProxyService, view: TableView, address: string): boolean {
  const { target } = service;
  if ('address' in target) return divertedAddress(view.diversions, target.address) === address;
  return view.entry(target.name)?.all.has(address) ?? false;
}

/** What an open TCP connection holds for onChange, whichever relay carries it. */
export interface Followed {
  /** The connected target's address (without port); null while connecting. */
  address: string | null;
  drain: NodeJS.Timeout | null;
  record: Connection;
}

/**
 * The table changed, for one open connection: back in the answer, a drain under way is
 * called off and true returned; out of it, onChange close ends it at once (`end`), drain
 * ends it after drainSeconds (once started, a drain is not started again), keep leaves it,
 * and false is returned (move is the caller's: the relay moves it at a quiet moment).
 */
export function followChange(service: ProxyService, view: TableView, c: Followed, end: () => void): boolean {
  if (c.address === null) return true;
  if (stillTargeted(service, view, c.address)) {
    if (c.drain) {
      clearTimeout(c.drain);
      c.drain = null;
      c.record.drainEndsAt = null;
    }
    return true;
  }
  if (service.onChange === 'close') end();
  else if (service.onChange === 'drain' && !c.drain) {
    c.record.drainEndsAt = Date.now() + service.drainSeconds * 1000;
    c.drain = setTimeout(end, service.drainSeconds * 1000);
  }
  return false;
}

/** The name or address whose changes concern the service. */
export function targetKey(service: ProxyService): string {
  return 'name' in service.target ? service.target.name : service.target.address;
}

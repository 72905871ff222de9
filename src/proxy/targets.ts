// Where a service sends a client now, and whether an open connection's target still holds:
// a name target follows the name's entry (the client's address deciding, as for a query),
// an address target follows the diversions in force.

import { answerFor, divertedAddress } from './answer.js';
import type { ProxyService } from './config.js';
import type { TableView } from './table-view.js';

/** The addresses to try for a new connection from `client`, in order (empty: none known). */
export function targetsFor(service: ProxyService, view: TableView, client: string): string[] {
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

/** The name or address whose changes concern the service. */
export function targetKey(service: ProxyService): string {
  return 'name' in service.target ? service.target.name : service.target.address;
}

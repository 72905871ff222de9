// The native TCP relay of divert proxy (src/native/tcp-relay.c): what it exports, where
// it is loaded from, and which services it relays. A service relays through it when the
// addon is built and --native-relay is on (the default), unless it speaks TLS on either
// side or moves open connections (onChange move): those stay on node:net (tcp-service.ts),
// as does every service when the addon is not built (a warning says so).

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProxyService } from './config.js';

declare const listenerBrand: unique symbol;
export type RelayListener = { readonly [listenerBrand]: true };

export interface TcpRelayAddon {
  /** Once per process: onEvents(n) reads n events from `events`, 5 numbers each: type, id, a, b, the listener's tag. */
  init(onEvents: (n: number) => void, events: Float64Array): void;
  /** Bound and listening; throws the OS's error (err.code). */
  listen(host: string, port: number): RelayListener;
  /** A listener another process (the primary) opened, handed over as descriptor `fd`. */
  adopt(fd: number): RelayListener;
  fd(listener: RelayListener): number;
  port(listener: RelayListener): number;
  /**
   * onAccept(id, address, port, localAddress, localPort) per connection (the local address
   * only when `wildcard`); onAccept(-errno) when accept fails for want of descriptors or
   * memory. Its connections' events carry `tag`: (CONNECTED, id, µs) | (FAILED, id, errno) |
   * (CLOSED, id, bytesIn, bytesOut).
   */
  start(
    listener: RelayListener,
    onAccept: (id: number, address?: string, port?: number, localAddress?: string, localPort?: number) => void,
    idleMs: number,
    wildcard: boolean,
    tag: number,
  ): void;
  /** 0 when the connect is under way (CONNECTED or FAILED follows), else the errno of its failure. */
  connect(id: number, host: string, port: number, timeoutMs: number, header: Buffer | null): number;
  /** Closes both sides (RST when `reset`) without a CLOSED event; whether it was open. */
  close(id: number, reset: boolean): boolean;
  /** out: bytes in, bytes out, ms since the last byte (-1: not connected); whether it is open. */
  counters(id: number, out: Float64Array): boolean;
  /** The proxy's own address and port towards the target. */
  source(id: number): [string, number] | null;
  /** Stops accepting and resets the listener's open connections (no events). */
  stop(listener: RelayListener): void;
  readonly CONNECTED: number;
  readonly FAILED: number;
  readonly CLOSED: number;
  /** Events queued at most before a call of onEvents. */
  readonly EVENTS: number;
}

export type RelayEventHandler = (type: number, id: number, a: number, b: number) => void;

/** The addon's events, handed to the service whose listener took the connection (by its tag). */
class RelayEvents {
  private readonly handlers: RelayEventHandler[] = [];
  private readonly events: Float64Array;

  constructor(addon: TcpRelayAddon) {
    this.events = new Float64Array(addon.EVENTS * 5);
    addon.init((n) => this.dispatch(n), this.events);
  }

  /** The tag of the listeners whose connections' events go to `handler`. */
  register(handler: RelayEventHandler): number {
    this.handlers.push(handler);
    return this.handlers.length - 1;
  }

  private dispatch(n: number): void {
    const e = this.events;
    for (let i = 0, o = 0; i < n; i++, o += 5) this.handlers[e[o + 4]](e[o], e[o + 1], e[o + 2], e[o + 3]);
  }
}

let events: RelayEvents | undefined;

/** The process's one receiver of the addon's events (the addon polls one epoll set per process). */
export function relayEvents(addon: TcpRelayAddon): RelayEvents {
  events ??= new RelayEvents(addon);
  return events;
}

/** Where npm run build puts it: dist/native/, from dist/src/proxy/. */
const ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'tcp-relay.node');

let loaded: TcpRelayAddon | null | undefined;

/** The addon, or null when it was not built (no cc) or does not load here. */
export function loadTcpRelay(): TcpRelayAddon | null {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)(ADDON_PATH) as TcpRelayAddon;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

/** Whether the native relay can carry the service: plain TCP both sides, open connections never moved. */
export function relaysNatively(service: ProxyService): boolean {
  return service.protocol === 'tcp' && !service.tls && service.targetTls === false && service.onChange !== 'move';
}

/** A service's listen address `index`, keyed as the primary hands workers its chosen ports and the native relay's descriptors. */
export function listenKey(service: ProxyService, index: number): string {
  return `${service.name}#${index}`;
}

// What a listener tells its owner besides replies: the messages it could not serve and
// the connections its limits closed. Nothing a peer sends may end the process, so a
// failure to handle or answer one message is counted here and that message is lost; the
// listener goes on with the next.

export const LISTENER_EVENTS = [
  /** The handler threw, or its promise rejected: no reply for that message. */
  'handler_error',
  /** A reply could not be handed to the socket (e.g. the OS refused the destination). */
  'send_error',
  /** A datagram from source port 0: nothing can be sent back to it, so it is not handled. */
  'unreplyable_source',
  /** A TCP client outside the allowed networks: reset at accept, before anything is read. */
  'tcp_not_allowed',
  /** A TCP client network already holding its share of connections: reset at accept. */
  'tcp_client_limit',
  /** Every TCP slot busy with a query in flight: the newcomer is reset. */
  'tcp_full',
  /** The least recently active idle TCP connection, closed to make room for a newcomer (RFC 7766 6.2.3). */
  'tcp_evicted_idle',
] as const;

export type ListenerEvent = (typeof LISTENER_EVENTS)[number];

export type ListenerCounts = Record<ListenerEvent, number>;

export function emptyListenerCounts(): ListenerCounts {
  return Object.fromEntries(LISTENER_EVENTS.map((e) => [e, 0])) as ListenerCounts;
}

/** Where a listener reports. `fault` is for the unexpected (handler and send errors), which the owner logs. */
export interface ListenerReport {
  counts: ListenerCounts;
  fault(event: 'handler_error' | 'send_error', err: unknown): void;
}

/** Counts into `counts`; faults go to `onFault` too. */
export function listenerReport(onFault: (event: ListenerEvent, err: unknown) => void, counts = emptyListenerCounts()): ListenerReport {
  return {
    counts,
    fault(event, err) {
      counts[event]++;
      onFault(event, err);
    },
  };
}

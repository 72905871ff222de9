// GET /healthz for `divert serve`: ready when the table is reachable, at least one
// worker serves and at least one upstream is in service; and, when not, what is wrong.

import type { Health } from '../admin/admin-server.js';
import type { ServeConfig } from '../config/options.js';
import type { WorkersState } from '../serving/handle.js';
import type { ServingStats } from '../serving/stats.js';
import type { AddressTable } from '../table/address-table.js';
import { formatHostPort, type HostPort } from '../net/host-port.js';
import { describeCertificate, validityProblem, type TlsCredentials } from '../serving/tls-credentials.js';

/** The DNS listeners as bound, and the DoT and DoH certificate in force. */
export interface ListenerState {
  listeners: { dns: HostPort[]; dot: HostPort[]; doh: HostPort[] };
  certificate: TlsCredentials | null;
}

/** Each listener by transport and address, for /healthz and /metrics. */
export function listenerList({ dns, dot, doh }: ListenerState['listeners']): { transport: string; address: string }[] {
  return [
    ...dns.flatMap((at) => [
      { transport: 'udp', address: formatHostPort(at) },
      { transport: 'tcp', address: formatHostPort(at) },
    ]),
    ...dot.map((at) => ({ transport: 'dot', address: formatHostPort(at) })),
    ...doh.map((at) => ({ transport: 'doh', address: formatHostPort(at) })),
  ];
}

/** What /healthz says of the workers when some are not serving: which are being replaced, after how many crashes, and when. */
function workersProblems({ configured, running, restarting }: WorkersState): string[] {
  const none = 'no worker is running: DNS queries go unanswered';
  if (restarting.length === 0) return running === 0 ? [none] : [];
  const each = restarting.map(
    (r) =>
      `worker ${r.worker} after ${r.crashes} crash${r.crashes === 1 ? '' : 'es'} in a row (${r.state === 'starting' ? 'starting now' : `next start in ${(r.nextStartInMs! / 1000).toFixed(1)} s`})`,
  );
  return [`workers restarting: ${each.join(', ')}; ${running === 0 ? none : `${running} of ${configured} workers answering`}`];
}

/** An expired DoT and DoH certificate (or one not valid yet): encrypted clients refuse it; plain DNS is unharmed. */
function certificateProblems(certificate: TlsCredentials | null): string[] {
  const problem = certificate ? validityProblem(certificate) : undefined;
  return problem ? [`the DoT and DoH certificate ${problem}: encrypted clients refuse it`] : [];
}

/** GET /healthz: ready when the table is reachable, at least one worker serves and at least one upstream is in service. */
export function healthOf(
  table: AddressTable,
  stats: ServingStats,
  config: ServeConfig,
  workers: WorkersState,
  listeners: ListenerState,
): Health {
  const ready = table.isReady();
  const anyWorker = workers.running > 0;
  // with no worker running there are no upstream figures either: that says nothing of the upstreams
  const anyUpstream = !anyWorker || stats.upstreams.some((u) => u.up);
  return {
    ok: ready && anyWorker && anyUpstream,
    table: { backend: config.redis ? 'redis' : 'memory', ready, cachedNames: stats.cachedNames },
    workers: { configured: workers.configured, running: workers.running, restarting: workers.restarting },
    upstreams: stats.upstreams,
    listeners: listenerList(listeners.listeners),
    ...(listeners.certificate ? { tlsCertificate: describeCertificate(listeners.certificate) } : {}),
    problems: [
      ...(ready ? [] : ['the address table (Redis) is unreachable: intercepted names answer from cache, writes are refused']),
      ...workersProblems(workers),
      ...(anyUpstream ? [] : ['no upstream is answering: forwarded queries get SERVFAIL']),
      ...certificateProblems(listeners.certificate),
    ],
  };
}

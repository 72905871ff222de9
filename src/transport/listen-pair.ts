// UDP and TCP on one port, as DNS wants them: the UDP socket first (on the port asked
// for, or one the OS picks), then TCP on the same port. With port 0 the OS may hand out
// a UDP port whose TCP twin is taken: then both are let go and it tries again.

import type { Socket as UdpSocket } from 'node:dgram';
import type { Server } from 'node:net';
import type { HostPort } from '../net/host-port.js';
import { ADMIT_ALL, createTcpServer, listenTcp, type TcpAdmission, type TcpLimits } from './tcp-listener.js';
import { bindUdp, serveUdp, type Handler } from './udp-listener.js';
import type { ListenerReport } from './listener-events.js';

export interface PairOptions {
  limits: TcpLimits;
  /** Who may open a TCP connection (UDP clients are the handler's to judge); everyone by default. */
  admission?: TcpAdmission;
  /** Where the listeners count what they could not serve. */
  report: ListenerReport;
  /** false in a cluster worker: the port is shared with the other workers. */
  exclusive?: boolean;
  onError: (err: Error) => void;
}

/** A bind that failed: the OS's error, and the address it was for (with the port it had). */
export class BindFailure extends Error {
  constructor(override readonly cause: NodeJS.ErrnoException, readonly at: HostPort) {
    super(cause.message);
  }
}

export async function listenPair(at: HostPort, handler: Handler, options: PairOptions): Promise<{ udp: UdpSocket; tcp: Server; port: number }> {
  const exclusive = options.exclusive ?? true;
  for (let tries = 0; ; tries++) {
    let udp: UdpSocket;
    try {
      udp = await bindUdp(at.host, at.port, exclusive);
    } catch (err) {
      throw new BindFailure(err as NodeJS.ErrnoException, at);
    }
    const port = udp.address().port;
    const tcp = createTcpServer(handler, options.limits, options.admission ?? ADMIT_ALL, options.report, options.onError);
    try {
      await listenTcp(tcp, at.host, port, exclusive);
    } catch (err) {
      udp.close();
      if (at.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && tries < 20) continue;
      throw new BindFailure(err as NodeJS.ErrnoException, { host: at.host, port });
    }
    serveUdp(udp, handler, options.report, options.onError);
    return { udp, tcp, port };
  }
}

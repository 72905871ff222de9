// A DNS listener that could not be bound, said as an operator can act on it.

import { DivertError } from '../errors.js';
import { formatHostPort, type HostPort } from '../net/host-port.js';

export function bindError(err: NodeJS.ErrnoException, at: HostPort): DivertError {
  const where = formatHostPort(at);
  const reason =
    err.code === 'EADDRINUSE'
      ? `${where} is already in use (another DNS server?); stop it or choose another --listen`
      : err.code === 'EACCES'
        ? `no permission to listen on ${where}: ports below 1024 need root or CAP_NET_BIND_SERVICE (e.g. setcap cap_net_bind_service=+ep "$(command -v node)"), or use --listen with a port from 1024 up`
        : err.code === 'EADDRNOTAVAIL'
          ? `cannot listen on ${where}: ${at.host} is not an address of this machine`
          : `cannot listen on ${where}: ${err.message}`;
  return new DivertError('LISTEN_FAILED', reason, { cause: err });
}

// The admin API's token for `divert serve`: given, or read from (or generated into) the
// token file; and the rule that a generated token is for this machine only.

import type { Logger } from 'pino';
import type { ServeConfig } from '../config/options.js';
import { DivertError } from '../errors.js';
import { defaultTokenFile, loadOrCreateToken } from '../admin/token.js';
import { AccessList } from '../net/cidr.js';
import { formatHostPort } from '../net/host-port.js';

/** Where an admin port may listen without an explicit token: this machine only. */
const LOOPBACK = new AccessList(['127.0.0.0/8', '::1/128']);

/** A generated token is for this machine: an admin port others can reach needs one given explicitly. */
export function checkAdminExposure(config: ServeConfig): void {
  if (!config.adminToken && !LOOPBACK.allows(config.admin.host)) {
    throw new DivertError(
      'BAD_CONFIG',
      `--admin ${formatHostPort(config.admin)} is reachable from other machines: give --admin-token (or DIVERT_ADMIN_TOKEN) explicitly`,
    );
  }
}

/** The admin token: given, or read from (or generated into) the token file. */
export function resolveAdminToken(config: ServeConfig, log: Logger): string {
  checkAdminExposure(config);
  if (config.adminToken) return config.adminToken;
  const file = config.adminTokenFile ?? defaultTokenFile();
  const { token, created } = loadOrCreateToken(file);
  log.info({ file }, created ? 'admin token generated' : 'admin token read');
  return token;
}

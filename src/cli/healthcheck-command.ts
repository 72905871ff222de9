// `divert healthcheck`: is the divert serve on this machine alive and ready? Made for a
// container's HEALTHCHECK (and any other probe): with no flags it reads what divert serve
// reads (its DIVERT_* variables and --config file) to find its DNS port, admin port and
// token, so the same environment answers both.
//
// Two checks, both must pass (exit 0; else exit 1 and one line on stderr naming every
// check that failed; exit 2 on bad usage):
// - admin: GET /healthz answers 200 (the table is reachable and an upstream answers);
//   /healthz needs the admin token like every admin request.
// - DNS: a real query over UDP gets a reply whose rcode is neither SERVFAIL nor REFUSED.
//   The name asked is --name; else the first name of the table (read through the admin
//   API), which divert answers itself, so the check needs no network beyond this machine;
//   else (an empty table, or the admin port not answering) the root's NS, which divert
//   forwards. NXDOMAIN or NODATA count as alive: the server answered.

import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import dnsPacket from 'dns-packet';
import { defaultTokenFile, readTokenFile } from '../admin/token.js';
import { formatHostPort, parseHostPort, type HostPort } from '../net/host-port.js';
import { loadServeConfig } from '../config/load.js';
import { usage } from './connection.js';
import { httpRequest } from '../client/http-request.js';
import { DEFAULT_HEALTHCHECK_TIMEOUT_MS } from './healthcheck-options.js';

type Args = Record<string, unknown>;

/** A wildcard entry is asked through a name below it. */
const WILDCARD_LABEL = 'divert-healthcheck';
/** Names read from the table to find one that is not a wildcard. */
const NAMES_LOOKED_AT = 20;

/** One value of a flag, else of a variable (an empty one counts as unset). */
function pick(argv: Args, flag: string, env: NodeJS.ProcessEnv, variable: string): { value: string; from: string } | undefined {
  const given = argv[flag];
  if (Array.isArray(given)) throw usage(`--${flag} is given ${given.length} times; it takes one value`);
  if (typeof given === 'string') return { value: given, from: `--${flag}` };
  return env[variable] ? { value: env[variable], from: variable } : undefined;
}

/** A wildcard listener is asked on loopback, of the same family. */
function onThisMachine({ host, port }: HostPort): HostPort {
  if (host === '0.0.0.0') return { host: '127.0.0.1', port };
  if (host === '::') return { host: '::1', port };
  return { host, port };
}

function address(text: string, from: string): HostPort {
  const parsed = parseHostPort(text);
  if (typeof parsed === 'string') throw usage(`${from} "${text}": ${parsed}`);
  if (parsed.port === 0) throw usage(`${from} "${text}": port 0 is chosen when divert serve starts; give the port it printed`);
  return onThisMachine(parsed);
}

export interface HealthcheckPlan {
  server: HostPort;
  admin: HostPort;
  /** null: none found, and the admin check fails saying so. */
  token: string | null;
  tokenSource: string;
  name: string | undefined;
  timeoutMs: number;
}

/** Flags, else divert serve's own configuration (flags of its --config file, DIVERT_* variables, defaults). */
export function planHealthcheck(argv: Args, env: NodeJS.ProcessEnv): HealthcheckPlan {
  const timeoutGiven = pick(argv, 'timeout-ms', env, 'DIVERT_HEALTHCHECK_TIMEOUT_MS');
  const timeoutMs = timeoutGiven ? Number(timeoutGiven.value) : DEFAULT_HEALTHCHECK_TIMEOUT_MS;
  if (timeoutGiven && !(/^\d+$/.test(timeoutGiven.value) && timeoutMs >= 10 && timeoutMs <= 600_000)) {
    throw usage(`${timeoutGiven.from} "${timeoutGiven.value}": expected a whole number of milliseconds from 10 to 600000`);
  }
  const nameGiven = pick(argv, 'name', env, 'DIVERT_HEALTHCHECK_NAME');
  if (nameGiven) {
    const labels = nameGiven.value.replace(/\.$/, '').split('.');
    if (nameGiven.value.length > 253 || labels.some((l) => l.length === 0 || Buffer.byteLength(l) > 63)) {
      throw usage(`${nameGiven.from} "${nameGiven.value}": expected a domain name such as www.shop.example`);
    }
  }
  // what divert serve itself reads: its variables, its --config file, its defaults
  const serve = loadServeConfig({ config: argv.config }, env);

  const serverGiven = typeof argv.server === 'string' ? { value: argv.server, from: '--server' } : undefined;
  if (Array.isArray(argv.server)) throw usage(`--server is given ${argv.server.length} times; it takes one value`);
  const server = serverGiven ? address(serverGiven.value, serverGiven.from) : servePort(serve.listen[0], 'listen', '--server');
  const adminGiven = typeof argv.admin === 'string' ? argv.admin : undefined;
  if (Array.isArray(argv.admin)) throw usage(`--admin is given ${argv.admin.length} times; it takes one value`);
  const admin = adminGiven !== undefined ? address(adminGiven, '--admin') : servePort(serve.admin, 'admin', '--admin');

  // a flag wins over divert serve's own token or token file (variables, then its config file)
  let token: string | null;
  let tokenSource: string;
  const tokenFlag = pick(argv, 'admin-token', {}, '');
  const fileFlag = pick(argv, 'admin-token-file', {}, '');
  if (tokenFlag) {
    token = tokenFlag.value.trim();
    tokenSource = '--admin-token';
  } else if (!fileFlag && serve.adminToken) {
    token = serve.adminToken;
    tokenSource = env.DIVERT_ADMIN_TOKEN
      ? 'DIVERT_ADMIN_TOKEN'
      : `"admin-token" in ${typeof argv.config === 'string' ? argv.config : (env.DIVERT_CONFIG ?? 'the config file')}`;
  } else {
    const file = fileFlag?.value ?? serve.adminTokenFile ?? defaultTokenFile(env);
    token = readTokenFile(file);
    tokenSource = `the file ${file}`;
  }
  return { server, admin, token, tokenSource, name: nameGiven?.value, timeoutMs };
}

function servePort(hostPort: HostPort, option: string, flag: string): HostPort {
  if (hostPort.port === 0) {
    throw usage(`divert serve's --${option} ${formatHostPort(hostPort)} has port 0 (chosen when it starts); give ${flag} HOST:PORT`);
  }
  return onThisMachine(hostPort);
}

function errorText(err: unknown, timeoutMs: number): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return 'nothing listening (connection refused)';
  if (code === 'TIMEOUT') return `no answer within ${timeoutMs} ms`;
  return code ? `${(err as Error).message} (${code})` : (err as Error).message;
}

function timeoutError(): NodeJS.ErrnoException {
  return Object.assign(new Error('timeout'), { code: 'TIMEOUT' });
}

/** GET on the admin port, through the admin client's HTTP request (client/http-request.ts). */
async function adminGet(admin: HostPort, path: string, token: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  const url = new URL(path, `http://${formatHostPort(admin)}`);
  const headers = { authorization: `Bearer ${token}`, 'x-divert-client': 'healthcheck' };
  try {
    const reply = await httpRequest(url, { headers, signal: AbortSignal.timeout(Math.max(timeoutMs, 1)) });
    return { status: reply.status, body: await reply.text() };
  } catch (err) {
    throw err instanceof Error && err.name === 'TimeoutError' ? timeoutError() : err;
  }
}

function bodyOf(text: string): Record<string, unknown> {
  try {
    const data = JSON.parse(text) as unknown;
    return data !== null && typeof data === 'object' ? (data as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** A name the table holds, preferring one that is not a wildcard; undefined when none (or on any error). */
async function nameOfTable(admin: HostPort, token: string, timeoutMs: number): Promise<string | undefined> {
  try {
    const { status, body } = await adminGet(admin, `/v1/names?limit=${NAMES_LOOKED_AT}`, token, timeoutMs);
    const list = status === 200 ? bodyOf(body).names : undefined;
    if (!Array.isArray(list)) return undefined;
    const names = list.map((e: { name?: unknown }) => e.name).filter((n): n is string => typeof n === 'string');
    const name = names.find((n) => !n.startsWith('*.')) ?? names[0];
    return name?.startsWith('*.') ? `${WILDCARD_LABEL}.${name.slice(2)}` : name;
  } catch {
    return undefined; // only a hint for the DNS check: the admin check has passed
  }
}

interface AdminResult {
  ok: boolean;
  /** What was found, or what went wrong. */
  text: string;
  /** A name of the table, to ask over DNS. */
  tableName?: string;
}

/** The admin check, within `budget` ms of `started`. */
async function checkAdmin(plan: HealthcheckPlan, started: number, budget: number, wantName: boolean): Promise<AdminResult> {
  const deadline = started + budget;
  const where = `admin ${formatHostPort(plan.admin)}`;
  if (plan.token === null) {
    return {
      ok: false,
      text:
        `${where}: no admin token: --admin-token and DIVERT_ADMIN_TOKEN are not set and ${plan.tokenSource.replace(/^the file /, '')} does not exist; ` +
        'give --admin-token, or --admin-token-file for the file divert serve wrote',
    };
  }
  const token = plan.token;
  const left = () => deadline - Date.now();
  try {
    const health = await adminGet(plan.admin, '/healthz', token, left());
    const body = bodyOf(health.body);
    if (health.status === 401)
      return { ok: false, text: `${where}: the token from ${plan.tokenSource} was refused (401); it is not the one divert serve uses` };
    if (health.status === 429) return { ok: false, text: `${where}: this address is locked out after too many wrong tokens (429)` };
    if (health.status !== 200 && health.status !== 503) return { ok: false, text: `${where}: GET /healthz answered HTTP ${health.status}` };
    // only once the token is known good (a wrong one must not count twice towards a
    // lockout); also when not ready, so that the DNS check still asks a name of the table
    const tableName = wantName ? await nameOfTable(plan.admin, token, left()) : undefined;
    if (health.status === 503) {
      const problems = Array.isArray(body.problems) && body.problems.length > 0 ? body.problems.join('; ') : 'no reason given';
      return { ok: false, text: `${where}: GET /healthz says not ready (503): ${problems}`, tableName };
    }
    const table = body.table as { backend?: unknown } | undefined;
    return { ok: true, text: `${where} ready${typeof table?.backend === 'string' ? ` (${table.backend} table)` : ''}`, tableName };
  } catch (err) {
    return { ok: false, text: `${where}: ${errorText(err, budget)}` };
  }
}

interface DnsResult {
  ok: boolean;
  text: string;
}

/** A name as compared: no trailing dot ("." is the root: ""), lower case. */
const bare = (name: string) => name.replace(/\.$/, '').toLowerCase();

/** One query over UDP from a connected socket, so that a port nobody listens on is told at once. */
function checkDns(server: HostPort, name: string, type: 'A' | 'NS', deadline: number, timeoutMs: number): Promise<DnsResult> {
  const where = `DNS ${formatHostPort(server)}`;
  const shown = `"${name}" ${type}`;
  const id = randomInt(0, 65536);
  const query = dnsPacket.encode({
    id,
    type: 'query',
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type, class: 'IN' }],
  });
  const started = Date.now();
  const socket = createSocket(server.host.includes(':') ? 'udp6' : 'udp4');
  return new Promise((resolve) => {
    let done = false;
    const finish = (result: DnsResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve(result);
    };
    const timer = setTimeout(
      () => finish({ ok: false, text: `${where}: no reply to ${shown} within ${timeoutMs} ms` }),
      Math.max(deadline - Date.now(), 1),
    );
    socket.on('error', (err) => finish({ ok: false, text: `${where}: ${errorText(err, timeoutMs)}` }));
    socket.on('message', (msg) => {
      let reply: dnsPacket.Packet & { rcode?: string };
      try {
        reply = dnsPacket.decode(msg);
      } catch {
        return; // not a DNS message: keep waiting for the reply
      }
      const question = reply.questions?.[0];
      const matches = reply.id === id && reply.type === 'response' && question !== undefined && bare(question.name) === bare(name);
      if (!matches) return;
      const rcode = reply.rcode ?? 'NOERROR';
      const ms = Date.now() - started;
      if (rcode === 'SERVFAIL' || rcode === 'REFUSED') {
        const why =
          rcode === 'REFUSED'
            ? ' (is this address outside --allow, or over --rate-limit?)'
            : ' (no upstream answered in time, or the table failed)';
        finish({ ok: false, text: `${where}: ${shown} answered ${rcode}${why}` });
      } else {
        finish({ ok: true, text: `${where} answered ${shown} with ${rcode} in ${ms} ms` });
      }
    });
    socket.connect(server.port, server.host, () => socket.send(query));
  });
}

/** Runs both checks; resolves with the exit status after printing one line. */
export async function runHealthcheck(argv: Args, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const plan = planHealthcheck(argv, env);
  const started = Date.now();
  const deadline = started + plan.timeoutMs;
  let admin: AdminResult;
  let dns: DnsResult;
  if (plan.name !== undefined) {
    [admin, dns] = await Promise.all([
      checkAdmin(plan, started, plan.timeoutMs, false),
      checkDns(plan.server, plan.name, 'A', deadline, plan.timeoutMs),
    ]);
  } else {
    // one after the other: a stuck admin port must leave the DNS check a third of the time
    admin = await checkAdmin(plan, started, Math.round((plan.timeoutMs * 2) / 3), true);
    dns =
      admin.tableName !== undefined
        ? await checkDns(plan.server, admin.tableName, 'A', deadline, plan.timeoutMs)
        : await checkDns(plan.server, '.', 'NS', deadline, plan.timeoutMs);
  }
  const failed = [admin, dns].filter((r) => !r.ok);
  if (failed.length > 0) {
    process.stderr.write(`divert healthcheck: FAILED: ${failed.map((r) => r.text).join('; ')}\n`);
    return 1;
  }
  process.stdout.write(`divert healthcheck: ok: ${admin.text}; ${dns.text}\n`);
  return 0;
}

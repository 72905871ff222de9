// One health check of one mirror: a TCP connect, or an HTTP(S) GET with the expected
// status, then optionally its load figure; all within the check's timeout. Never throws.

import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { CheckConfig } from './config.js';

export interface ProbeResult {
  ok: boolean;
  latencyMs: number;
  /** The load figure read, when the check has one and the mirror answered. */
  load?: number;
  /** Why the check failed, in the words an operator greps for. */
  error?: string;
}

export interface ProbeTarget {
  address: string;
  port: number;
}

/** A load endpoint that sends more is not a load endpoint. */
const MAX_LOAD_BODY = 64 * 1024;

function hostText(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

function reason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string') return code;
  return err instanceof Error ? err.message : String(err);
}

function tcpConnect(target: ProbeTarget, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.address, port: target.port });
    const onAbort = () => {
      socket.destroy();
      reject(new Error('timeout'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve();
    });
    socket.once('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(err);
    });
  });
}

interface Reply {
  status: number;
  body: string;
}

/** A GET on a fresh connection (no keep-alive: a check must see a mirror that stopped accepting). */
function get(url: URL, check: CheckConfig, signal: AbortSignal, keepBody: boolean): Promise<Reply> {
  const https = url.protocol === 'https:';
  const send = https ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      {
        hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: url.port || (https ? 443 : 80),
        path: url.pathname + url.search,
        method: 'GET',
        agent: false,
        headers: { ...(check.host && { host: check.host }), 'user-agent': 'divert-monitor', accept: 'application/json, text/plain, */*' },
        ...(https && { rejectUnauthorized: !check.insecure, ...(check.host && { servername: check.host }) }),
        signal,
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (!keepBody) return;
          size += chunk.length;
          if (size > MAX_LOAD_BODY) {
            req.destroy(new Error(`load body larger than ${MAX_LOAD_BODY} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', (err) => reject(signal.aborted ? new Error('timeout') : err));
    req.end();
  });
}

/** A plain number, or a JSON object whose `field` is a number. */
export function parseLoad(body: string, field: string): number | string {
  const text = body.trim();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return `load: body is neither a number nor JSON`;
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) value = (value as Record<string, unknown>)[field];
  if (typeof value === 'string' && value.trim() !== '') value = Number(value);
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    return `load: expected a number of 0 or more in "${field}" or as the body`;
  return value;
}

function loadUrl(check: CheckConfig, target: ProbeTarget): URL | undefined {
  const load = check.load;
  if (!load) return undefined;
  if (load.url) return new URL(load.url.replaceAll('{address}', hostText(target.address)).replaceAll('{port}', String(target.port)));
  const scheme = check.type === 'https' ? 'https' : 'http';
  return new URL(`${scheme}://${hostText(target.address)}:${target.port}${load.path}`);
}

export async function probe(check: CheckConfig, target: ProbeTarget): Promise<ProbeResult> {
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), check.timeout);
  const elapsed = () => Math.round((performance.now() - started) * 10) / 10;
  try {
    if (check.type === 'tcp') {
      await tcpConnect(target, controller.signal);
    } else {
      const url = new URL(`${check.type}://${hostText(target.address)}:${target.port}${check.path}`);
      const reply = await get(url, check, controller.signal, false);
      if (reply.status !== check.expect)
        return { ok: false, latencyMs: elapsed(), error: `HTTP ${reply.status} (expected ${check.expect})` };
    }
    const latencyMs = elapsed();
    const url = loadUrl(check, target);
    if (!url) return { ok: true, latencyMs };
    const reply = await get(url, check, controller.signal, true);
    if (reply.status !== 200) return { ok: false, latencyMs, error: `load: HTTP ${reply.status} from ${url.pathname}` };
    const load = parseLoad(reply.body, check.load!.field);
    if (typeof load === 'string') return { ok: false, latencyMs, error: load };
    return { ok: true, latencyMs, load };
  } catch (err) {
    const why = controller.signal.aborted ? `no answer within ${check.timeout} ms` : reason(err);
    return { ok: false, latencyMs: elapsed(), error: why };
  } finally {
    clearTimeout(timer);
  }
}

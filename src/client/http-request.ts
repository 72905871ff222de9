// One HTTP request, fetch-shaped, on node:http and node:https. The admin client runs in
// every `divert names …` call: fetch would load undici first, which alone takes longer than
// the rest of a CLI call (bench:cli), and it refuses ports on the WHATWG "bad ports" list.

import type * as Http from 'node:http';

export interface HttpInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Aborts the request, or the reading of its reply; the promise rejects with signal.reason (a TimeoutError for AbortSignal.timeout). */
  signal?: AbortSignal;
}

/** The reply, read whole: what the admin client uses of fetch's Response. */
export interface HttpResponse {
  status: number;
  ok: boolean;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}

/**
 * The modules through process.getBuiltinModule, not an import: an ES import of node:http
 * evaluates every export, and its WebSocket getters load undici all the same.
 */
function transport(url: URL): typeof Http {
  if (url.protocol === 'https:') return process.getBuiltinModule('node:https') as unknown as typeof Http;
  if (url.protocol === 'http:') return process.getBuiltinModule('node:http');
  throw new TypeError(`${url.protocol} is not http: or https:`);
}

export function httpRequest(url: URL, init: HttpInit = {}): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const { signal } = init;
    if (signal?.aborted) return reject(signal.reason as Error);
    const headers = { ...init.headers };
    if (init.body !== undefined) headers['content-length'] = String(Buffer.byteLength(init.body));
    const request = transport(url).request(url, { method: init.method ?? 'GET', headers });
    const onAbort = () => {
      request.destroy();
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const settle = () => signal?.removeEventListener('abort', onAbort);
    request.on('error', (err) => {
      settle();
      reject(err);
    });
    request.on('response', (reply) => {
      let body = '';
      reply.setEncoding('utf8');
      reply.on('data', (chunk: string) => (body += chunk));
      reply.on('error', (err) => {
        settle();
        reject(err);
      });
      reply.on('end', () => {
        settle();
        const status = reply.statusCode ?? 0;
        resolve({
          status,
          ok: status >= 200 && status < 300,
          headers: {
            get: (name) => {
              const value = reply.headers[name.toLowerCase()];
              return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
            },
          },
          text: async () => body,
        });
      });
    });
    request.end(init.body);
  });
}

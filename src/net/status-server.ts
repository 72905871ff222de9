// The read-only HTTP endpoint of `divert monitor` and `divert proxy` (--status): JSON pages
// for their `status` commands, GET /metrics for Prometheus. Nothing here changes anything.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { HostPort } from './host-port.js';

/** Path → the JSON it serves, made at each request. */
export type StatusPages = Record<string, () => unknown>;

export interface StatusServer {
  address: HostPort;
  close(): Promise<void>;
}

export async function startStatusServer(listen: HostPort, pages: StatusPages, registry: Registry): Promise<StatusServer> {
  const routes = [...Object.keys(pages), '/metrics'].map((path) => `GET ${path}`).join(', ');
  // read-only and small: a client may not hold a request open, nor many connections
  const server: Server = createServer({ headersTimeout: 10_000, requestTimeout: 10_000, connectionsCheckingInterval: 1000 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(
        405,
        'application/json',
        JSON.stringify({ error: { code: 'METHOD', message: 'the status endpoint is read-only: GET only' } }),
      );
    const page = Object.hasOwn(pages, path) ? pages[path] : undefined;
    if (page) {
      // a page may be read from elsewhere (a proxy's workers): it is sent once it is made
      Promise.resolve()
        .then(page)
        .then(
          (value) => send(200, 'application/json', JSON.stringify(value, null, 2) + '\n'),
          (err: unknown) => send(500, 'application/json', JSON.stringify({ error: { code: 'INTERNAL', message: String(err) } })),
        );
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (body) => send(200, registry.contentType, body),
        (err: unknown) => send(500, 'text/plain', String(err)),
      );
      return;
    }
    send(404, 'application/json', JSON.stringify({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${path} (${routes})` } }));
  });
  server.keepAliveTimeout = 5000;
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    address: { host: address, port },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

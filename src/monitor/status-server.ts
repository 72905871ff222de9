// The monitor's read-only HTTP endpoint: GET /status (JSON) for `divert monitor status`,
// GET /metrics for Prometheus. Nothing here changes the monitor.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HostPort } from '../net/host-port.js';
import type { MonitorMetrics } from './metrics.js';
import type { StatusReport } from './monitor.js';

export interface StatusServer {
  address: HostPort;
  close(): Promise<void>;
}

export async function startStatusServer(listen: HostPort, status: () => StatusReport, metrics: MonitorMetrics): Promise<StatusServer> {
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
    if (path === '/status') return send(200, 'application/json', JSON.stringify(status(), null, 2) + '\n');
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (body) => send(200, metrics.registry.contentType, body),
        (err: unknown) => send(500, 'text/plain', String(err)),
      );
      return;
    }
    send(
      404,
      'application/json',
      JSON.stringify({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${path} (GET /status, GET /metrics)` } }),
    );
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

// GET / and /dashboard/*: the dashboard's static files, built into dist/dashboard/ by
// `npm run build` (esbuild bundles src/dashboard/app/). They hold no data, so they are
// served without the token; every figure and name the page shows comes from the API, with
// it. Each response carries a strict Content-Security-Policy: no inline script or style,
// nothing from another origin, no framing.

import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { sendError } from './http-errors.js';

/** Where the build puts the bundle: dist/dashboard/, next to dist/src/ that holds this module. */
const ASSET_DIR = new URL('../../dashboard/', import.meta.url);

export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

/** Marks a route that needs no token (see the auth hook in admin-server.ts). */
export const PUBLIC_ROUTE = { public: true };

export function isPublicRoute(config: unknown): boolean {
  return (config as { public?: boolean } | undefined)?.public === true;
}

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cache-control', 'no-cache');
}

export function registerDashboard(app: FastifyInstance<Server, IncomingMessage, ServerResponse, Logger>): void {
  // read once, on first use: a server built without the dashboard still serves the API
  const cache = new Map<string, Buffer | null>();
  const load = (file: string): Buffer | null => {
    if (!cache.has(file)) {
      try {
        cache.set(file, readFileSync(new URL(file, ASSET_DIR)));
      } catch {
        cache.set(file, null);
      }
    }
    return cache.get(file)!;
  };
  for (const [path, { file, type }] of Object.entries(ASSETS)) {
    app.get(path, { config: PUBLIC_ROUTE }, async (_request, reply) => {
      const body = load(file);
      securityHeaders(reply);
      if (!body) return sendError(reply, 404, 'NOT_FOUND', `the dashboard is not built (${file} missing): run npm run build`);
      return reply.header('content-type', type).send(body);
    });
  }
}

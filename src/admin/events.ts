// GET /v1/events: every change of the table as a server-sent event, as it happens.
// (SSE is a few lines of text framing over a kept-open response; no library needed.)

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AddressTable } from '../table/table.js';

const HEARTBEAT_MS = 15_000;

/**
 * Streams changes until the client goes away; returns a function that ends the stream,
 * which the admin server calls on shutdown (an open stream would keep it from closing).
 */
export function streamEvents(table: AddressTable, request: FastifyRequest, reply: FastifyReply): () => void {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write(': divert change events\n\n');
  const offChange = table.onChange((event) => {
    res.write(`event: change\nid: ${event.version}\ndata: ${JSON.stringify(event)}\n\n`);
  });
  // after a reconnection to a shared store, changes may have been missed: clients re-read
  const offResync = table.onResync(() => res.write('event: resync\ndata: {}\n\n'));
  const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), HEARTBEAT_MS);
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    clearInterval(heartbeat);
    offChange();
    offResync();
  };
  request.raw.on('close', stop);
  res.on('error', stop);
  return () => {
    stop();
    res.end();
  };
}

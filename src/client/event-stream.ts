// GET /v1/events as a follower reads it: the server-sent events of a divert serve's admin
// API, one callback per event (its type and its data parsed as JSON). The stream ends when
// the server closes it, the connection fails or close() is called; whoever follows opens
// it again (with a pause) and reads what it may have missed.

import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Connection } from './connection.js';

/** A frame longer than this is not one the admin API sends: the stream is dropped. */
const MAX_FRAME_BYTES = 4 << 20;

export interface EventStreamHandlers {
  /** The stream is open (HTTP 200): what happens from now on arrives as events. */
  onOpen(): void;
  onEvent(type: string, data: unknown): void;
  /** The stream ended; `reason` says why, for a log line. Called once. */
  onEnd(reason: string): void;
}

export interface EventStream {
  close(): void;
}

export function openEventStream(connection: Connection, handlers: EventStreamHandlers): EventStream {
  const url = new URL('v1/events', connection.url);
  const http = (
    url.protocol === 'https:' ? process.getBuiltinModule('node:https') : process.getBuiltinModule('node:http')
  ) as typeof import('node:http');
  let ended = false;
  const end = (reason: string) => {
    if (ended) return;
    ended = true;
    request.destroy();
    handlers.onEnd(reason);
  };
  const request: ClientRequest = http.request(url, {
    headers: { authorization: `Bearer ${connection.token}`, accept: 'text/event-stream', 'x-divert-client': connection.client },
  });
  request.on('error', (err: NodeJS.ErrnoException) => end(err.code ?? err.message));
  request.on('response', (response: IncomingMessage) => {
    if (response.statusCode !== 200) {
      response.resume();
      end(`HTTP ${response.statusCode ?? 0} from ${url.href}`);
      return;
    }
    handlers.onOpen();
    let buffer = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      buffer += chunk;
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) !== -1) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        dispatch(frame);
      }
      if (buffer.length > MAX_FRAME_BYTES) end(`an event longer than ${MAX_FRAME_BYTES} bytes`);
    });
    response.on('end', () => end('the server closed the stream'));
    response.on('error', (err: NodeJS.ErrnoException) => end(err.code ?? err.message));
  });
  request.end();

  function dispatch(frame: string): void {
    let type = 'message';
    let data = '';
    for (const line of frame.split('\n')) {
      if (line.startsWith(':')) continue; // a comment: the server's greeting or a keep-alive
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') type = value;
      else if (field === 'data') data += data ? '\n' + value : value;
    }
    if (data === '' && type === 'message') return;
    let parsed: unknown;
    try {
      parsed = data === '' ? undefined : JSON.parse(data);
    } catch {
      return; // not an event of the admin API: skipped, the stream goes on
    }
    if (!ended) handlers.onEvent(type, parsed);
  }

  return { close: () => end('closed') };
}

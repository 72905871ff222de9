// A server-sent events reader for tests: collects `event:`/`data:` pairs from a stream.

export interface SseEvent {
  event: string;
  data: unknown;
}

export interface SseStream {
  events: SseEvent[];
  /** Resolves once `count` events have arrived; rejects after timeoutMs, or once the server has ended the stream without them. */
  waitFor(count: number, timeoutMs?: number): Promise<SseEvent[]>;
  /** Whether the server has ended the stream (as it does after `resync` to a client that fell behind). */
  ended(): boolean;
  close(): void;
}

export async function openEvents(url: string, token: string): Promise<SseStream> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
  if (response.status !== 200 || !response.body) throw new Error(`events: HTTP ${response.status}`);
  const events: SseEvent[] = [];
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  let ended = false;
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          ended = true;
          return;
        }
        buffered += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffered.indexOf('\n\n')) !== -1) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const fields = Object.fromEntries(
            block
              .split('\n')
              .filter((l) => !l.startsWith(':'))
              .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
          );
          if (fields.event) events.push({ event: fields.event, data: JSON.parse(fields.data ?? 'null') });
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    events,
    waitFor: async (count, timeoutMs = 3000) => {
      const deadline = Date.now() + timeoutMs;
      while (events.length < count) {
        if (ended) throw new Error(`the stream ended after ${events.length} of ${count} events`);
        if (Date.now() > deadline) throw new Error(`got ${events.length} of ${count} events`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return events.slice(0, count);
    },
    ended: () => ended,
    close: () => controller.abort(),
  };
}

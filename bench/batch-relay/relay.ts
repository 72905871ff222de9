// The raw relay of the shared peerbench (node/forward.js: rewrite the ID, send it up on one
// connected socket, map the reply back) on batched UDP (udpbatch.c): one call into
// JavaScript per batch of datagrams, one sendmmsg per batch of replies. A measurement,
// like forward.js: sequential IDs, no question check.
//
//   node relay.js ADDON PORT UPSTREAM_PORT

import { createRequire } from 'node:module';

interface UdpBatch {
  open(bindPort: number, connectPort: number): object;
  start(socket: object, buffer: ArrayBuffer, meta: ArrayBuffer, onBatch: (count: number) => void): void;
  send(socket: object, buffer: ArrayBuffer, meta: ArrayBuffer, count: number): number;
}

const [addonPath, port, upstreamPort] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const addon = createRequire(import.meta.url)(addonPath) as UdpBatch;
const BATCH = 64;
const SLOT = 4096;

/** A socket's receive side: its datagrams land in `bytes` at i × SLOT; meta holds length, IPv4 address, port. */
function receiver() {
  const buffer = new ArrayBuffer(BATCH * SLOT);
  return { buffer, bytes: new Uint8Array(buffer), meta: new Int32Array(BATCH * 3) };
}

const client = addon.open(port, 0);
const upstream = addon.open(0, upstreamPort);
const fromClients = receiver();
const fromUpstream = receiver();
const toUpstream = new Int32Array(BATCH * 4); // offset, length, address, port (0: connected)
const toClients = new Int32Array(BATCH * 4);
const clientId = new Uint16Array(65536);
const clientPort = new Uint16Array(65536);
const clientAddress = new Int32Array(65536);
const waiting = new Uint8Array(65536);
let nextId = 0;

addon.start(client, fromClients.buffer, fromClients.meta.buffer, (count) => {
  const { bytes, meta } = fromClients;
  let out = 0;
  for (let i = 0; i < count; i++) {
    const length = meta[i * 3];
    const at = i * SLOT;
    if (length < 12) continue;
    const id = nextId;
    nextId = (nextId + 1) & 0xffff;
    clientId[id] = (bytes[at] << 8) | bytes[at + 1];
    clientAddress[id] = meta[i * 3 + 1];
    clientPort[id] = meta[i * 3 + 2];
    waiting[id] = 1;
    bytes[at] = id >> 8;
    bytes[at + 1] = id & 255;
    toUpstream[out * 4] = at;
    toUpstream[out * 4 + 1] = length;
    toUpstream[out * 4 + 2] = 0;
    toUpstream[out * 4 + 3] = 0;
    out++;
  }
  if (out > 0) addon.send(upstream, fromClients.buffer, toUpstream.buffer, out);
});

addon.start(upstream, fromUpstream.buffer, fromUpstream.meta.buffer, (count) => {
  const { bytes, meta } = fromUpstream;
  let out = 0;
  for (let i = 0; i < count; i++) {
    const length = meta[i * 3];
    const at = i * SLOT;
    if (length < 12) continue;
    const id = (bytes[at] << 8) | bytes[at + 1];
    if (!waiting[id]) continue;
    waiting[id] = 0;
    bytes[at] = clientId[id] >> 8;
    bytes[at + 1] = clientId[id] & 255;
    toClients[out * 4] = at;
    toClients[out * 4 + 1] = length;
    toClients[out * 4 + 2] = clientAddress[id];
    toClients[out * 4 + 3] = clientPort[id];
    out++;
  }
  if (out > 0) addon.send(client, fromUpstream.buffer, toClients.buffer, out);
});

process.stdout.write(`batch relay pid ${process.pid} on 127.0.0.1:${port} -> ${upstreamPort}\n`);

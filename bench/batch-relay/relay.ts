// The raw relay of the shared peerbench (node/forward.js: rewrite the ID, send it up,
// map the reply back) on divert's batched UDP addon (src/native/udp-batch.c, the socket
// of --udp-batch): one call into JavaScript per batch of datagrams, one sendmmsg per
// batch of replies. A measurement, like forward.js: sequential IDs, no question check.
//
//   node relay.js PORT UPSTREAM_PORT     (upstream on 127.0.0.1; the addon npm run build made)

import { loadUdpBatch } from '../../src/transport/udp-batch.js';

const [port, upstreamPort] = [Number(process.argv[2]), Number(process.argv[3])];
const addon = loadUdpBatch();
if (!addon) throw new Error('the udp-batch addon is not built (npm run build needs cc)');
const { BATCH, SLOT, NAME, TEXT } = addon;
const AF_INET = 2;

/** One socket's receive side, laid out as udp-batch.c writes it. */
function receiver() {
  return {
    data: Buffer.alloc(BATCH * SLOT),
    meta: new Int32Array(BATCH * 4), // length, port, address text length, name length
    names: Buffer.alloc(BATCH * NAME),
    text: Buffer.alloc(BATCH * TEXT),
  };
}

const client = addon.open('127.0.0.1', port);
const upstream = addon.open('127.0.0.1', 0);
// where queries go: a sockaddr_in for 127.0.0.1:upstreamPort (family in host order, port and address in network order)
const upstreamName = Buffer.alloc(NAME);
upstreamName.writeUInt16LE(AF_INET, 0);
upstreamName.writeUInt16BE(upstreamPort, 2);
upstreamName.set([127, 0, 0, 1], 4);
// each query's client, as the kernel gave its address: the name a reply is sent to, by upstream ID
const clientNames = Buffer.alloc(65536 * NAME);
const clientId = new Uint16Array(65536);
const waiting = new Uint8Array(65536);
const fromClients = receiver();
const fromUpstream = receiver();
const toUpstream = new Int32Array(BATCH * 3); // offset, length, name index
const toClients = new Int32Array(BATCH * 3);
let nextId = 0;

function relayed(out: Int32Array, k: number, at: number, length: number, name: number): number {
  out[k * 3] = at;
  out[k * 3 + 1] = length;
  out[k * 3 + 2] = name;
  return k + 1;
}

addon.start(client, fromClients.data, fromClients.meta, fromClients.names, fromClients.text, (count) => {
  const { data, meta, names } = fromClients;
  let k = 0;
  for (let i = 0; i < count; i++) {
    const length = meta[i * 4];
    const at = i * SLOT;
    if (length < 12) continue;
    const id = nextId;
    nextId = (nextId + 1) & 0xffff;
    clientId[id] = data.readUInt16BE(at);
    names.copy(clientNames, id * NAME, i * NAME, (i + 1) * NAME);
    waiting[id] = 1;
    data.writeUInt16BE(id, at);
    k = relayed(toUpstream, k, at, length, 0);
  }
  if (k > 0) addon.send(upstream, fromClients.data, toUpstream, upstreamName, k);
});

addon.start(upstream, fromUpstream.data, fromUpstream.meta, fromUpstream.names, fromUpstream.text, (count) => {
  const { data, meta } = fromUpstream;
  let k = 0;
  for (let i = 0; i < count; i++) {
    const length = meta[i * 4];
    const at = i * SLOT;
    if (length < 12) continue;
    const id = data.readUInt16BE(at);
    if (!waiting[id]) continue;
    waiting[id] = 0;
    data.writeUInt16BE(clientId[id], at);
    k = relayed(toClients, k, at, length, id);
  }
  if (k > 0) addon.send(client, fromUpstream.data, toClients, clientNames, k);
});

process.stdout.write(`batch relay pid ${process.pid} on 127.0.0.1:${port} -> ${upstreamPort}\n`);

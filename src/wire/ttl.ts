// The least TTL of a reply's records (answer, authority and additional, but not EDNS's
// OPT, whose "TTL" holds flags): how long DNS over HTTPS lets an HTTP cache keep the
// reply (RFC 8484 5.1). Walks the message without decoding it; a message it cannot walk
// has no TTL to give.

import { HEADER_BYTES, TYPE_OPT } from './header.js';

/** The offset just past the name at `pos` (a pointer ends it), or -1 when it runs off the end. */
function skipName(msg: Buffer, pos: number): number {
  while (pos < msg.length) {
    const len = msg[pos];
    if (len === 0) return pos + 1;
    if ((len & 0xc0) === 0xc0) return pos + 2 <= msg.length ? pos + 2 : -1;
    pos += 1 + len;
  }
  return -1;
}

export function minRecordTtl(msg: Buffer): number | undefined {
  if (msg.length < HEADER_BYTES) return undefined;
  const questions = msg.readUInt16BE(4);
  const records = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  let pos = HEADER_BYTES;
  for (let i = 0; i < questions; i++) {
    pos = skipName(msg, pos);
    if (pos === -1 || pos + 4 > msg.length) return undefined;
    pos += 4;
  }
  let least: number | undefined;
  for (let i = 0; i < records; i++) {
    pos = skipName(msg, pos);
    if (pos === -1 || pos + 10 > msg.length) return undefined;
    const type = msg.readUInt16BE(pos);
    const ttl = msg.readUInt32BE(pos + 4);
    pos += 10 + msg.readUInt16BE(pos + 8);
    if (pos > msg.length) return undefined;
    if (type !== TYPE_OPT && (least === undefined || ttl < least)) least = ttl;
  }
  return least;
}

// Byte-level DNS builders for tests that need exact control of a reply: record order,
// unknown types, odd flags. Names are written uncompressed.

export function encodeName(name: string): Buffer {
  const labels = name
    .replace(/\.$/, '')
    .split('.')
    .filter((l) => l !== '');
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

/** A 253-character name: the longest one that needs no escapes (255 octets on the wire, 250 of them in its 4 labels). */
export const LONGEST_NAME = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;

/** A recursive query (ID 0x4242) for a name given as its labels' octets, any octets at all. */
export function rawQuery(labels: readonly (Buffer | string)[], qtype = 1): Buffer {
  const header = Buffer.from([0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  const name = labels.map((l) => (typeof l === 'string' ? Buffer.from(l, 'latin1') : l)).flatMap((l) => [Buffer.from([l.length]), l]);
  return Buffer.concat([header, ...name, Buffer.from([0, qtype >> 8, qtype & 0xff, 0, 1])]);
}

export function rr(name: string, type: number, klass: number, ttl: number, rdata: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(klass, 2);
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([encodeName(name), fixed, rdata]);
}

export function ipv4(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

export interface RawReply {
  flags: number;
  answers?: Buffer[];
  authority?: Buffer[];
  additional?: Buffer[];
}

/** A reply to `query` (raw bytes): its ID and question copied, then the given sections. */
export function rawReply(query: Buffer, reply: RawReply): Buffer {
  let end = 12;
  while (query[end] !== 0) end += query[end] + 1;
  end += 5;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(reply.flags, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(reply.answers?.length ?? 0, 6);
  header.writeUInt16BE(reply.authority?.length ?? 0, 8);
  header.writeUInt16BE(reply.additional?.length ?? 0, 10);
  return Buffer.concat([
    header,
    query.subarray(12, end),
    ...(reply.answers ?? []),
    ...(reply.authority ?? []),
    ...(reply.additional ?? []),
  ]);
}

/** An OPT pseudo-record with the given options ([code, data] pairs). */
export function opt(udpPayload: number, flags: number, options: [number, Buffer][] = []): Buffer {
  const rdata = Buffer.concat(
    options.map(([code, data]) => {
      const head = Buffer.alloc(4);
      head.writeUInt16BE(code, 0);
      head.writeUInt16BE(data.length, 2);
      return Buffer.concat([head, data]);
    }),
  );
  const fixed = Buffer.alloc(11);
  fixed[0] = 0;
  fixed.writeUInt16BE(41, 1);
  fixed.writeUInt16BE(udpPayload, 3);
  fixed.writeUInt32BE(flags, 5);
  fixed.writeUInt16BE(rdata.length, 9);
  return Buffer.concat([fixed, rdata]);
}

export const FLAG = { QR: 0x8000, AA: 0x0400, TC: 0x0200, RD: 0x0100, RA: 0x0080, AD: 0x0020, CD: 0x0010 } as const;

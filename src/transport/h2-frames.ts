// HTTP/2's frames (RFC 9113 4 and 6) as the DoH server writes them, and the HPACK
// encoding of its responses' few headers. A response's header block uses the static
// table for every name it sends (RFC 7541 Appendix A) and plain literals that are never
// added to the dynamic table, so the server keeps no encoder state: when a client asks
// for a smaller table (SETTINGS_HEADER_TABLE_SIZE), the next block begins with a size
// update to 0, which is within any size it may ask for.

export const FRAME_HEADER = 9;
/** The largest frame either side sends unless the other allows more (SETTINGS_MAX_FRAME_SIZE's initial value). */
export const MAX_FRAME = 16_384;
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const DATA = 0x0;
export const HEADERS = 0x1;
export const PRIORITY = 0x2;
export const RST_STREAM = 0x3;
export const SETTINGS = 0x4;
export const PUSH_PROMISE = 0x5;
export const PING = 0x6;
export const GOAWAY = 0x7;
export const WINDOW_UPDATE = 0x8;
export const CONTINUATION = 0x9;

export const END_STREAM = 0x1;
export const ACK = 0x1;
export const END_HEADERS = 0x4;
export const PADDED = 0x8;
export const PRIORITY_FLAG = 0x20;

export const SETTINGS_HEADER_TABLE_SIZE = 0x1;
export const SETTINGS_ENABLE_PUSH = 0x2;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
export const SETTINGS_MAX_FRAME_SIZE = 0x5;
export const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

// error codes (RFC 9113 7)
export const NO_ERROR = 0x0;
export const PROTOCOL_ERROR = 0x1;
export const INTERNAL_ERROR = 0x2;
export const FLOW_CONTROL_ERROR = 0x3;
export const STREAM_CLOSED = 0x5;
export const FRAME_SIZE_ERROR = 0x6;
export const REFUSED_STREAM = 0x7;
export const COMPRESSION_ERROR = 0x9;
export const ENHANCE_YOUR_CALM = 0xb;

export const MAX_WINDOW = 0x7fff_ffff;

export function writeFrameHeader(into: Buffer, at: number, length: number, type: number, flags: number, stream: number): number {
  into[at] = length >>> 16;
  into[at + 1] = (length >>> 8) & 0xff;
  into[at + 2] = length & 0xff;
  into[at + 3] = type;
  into[at + 4] = flags;
  into.writeUInt32BE(stream, at + 5);
  return at + FRAME_HEADER;
}

export function frame(type: number, flags: number, stream: number, payload?: Buffer): Buffer {
  const length = payload?.length ?? 0;
  const out = Buffer.allocUnsafe(FRAME_HEADER + length);
  writeFrameHeader(out, 0, length, type, flags, stream);
  payload?.copy(out, FRAME_HEADER);
  return out;
}

export function settingsFrame(settings: readonly (readonly [number, number])[]): Buffer {
  const payload = Buffer.allocUnsafe(6 * settings.length);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(SETTINGS, 0, 0, payload);
}

/** A frame whose payload is one 32-bit number: RST_STREAM's error code, WINDOW_UPDATE's increment. */
export function word(type: number, stream: number, value: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER + 4);
  writeFrameHeader(out, 0, 4, type, 0, stream);
  out.writeUInt32BE(value, FRAME_HEADER);
  return out;
}

export function goawayFrame(lastStream: number, code: number): Buffer {
  const payload = Buffer.allocUnsafe(8);
  payload.writeUInt32BE(lastStream, 0);
  payload.writeUInt32BE(code, 4);
  return frame(GOAWAY, 0, 0, payload);
}

/** The static table's index of each name a response sends (RFC 7541 Appendix A). */
const STATIC_NAMES: Readonly<Record<string, number>> = {
  allow: 22,
  'cache-control': 24,
  'content-length': 28,
  'content-type': 31,
};
/** `:status` values the static table holds whole. */
const STATIC_STATUS: Readonly<Record<number, number>> = { 200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14 };
const STATUS_NAME = 8;

/** Octets of an HPACK integer with an N-bit prefix. */
function integerLength(value: number, prefixBits: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) return 1;
  let length = 2;
  for (let rest = value - max; rest >= 0x80; rest >>>= 7) length++;
  return length;
}

function writeInteger(into: Buffer, at: number, value: number, prefixBits: number, pattern: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    into[at] = pattern | value;
    return at + 1;
  }
  into[at++] = pattern | max;
  let rest = value - max;
  while (rest >= 0x80) {
    into[at++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  into[at] = rest;
  return at + 1;
}

const stringLength = (text: string): number => integerLength(text.length, 7) + text.length;

function writeString(into: Buffer, at: number, text: string): number {
  at = writeInteger(into, at, text.length, 7, 0);
  return at + into.write(text, at, 'latin1');
}

/** The octets of a response's header block: `:status`, then `fields` (name, value, name, value, …; names in lower case, latin1). */
export function headerBlockLength(status: number, fields: readonly string[], sizeUpdate: boolean): number {
  let length = (sizeUpdate ? 1 : 0) + (STATIC_STATUS[status] ? 1 : 1 + stringLength(String(status)));
  for (let i = 0; i < fields.length; i += 2) {
    const index = STATIC_NAMES[fields[i]];
    length += (index ? integerLength(index, 4) : 1 + stringLength(fields[i])) + stringLength(fields[i + 1]);
  }
  return length;
}

export function writeHeaderBlock(into: Buffer, at: number, status: number, fields: readonly string[], sizeUpdate: boolean): number {
  if (sizeUpdate) into[at++] = 0x20; // dynamic table size update to 0
  const indexed = STATIC_STATUS[status];
  if (indexed) into[at++] = 0x80 | indexed;
  else {
    into[at++] = STATUS_NAME; // literal without indexing, indexed name
    at = writeString(into, at, String(status));
  }
  for (let i = 0; i < fields.length; i += 2) {
    const index = STATIC_NAMES[fields[i]];
    if (index) at = writeInteger(into, at, index, 4, 0);
    else {
      into[at++] = 0; // literal without indexing, new name
      at = writeString(into, at, fields[i]);
    }
    at = writeString(into, at, fields[i + 1]);
  }
  return at;
}

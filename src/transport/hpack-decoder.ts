// HPACK (RFC 7541) decoding of a request's header block, for the DoH HTTP/2 server: the
// static and dynamic tables, integers, literal strings plain or Huffman-coded. Names and
// values are read as latin1 (one character per octet, so lengths are octet counts as
// HPACK's sizes are). A block that breaks the format is an error of the whole connection
// (its dynamic table can no longer be trusted); a header list over the size limit is
// decoded to its end all the same, so that the table stays in step, and reported as such.
//
// Why not a library: node:http2's own decoder (nghttp2) is reachable only through its
// per-stream objects, which are what this server exists to avoid; the npm packages that
// decode HPACK on their own (hpack.js and its forks) have not been kept up for years.

import { HUFFMAN_LENGTHS, STATIC_TABLE } from './hpack-tables.js';

/** What the block's headers are given to, one at a time. */
export type HeaderSink = (name: string, value: string) => void;

export type DecodeResult = 'ok' | 'too-large' | 'malformed';

const EOS = 256;
const NOTHING = Buffer.alloc(0);
const ENTRY_OVERHEAD = 32;

/** The canonical code's decoding tables: per length, its first code and where its symbols start. */
const firstCode = new Int32Array(32).fill(-1);
const firstIndex = new Int32Array(32);
const counts = new Int32Array(32);
const symbols = new Uint16Array(257);
{
  const order = HUFFMAN_LENGTHS.map((length, symbol) => ({ length, symbol })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  let code = 0;
  let previous = order[0].length;
  order.forEach(({ length, symbol }, i) => {
    if (i > 0) code = (code + 1) * 2 ** (length - previous);
    previous = length;
    if (firstCode[length] === -1) {
      firstCode[length] = code;
      firstIndex[length] = i;
    }
    counts[length]++;
    symbols[i] = symbol;
  });
}

/** The Huffman-coded octets `from`..`to` of `block` as latin1, or null when they are no valid coding. */
export function huffmanDecode(block: Buffer, from: number, to: number): string | null {
  let out = '';
  let code = 0;
  let length = 0;
  for (let at = from; at < to; at++) {
    const octet = block[at];
    for (let bit = 7; bit >= 0; bit--) {
      code = code * 2 + ((octet >> bit) & 1);
      length++;
      if (length > 30) return null;
      const first = firstCode[length];
      if (first !== -1 && code - first < counts[length] && code >= first) {
        const symbol = symbols[firstIndex[length] + code - first];
        if (symbol === EOS) return null; // RFC 7541 5.2: EOS inside a string is an error
        out += String.fromCharCode(symbol);
        code = 0;
        length = 0;
      }
    }
  }
  // padding: fewer than 8 bits, all ones (the start of EOS)
  if (length > 7 || code !== 2 ** length - 1) return null;
  return out;
}

export class HpackDecoder {
  /** Newest last. */
  private readonly dynamic: [string, string][] = [];
  private dynamicSize = 0;
  /** What a size update in the block may set: the table size this server announced. */
  private readonly maxTableSize: number;
  private tableSize: number;
  // the block being read
  private block: Buffer = NOTHING;
  private at = 0;
  private end = 0;

  constructor(maxTableSize = 4096) {
    this.maxTableSize = maxTableSize;
    this.tableSize = maxTableSize;
  }

  /** Decodes `block` whole, giving `sink` each header; 'too-large' when their list passes `maxListSize` (RFC 9113's size: name + value + 32 each). */
  decode(block: Buffer, maxListSize: number, sink: HeaderSink): DecodeResult {
    this.block = block;
    this.at = 0;
    this.end = block.length;
    const result = this.fields(maxListSize, sink);
    // the block is a view of the connection's last read: not kept while the connection idles
    this.block = NOTHING;
    return result;
  }

  private fields(maxListSize: number, sink: HeaderSink): DecodeResult {
    const block = this.block;
    let listSize = 0;
    let fields = 0;
    while (this.at < this.end) {
      const octet = block[this.at];
      let name: string;
      let value: string;
      if (octet & 0x80) {
        const index = this.integer(7);
        const entry = index > 0 ? this.entry(index) : undefined;
        if (!entry) return 'malformed';
        [name, value] = entry;
      } else if ((octet & 0xe0) === 0x20) {
        // a table size update: only before the block's first field
        const size = this.integer(5);
        if (fields > 0 || size < 0 || size > this.maxTableSize) return 'malformed';
        this.tableSize = size;
        this.evict(0);
        continue;
      } else {
        const indexing = (octet & 0xc0) === 0x40;
        const index = this.integer(indexing ? 6 : 4);
        // the name from a table (index > 0) or a literal (0), then the value's literal
        const named = index < 0 ? null : index > 0 ? (this.entry(index)?.[0] ?? null) : this.string();
        const literal = named === null ? null : this.string();
        if (named === null || literal === null) return 'malformed';
        name = named;
        value = literal;
        if (indexing) this.add(name, value);
      }
      fields++;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize <= maxListSize) sink(name, value);
    }
    return listSize > maxListSize ? 'too-large' : 'ok';
  }

  private entry(index: number): readonly [string, string] | undefined {
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
    return this.dynamic[this.dynamic.length - (index - STATIC_TABLE.length)];
  }

  private add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    this.evict(size);
    // an entry larger than the table empties it and is not kept (RFC 7541 4.4)
    if (size > this.tableSize) return;
    this.dynamic.push([name, value]);
    this.dynamicSize += size;
  }

  /** Drops the oldest entries until `room` more octets fit. */
  private evict(room: number): void {
    let drop = 0;
    while (drop < this.dynamic.length && this.dynamicSize + room > this.tableSize) {
      const [name, value] = this.dynamic[drop++];
      this.dynamicSize -= name.length + value.length + ENTRY_OVERHEAD;
    }
    if (drop > 0) this.dynamic.splice(0, drop);
  }

  /** An integer with an N-bit prefix (RFC 7541 5.1); -1 when it runs off the block or past 2^28. */
  private integer(prefixBits: number): number {
    const mask = (1 << prefixBits) - 1;
    let value = this.block[this.at++] & mask;
    if (value < mask) return value;
    for (let shift = 0; shift <= 21; shift += 7) {
      if (this.at >= this.end) return -1;
      const octet = this.block[this.at++];
      value += (octet & 0x7f) * 2 ** shift;
      if ((octet & 0x80) === 0) return value;
    }
    return -1;
  }

  /** A string literal (RFC 7541 5.2), or null when it is cut short or badly coded. */
  private string(): string | null {
    if (this.at >= this.end) return null;
    const huffman = (this.block[this.at] & 0x80) !== 0;
    const length = this.integer(7);
    if (length < 0 || this.at + length > this.end) return null;
    const from = this.at;
    this.at += length;
    return huffman ? huffmanDecode(this.block, from, this.at) : this.block.toString('latin1', from, this.at);
  }
}

// The text of a UDP client's address (what access lists, rate limits, rules and the query
// log take), made once per address instead of once per datagram: a direct-mapped cache
// from the address's bytes in the sockaddr the addon read to the text it wrote for them.
// A network's resolver hears from the same clients over and over; two addresses that
// share a slot only cost each other a string now and then.

/** Slots; a power of two. */
const SIZE = 4096;
const SHIFT = 32 - Math.log2(SIZE);
/** Per slot: the address's length in bytes (0: empty), then its four 32-bit words. */
const KEY = 5;
/** sizeof(struct sockaddr_in): shorter than sockaddr_in6's 28. */
const SOCKADDR_IN = 16;

export class AddressTexts {
  private readonly keys = new Int32Array(SIZE * KEY);
  private readonly texts: string[] = new Array<string>(SIZE).fill('');

  /**
   * `words`: the sockaddr as 32-bit words, this one starting at word `at` (4-byte aligned),
   * `nameLength` bytes long; `text[textAt, textAt + textLength)`: the address as the addon wrote it.
   */
  textOf(words: Int32Array, at: number, nameLength: number, text: Buffer, textAt: number, textLength: number): string {
    // sockaddr_in: the address is bytes 4-7; sockaddr_in6: bytes 8-23 (the port, flow and scope are not part of the text)
    const v4 = nameLength === SOCKADDR_IN;
    const w0 = v4 ? words[at + 1] : words[at + 2];
    const w1 = v4 ? 0 : words[at + 3];
    const w2 = v4 ? 0 : words[at + 4];
    const w3 = v4 ? 0 : words[at + 5];
    const length = v4 ? 4 : 16;
    const h = w0 ^ Math.imul(w1, 0x85ebca6b) ^ Math.imul(w2, 0xc2b2ae35) ^ Math.imul(w3, 0x27d4eb2f) ^ length;
    const slot = Math.imul(h, 0x9e3779b1) >>> SHIFT;
    const k = slot * KEY;
    const keys = this.keys;
    // the length too: with this hash an IPv4 address and the IPv6 address of its words and
    // zeros never share a slot (their hashes differ in bits the multiply carries to the top),
    // but no change of the hash may make them one address
    if (keys[k] === length && keys[k + 1] === w0 && keys[k + 2] === w1 && keys[k + 3] === w2 && keys[k + 4] === w3) {
      return this.texts[slot];
    }
    const made = text.toString('latin1', textAt, textAt + textLength);
    keys[k] = length;
    keys[k + 1] = w0;
    keys[k + 2] = w1;
    keys[k + 3] = w2;
    keys[k + 4] = w3;
    this.texts[slot] = made;
    return made;
  }
}

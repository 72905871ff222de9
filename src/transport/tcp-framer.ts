// RFC 1035 4.2.2 / RFC 7766 framing: a two-byte length before each message. Chunks
// arrive split anywhere (even inside the length) or with several messages at once.

export const MAX_TCP_MESSAGE = 0xffff;

export class TcpFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes needed before anything can be cut: a length, or a whole message. Chunks
   * are only joined once this many have arrived, so a message trickling in byte by
   * byte costs linear time, not quadratic. */
  private need = 2;

  /** Bytes received that do not yet form a whole message. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Feeds one chunk; returns the whole messages it completes, in order. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered < this.need) return [];
    let data = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    const messages: Buffer[] = [];
    let pos = 0;
    while (data.length - pos >= 2) {
      const length = data.readUInt16BE(pos);
      if (data.length - pos - 2 < length) break;
      messages.push(data.subarray(pos + 2, pos + 2 + length));
      pos += 2 + length;
    }
    data = data.subarray(pos);
    this.chunks = data.length > 0 ? [data] : [];
    this.buffered = data.length;
    this.need = data.length >= 2 ? 2 + data.readUInt16BE(0) : 2;
    return messages;
  }
}

/** The two-byte length prefix for `message`. */
export function lengthPrefix(message: Buffer): Buffer {
  const prefix = Buffer.allocUnsafe(2);
  prefix.writeUInt16BE(message.length, 0);
  return prefix;
}

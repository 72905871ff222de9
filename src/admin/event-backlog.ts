// The frames of /v1/events that some open stream has yet to send, held once for all of
// them: a stream is a position in it, so a burst of changes costs its bytes once, however
// many streams there are.

export class Backlog {
  private readonly frames: string[] = [];
  /** Bytes appended before each frame (its UTF-8 offset since start). */
  private readonly offsets: number[] = [];
  /** Frames at the front already forgotten, removed from the arrays in batches. */
  private start = 0;
  /** The sequence number of frames[0]. */
  private base = 0;
  private appended = 0;

  /** The sequence number the next frame gets: where a stream opened now starts. */
  get head(): number {
    return this.base + this.frames.length;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.start === this.frames.length ? 0 : this.appended - this.offsets[this.start];
  }

  append(frame: string): void {
    this.frames.push(frame);
    this.offsets.push(this.appended);
    this.appended += Buffer.byteLength(frame);
  }

  /** Bytes from `seq` to the head: what a stream at `seq` has not sent yet. */
  behind(seq: number): number {
    const i = seq - this.base;
    return i >= this.frames.length ? 0 : this.appended - this.offsets[i];
  }

  /** The frames from `seq` on, joined into one text of at most about `maxBytes` (one frame at least). */
  read(seq: number, maxBytes: number): { text: string; next: number } {
    let i = seq - this.base;
    const from = this.offsets[i];
    const end = (k: number) => (k + 1 < this.offsets.length ? this.offsets[k + 1] : this.appended);
    const parts: string[] = [];
    do parts.push(this.frames[i++]);
    while (i < this.frames.length && end(i) - from <= maxBytes);
    return { text: parts.join(''), next: this.base + i };
  }

  /** Forgets the frames before `seq` (every stream is past them). */
  trim(seq: number): void {
    this.start = Math.max(this.start, Math.min(seq - this.base, this.frames.length));
    // removing from the front moves what is left: only once it is the smaller part
    if (this.start === this.frames.length || (this.start > 1024 && this.start * 2 > this.frames.length)) {
      this.frames.splice(0, this.start);
      this.offsets.splice(0, this.start);
      this.base += this.start;
      this.start = 0;
    }
  }
}

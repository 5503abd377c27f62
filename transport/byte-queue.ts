/**
 * A FIFO of byte chunks as they arrive from a socket, read back in pieces of any size.
 *
 * TCP delivers bytes in arbitrary chunks: a frame may span several reads and one read may carry
 * several frames. Parsers push every chunk here and take whole frames out. Reads copy only when a
 * requested piece spans chunks, so large chunks cost no per-read concatenation.
 */
import { Fifo } from './fifo.js';

export class ByteQueue {
  private readonly chunks = new Fifo<Buffer>();
  private head = 0; // read offset into chunks[0]
  private size = 0;

  /** Bytes currently queued. */
  get length(): number {
    return this.size;
  }

  /** Appends a chunk (not copied: the caller must not mutate it afterwards). Empty chunks are ignored. */
  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.size += chunk.byteLength;
  }

  /**
   * The first `n` bytes without removing them, or `undefined` while fewer than `n` are queued.
   * The result may share memory with the queue: copy it before keeping it past the next `read`.
   */
  peek(n: number): Buffer | undefined {
    if (n > this.size) return undefined;
    const first = this.chunks.at(0);
    if (first === undefined) return Buffer.alloc(0);
    if (first.length - this.head >= n) return first.subarray(this.head, this.head + n);
    return this.gather(n, false);
  }

  /** Removes and returns the first `n` bytes, or `undefined` (and removes nothing) while fewer are queued. */
  read(n: number): Buffer | undefined {
    if (n > this.size) return undefined;
    const first = this.chunks.at(0);
    if (first === undefined) return Buffer.alloc(0);
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    return this.gather(n, true);
  }

  /**
   * Removes the first `n` bytes and returns them as views of the queued chunks, in order, without
   * copying (one view per chunk the bytes span; none for `n` = 0), or `undefined` (and removes
   * nothing) while fewer than `n` bytes are queued. The views share memory with the pushed chunks.
   */
  readViews(n: number): Buffer[] | undefined {
    if (n > this.size) return undefined;
    const views: Buffer[] = [];
    while (n > 0) {
      const view = this.shift(n) as Buffer;
      views.push(view);
      n -= view.length;
    }
    return views;
  }

  /**
   * Removes and returns up to `max` bytes from the first queued chunk, as a view (no copy), or
   * `undefined` when the queue is empty or `max` is 0. Lets a parser pass bytes on as they arrive.
   */
  shift(max: number): Buffer | undefined {
    const first = this.chunks.at(0);
    if (first === undefined || max <= 0) return undefined;
    const available = first.length - this.head;
    if (max >= available) {
      const out = this.head === 0 ? first : first.subarray(this.head);
      this.chunks.shift();
      this.head = 0;
      this.size -= available;
      return out;
    }
    const out = first.subarray(this.head, this.head + max);
    this.head += max;
    this.size -= max;
    return out;
  }

  /** Removes and returns everything queued as one Buffer. */
  readAll(): Buffer {
    return this.read(this.size) ?? Buffer.alloc(0);
  }

  /** Drops `n` queued bytes (at most what is queued). */
  skip(n: number): void {
    this.advance(Math.min(n, this.size));
  }

  /** Drops everything queued. */
  clear(): void {
    this.chunks.clear();
    this.head = 0;
    this.size = 0;
  }

  private gather(n: number, consume: boolean): Buffer {
    const out = Buffer.allocUnsafe(n);
    let copied = 0;
    let index = 0;
    let offset = this.head;
    while (copied < n) {
      const chunk = this.chunks.at(index++) as Buffer;
      const take = Math.min(chunk.length - offset, n - copied);
      chunk.copy(out, copied, offset, offset + take);
      copied += take;
      offset = 0;
    }
    if (consume) this.advance(n);
    return out;
  }

  private advance(n: number): void {
    this.size -= n;
    while (n > 0) {
      const first = this.chunks.at(0) as Buffer;
      const available = first.length - this.head;
      if (n < available) {
        this.head += n;
        return;
      }
      n -= available;
      this.chunks.shift();
      this.head = 0;
    }
  }
}

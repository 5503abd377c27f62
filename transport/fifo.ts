/**
 * A first-in, first-out queue over one array that keeps its capacity when it empties.
 *
 * Why not `push`/`shift` on a plain array: V8 may drop an array's backing store when `shift`
 * empties it, so a queue that fills and empties once per message (a ping, a pong) allocated a new
 * 17-slot store each time, and that store lived until the next message (10 s on an idle link):
 * long enough to be promoted, and at 10,000 connections a steady stream of old-generation garbage.
 */
export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  private tail = 0;

  /** Items queued. */
  get length(): number {
    return this.tail - this.head;
  }

  /** Appends `item`. Amortised O(1); the array is compacted when its free front outgrows the queue. */
  push(item: T): void {
    if (this.tail === this.items.length && this.head > 16 && this.head * 2 >= this.tail) {
      // Reuse the freed front instead of growing: move the queue to index 0.
      const items = this.items;
      items.copyWithin(0, this.head, this.tail);
      items.fill(undefined, this.tail - this.head, this.tail);
      this.tail -= this.head;
      this.head = 0;
    }
    this.items[this.tail++] = item;
  }

  /** Removes and returns the oldest item, or `undefined` when empty. */
  shift(): T | undefined {
    if (this.head === this.tail) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined; // let it go
    if (this.head === this.tail) this.head = this.tail = 0;
    return item;
  }

  /** The item `index` places from the oldest (0 = oldest), or `undefined` past the end. */
  at(index: number): T | undefined {
    return index >= 0 && index < this.tail - this.head ? this.items[this.head + index] : undefined;
  }

  /** Removes every item; the capacity is kept. */
  clear(): void {
    this.items.fill(undefined, this.head, this.tail);
    this.head = this.tail = 0;
  }
}

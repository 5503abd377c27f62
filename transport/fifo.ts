/**
 * A first-in, first-out queue: a ring buffer over one array that keeps its capacity when it
 * empties.
 *
 * Why not `push`/`shift` on a plain array: V8 may drop an array's backing store when `shift`
 * empties it, so a queue that fills and empties once per message (a ping, a pong) allocated a new
 * 17-slot store each time, and that store lived until the next message (10 s on an idle link):
 * long enough to be promoted, and at 10,000 connections a steady stream of old-generation garbage.
 *
 * Why a ring of its own size rather than an array grown by `push`: V8 grows an empty array to 17
 * slots at its first push (about 180 bytes), and a connection has five of these queues that hold
 * one item at a time. The ring starts at {@link FIFO_INITIAL_CAPACITY} slots and doubles when full.
 */

/** Slots of a new {@link Fifo}. */
export const FIFO_INITIAL_CAPACITY = 2;

/** A first-in, first-out queue of `T` (see the module doc): O(1) push, shift and `at`. */
export class Fifo<T> {
  private items: (T | undefined)[] = new Array<T | undefined>(FIFO_INITIAL_CAPACITY).fill(undefined);
  /** Index of the oldest item. */
  private head = 0;
  private count = 0;

  /** Items queued. */
  get length(): number {
    return this.count;
  }

  /** Appends `item`. Amortised O(1): a full ring doubles its capacity (the items keep their order). */
  push(item: T): void {
    const items = this.items;
    const capacity = items.length;
    if (this.count === capacity) {
      this.grow();
      this.push(item);
      return;
    }
    items[(this.head + this.count) % capacity] = item;
    this.count++;
  }

  /** Removes and returns the oldest item, or `undefined` when empty. */
  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const items = this.items;
    const item = items[this.head];
    items[this.head] = undefined; // let it go
    this.head = (this.head + 1) % items.length;
    this.count--;
    if (this.count === 0) this.head = 0;
    return item;
  }

  /** The item `index` places from the oldest (0 = oldest), or `undefined` past the end. */
  at(index: number): T | undefined {
    if (!(index >= 0 && index < this.count)) return undefined;
    return this.items[(this.head + index) % this.items.length];
  }

  /** Removes every item; the capacity is kept. */
  clear(): void {
    this.items.fill(undefined);
    this.head = this.count = 0;
  }

  private grow(): void {
    const old = this.items;
    const items = new Array<T | undefined>(old.length * 2).fill(undefined);
    for (let index = 0; index < this.count; index++) items[index] = old[(this.head + index) % old.length];
    this.items = items;
    this.head = 0;
  }
}

/**
 * Message batching (DESIGN §4, §6), the message codec and the bounded outbox (peerwarden issue 5).
 * Time is virtual throughout: RxJS's TestScheduler for marbles, the project's VirtualClock for
 * properties.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { EMPTY, Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { batch, DEFAULT_BATCH_OPTIONS } from '../streams/batch.js';
import { clockScheduler, VirtualClock } from '../streams/clock.js';
import { DEFAULT_OUTBOX_LIMITS, Outbox, OutboxFull } from '../streams/outbox.js';
import { PeerwardenError, ProtocolViolation } from '../transport/errors.js';
import { encodeMessages, MAX_MESSAGE_BYTES, MessageDecoder } from '../transport/message-codec.js';

function testScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));
}

describe('batch (marbles)', () => {
  it('has the DESIGN §6 defaults', () => {
    assert.deepEqual(DEFAULT_BATCH_OPTIONS, { maxBatch: 128, maxDelayMs: 50 });
  });

  it('flushes at exactly maxBatch items, in order, and flushes the partial batch on completion', () => {
    const scheduler = testScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const source = cold('-a-b-c-d--|');
      const expected = '-----x----(y|)';
      expectObservable(source.pipe(batch({ maxBatch: 3, maxDelayMs: 100 }, scheduler))).toBe(expected, {
        x: ['a', 'b', 'c'],
        y: ['d'],
      });
    });
  });

  it('flushes exactly maxDelayMs after the first item of a batch', () => {
    const scheduler = testScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      // a at 1 ms, b at 3 ms: the batch goes out at 1 + 10 = 11 ms.
      const source = cold('-a-b 20ms |');
      const expected = '- 10ms x 12ms |';
      expectObservable(source.pipe(batch({ maxBatch: 100, maxDelayMs: 10 }, scheduler))).toBe(expected, {
        x: ['a', 'b'],
      });
    });
  });

  it('starts the timer at the first item of each batch (a size flush cancels the old timer)', () => {
    const scheduler = testScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      // a, b fill a batch at 2 ms; c arrives at 4 ms and waits its own 10 ms, until 14 ms (not 11 ms).
      const source = cold('-ab-c 20ms |');
      const expected = '--x 11ms y 10ms |';
      expectObservable(source.pipe(batch({ maxBatch: 2, maxDelayMs: 10 }, scheduler))).toBe(expected, {
        x: ['a', 'b'],
        y: ['c'],
      });
    });
  });

  it('never emits an empty batch: quiet periods, an empty source and an item-less completion emit nothing', () => {
    const scheduler = testScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const options = { maxBatch: 4, maxDelayMs: 5 };
      expectObservable(cold('-a 30ms b 30ms |').pipe(batch(options, scheduler))).toBe('- 5ms x 30ms y 25ms |', {
        x: ['a'],
        y: ['b'],
      });
      expectObservable(cold('--------|').pipe(batch(options, scheduler))).toBe('--------|');
      expectObservable(EMPTY.pipe(batch(options, scheduler))).toBe('|');
      // A batch that was just flushed by size leaves nothing for completion.
      expectObservable(cold('-abcd|').pipe(batch(options, scheduler))).toBe('----x|', { x: ['a', 'b', 'c', 'd'] });
    });
  });

  it('emits the partial batch before a source error', () => {
    const scheduler = testScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      const failure = new Error('link lost');
      expectObservable(cold('-a-b-#', undefined, failure).pipe(batch({ maxBatch: 10, maxDelayMs: 50 }, scheduler))).toBe(
        '-----(x#)',
        { x: ['a', 'b'] },
        failure,
      );
    });
  });

  it('drops the partial batch and cancels its timer on unsubscribe', () => {
    const scheduler = testScheduler();
    scheduler.run(({ cold, expectObservable }) => {
      expectObservable(cold('-ab 30ms |').pipe(batch({ maxBatch: 10, maxDelayMs: 5 }, scheduler)), '---!').toBe('---');
    });
    const clock = new VirtualClock();
    const items = new Subject<number>();
    const seen: number[][] = [];
    const subscription = items.pipe(batch({ maxBatch: 10, maxDelayMs: 50 }, clockScheduler(clock))).subscribe((b) => seen.push(b));
    items.next(1);
    assert.equal(clock.pendingTimers, 1);
    subscription.unsubscribe();
    assert.equal(clock.pendingTimers, 0, 'no timer left behind');
    clock.advance(100);
    assert.deepEqual(seen, []);
  });

  it('rejects invalid options with RangeError', () => {
    const scheduler = clockScheduler(new VirtualClock());
    for (const options of [
      { maxBatch: 0, maxDelayMs: 50 },
      { maxBatch: 1.5, maxDelayMs: 50 },
      { maxBatch: 1, maxDelayMs: -1 },
      { maxBatch: 1, maxDelayMs: Number.NaN },
    ]) {
      assert.throws(() => batch(options, scheduler), RangeError);
    }
  });
});

describe('batch (properties, virtual time)', () => {
  it('keeps every item once and in order, with batches of 1..maxBatch items, and no item waits more than maxDelayMs', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 80 }), // gaps between items, ms
        fc.integer({ min: 0, max: 30 }), // quiet time before completion, ms
        (maxBatch, maxDelayMs, gaps, tail) => {
          const clock = new VirtualClock();
          const items = new Subject<number>();
          const arrivedAt: number[] = [];
          const batches: Array<{ items: number[]; at: number }> = [];
          let completedAt: number | undefined;
          items.pipe(batch({ maxBatch, maxDelayMs }, clockScheduler(clock))).subscribe({
            next: (b) => batches.push({ items: b, at: clock.now() }),
            complete: () => (completedAt = clock.now()),
          });
          gaps.forEach((gap, index) => {
            clock.advance(gap);
            arrivedAt.push(clock.now());
            items.next(index);
          });
          clock.advance(tail);
          items.complete();

          assert.equal(completedAt, clock.now());
          assert.deepEqual(
            batches.flatMap((b) => b.items),
            gaps.map((_, index) => index),
          );
          batches.forEach(({ items: group, at }, index) => {
            assert.ok(group.length >= 1 && group.length <= maxBatch, `batch size ${group.length}`);
            const first = group[0] as number;
            const last = group[group.length - 1] as number;
            for (const item of group) assert.ok(at - (arrivedAt[item] as number) <= maxDelayMs, `item ${item} waited too long`);
            // Why it went out: full at its last item's arrival, its timer exactly maxDelayMs after
            // the first item, or (only the last batch) completion.
            const full = group.length === maxBatch && at === arrivedAt[last];
            const timedOut = at === (arrivedAt[first] as number) + maxDelayMs;
            const completion = index === batches.length - 1 && at === completedAt;
            assert.ok(full || timedOut || completion, `batch ${index} went out at ${at} without a reason`);
          });
          assert.equal(clock.pendingTimers, 0);
        },
      ),
    );
  });
});

describe('message codec', () => {
  it('encodes records as u32 big-endian length || bytes', () => {
    const encoded = encodeMessages([Uint8Array.of(1, 2, 3), new Uint8Array(0), Uint8Array.of(0xff)]);
    assert.deepEqual([...encoded], [0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]);
    assert.equal(encodeMessages([]).length, 0);
  });

  it('round-trips any messages under any chunking (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (messages, cutSeeds) => {
          const encoded = encodeMessages(messages);
          const cuts = [...new Set(cutSeeds.map((seed) => seed % (encoded.length + 1)))].sort((a, b) => a - b);
          const decoder = new MessageDecoder();
          const decoded: Uint8Array[] = [];
          let from = 0;
          for (const to of [...cuts, encoded.length]) {
            decoded.push(...decoder.push(encoded.subarray(from, to)));
            from = to;
          }
          decoder.end();
          assert.deepEqual(decoded, messages);
          assert.equal(decoder.bufferedBytes, 0);
        },
      ),
    );
  });

  it('returns fresh copies that share no memory with the input chunks', () => {
    const encoded = encodeMessages([Uint8Array.of(7, 8, 9), Uint8Array.of(4)]);
    const decoder = new MessageDecoder();
    const [first, second] = decoder.push(encoded);
    encoded.fill(0);
    assert.deepEqual(first, Uint8Array.of(7, 8, 9));
    assert.deepEqual(second, Uint8Array.of(4));
    assert.notEqual(first?.buffer, encoded.buffer);
  });

  it('rejects an over-long record as soon as its header is in, without buffering more than the header', () => {
    const decoder = new MessageDecoder(100);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(101);
    for (const byte of header.subarray(0, 3)) assert.deepEqual(decoder.push(Uint8Array.of(byte)), []);
    assert.equal(decoder.bufferedBytes, 3);
    assert.throws(() => decoder.push(header.subarray(3)), ProtocolViolation);
    assert.equal(decoder.bufferedBytes, 0, 'nothing kept after the violation');
    // The decoder stays failed: the stream has lost framing.
    assert.throws(() => decoder.push(Uint8Array.of(0)), ProtocolViolation);
    assert.throws(() => decoder.end(), ProtocolViolation);

    // A record exactly at the limit is fine; one past it, sent with its body in the same chunk, is not kept.
    const atLimit = new MessageDecoder(100);
    assert.equal(atLimit.push(encodeMessages([new Uint8Array(100)]))[0]?.length, 100);
    const bigBody = Buffer.concat([header, new Uint8Array(101)]);
    assert.throws(() => atLimit.push(bigBody), ProtocolViolation);
    assert.equal(atLimit.bufferedBytes, 0);
  });

  it('rejects a header above the default 1 MiB limit, and accepts exactly 1 MiB', () => {
    assert.equal(MAX_MESSAGE_BYTES, 1024 * 1024);
    const decoder = new MessageDecoder();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_MESSAGE_BYTES + 1);
    assert.throws(() => decoder.push(header), (error: unknown) => error instanceof ProtocolViolation && error.code === 'PROTOCOL_VIOLATION');

    const exact = new MessageDecoder();
    const [message] = exact.push(encodeMessages([new Uint8Array(MAX_MESSAGE_BYTES).fill(5)]));
    assert.equal(message?.length, MAX_MESSAGE_BYTES);
    exact.end();
  });

  it('throws ProtocolViolation at end of stream when a record is cut short, and only then (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 50 }), { minLength: 1, maxLength: 10 }), fc.nat(), (messages, seed) => {
        const encoded = encodeMessages(messages);
        const cut = seed % (encoded.length + 1);
        const boundaries = new Set<number>([0]);
        let offset = 0;
        for (const message of messages) boundaries.add((offset += 4 + message.length));
        const decoder = new MessageDecoder();
        decoder.push(encoded.subarray(0, cut));
        if (boundaries.has(cut)) decoder.end();
        else {
          assert.ok(decoder.bufferedBytes > 0);
          assert.throws(() => decoder.end(), ProtocolViolation);
        }
      }),
    );
  });

  it('refuses to encode a message above MAX_MESSAGE_BYTES with RangeError', () => {
    assert.throws(() => encodeMessages([Uint8Array.of(1), new Uint8Array(MAX_MESSAGE_BYTES + 1)]), RangeError);
    assert.equal(encodeMessages([new Uint8Array(MAX_MESSAGE_BYTES)]).length, MAX_MESSAGE_BYTES + 4);
    assert.throws(() => new MessageDecoder(-1), RangeError);
    assert.throws(() => new MessageDecoder(1.5), RangeError);
  });
});

describe('Outbox', () => {
  it('defaults to 1024 messages and 8 MiB, and takes partial overrides', () => {
    assert.deepEqual(DEFAULT_OUTBOX_LIMITS, { maxMessages: 1024, maxBytes: 8 * 1024 * 1024 });
    assert.deepEqual(new Outbox('p').limits, DEFAULT_OUTBOX_LIMITS);
    assert.deepEqual(new Outbox('p', { maxMessages: 3 }).limits, { maxMessages: 3, maxBytes: 8 * 1024 * 1024 });
    assert.throws(() => new Outbox('p', { maxBytes: -1 }), RangeError);
    assert.throws(() => new Outbox('p', { maxMessages: Number.NaN }), RangeError);
  });

  it('accepts up to exactly maxMessages, then refuses with OutboxFull and leaves the queue unchanged', () => {
    const outbox = new Outbox('peer-a', { maxMessages: 3 });
    const messages = [Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3)];
    for (const message of messages) outbox.enqueue(message);
    assert.equal(outbox.size, 3);
    assert.throws(
      () => outbox.enqueue(Uint8Array.of(4)),
      (error: unknown) =>
        error instanceof OutboxFull &&
        error instanceof PeerwardenError &&
        error.code === 'OUTBOX_FULL' &&
        error.limit === 'messages' &&
        error.limitValue === 3 &&
        error.message.includes('peer-a') &&
        error.message.includes('3 messages'),
    );
    assert.equal(outbox.size, 3);
    assert.equal(outbox.bytes, 3);
    assert.deepEqual(outbox.drain(), messages);
  });

  it('accepts up to exactly maxBytes, then refuses with OutboxFull and leaves the queue unchanged', () => {
    const outbox = new Outbox('peer-b', { maxBytes: 10 });
    outbox.enqueue(new Uint8Array(4));
    outbox.enqueue(new Uint8Array(6));
    assert.equal(outbox.bytes, 10);
    assert.throws(
      () => outbox.enqueue(new Uint8Array(1)),
      (error: unknown) => error instanceof OutboxFull && error.limit === 'bytes' && error.message.includes('peer-b') && error.message.includes('10 bytes'),
    );
    assert.equal(outbox.size, 2);
    assert.equal(outbox.bytes, 10);
    outbox.enqueue(new Uint8Array(0)); // an empty message passes neither limit
    assert.equal(outbox.size, 3);
    assert.throws(() => new Outbox('peer-c', { maxBytes: 10 }).enqueue(new Uint8Array(11)), OutboxFull);
  });

  it('drains in order and is empty and reusable afterwards', () => {
    const outbox = new Outbox('peer-d', { maxMessages: 2 });
    outbox.enqueue(Uint8Array.of(1));
    outbox.enqueue(Uint8Array.of(2, 2));
    assert.deepEqual(outbox.drain(), [Uint8Array.of(1), Uint8Array.of(2, 2)]);
    assert.equal(outbox.size, 0);
    assert.equal(outbox.bytes, 0);
    assert.deepEqual(outbox.drain(), []);
    outbox.enqueue(Uint8Array.of(3));
    outbox.enqueue(Uint8Array.of(4));
    assert.deepEqual(outbox.drain(), [Uint8Array.of(3), Uint8Array.of(4)]);
  });

  it('behaves like a bounded FIFO model under random enqueue/drain sequences (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: 40 }),
        fc.array(fc.oneof(fc.uint8Array({ maxLength: 12 }), fc.constant('drain' as const)), { maxLength: 60 }),
        (maxMessages, maxBytes, operations) => {
          const outbox = new Outbox('peer', { maxMessages, maxBytes });
          let model: Uint8Array[] = [];
          for (const operation of operations) {
            if (operation === 'drain') {
              assert.deepEqual(outbox.drain(), model);
              model = [];
              continue;
            }
            const bytes = model.reduce((sum, m) => sum + m.length, 0);
            const fits = model.length + 1 <= maxMessages && bytes + operation.length <= maxBytes;
            if (fits) {
              outbox.enqueue(operation);
              model.push(operation);
            } else assert.throws(() => outbox.enqueue(operation), OutboxFull);
            assert.equal(outbox.size, model.length);
            assert.equal(outbox.bytes, model.reduce((sum, m) => sum + m.length, 0));
          }
          assert.deepEqual(outbox.drain(), model);
        },
      ),
    );
  });
});

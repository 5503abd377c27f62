/**
 * The array-backed FIFO of the transport's queues (transport/fifo.ts), model-based against a plain array.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FIFO_INITIAL_CAPACITY, Fifo } from '../transport/fifo.js';

type Op = { kind: 'push'; value: number } | { kind: 'shift' } | { kind: 'clear' } | { kind: 'at'; index: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.integer().map((value): Op => ({ kind: 'push', value })) },
  { weight: 4, arbitrary: fc.constant<Op>({ kind: 'shift' }) },
  { weight: 1, arbitrary: fc.constant<Op>({ kind: 'clear' }) },
  { weight: 2, arbitrary: fc.integer({ min: -2, max: 40 }).map((index): Op => ({ kind: 'at', index })) },
);

describe('Fifo', () => {
  it('behaves like an array used as a queue, for any sequence of operations (model-based property)', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 400 }), (ops) => {
        const fifo = new Fifo<number>();
        const model: number[] = [];
        for (const op of ops) {
          switch (op.kind) {
            case 'push':
              fifo.push(op.value);
              model.push(op.value);
              break;
            case 'shift':
              assert.equal(fifo.shift(), model.shift());
              break;
            case 'clear':
              fifo.clear();
              model.length = 0;
              break;
            case 'at':
              assert.equal(fifo.at(op.index), op.index >= 0 ? model[op.index] : undefined);
              break;
          }
          assert.equal(fifo.length, model.length);
        }
        assert.deepEqual(
          Array.from({ length: fifo.length }, (_, i) => fifo.at(i)),
          model,
        );
      }),
    );
  });

  it('keeps no reference to an item once it was shifted or cleared', () => {
    const fifo = new Fifo<object>();
    for (let i = 0; i < 100; i++) fifo.push({ i });
    for (let i = 0; i < 60; i++) fifo.shift();
    fifo.push({ late: true });
    const items = (fifo as unknown as { items: (object | undefined)[] }).items;
    assert.equal(items.filter((item) => item !== undefined).length, fifo.length);
    fifo.clear();
    assert.equal(items.filter((item) => item !== undefined).length, 0);
  });

  it('keeps its initial capacity while it never holds more, and the capacity it grew to once emptied', () => {
    const fifo = new Fifo<number>();
    const capacity = (): number => (fifo as unknown as { items: unknown[] }).items.length;
    for (let i = 0; i < 1_000; i++) {
      fifo.push(i);
      if (i % 2 === 1) fifo.push(-i);
      assert.equal(fifo.shift(), i);
      if (i % 2 === 1) assert.equal(fifo.shift(), -i);
    }
    assert.equal(capacity(), FIFO_INITIAL_CAPACITY);
    for (let i = 0; i < 100; i++) fifo.push(i);
    const grown = capacity();
    assert.ok(grown >= 100 && grown < 200, `capacity ${grown} after 100 items`);
    while (fifo.length > 0) fifo.shift();
    fifo.push(1);
    assert.equal(capacity(), grown);
  });
});

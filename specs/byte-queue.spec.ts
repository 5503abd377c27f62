/**
 * ByteQueue against a model (one growing Buffer): any sequence of pushes and reads of any size
 * gives the same bytes; the view-returning reads (`readViews`, `shift`) copy nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ByteQueue } from '../transport/byte-queue.js';

type Op =
  | { readonly kind: 'push'; readonly bytes: Uint8Array }
  | { readonly kind: 'read' | 'peek' | 'readViews' | 'shift' | 'skip'; readonly n: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('push' as const), bytes: fc.uint8Array({ maxLength: 40 }) }),
  fc.record({ kind: fc.constantFrom('read' as const, 'peek' as const, 'readViews' as const, 'shift' as const, 'skip' as const), n: fc.nat({ max: 60 }) }),
);

describe('ByteQueue', () => {
  it('behaves as one concatenated buffer under any pushes and reads', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const queue = new ByteQueue();
        let model = Buffer.alloc(0);
        for (const op of ops) {
          switch (op.kind) {
            case 'push':
              queue.push(op.bytes);
              model = Buffer.concat([model, op.bytes]);
              break;
            case 'read': {
              const out = queue.read(op.n);
              if (op.n > model.length) assert.equal(out, undefined);
              else {
                assert.deepEqual(out, model.subarray(0, op.n));
                model = model.subarray(op.n);
              }
              break;
            }
            case 'peek': {
              const out = queue.peek(op.n);
              if (op.n > model.length) assert.equal(out, undefined);
              else assert.deepEqual(out, model.subarray(0, op.n));
              break;
            }
            case 'readViews': {
              const out = queue.readViews(op.n);
              if (op.n > model.length) assert.equal(out, undefined);
              else {
                assert.ok(out !== undefined);
                for (const view of out) assert.ok(view.length > 0, 'no empty views');
                assert.deepEqual(Buffer.concat(out), model.subarray(0, op.n));
                model = model.subarray(op.n);
              }
              break;
            }
            case 'shift': {
              const out = queue.shift(op.n);
              if (model.length === 0 || op.n === 0) assert.equal(out, undefined);
              else {
                assert.ok(out !== undefined && out.length > 0 && out.length <= op.n);
                assert.deepEqual(out, model.subarray(0, out.length));
                model = model.subarray(out.length);
              }
              break;
            }
            case 'skip':
              queue.skip(op.n);
              model = model.subarray(Math.min(op.n, model.length));
              break;
          }
          assert.equal(queue.length, model.length);
        }
        assert.deepEqual(queue.readAll(), model);
      }),
      { numRuns: 500 },
    );
  });

  it('readViews and shift return views of the pushed chunks, not copies', () => {
    const queue = new ByteQueue();
    const a = Buffer.from('abcdef');
    const b = Buffer.from('ghij');
    queue.push(a);
    queue.push(b);
    const views = queue.readViews(8);
    assert.ok(views !== undefined);
    assert.deepEqual(
      views.map((view) => view.toString()),
      ['abcdef', 'gh'],
    );
    const rest = queue.shift(100);
    assert.equal(rest?.toString(), 'ij');
    // Writing the pushed chunks shows through the views: they share memory.
    a.write('A', 0);
    b.write('GHIJ', 0);
    assert.equal(views[0]?.toString(), 'Abcdef');
    assert.equal(views[1]?.toString(), 'GH');
    assert.equal(rest?.toString(), 'IJ');
    assert.equal(queue.length, 0);
    assert.equal(queue.shift(1), undefined);
    assert.deepEqual(queue.readViews(0), []);
  });
});

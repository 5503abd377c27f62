/**
 * withoutStack: errors raised from I/O callbacks carry no captured frames (Node's
 * `stream.destroy(error)` formats the stack at once), keep their type, code and message, and the
 * global stack limit is restored whatever happens.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionClosed, withoutStack } from '../transport/errors.js';

describe('withoutStack', () => {
  it('builds the error with no frames and the same type, code and message', () => {
    const error = withoutStack(() => new ConnectionClosed('connection closed'));
    assert.ok(error instanceof ConnectionClosed);
    assert.equal(error.code, new ConnectionClosed('x').code);
    assert.equal(error.message, 'connection closed');
    assert.equal(error.stack?.split('\n').length, 1, 'only the header line, no "at" frames');
    assert.ok(new ConnectionClosed('thrown to a caller').stack?.includes('\n    at '), 'other errors keep their stack');
  });

  it('restores Error.stackTraceLimit, also when the factory throws', () => {
    const before = Error.stackTraceLimit;
    assert.throws(
      () =>
        withoutStack(() => {
          throw new RangeError('bad');
        }),
      RangeError,
    );
    assert.equal(Error.stackTraceLimit, before);
  });
});

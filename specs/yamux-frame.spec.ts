/**
 * yamux frame header: encoding, decoding and validation (HashiCorp yamux spec.md, "Framing").
 * Pure unit specs, no network.
 */
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';

import { ProtocolViolation } from '../transport/errors.js';
import {
  Flag,
  FrameType,
  GoAwayCode,
  HEADER_LENGTH,
  KNOWN_FLAGS,
  MAX_UINT32,
  decodeHeader,
  encodeHeader,
} from '../transport/yamux/index.js';
import type { FrameHeaderInit } from '../transport/yamux/index.js';

const u32 = fc.integer({ min: 0, max: MAX_UINT32 });

/** Headers the spec allows: every type with flags and stream IDs that make sense for it. */
const validHeader: fc.Arbitrary<FrameHeaderInit> = fc.oneof(
  fc.record({
    type: fc.constantFrom(FrameType.Data, FrameType.WindowUpdate),
    flags: fc.integer({ min: 0, max: KNOWN_FLAGS }).filter((f) => (f & (Flag.SYN | Flag.ACK)) !== (Flag.SYN | Flag.ACK)),
    streamId: fc.integer({ min: 1, max: MAX_UINT32 }),
    length: u32,
  }),
  fc.record({
    type: fc.constant(FrameType.Ping),
    flags: fc.constantFrom(Flag.SYN, Flag.ACK),
    streamId: fc.constant(0),
    length: u32,
  }),
  fc.record({ type: fc.constant(FrameType.GoAway), flags: fc.constant(0), streamId: fc.constant(0), length: u32 }),
);

function raw(version: number, type: number, flags: number, streamId: number, length: number): Buffer {
  const out = Buffer.alloc(HEADER_LENGTH);
  out.writeUInt8(version, 0);
  out.writeUInt8(type, 1);
  out.writeUInt16BE(flags, 2);
  out.writeUInt32BE(streamId, 4);
  out.writeUInt32BE(length, 8);
  return out;
}

describe('yamux frame header', { timeout: 30_000 }, () => {
  it('encodes the 12-byte big-endian layout of spec.md', () => {
    const bytes = encodeHeader({ type: FrameType.WindowUpdate, flags: Flag.SYN | Flag.FIN, streamId: 0x01020304, length: 0x0a0b0c0d });
    assert.deepEqual([...bytes], [0, 1, 0x00, 0x05, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d]);
    assert.deepEqual(decodeHeader(bytes), { version: 0, type: 1, flags: 5, streamId: 0x01020304, length: 0x0a0b0c0d });
  });

  it('has the spec constants', () => {
    assert.deepEqual([FrameType.Data, FrameType.WindowUpdate, FrameType.Ping, FrameType.GoAway], [0, 1, 2, 3]);
    assert.deepEqual([Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST], [1, 2, 4, 8]);
    assert.deepEqual([GoAwayCode.Normal, GoAwayCode.ProtocolError, GoAwayCode.InternalError], [0, 1, 2]);
  });

  it('round-trips every valid header (property)', () => {
    fc.assert(
      fc.property(validHeader, (header) => {
        const bytes = encodeHeader(header);
        assert.equal(bytes.length, HEADER_LENGTH);
        assert.deepEqual(decodeHeader(bytes), { version: 0, ...header });
      }),
      { numRuns: 2_000 },
    );
  });

  it('decodes a header inside a larger, offset buffer', () => {
    const frame = Buffer.concat([Buffer.from([9, 9, 9]), encodeHeader({ type: FrameType.Data, flags: 0, streamId: 7, length: 3 }), Buffer.from('abc')]);
    assert.deepEqual(decodeHeader(frame.subarray(3)), { version: 0, type: 0, flags: 0, streamId: 7, length: 3 });
    assert.deepEqual(decodeHeader(new Uint8Array(frame.subarray(3))), { version: 0, type: 0, flags: 0, streamId: 7, length: 3 });
  });

  it('any 12 bytes either decode to a header that re-encodes identically, or raise ProtocolViolation (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: HEADER_LENGTH, maxLength: HEADER_LENGTH }), (bytes) => {
        let header;
        try {
          header = decodeHeader(bytes);
        } catch (error) {
          assert.ok(error instanceof ProtocolViolation, `unexpected ${String(error)}`);
          return;
        }
        assert.deepEqual([...encodeHeader(header)], [...bytes]);
      }),
      { numRuns: 5_000 },
    );
  });

  describe('rejects, with ProtocolViolation', () => {
    const cases: [string, Buffer][] = [
      ['a version other than 0', raw(1, FrameType.Data, 0, 1, 0)],
      ['an unknown type', raw(0, 4, 0, 1, 0)],
      ['type 0xff', raw(0, 0xff, 0, 1, 0)],
      ['unknown flag bits', raw(0, FrameType.Data, 0x10, 1, 0)],
      ['a Ping on a stream', raw(0, FrameType.Ping, Flag.SYN, 1, 0)],
      ['a Ping without SYN or ACK', raw(0, FrameType.Ping, 0, 0, 0)],
      ['a Ping with SYN and ACK', raw(0, FrameType.Ping, Flag.SYN | Flag.ACK, 0, 0)],
      ['a Ping with FIN', raw(0, FrameType.Ping, Flag.FIN, 0, 0)],
      ['a GoAway on a stream', raw(0, FrameType.GoAway, 0, 2, 0)],
      ['a GoAway with flags', raw(0, FrameType.GoAway, Flag.RST, 0, 0)],
      ['a Data frame on stream 0', raw(0, FrameType.Data, 0, 0, 5)],
      ['a WindowUpdate on stream 0', raw(0, FrameType.WindowUpdate, Flag.SYN, 0, 0)],
      ['SYN and ACK together', raw(0, FrameType.WindowUpdate, Flag.SYN | Flag.ACK, 1, 0)],
    ];
    for (const [name, bytes] of cases) {
      it(name, () => {
        assert.throws(() => decodeHeader(bytes), ProtocolViolation);
      });
    }
  });

  it('accepts GoAway codes beyond the three defined ones (left to the session)', () => {
    assert.equal(decodeHeader(raw(0, FrameType.GoAway, 0, 0, 7)).length, 7);
  });

  it('raises RangeError, not ProtocolViolation, for programming errors', () => {
    assert.throws(() => decodeHeader(Buffer.alloc(11)), RangeError);
    assert.throws(() => encodeHeader({ type: FrameType.Data, flags: 0, streamId: MAX_UINT32 + 1, length: 0 }), RangeError);
    assert.throws(() => encodeHeader({ type: FrameType.Data, flags: 0x1_0000, streamId: 1, length: 0 }), RangeError);
    assert.throws(() => encodeHeader({ type: FrameType.Data, flags: 0, streamId: 1, length: -1 }), RangeError);
    assert.throws(() => encodeHeader({ type: FrameType.Data, flags: 0, streamId: 1.5, length: 0 }), RangeError);
  });
});

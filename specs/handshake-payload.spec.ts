/**
 * Handshake payload encoding (round trip, strict decoding, compatibility) and peer ID text form.
 */
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IncompatiblePeer, ProtocolViolation } from '../transport/errors.js';
import {
  checkCompatibility,
  createNodeNonce,
  decodeHandshakePayload,
  encodeHandshakePayload,
  HANDSHAKE_PAYLOAD_FORMAT,
  MAX_LISTEN_ADDRESS_LENGTH,
  MAX_LISTEN_ADDRESSES,
  PROTOCOL_VERSION,
  type HandshakePayload,
} from '../transport/handshake-payload.js';
import { nobleCrypto } from '../transport/noise/crypto.js';
import {
  InvalidPeerId,
  isPeerId,
  parsePeerId,
  PEER_ID_LENGTH,
  peerIdFromPublicKey,
  publicKeyFromPeerId,
} from '../transport/peer-id.js';

const printableAscii = fc.integer({ min: 0x21, max: 0x7e }).map((code) => String.fromCharCode(code));
const address = fc.string({ unit: printableAscii, minLength: 1, maxLength: MAX_LISTEN_ADDRESS_LENGTH });

const payloadArbitrary: fc.Arbitrary<HandshakePayload> = fc.record({
  protocolVersion: fc.integer({ min: 0, max: 0xffff }),
  featureFlags: fc.nat({ max: 0xffff_ffff }),
  privacyFlags: fc.nat({ max: 0xffff_ffff }),
  nodeNonce: fc.uint8Array({ minLength: 8, maxLength: 8 }),
  listenAddresses: fc.array(address, { maxLength: MAX_LISTEN_ADDRESSES }),
});

function example(overrides: Partial<HandshakePayload> = {}): HandshakePayload {
  return {
    protocolVersion: PROTOCOL_VERSION,
    featureFlags: 0x8000_0001,
    privacyFlags: 0x2,
    nodeNonce: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8),
    listenAddresses: ['127.0.0.1:4001', '[::1]:4001'],
    ...overrides,
  };
}

const isProtocolViolation = (error: unknown): boolean => error instanceof ProtocolViolation;

describe('handshake payload', () => {
  it('encodes the documented big-endian layout', () => {
    const bytes = encodeHandshakePayload(example({ listenAddresses: ['a:1'] }));
    assert.equal(
      Buffer.from(bytes).toString('hex'),
      [
        '01', // format
        '0001', // protocol version
        '80000001', // feature flags
        '00000002', // privacy flags
        '0102030405060708', // node nonce
        '01', // one address
        '03', Buffer.from('a:1').toString('hex'),
      ].join(''),
    );
    assert.equal(bytes[0], HANDSHAKE_PAYLOAD_FORMAT);
  });

  it('round-trips every valid payload (fast-check)', () => {
    fc.assert(
      fc.property(payloadArbitrary, (payload) => {
        const decoded = decodeHandshakePayload(encodeHandshakePayload(payload));
        assert.deepEqual(decoded, { ...payload, listenAddresses: [...payload.listenAddresses] });
      }),
      { numRuns: 300 },
    );
  });

  it('ignores trailing bytes (forward compatibility)', () => {
    fc.assert(
      fc.property(payloadArbitrary, fc.uint8Array({ minLength: 1, maxLength: 64 }), (payload, extra) => {
        const encoded = encodeHandshakePayload(payload);
        const extended = new Uint8Array(encoded.length + extra.length);
        extended.set(encoded);
        extended.set(extra, encoded.length);
        assert.deepEqual(decodeHandshakePayload(extended), decodeHandshakePayload(encoded));
      }),
      { numRuns: 100 },
    );
  });

  it('rejects every truncation of a valid payload with ProtocolViolation (fast-check)', () => {
    fc.assert(
      fc.property(
        payloadArbitrary.filter((p) => p.listenAddresses.length > 0),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (payload, fraction) => {
          const encoded = encodeHandshakePayload(payload);
          const cut = Math.floor(fraction * encoded.length);
          assert.throws(() => decodeHandshakePayload(encoded.subarray(0, cut)), isProtocolViolation);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('only ever throws ProtocolViolation on random or mutated input (fast-check)', () => {
    const randomInput = fc.uint8Array({ maxLength: 300 });
    const mutatedValid = fc
      .tuple(payloadArbitrary, fc.nat(), fc.integer({ min: 0, max: 255 }))
      .map(([payload, position, value]) => {
        const bytes = encodeHandshakePayload(payload).slice();
        bytes[position % bytes.length] = value;
        return bytes;
      });
    fc.assert(
      fc.property(fc.oneof(randomInput, mutatedValid), (bytes) => {
        try {
          const decoded = decodeHandshakePayload(bytes);
          // Whatever decodes must be a valid payload that encodes again.
          encodeHandshakePayload(decoded);
        } catch (error) {
          assert.ok(isProtocolViolation(error), `threw ${String(error)}`);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('rejects specific malformed inputs with ProtocolViolation', () => {
    const valid = encodeHandshakePayload(example());
    const withByte = (index: number, value: number): Uint8Array => {
      const copy = valid.slice();
      copy[index] = value;
      return copy;
    };
    const cases: [string, Uint8Array][] = [
      ['empty', new Uint8Array(0)],
      ['unknown format', withByte(0, 0x02)],
      ['too many addresses', withByte(19, MAX_LISTEN_ADDRESSES + 1)],
      ['address count beyond the data', withByte(19, 3)],
      ['empty address', withByte(20, 0)],
      ['address longer than the data', withByte(20, 200)],
      ['control character in address', withByte(21, 0x0a)],
      ['space in address', withByte(21, 0x20)],
      ['non-ASCII byte in address', withByte(21, 0xc3)],
    ];
    for (const [name, bytes] of cases) assert.throws(() => decodeHandshakePayload(bytes), isProtocolViolation, name);
  });

  it('refuses to encode out-of-range fields with RangeError', () => {
    const cases: Partial<HandshakePayload>[] = [
      { protocolVersion: 0x1_0000 },
      { protocolVersion: -1 },
      { protocolVersion: 1.5 },
      { featureFlags: 2 ** 32 },
      { privacyFlags: -1 },
      { nodeNonce: new Uint8Array(7) },
      { listenAddresses: Array.from({ length: MAX_LISTEN_ADDRESSES + 1 }, () => 'a:1') },
      { listenAddresses: [''] },
      { listenAddresses: ['a'.repeat(MAX_LISTEN_ADDRESS_LENGTH + 1)] },
      { listenAddresses: ['host name:1'] },
      { listenAddresses: ['hôte:1'] },
    ];
    for (const overrides of cases) assert.throws(() => encodeHandshakePayload(example(overrides)), RangeError);
  });

  it('creates random 8-byte node nonces', () => {
    const a = createNodeNonce();
    assert.equal(a.length, 8);
    assert.notDeepEqual(a, createNodeNonce());
  });
});

describe('checkCompatibility', () => {
  it('accepts the same version with all required features', () => {
    checkCompatibility(example(), example({ featureFlags: 0b1011 }), 0b0011);
    checkCompatibility(example(), example({ featureFlags: 0xffff_ffff }), 0x8000_0000);
    checkCompatibility(example(), example({ featureFlags: 0 }));
  });

  it('throws IncompatiblePeer on another version or a missing feature', () => {
    assert.throws(() => checkCompatibility(example(), example({ protocolVersion: PROTOCOL_VERSION + 1 })), IncompatiblePeer);
    assert.throws(() => checkCompatibility(example(), example({ featureFlags: 0b01 }), 0b11), /0x00000002/);
    assert.throws(() => checkCompatibility(example(), example({ featureFlags: 0 }), 0x8000_0000), IncompatiblePeer);
  });

  it('holds exactly when the version matches and required ⊆ features (fast-check)', () => {
    fc.assert(
      fc.property(payloadArbitrary, payloadArbitrary, fc.nat({ max: 0xffff_ffff }), (local, remote, required) => {
        const expected = local.protocolVersion === remote.protocolVersion && (required & remote.featureFlags) >>> 0 === required;
        let ok = true;
        try {
          checkCompatibility(local, remote, required);
        } catch (error) {
          assert.ok(error instanceof IncompatiblePeer);
          ok = false;
        }
        assert.equal(ok, expected);
      }),
    );
  });
});

describe('peer ID', () => {
  it('is pw + lowercase unpadded base32 of the key (RFC 4648 §6)', () => {
    assert.equal(peerIdFromPublicKey(new Uint8Array(32)), 'pw' + 'a'.repeat(52));
    const key = Uint8Array.from({ length: 32 }, (_, i) => i);
    // RFC 4648 base32 of bytes 00 01 … 1f, lowercased, '====' padding dropped (computed independently).
    assert.equal(peerIdFromPublicKey(key), 'pwaaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq');
    assert.equal(peerIdFromPublicKey(key).length, PEER_ID_LENGTH);
  });

  it('round-trips every key and real X25519 keys (fast-check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (key) => {
        const id = peerIdFromPublicKey(key);
        assert.ok(isPeerId(id));
        assert.match(id, /^pw[a-z2-7]{52}$/);
        assert.deepEqual(publicKeyFromPeerId(id), key);
        assert.equal(parsePeerId(id), id);
      }),
      { numRuns: 300 },
    );
    const { publicKey } = nobleCrypto.generateKeyPair();
    assert.deepEqual(publicKeyFromPeerId(peerIdFromPublicKey(publicKey)), publicKey);
  });

  it('rejects malformed IDs with InvalidPeerId', () => {
    const valid = peerIdFromPublicKey(Uint8Array.from({ length: 32 }, (_, i) => i * 7));
    const malformed = [
      '',
      'pw',
      valid.slice(0, -1),
      valid + 'a',
      'xx' + valid.slice(2),
      'PW' + valid.slice(2),
      valid.toUpperCase(),
      valid.slice(0, 10) + '1' + valid.slice(11), // '1' is not in the base32 alphabet
      valid.slice(0, 10) + '=' + valid.slice(11),
      valid.slice(0, 10) + 'é' + valid.slice(11),
      valid.slice(0, -1) + 'b', // non-zero padding bits: not canonical
    ];
    for (const text of malformed) {
      assert.throws(() => publicKeyFromPeerId(text), InvalidPeerId, JSON.stringify(text));
      assert.equal(isPeerId(text), false, JSON.stringify(text));
    }
    assert.equal(isPeerId(42), false);
    assert.throws(() => peerIdFromPublicKey(new Uint8Array(31)), RangeError);
  });

  it('never accepts random text other than canonical IDs (fast-check)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (text) => {
        if (isPeerId(text)) assert.equal(peerIdFromPublicKey(publicKeyFromPeerId(text)), text);
        else assert.throws(() => publicKeyFromPeerId(text), InvalidPeerId);
      }),
      { numRuns: 300 },
    );
  });
});

/**
 * `nodeCrypto` (node:crypto) against `nobleCrypto` (@noble, the reference); both replay every
 * published Noise XX vector, alone and paired, in noise-vectors.spec.ts. Here: fast-check
 * cross-checks every primitive byte for byte, including tampering, low-order points and the
 * `output` / in-place rules of encrypt; and a full framed handshake runs between a nodeCrypto
 * peer and a nobleCrypto peer in both roles, over TCP on 127.0.0.1 and over an in-memory stream.
 */
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { ProtocolViolation } from '../transport/errors.js';
import { createNodeNonce, PROTOCOL_VERSION, type HandshakePayload } from '../transport/handshake-payload.js';
import type { CipherState } from '../transport/noise/cipher-state.js';
import {
  DH_LENGTH,
  HASH_LENGTH,
  MAX_NONCE,
  TAG_LENGTH,
  nobleCrypto,
  type KeyPair,
  type NoiseCrypto,
} from '../transport/noise/crypto.js';
import { handshakeInitiator, handshakeResponder, type HandshakeOptions } from '../transport/noise/handshake.js';
import { HandshakeState } from '../transport/noise/handshake-state.js';
import { defaultCrypto, nodeCrypto, nodeCryptoAvailable } from '../transport/noise/node-crypto.js';
import { peerIdFromPublicKey } from '../transport/peer-id.js';
import { tcpPair } from './support/sockets.js';

const IMPLEMENTATIONS: readonly (readonly [string, NoiseCrypto])[] = [
  ['nobleCrypto', nobleCrypto],
  ['nodeCrypto', nodeCrypto],
];
/** Every (initiator, responder) pairing of the two implementations. */
const PAIRINGS = IMPLEMENTATIONS.flatMap(([initiatorName, initiatorCrypto]) =>
  IMPLEMENTATIONS.map(([responderName, responderCrypto]) => ({ initiatorName, initiatorCrypto, responderName, responderCrypto })),
);

const EMPTY = new Uint8Array(0);

function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function isProtocolViolation(error: unknown): boolean {
  return error instanceof ProtocolViolation;
}

function isRangeError(error: unknown): boolean {
  return error instanceof RangeError;
}

function assertPlainBytes(value: Uint8Array, length: number, what: string): void {
  assert.equal(Object.getPrototypeOf(value), Uint8Array.prototype, `${what} is a plain Uint8Array, not a Buffer`);
  assert.equal(value.length, length, `${what} length`);
}

// The published vectors run through every pairing of the two implementations in noise-vectors.spec.ts.

// ---------------------------------------------------------------- availability

describe('nodeCryptoAvailable / defaultCrypto', () => {
  it('finds X25519 and chacha20-poly1305 in this Node (20.20) and caches the answer', () => {
    assert.equal(nodeCryptoAvailable(), true);
    assert.equal(nodeCryptoAvailable(), true);
  });

  it('defaultCrypto is nodeCrypto where it is available', () => {
    assert.equal(defaultCrypto, nodeCrypto);
  });

  it('RFC 7748 §6.1 X25519 vectors hold for both (private keys are raw, unclamped)', () => {
    const alice = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bob = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    for (const [name, crypto] of IMPLEMENTATIONS) {
      const alicePublic = crypto.publicKeyFromPrivateKey(alice);
      const bobPublic = crypto.publicKeyFromPrivateKey(bob);
      assert.equal(toHex(alicePublic), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', name);
      assert.equal(toHex(bobPublic), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f', name);
      const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
      assert.equal(toHex(crypto.dh(alice, bobPublic)), shared, name);
      assert.equal(toHex(crypto.dh(bob, alicePublic)), shared, name);
    }
  });
});

// ---------------------------------------------------------------- fast-check cross-checks

/** xorshift32 bytes from a seed: fast-check shrinks `length` and `seed`, not 70,000 separate bytes. */
function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed | 1; // xorshift32 must not start at 0
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = state & 0xff;
  }
  return out;
}

/** Byte strings of 0..max bytes, biased towards the block (64), tag (16) and Noise (65535) boundaries. */
function bytesUpTo(max: number): fc.Arbitrary<Uint8Array> {
  const boundaries = [0, 1, 15, 16, 17, 63, 64, 65, 65519, 65535, 70000].filter((length) => length <= max);
  const length = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max }), fc.constantFrom(...boundaries));
  return fc.tuple(length, fc.integer()).map(([n, seed]) => pseudoRandomBytes(n, seed));
}

const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const nonceArb = fc.oneof(
  fc.bigInt({ min: 0n, max: MAX_NONCE }),
  fc.constantFrom(0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, MAX_NONCE - 1n, MAX_NONCE),
);
const adArb = fc.oneof(fc.constant(EMPTY), fc.uint8Array({ maxLength: 96 }));
const plaintextArb = bytesUpTo(70_000);

/**
 * The well-known X25519 points of small order (order 1, 2, 4 or 8, including the non-canonical
 * encodings p-1, p, p+1), each also with bit 255 set, which X25519 ignores (RFC 7748 §5).
 * With any scalar they give the all-zero shared secret.
 */
const LOW_ORDER_POINTS: readonly Uint8Array[] = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
].flatMap((point) => {
  const highBit = hex(point);
  highBit[31] = (highBit[31] ?? 0) | 0x80;
  return [hex(point), highBit];
});

describe('ChaCha20-Poly1305: nodeCrypto == nobleCrypto', () => {
  it('encrypt agrees byte for byte; each decrypts what the other sealed (plaintexts 0..70,000 bytes)', () => {
    fc.assert(
      fc.property(key32, nonceArb, adArb, plaintextArb, (key, nonce, ad, plaintext) => {
        const byNoble = nobleCrypto.encrypt(key, nonce, ad, plaintext);
        const byNode = nodeCrypto.encrypt(key, nonce, ad, plaintext);
        assertPlainBytes(byNode, plaintext.length + TAG_LENGTH, 'node ciphertext');
        assert.equal(toHex(byNode), toHex(byNoble));
        const openedByNode = nodeCrypto.decrypt(key, nonce, ad, byNoble);
        assertPlainBytes(openedByNode, plaintext.length, 'node plaintext');
        assert.deepEqual(openedByNode, plaintext);
        assert.deepEqual(nobleCrypto.decrypt(key, nonce, ad, byNode), plaintext);
      }),
    );
  });

  it('honours `output`: written and returned, also in place and at an odd byte offset', () => {
    fc.assert(
      fc.property(key32, nonceArb, adArb, plaintextArb, (key, nonce, ad, plaintext) => {
        const expected = toHex(nobleCrypto.encrypt(key, nonce, ad, plaintext));
        const length = plaintext.length + TAG_LENGTH;

        const output = new Uint8Array(length);
        assert.equal(nodeCrypto.encrypt(key, nonce, ad, plaintext, output), output);
        assert.equal(toHex(output), expected);

        // In place: the plaintext is the front of the output buffer (how framing uses it).
        const inPlace = new Uint8Array(length);
        inPlace.set(plaintext);
        assert.equal(nodeCrypto.encrypt(key, nonce, ad, inPlace.subarray(0, plaintext.length), inPlace), inPlace);
        assert.equal(toHex(inPlace), expected);

        // An output view that starts at an odd offset of a larger buffer; the bytes around it stay untouched.
        const backing = new Uint8Array(length + 2).fill(0xa5);
        const view = backing.subarray(1, 1 + length);
        view.set(plaintext);
        assert.equal(nodeCrypto.encrypt(key, nonce, ad, view.subarray(0, plaintext.length), view), view);
        assert.equal(toHex(view), expected);
        assert.equal(backing[0], 0xa5);
        assert.equal(backing[length + 1], 0xa5);
      }),
    );
  });

  it('tampering with any byte of the ciphertext or tag is a ProtocolViolation in both', () => {
    fc.assert(
      fc.property(
        key32,
        nonceArb,
        adArb,
        plaintextArb,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        (key, nonce, ad, plaintext, position, mask, sealWithNode) => {
          const sealed = (sealWithNode ? nodeCrypto : nobleCrypto).encrypt(key, nonce, ad, plaintext);
          const index = position % sealed.length;
          sealed[index] = (sealed[index] ?? 0) ^ mask;
          assert.throws(() => nodeCrypto.decrypt(key, nonce, ad, sealed), isProtocolViolation);
          assert.throws(() => nobleCrypto.decrypt(key, nonce, ad, sealed), isProtocolViolation);
        },
      ),
    );
  });

  it('a wrong nonce, AD or key is a ProtocolViolation in both', () => {
    fc.assert(
      fc.property(key32, nonceArb, adArb, bytesUpTo(2000), fc.integer({ min: 0, max: 2 }), (key, nonce, ad, plaintext, what) => {
        const sealed = nodeCrypto.encrypt(key, nonce, ad, plaintext);
        let [openKey, openNonce, openAd] = [key, nonce, ad];
        if (what === 0) openNonce = nonce === MAX_NONCE ? 0n : nonce + 1n;
        else if (what === 1) openAd = Uint8Array.of(...ad, 0x00);
        else openKey = key.map((byte, index) => (index === 0 ? byte ^ 0x01 : byte));
        for (const [name, crypto] of IMPLEMENTATIONS) {
          assert.throws(() => crypto.decrypt(openKey, openNonce, openAd, sealed), isProtocolViolation, name);
        }
      }),
    );
  });

  it('a ciphertext shorter than the 16-byte tag is a ProtocolViolation in both', () => {
    fc.assert(
      fc.property(key32, nonceArb, fc.uint8Array({ maxLength: TAG_LENGTH - 1 }), (key, nonce, ciphertext) => {
        for (const [name, crypto] of IMPLEMENTATIONS) {
          assert.throws(() => crypto.decrypt(key, nonce, EMPTY, ciphertext), isProtocolViolation, name);
        }
      }),
    );
  });

  it('decrypt returns a fresh array that does not share memory with the ciphertext', () => {
    const key = new Uint8Array(32).fill(3);
    const sealed = nodeCrypto.encrypt(key, 5n, EMPTY, new TextEncoder().encode('fresh'));
    const copyOfSealed = sealed.slice();
    const opened = nodeCrypto.decrypt(key, 5n, EMPTY, sealed);
    assert.notEqual(opened.buffer, sealed.buffer);
    opened.fill(0);
    assert.deepEqual(sealed, copyOfSealed);
  });
});

describe('X25519: nodeCrypto == nobleCrypto', () => {
  it('publicKeyFromPrivateKey and dh agree for random raw scalars; DH is symmetric', () => {
    fc.assert(
      fc.property(key32, key32, (a, b) => {
        const publicA = nodeCrypto.publicKeyFromPrivateKey(a);
        const publicB = nodeCrypto.publicKeyFromPrivateKey(b);
        assertPlainBytes(publicA, DH_LENGTH, 'node public key');
        assert.deepEqual(publicA, nobleCrypto.publicKeyFromPrivateKey(a));
        assert.deepEqual(publicB, nobleCrypto.publicKeyFromPrivateKey(b));
        const shared = nodeCrypto.dh(a, publicB);
        assertPlainBytes(shared, DH_LENGTH, 'node shared secret');
        assert.deepEqual(shared, nobleCrypto.dh(a, publicB));
        assert.deepEqual(nodeCrypto.dh(b, publicA), shared);
      }),
      { numRuns: 50 },
    );
  });

  it('dh agrees on arbitrary 32-byte u-coordinates (twist points, bit 255 set, non-canonical)', () => {
    fc.assert(
      fc.property(key32, key32, (privateKey, u) => {
        assert.deepEqual(nodeCrypto.dh(privateKey, u), nobleCrypto.dh(privateKey, u));
      }),
      { numRuns: 50 },
    );
  });

  it('generateKeyPair gives 32-byte keys whose public half matches the private half in both', () => {
    for (let i = 0; i < 5; i++) {
      const pair = nodeCrypto.generateKeyPair();
      assertPlainBytes(pair.privateKey, DH_LENGTH, 'private key');
      assertPlainBytes(pair.publicKey, DH_LENGTH, 'public key');
      assert.deepEqual(pair.publicKey, nobleCrypto.publicKeyFromPrivateKey(pair.privateKey));
      const other = nobleCrypto.generateKeyPair();
      assert.deepEqual(nodeCrypto.dh(pair.privateKey, other.publicKey), nobleCrypto.dh(other.privateKey, pair.publicKey));
    }
    assert.notDeepEqual(nodeCrypto.generateKeyPair().privateKey, nodeCrypto.generateKeyPair().privateKey);
  });

  it('reuses key arrays (as handshakes do) and follows them when their bytes are overwritten in place', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(key32, key32), { minLength: 1, maxLength: 6 }), (steps) => {
        // One private and one public array, reused for every DH and rewritten between steps: a
        // KeyObject kept from an earlier content would give the earlier shared secret.
        const privateKey = new Uint8Array(DH_LENGTH);
        const publicKey = new Uint8Array(DH_LENGTH);
        for (const [scalar, otherScalar] of steps) {
          privateKey.set(scalar);
          publicKey.set(nobleCrypto.publicKeyFromPrivateKey(otherScalar));
          const expected = nobleCrypto.dh(scalar, publicKey);
          assert.deepEqual(nodeCrypto.dh(privateKey, publicKey), expected);
          assert.deepEqual(nodeCrypto.dh(privateKey, publicKey), expected, 'again, with both keys known');
          assert.deepEqual(nodeCrypto.publicKeyFromPrivateKey(privateKey), nobleCrypto.publicKeyFromPrivateKey(scalar));
        }
      }),
      { numRuns: 30 },
    );
  });

  it('a generated key pair works for many DH with the same arrays, and a low-order point is still refused after a good one', () => {
    const pair = nodeCrypto.generateKeyPair();
    const peer = nobleCrypto.generateKeyPair();
    const expected = nobleCrypto.dh(peer.privateKey, pair.publicKey);
    for (let i = 0; i < 3; i++) assert.deepEqual(nodeCrypto.dh(pair.privateKey, peer.publicKey), expected);
    const point = new Uint8Array(peer.publicKey);
    assert.deepEqual(nodeCrypto.dh(pair.privateKey, point), expected);
    point.set(LOW_ORDER_POINTS[0] as Uint8Array);
    assert.throws(() => nodeCrypto.dh(pair.privateKey, point), isProtocolViolation);
  });

  it(`rejects each of the ${LOW_ORDER_POINTS.length} low-order points with ProtocolViolation in both`, () => {
    fc.assert(
      fc.property(key32, fc.constantFrom(...LOW_ORDER_POINTS), (privateKey, point) => {
        for (const [name, crypto] of IMPLEMENTATIONS) {
          assert.throws(() => crypto.dh(privateKey, point), isProtocolViolation, `${name} ${toHex(point)}`);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('a public key that is not 32 bytes is a ProtocolViolation in both', () => {
    fc.assert(
      fc.property(
        key32,
        fc.uint8Array({ maxLength: 64 }).filter((bytes) => bytes.length !== DH_LENGTH),
        (privateKey, publicKey) => {
          for (const [name, crypto] of IMPLEMENTATIONS) {
            assert.throws(() => crypto.dh(privateKey, publicKey), isProtocolViolation, name);
          }
        },
      ),
    );
  });
});

describe('SHA-256 and the Noise HKDF: nodeCrypto == nobleCrypto', () => {
  it('hash agrees (0..70,000 bytes)', () => {
    fc.assert(
      fc.property(plaintextArb, (data) => {
        const digest = nodeCrypto.hash(data);
        assertPlainBytes(digest, HASH_LENGTH, 'node digest');
        assert.deepEqual(digest, nobleCrypto.hash(data));
      }),
    );
  });

  it('hkdf agrees for 2 and 3 outputs, with empty, 32-byte and other input key material', () => {
    const ikm = fc.oneof(fc.constant(EMPTY), key32, fc.uint8Array({ maxLength: 100 }));
    fc.assert(
      fc.property(key32, ikm, (chainingKey, inputKeyMaterial) => {
        const two = nodeCrypto.hkdf(chainingKey, inputKeyMaterial, 2);
        const three = nodeCrypto.hkdf(chainingKey, inputKeyMaterial, 3);
        assert.equal(two.length, 2);
        assert.equal(three.length, 3);
        for (const output of [...two, ...three]) assertPlainBytes(output, HASH_LENGTH, 'hkdf output');
        assert.deepEqual(two, nobleCrypto.hkdf(chainingKey, inputKeyMaterial, 2));
        assert.deepEqual(three, nobleCrypto.hkdf(chainingKey, inputKeyMaterial, 3));
        assert.deepEqual(three.slice(0, 2), two);
      }),
    );
  });
});

describe('error classes agree on bad local input', () => {
  const key = new Uint8Array(32).fill(9);
  const sealed = nobleCrypto.encrypt(key, 0n, EMPTY, new Uint8Array(5));
  const cases: readonly [string, (crypto: NoiseCrypto) => unknown, (error: unknown) => boolean][] = [
    ['publicKeyFromPrivateKey, 31-byte key', (c) => c.publicKeyFromPrivateKey(new Uint8Array(31)), isRangeError],
    ['publicKeyFromPrivateKey, 33-byte key', (c) => c.publicKeyFromPrivateKey(new Uint8Array(33)), isRangeError],
    ['dh, 31-byte private key', (c) => c.dh(new Uint8Array(31), nobleCrypto.publicKeyFromPrivateKey(key)), isProtocolViolation],
    ['encrypt, 31-byte key', (c) => c.encrypt(new Uint8Array(31), 0n, EMPTY, new Uint8Array(5)), isRangeError],
    ['encrypt, 33-byte key', (c) => c.encrypt(new Uint8Array(33), 0n, EMPTY, new Uint8Array(5)), isRangeError],
    ['encrypt, output one byte short', (c) => c.encrypt(key, 0n, EMPTY, new Uint8Array(5), new Uint8Array(20)), isRangeError],
    ['encrypt, output one byte long', (c) => c.encrypt(key, 0n, EMPTY, new Uint8Array(5), new Uint8Array(22)), isRangeError],
    ['decrypt, 31-byte key', (c) => c.decrypt(new Uint8Array(31), 0n, EMPTY, sealed), isProtocolViolation],
  ];
  for (const [name, call, check] of cases) {
    it(name, () => {
      for (const [implementation, crypto] of IMPLEMENTATIONS) assert.throws(() => call(crypto), check, implementation);
    });
  }

  it('a failed encrypt into `output` leaves it untouched', () => {
    const output = new Uint8Array(20).fill(7);
    assert.throws(() => nodeCrypto.encrypt(key, 0n, EMPTY, new Uint8Array(5), output), isRangeError);
    assert.deepEqual(output, new Uint8Array(20).fill(7));
  });
});

// ---------------------------------------------------------------- handshakes across implementations

describe('HandshakeState across implementations', () => {
  it('a flipped bit in message 2 or 3 is a ProtocolViolation whichever side uses node:crypto', () => {
    fc.assert(
      fc.property(fc.constantFrom(...PAIRINGS), fc.constantFrom(1, 2), fc.nat(), (pairing, tampered, position) => {
        const initiator = new HandshakeState({
          initiator: true,
          staticKeyPair: pairing.initiatorCrypto.generateKeyPair(),
          crypto: pairing.initiatorCrypto,
        });
        const responder = new HandshakeState({
          initiator: false,
          staticKeyPair: pairing.responderCrypto.generateKeyPair(),
          crypto: pairing.responderCrypto,
        });
        for (let i = 0; i <= tampered; i++) {
          const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
          const message = writer.writeMessage(new TextEncoder().encode(`payload ${i}`));
          if (i < tampered) {
            reader.readMessage(message);
            continue;
          }
          const index = position % message.length;
          message[index] = (message[index] ?? 0) ^ 0x01;
          assert.throws(() => reader.readMessage(message), isProtocolViolation);
        }
      }),
      { numRuns: 40 },
    );
  });
});

function handshakePayload(): HandshakePayload {
  return {
    protocolVersion: PROTOCOL_VERSION,
    featureFlags: 0b11,
    privacyFlags: 0,
    nodeNonce: createNodeNonce(),
    listenAddresses: ['127.0.0.1:4001'],
  };
}

function handshakeOptions(crypto: NoiseCrypto, staticKeyPair: KeyPair, expected?: KeyPair): HandshakeOptions {
  return {
    staticKeyPair,
    payload: handshakePayload(),
    crypto,
    ...(expected === undefined ? {} : { expectedPeerId: peerIdFromPublicKey(expected.publicKey) }),
  };
}

/** A connected in-memory Duplex pair that delivers every write one byte per chunk. */
function bytewiseDuplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const make = (index: number): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        const peer = sides[1 - index] as Duplex;
        for (let i = 0; i < chunk.length; i++) peer.push(chunk.subarray(i, i + 1));
        callback();
      },
      final(callback) {
        (sides[1 - index] as Duplex).push(null);
        callback();
      },
    });
  sides.push(make(0), make(1));
  return [sides[0] as Duplex, sides[1] as Duplex];
}

interface StreamPair {
  client: Duplex;
  server: Duplex;
  close: () => Promise<void>;
}

const TRANSPORTS: readonly (readonly [string, () => Promise<StreamPair>])[] = [
  ['TCP on 127.0.0.1', tcpPair],
  [
    'an in-memory Duplex pair, one byte per chunk',
    () => {
      const [client, server] = bytewiseDuplexPair();
      return Promise.resolve({
        client,
        server,
        close: () => {
          client.destroy();
          server.destroy();
          return Promise.resolve();
        },
      });
    },
  ],
];

/** Sends `payload` through `send` (in place into a frame buffer, as framing does) and opens it with `receive`. */
function roundTrip(send: CipherState, receive: CipherState, payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(payload.length + TAG_LENGTH);
  frame.set(payload);
  const sealed = send.encryptWithAd(EMPTY, frame.subarray(0, payload.length), frame);
  return receive.decryptWithAd(EMPTY, sealed);
}

describe('framed XX handshake between nodeCrypto and nobleCrypto', () => {
  const crossed = PAIRINGS.filter((pairing) => pairing.initiatorCrypto !== pairing.responderCrypto);
  for (const [transportName, connect] of TRANSPORTS) {
    for (const { initiatorName, initiatorCrypto, responderName, responderCrypto } of crossed) {
      it(`${initiatorName} initiator, ${responderName} responder, over ${transportName}`, async () => {
        const { client, server, close } = await connect();
        try {
          const initiatorKeys = initiatorCrypto.generateKeyPair();
          const responderKeys = responderCrypto.generateKeyPair();
          const [dialer, listener] = await Promise.all([
            handshakeInitiator(client, handshakeOptions(initiatorCrypto, initiatorKeys, responderKeys)),
            handshakeResponder(server, handshakeOptions(responderCrypto, responderKeys, initiatorKeys)),
          ]);
          assert.equal(dialer.remotePeerId, peerIdFromPublicKey(responderKeys.publicKey));
          assert.equal(listener.remotePeerId, peerIdFromPublicKey(initiatorKeys.publicKey));
          assert.deepEqual(dialer.handshakeHash, listener.handshakeHash);
          assert.equal(dialer.leftover.length, 0);
          assert.equal(listener.leftover.length, 0);

          // Transport messages both ways, up to the largest payload a 65535-byte Noise message holds.
          const largest = 65535 - TAG_LENGTH;
          for (const length of [0, 1, 64, 1000, largest]) {
            const payload = pseudoRandomBytes(length, length + 1);
            assert.deepEqual(roundTrip(dialer.send, listener.receive, payload), payload);
            assert.deepEqual(roundTrip(listener.send, dialer.receive, payload), payload);
          }
        } finally {
          await close();
        }
      });
    }
  }
});

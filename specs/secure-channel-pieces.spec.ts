/**
 * The secure channel's zero-copy data path: ChaCha20-Poly1305 over bytes given in pieces
 * (`nodeCrypto.encryptPieces` / `decryptPieces`, `CipherState.*PiecesWithAd`) and a SecureChannel
 * on node:crypto fed a wire cut at arbitrary points, so frames span socket reads.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PeerwardenError, ProtocolViolation } from '../transport/errors.js';
import { createNodeNonce, PROTOCOL_VERSION } from '../transport/handshake-payload.js';
import { CipherState } from '../transport/noise/cipher-state.js';
import { MAX_NONCE, nobleCrypto, TAG_LENGTH, type NoiseCrypto } from '../transport/noise/crypto.js';
import type { HandshakeResult } from '../transport/noise/handshake.js';
import { nodeCrypto } from '../transport/noise/node-crypto.js';
import { peerIdFromPublicKey } from '../transport/peer-id.js';
import { FRAME_LENGTH_BYTES, MAX_FRAME_CIPHERTEXT, MAX_FRAME_PLAINTEXT, SecureChannel } from '../transport/secure-channel.js';

const EMPTY = new Uint8Array(0);

/** `bytes` cut at `cuts` (positions taken modulo the length, duplicates and ends allowed: empty pieces too). */
function split(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => (bytes.length === 0 ? 0 : cut % (bytes.length + 1))))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let start = 0;
  for (const point of points) {
    pieces.push(bytes.subarray(start, point));
    start = point;
  }
  pieces.push(bytes.subarray(start));
  return pieces;
}

function concat(pieces: readonly Uint8Array[]): Buffer {
  return Buffer.concat(pieces);
}

const nonceArb = fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: MAX_NONCE - 1n }));
const plaintextArb = fc.oneof({ arbitrary: fc.uint8Array({ maxLength: 300 }), weight: 4 }, { arbitrary: fc.uint8Array({ minLength: 60_000, maxLength: 70_000 }), weight: 1 });
const cutsArb = fc.array(fc.nat({ max: 80_000 }), { maxLength: 6 });

describe('ChaCha20-Poly1305 over pieces (nodeCrypto.encryptPieces / decryptPieces)', () => {
  it('sealing pieces gives the bytes of sealing the whole (nobleCrypto), for any split, AD and nonce; opening any split gives them back', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), nonceArb, fc.uint8Array({ maxLength: 40 }), plaintextArb, cutsArb, cutsArb, (key, nonce, ad, plaintext, cuts, cuts2) => {
        const expected = nobleCrypto.encrypt(key, nonce, ad, plaintext);
        const sealed = concat(nodeCrypto.encryptPieces(key, nonce, ad, split(plaintext, cuts)));
        assert.deepEqual(new Uint8Array(sealed), expected);
        const opened = concat(nodeCrypto.decryptPieces(key, nonce, ad, split(sealed, cuts2)));
        assert.deepEqual(new Uint8Array(opened), plaintext);
      }),
      { numRuns: 150 },
    );
  });

  it('a flipped bit anywhere, the tag split across pieces or not, is a ProtocolViolation', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), fc.integer({ min: 0, max: 7 }), cutsArb, (plaintext, at, bit, cuts) => {
        const key = new Uint8Array(32).fill(9);
        const sealed = Buffer.from(nobleCrypto.encrypt(key, 3n, EMPTY, plaintext));
        const index = at % sealed.length;
        sealed[index] = (sealed[index] ?? 0) ^ (1 << bit);
        // Cuts near the end put the tag in several pieces.
        const pieces = split(sealed, [...cuts, sealed.length - 1 - (at % TAG_LENGTH)]);
        assert.throws(() => nodeCrypto.decryptPieces(key, 3n, EMPTY, pieces), ProtocolViolation);
      }),
      { numRuns: 300 },
    );
  });

  it('fewer than 16 bytes is a ProtocolViolation; a key that is not 32 bytes is a RangeError when sealing', () => {
    const key = new Uint8Array(32);
    assert.throws(() => nodeCrypto.decryptPieces(key, 0n, EMPTY, [new Uint8Array(7), new Uint8Array(8)]), ProtocolViolation);
    assert.throws(() => nodeCrypto.decryptPieces(key, 0n, EMPTY, []), ProtocolViolation);
    assert.throws(() => nodeCrypto.encryptPieces(new Uint8Array(31), 0n, EMPTY, [new Uint8Array(1)]), RangeError);
  });

  it('opened pieces are fresh memory: overwriting the ciphertext afterwards changes nothing', () => {
    const key = randomBytes(32);
    const plaintext = randomBytes(5000);
    const sealed = Buffer.from(nobleCrypto.encrypt(key, 1n, EMPTY, plaintext));
    const opened = nodeCrypto.decryptPieces(key, 1n, EMPTY, split(sealed, [100, 4000]));
    sealed.fill(0);
    assert.deepEqual(concat(opened), plaintext);
  });
});

describe('CipherState over pieces', () => {
  for (const [name, crypto] of [
    ['nodeCrypto', nodeCrypto],
    ['nobleCrypto (concatenating fallback)', nobleCrypto],
  ] as [string, NoiseCrypto][]) {
    it(`${name}: same bytes as EncryptWithAd/DecryptWithAd, nonce advancing by one per call`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.array(plaintextArb, { minLength: 1, maxLength: 3 }), cutsArb, (key, messages, cuts) => {
          const whole = new CipherState(nobleCrypto, key);
          const sender = new CipherState(crypto, key);
          const receiver = new CipherState(crypto, key);
          for (const message of messages) {
            const expected = whole.encryptWithAd(EMPTY, message);
            const sealed = concat(sender.encryptPiecesWithAd(EMPTY, split(message, cuts)));
            assert.deepEqual(new Uint8Array(sealed), expected);
            assert.deepEqual(new Uint8Array(concat(receiver.decryptPiecesWithAd(EMPTY, split(sealed, cuts)))), message);
          }
          assert.equal(sender.nonce, BigInt(messages.length));
          assert.equal(receiver.nonce, BigInt(messages.length));
        }),
        { numRuns: 50 },
      );
    });
  }

  it('a failed decrypt leaves the nonce unchanged; the reserved nonce refuses; without a key pieces pass through', () => {
    const key = randomBytes(32);
    const receiver = new CipherState(nodeCrypto, key);
    const bad = Buffer.from(new CipherState(nodeCrypto, key).encryptWithAd(EMPTY, Buffer.from('hello')));
    bad[0] = (bad[0] ?? 0) ^ 1;
    assert.throws(() => receiver.decryptPiecesWithAd(EMPTY, [bad.subarray(0, 3), bad.subarray(3)]), ProtocolViolation);
    assert.equal(receiver.nonce, 0n);

    receiver.setNonce(MAX_NONCE);
    assert.throws(
      () => receiver.encryptPiecesWithAd(EMPTY, [Buffer.from('x')]),
      (error: unknown) => error instanceof PeerwardenError && error.code === 'NONCE_EXHAUSTED',
    );

    const keyless = new CipherState(nodeCrypto);
    const pieces = [Buffer.from('a'), new Uint8Array([98])];
    assert.deepEqual(concat(keyless.encryptPiecesWithAd(EMPTY, pieces)), Buffer.from('ab'));
    assert.deepEqual(concat(keyless.decryptPiecesWithAd(EMPTY, pieces)), Buffer.from('ab'));
  });
});

/** A socket stand-in: records what the channel writes (one entry per write or writev), delivers what `send` gives it. */
class WireSocket extends Duplex {
  readonly batches: Buffer[][] = [];

  constructor() {
    super({ allowHalfOpen: true });
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.batches.push([chunk]);
    callback();
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    this.batches.push(chunks.map((entry) => entry.chunk));
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    callback();
  }

  /** Every byte written so far. */
  wire(): Buffer {
    return Buffer.concat(this.batches.flat());
  }

  send(chunk: Uint8Array): void {
    this.push(chunk);
  }
}

function handshake(key: Uint8Array, direction: 'send' | 'receive'): HandshakeResult {
  const publicKey = new Uint8Array(32).fill(7);
  const cipher = new CipherState(nodeCrypto, key);
  return {
    remotePeerId: peerIdFromPublicKey(publicKey),
    remotePublicKey: publicKey,
    remotePayload: { protocolVersion: PROTOCOL_VERSION, featureFlags: 0, privacyFlags: 0, nodeNonce: createNodeNonce(), listenAddresses: [] },
    send: direction === 'send' ? cipher : new CipherState(nodeCrypto, key),
    receive: direction === 'receive' ? cipher : new CipherState(nodeCrypto, key),
    handshakeHash: new Uint8Array(32),
    leftover: Buffer.alloc(0),
  };
}

/** The frame lengths (ciphertext + tag) on a wire. */
function frameLengths(wire: Buffer): number[] {
  const lengths: number[] = [];
  let offset = 0;
  while (offset < wire.length) {
    const length = wire.readUInt16BE(offset);
    lengths.push(length);
    offset += FRAME_LENGTH_BYTES + length;
  }
  assert.equal(offset, wire.length, 'the wire ends on a frame boundary');
  return lengths;
}

/**
 * Writes each group of `groups` through a sending channel, corked (so its messages share frames),
 * waiting for one group's write before the next; ends the channel. The wire bytes.
 */
async function sealGroups(key: Uint8Array, groups: readonly (readonly Uint8Array[])[]): Promise<{ wire: Buffer; socket: WireSocket }> {
  const socket = new WireSocket();
  const channel = new SecureChannel(socket, handshake(key, 'send'));
  for (const group of groups) {
    channel.cork();
    let written: Promise<void> = Promise.resolve();
    for (const message of group) written = new Promise<void>((resolve) => channel.write(message, () => resolve()));
    channel.uncork();
    await written;
  }
  const finished = once(channel, 'finish');
  channel.end();
  await finished;
  const wire = socket.wire();
  channel.destroy();
  return { wire, socket };
}

function seal(key: Uint8Array, messages: readonly Uint8Array[]): Promise<{ wire: Buffer; socket: WireSocket }> {
  return sealGroups(key, [messages]);
}

/** Feeds `chunks` to a receiving channel and collects what it delivers until the end or an error. */
async function open(key: Uint8Array, chunks: readonly Uint8Array[]): Promise<{ data: Buffer; error: Error | undefined }> {
  const socket = new WireSocket();
  const channel = new SecureChannel(socket, handshake(key, 'receive'));
  const received: Buffer[] = [];
  channel.on('data', (chunk: Buffer) => received.push(chunk));
  const outcome = new Promise<Error | undefined>((resolve) => {
    channel.once('end', () => resolve(undefined));
    channel.once('error', (error: Error) => resolve(error));
  });
  for (const chunk of chunks) socket.send(chunk);
  socket.push(null);
  const error = await outcome;
  channel.destroy();
  return { data: Buffer.concat(received), error };
}

describe('SecureChannel on node:crypto, frames spanning socket reads', () => {
  it('delivers every byte intact whatever the points the wire is cut at', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof({ arbitrary: fc.uint8Array({ maxLength: 100 }), weight: 3 }, { arbitrary: fc.uint8Array({ minLength: 1000, maxLength: 150_000 }), weight: 1 }), { maxLength: 6 }),
        fc.array(fc.nat({ max: 400_000 }), { maxLength: 12 }),
        async (messages, cuts) => {
          const key = randomBytes(32);
          const { wire } = await seal(key, messages);
          const { data, error } = await open(key, split(wire, cuts));
          assert.equal(error, undefined);
          assert.deepEqual(data, concat(messages));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('fails with ProtocolViolation, delivering nothing of it, on a corrupted frame that spans reads', async () => {
    const key = randomBytes(32);
    const first = randomBytes(1000);
    const second = randomBytes(100_000);
    // Frames: [first] (1,018 bytes on the wire), then `second` in 65,519 + 34,481 plaintext bytes.
    const { wire } = await sealGroups(key, [[first], [second]]);
    assert.deepEqual(frameLengths(wire), [1000 + TAG_LENGTH, MAX_FRAME_CIPHERTEXT, 34_481 + TAG_LENGTH]);
    const corrupt = Buffer.from(wire);
    const inThirdFrame = FRAME_LENGTH_BYTES + 1000 + TAG_LENGTH + FRAME_LENGTH_BYTES + MAX_FRAME_CIPHERTEXT + 5_000;
    corrupt[inThirdFrame] = (corrupt[inThirdFrame] ?? 0) ^ 0x10;
    const { data, error } = await open(key, split(corrupt, [10, 60_000, inThirdFrame - 1, inThirdFrame + 1, 90_000]));
    assert.ok(error instanceof ProtocolViolation, String(error));
    // Only whole authenticated frames came out: the first message and the first frame of the second.
    assert.deepEqual(data, Buffer.concat([first, second.subarray(0, MAX_FRAME_PLAINTEXT)]));
  });

  it('puts a small write into one buffer, 1,000 small writes of one tick into one frame, and a large write into full frames', async () => {
    const key = randomBytes(32);
    const { wire: pingWire, socket: pingSocket } = await seal(key, [Buffer.from('ping')]);
    assert.deepEqual(frameLengths(pingWire), [4 + TAG_LENGTH]);
    assert.deepEqual(
      pingSocket.batches.map((batch) => batch.length),
      [1],
      'one write of one buffer',
    );

    const small = Array.from({ length: 1000 }, (_, index) => Buffer.from(`message ${index};`));
    const { wire: smallWire } = await seal(key, small);
    assert.deepEqual(frameLengths(smallWire), [concat(small).length + TAG_LENGTH]);

    const large = randomBytes(3 * MAX_FRAME_PLAINTEXT + 5);
    const { wire: largeWire, socket } = await seal(key, [large]);
    assert.deepEqual(frameLengths(largeWire), [MAX_FRAME_CIPHERTEXT, MAX_FRAME_CIPHERTEXT, MAX_FRAME_CIPHERTEXT, 5 + TAG_LENGTH]);
    assert.equal(socket.batches.length, 1, 'the frames of one batch leave in one writev');
    const { data } = await open(key, [largeWire]);
    assert.deepEqual(data, large);
  });
});

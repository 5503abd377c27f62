/**
 * Noise XX: CipherState nonce rules, HandshakeState error handling (fast-check), and the framed
 * handshake over real TCP sockets on 127.0.0.1 and over an in-memory stream with controlled chunking.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf as rfc5869Hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { getEventListeners, once } from 'node:events';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import {
  ConnectionClosed,
  HandshakeTimeout,
  IncompatiblePeer,
  PeerIdMismatch,
  PeerwardenError,
  ProtocolViolation,
  SelfConnection,
} from '../transport/errors.js';
import { createNodeNonce, encodeHandshakePayload, PROTOCOL_VERSION, type HandshakePayload } from '../transport/handshake-payload.js';
import { CipherState } from '../transport/noise/cipher-state.js';
import { MAX_NONCE, nobleCrypto, type KeyPair } from '../transport/noise/crypto.js';
import {
  DEFAULT_PROLOGUE,
  handshakeInitiator,
  handshakeResponder,
  type HandshakeOptions,
  type HandshakeResult,
} from '../transport/noise/handshake.js';
import { HandshakeState, MAX_NOISE_MESSAGE_LENGTH } from '../transport/noise/handshake-state.js';
import { peerIdFromPublicKey } from '../transport/peer-id.js';
import { tcpPair } from './support/sockets.js';

const EMPTY = new Uint8Array(0);
const key = (fill: number): Uint8Array => new Uint8Array(32).fill(fill);
const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

function isProtocolViolation(error: unknown): boolean {
  return error instanceof ProtocolViolation;
}

function isNonceExhausted(error: unknown): boolean {
  return error instanceof PeerwardenError && error.code === 'NONCE_EXHAUSTED';
}

/** Two HandshakeStates, run through `upTo` of the three XX messages with the given payloads. */
function statePair(upTo = 0, payloads: Uint8Array[] = [EMPTY, EMPTY, EMPTY]) {
  const initiator = new HandshakeState({ initiator: true, staticKeyPair: nobleCrypto.generateKeyPair(), prologue: DEFAULT_PROLOGUE });
  const responder = new HandshakeState({ initiator: false, staticKeyPair: nobleCrypto.generateKeyPair(), prologue: DEFAULT_PROLOGUE });
  for (let i = 0; i < upTo; i++) {
    const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
    reader.readMessage(writer.writeMessage(payloads[i] ?? EMPTY));
  }
  return { initiator, responder };
}

function flip(message: Uint8Array, index: number): Uint8Array {
  const copy = message.slice();
  copy[index] = (copy[index] ?? 0) ^ 0x01;
  return copy;
}

describe('CipherState', () => {
  it('encodes the nonce as 4 zero bytes + u64 little-endian (Noise §12.3)', () => {
    const cipher = new CipherState(nobleCrypto, key(7));
    cipher.setNonce(0x0102030405060708n);
    const ciphertext = cipher.encryptWithAd(bytes('ad'), bytes('hello'));
    const nonce = Uint8Array.of(0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1);
    assert.deepEqual(ciphertext, chacha20poly1305(key(7), nonce, bytes('ad')).encrypt(bytes('hello')));
    assert.equal(cipher.nonce, 0x0102030405060709n);
  });

  it('carries the nonce across the 32-bit boundary: 2^32-1, then 2^32, each used as the u64 it is', () => {
    const cipher = new CipherState(nobleCrypto, key(9));
    cipher.setNonce(0xffff_ffffn);
    const first = cipher.encryptWithAd(bytes('ad'), bytes('a'));
    assert.equal(cipher.nonce, 0x1_0000_0000n);
    const second = cipher.encryptWithAd(bytes('ad'), bytes('b'));
    assert.equal(cipher.nonce, 0x1_0000_0001n);
    assert.deepEqual(first, chacha20poly1305(key(9), Uint8Array.of(0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0), bytes('ad')).encrypt(bytes('a')));
    assert.deepEqual(second, chacha20poly1305(key(9), Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0), bytes('ad')).encrypt(bytes('b')));
    const receiver = new CipherState(nobleCrypto, key(9));
    receiver.setNonce(0xffff_ffffn);
    assert.deepEqual(receiver.decryptWithAd(bytes('ad'), first), bytes('a'));
    assert.deepEqual(receiver.decryptWithAd(bytes('ad'), second), bytes('b'));
    assert.equal(receiver.nonce, 0x1_0000_0001n);
  });

  it('increments the nonce per message and decrypts in order', () => {
    const sender = new CipherState(nobleCrypto, key(1));
    const receiver = new CipherState(nobleCrypto, key(1));
    for (let i = 0; i < 3; i++) {
      const ciphertext = sender.encryptWithAd(EMPTY, bytes(`message ${i}`));
      assert.equal(ciphertext.length, bytes(`message ${i}`).length + 16);
      assert.deepEqual(receiver.decryptWithAd(EMPTY, ciphertext), bytes(`message ${i}`));
    }
    assert.equal(sender.nonce, 3n);
    assert.equal(receiver.nonce, 3n);
  });

  it('passes plaintext through while it has no key (Noise §5.1)', () => {
    const cipher = new CipherState(nobleCrypto);
    assert.equal(cipher.hasKey(), false);
    assert.deepEqual(cipher.encryptWithAd(EMPTY, bytes('x')), bytes('x'));
    assert.equal(cipher.nonce, 0n);
  });

  it('rejects a tampered tag, ciphertext, ad or a replay with ProtocolViolation, keeping the nonce', () => {
    const sender = new CipherState(nobleCrypto, key(2));
    const receiver = new CipherState(nobleCrypto, key(2));
    const ciphertext = sender.encryptWithAd(bytes('ad'), bytes('payload'));
    assert.throws(() => receiver.decryptWithAd(bytes('ad'), flip(ciphertext, ciphertext.length - 1)), isProtocolViolation);
    assert.throws(() => receiver.decryptWithAd(bytes('ad'), flip(ciphertext, 0)), isProtocolViolation);
    assert.throws(() => receiver.decryptWithAd(bytes('da'), ciphertext), isProtocolViolation);
    assert.throws(() => receiver.decryptWithAd(bytes('ad'), ciphertext.subarray(0, 15)), isProtocolViolation);
    assert.equal(receiver.nonce, 0n, 'a failed decrypt does not advance the nonce');
    assert.deepEqual(receiver.decryptWithAd(bytes('ad'), ciphertext), bytes('payload'));
    assert.throws(() => receiver.decryptWithAd(bytes('ad'), ciphertext), isProtocolViolation, 'replay');
  });

  it('refuses to use nonce 2^64-1 (Noise §5.1)', () => {
    const sender = new CipherState(nobleCrypto, key(3));
    const receiver = new CipherState(nobleCrypto, key(3));
    sender.setNonce(MAX_NONCE - 1n);
    receiver.setNonce(MAX_NONCE - 1n);
    const last = sender.encryptWithAd(EMPTY, bytes('last'));
    assert.deepEqual(receiver.decryptWithAd(EMPTY, last), bytes('last'));
    assert.equal(sender.nonce, MAX_NONCE);
    assert.throws(() => sender.encryptWithAd(EMPTY, bytes('one more')), isNonceExhausted);
    assert.throws(() => receiver.decryptWithAd(EMPTY, last), isNonceExhausted);
    assert.throws(() => sender.setNonce(MAX_NONCE + 1n), RangeError);
    assert.throws(() => sender.setNonce(-1n), RangeError);
  });

  it('rekeys both sides in step (Noise §4.2 REKEY)', () => {
    const sender = new CipherState(nobleCrypto, key(4));
    const receiver = new CipherState(nobleCrypto, key(4));
    const plain = new CipherState(nobleCrypto, key(4));
    sender.rekey();
    receiver.rekey();
    const ciphertext = sender.encryptWithAd(EMPTY, bytes('after rekey'));
    assert.notDeepEqual(ciphertext, plain.encryptWithAd(EMPTY, bytes('after rekey')));
    assert.deepEqual(receiver.decryptWithAd(EMPTY, ciphertext), bytes('after rekey'));
  });

  it('HKDF matches RFC 5869 with salt = chaining key and empty info (Noise §4.3)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 64 }), (ck, ikm) => {
        const [a, b] = nobleCrypto.hkdf(ck, ikm, 2);
        const [c, d, e] = nobleCrypto.hkdf(ck, ikm, 3);
        const reference = rfc5869Hkdf(sha256, ikm, ck, EMPTY, 96);
        assert.deepEqual([a, b], [reference.subarray(0, 32), reference.subarray(32, 64)]);
        assert.deepEqual([c, d, e], [reference.subarray(0, 32), reference.subarray(32, 64), reference.subarray(64, 96)]);
      }),
      { numRuns: 50 },
    );
  });
});

describe('HandshakeState (XX)', () => {
  it('completes, agrees on the handshake hash and splits into matching ciphers', () => {
    const { initiator, responder } = statePair(3, [EMPTY, bytes('from responder'), bytes('from initiator')]);
    assert.ok(initiator.isComplete && responder.isComplete);
    assert.deepEqual(initiator.getHandshakeHash(), responder.getHandshakeHash());
    const a = initiator.split();
    const b = responder.split();
    assert.deepEqual(b.receive.decryptWithAd(EMPTY, a.send.encryptWithAd(EMPTY, bytes('i→r'))), bytes('i→r'));
    assert.deepEqual(a.receive.decryptWithAd(EMPTY, b.send.encryptWithAd(EMPTY, bytes('r→i'))), bytes('r→i'));
    assert.throws(() => initiator.split(), /only once/);
  });

  it('rejects truncated messages with ProtocolViolation (32, 96 and 64 bytes minimum)', () => {
    const minimum = [32, 96, 64];
    for (let index = 0; index < 3; index++) {
      const { initiator, responder } = statePair(index);
      const [writer, reader] = index % 2 === 0 ? [initiator, responder] : [responder, initiator];
      const message = writer.writeMessage(EMPTY);
      assert.equal(message.length, minimum[index]);
      for (const length of [0, 1, message.length - 1]) {
        const fresh = statePair(index);
        const freshReader = index % 2 === 0 ? fresh.responder : fresh.initiator;
        assert.throws(() => freshReader.readMessage(message.subarray(0, length)), isProtocolViolation, `message ${index + 1}, ${length} bytes`);
      }
      assert.deepEqual(reader.readMessage(message), EMPTY);
    }
  });

  it('rejects a Noise message over 65535 bytes with ProtocolViolation (Noise §3)', () => {
    const { responder } = statePair(0);
    assert.throws(() => responder.readMessage(new Uint8Array(MAX_NOISE_MESSAGE_LENGTH + 1)), isProtocolViolation);
    const { initiator } = statePair(0);
    assert.throws(() => initiator.writeMessage(new Uint8Array(MAX_NOISE_MESSAGE_LENGTH - 32 + 1)), RangeError);
    assert.equal(initiator.writeMessage(new Uint8Array(MAX_NOISE_MESSAGE_LENGTH - 32)).length, MAX_NOISE_MESSAGE_LENGTH);
  });

  it('rejects tampered messages 2 and 3 (static key or payload) with ProtocolViolation', () => {
    for (const [index, position] of [
      [1, 40],
      [1, -1],
      [2, 0],
      [2, -1],
    ] as const) {
      const { initiator, responder } = statePair(index);
      const [writer, reader] = index % 2 === 0 ? [initiator, responder] : [responder, initiator];
      const message = writer.writeMessage(bytes('payload'));
      assert.throws(() => reader.readMessage(flip(message, (position + message.length) % message.length)), isProtocolViolation);
      assert.throws(() => reader.readMessage(message), /failed earlier/, 'a failed state stays failed');
    }
  });

  it('turns a low-order ephemeral key from the peer into ProtocolViolation', () => {
    const { responder } = statePair(0);
    responder.readMessage(new Uint8Array(32)); // all-zero e
    assert.throws(() => responder.writeMessage(EMPTY), isProtocolViolation);
  });

  it('refuses calls out of turn with a plain Error', () => {
    const { initiator, responder } = statePair(0);
    assert.throws(() => responder.writeMessage(EMPTY), (error: unknown) => error instanceof Error && !(error instanceof PeerwardenError));
    assert.throws(() => initiator.readMessage(new Uint8Array(32)), /out of turn/);
    assert.throws(() => initiator.split(), /before the handshake completed/);
  });

  it('round-trips random payloads through a full handshake and transport messages (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.uint8Array({ maxLength: 2000 }),
        fc.uint8Array({ maxLength: 2000 }),
        fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 3000 })), { maxLength: 6 }),
        (first, second, third, transport) => {
          const initiator = new HandshakeState({ initiator: true, staticKeyPair: nobleCrypto.generateKeyPair() });
          const responder = new HandshakeState({ initiator: false, staticKeyPair: nobleCrypto.generateKeyPair() });
          assert.deepEqual(responder.readMessage(initiator.writeMessage(first)), first);
          assert.deepEqual(initiator.readMessage(responder.writeMessage(second)), second);
          assert.deepEqual(responder.readMessage(initiator.writeMessage(third)), third);
          const a = initiator.split();
          const b = responder.split();
          for (const [fromInitiator, message] of transport) {
            const [send, receive] = fromInitiator ? [a.send, b.receive] : [b.send, a.receive];
            assert.deepEqual(receive.decryptWithAd(EMPTY, send.encryptWithAd(EMPTY, message)), message);
          }
          assert.deepEqual(initiator.getHandshakeHash(), responder.getHandshakeHash());
        },
      ),
      { numRuns: 40 },
    );
  });

  it('only ever throws ProtocolViolation on random bytes in any message position (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 }),
        fc.oneof(fc.uint8Array({ maxLength: 120 }), fc.uint8Array({ minLength: 96, maxLength: 400 })),
        (index, garbage) => {
          const { initiator, responder } = statePair(index);
          const reader = index % 2 === 0 ? responder : initiator;
          try {
            reader.readMessage(garbage);
            // Only message 1 (a bare ephemeral key and a plaintext payload) can be accepted unauthenticated.
            assert.equal(index, 0);
            assert.ok(garbage.length >= 32);
          } catch (error) {
            assert.ok(isProtocolViolation(error), `threw ${String(error)}`);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

// ---------------------------------------------------------------- handshake over sockets

function payload(overrides: Partial<HandshakePayload> = {}): HandshakePayload {
  return {
    protocolVersion: PROTOCOL_VERSION,
    featureFlags: 0b11,
    privacyFlags: 0,
    nodeNonce: createNodeNonce(),
    listenAddresses: ['127.0.0.1:4001'],
    ...overrides,
  };
}

function options(staticKeyPair: KeyPair, overrides: Partial<HandshakeOptions> = {}): HandshakeOptions {
  return { staticKeyPair, payload: payload(), ...overrides };
}


const EVENTS = ['data', 'end', 'close', 'error', 'readable'] as const;
function listenerCounts(stream: Duplex): number[] {
  return EVENTS.map((event) => stream.listenerCount(event));
}

function frame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  out.set(message, 2);
  return out;
}

/** Reads one length-prefixed frame from a stream (the remainder stays buffered in `pending`). */
async function readFrameFrom(stream: Duplex, pending: { bytes: Buffer }): Promise<Buffer> {
  for (;;) {
    if (pending.bytes.length >= 2) {
      const length = pending.bytes.readUInt16BE(0);
      if (pending.bytes.length >= 2 + length) {
        const message = pending.bytes.subarray(2, 2 + length);
        pending.bytes = pending.bytes.subarray(2 + length);
        return message;
      }
    }
    const [chunk] = (await once(stream, 'data')) as [Buffer];
    pending.bytes = Buffer.concat([pending.bytes, chunk]);
  }
}

/** An in-memory connected Duplex pair; `chunking` 'bytes' delivers every write one byte per chunk. */
function memoryPair(chunking: 'whole' | 'bytes'): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const make = (index: number): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        const peer = sides[1 - index] as Duplex;
        if (chunking === 'whole') peer.push(chunk);
        else for (let i = 0; i < chunk.length; i++) peer.push(chunk.subarray(i, i + 1));
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

function assertInterop(a: HandshakeResult, b: HandshakeResult): void {
  assert.deepEqual(a.handshakeHash, b.handshakeHash);
  assert.deepEqual(b.receive.decryptWithAd(EMPTY, a.send.encryptWithAd(EMPTY, bytes('ping'))), bytes('ping'));
  assert.deepEqual(a.receive.decryptWithAd(EMPTY, b.send.encryptWithAd(EMPTY, bytes('pong'))), bytes('pong'));
}

describe('handshake over TCP on 127.0.0.1', () => {
  it('authenticates both sides, exchanges payloads and leaves no listener behind', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const before = [listenerCounts(client), listenerCounts(server)];
      const clientKeys = nobleCrypto.generateKeyPair();
      const serverKeys = nobleCrypto.generateKeyPair();
      const clientOptions = options(clientKeys, { expectedPeerId: peerIdFromPublicKey(serverKeys.publicKey) });
      const serverOptions = options(serverKeys, { payload: payload({ listenAddresses: ['127.0.0.1:4002', '[::1]:4002'] }) });
      const [dialer, listener] = await Promise.all([
        handshakeInitiator(client, clientOptions),
        handshakeResponder(server, serverOptions),
      ]);
      assert.equal(dialer.remotePeerId, peerIdFromPublicKey(serverKeys.publicKey));
      assert.equal(listener.remotePeerId, peerIdFromPublicKey(clientKeys.publicKey));
      assert.deepEqual(dialer.remotePublicKey, serverKeys.publicKey);
      assert.deepEqual(dialer.remotePayload, serverOptions.payload);
      assert.deepEqual(listener.remotePayload, clientOptions.payload);
      assert.equal(dialer.leftover.length, 0);
      assert.equal(listener.leftover.length, 0);
      assertInterop(dialer, listener);
      assert.deepEqual([listenerCounts(client), listenerCounts(server)], before);
      assert.equal(client.isPaused(), true);
      assert.equal(server.isPaused(), true);
    } finally {
      await close();
    }
  });

  it('corkLastMessage: message 3 waits in the corked socket and leaves with the next bytes in one segment', async () => {
    const { client, server, close } = await tcpPair();
    try {
      let responderDone = false;
      const responding = handshakeResponder(server, options(nobleCrypto.generateKeyPair())).then((result) => {
        responderDone = true;
        return result;
      });
      const dialer = await handshakeInitiator(client, options(nobleCrypto.generateKeyPair(), { corkLastMessage: true }));
      assert.equal(client.writableCorked, 1, 'message 3 is held');
      // A round trip on another socket gives a message 3 sent by mistake time to arrive.
      const probe = await tcpPair();
      probe.client.write('x');
      await once(probe.server, 'data');
      await probe.close();
      assert.equal(responderDone, false, 'the responder has not seen message 3 yet');
      const after = Buffer.from('after message 3');
      client.write(after);
      client.uncork();
      const listener = await responding;
      assertInterop(dialer, listener);
      // One writev carried message 3 and the caller's bytes (one segment on loopback), so the
      // responder read them together and hands the caller's bytes back as leftover.
      assert.deepEqual(listener.leftover, after);
    } finally {
      await close();
    }
  });

  it('detects a self-connection by static key', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const keys = nobleCrypto.generateKeyPair();
      const [dialer, listener] = await Promise.allSettled([
        handshakeInitiator(client, options(keys)),
        handshakeResponder(server, options(keys)),
      ]);
      assert.equal(dialer.status, 'rejected');
      assert.ok(dialer.reason instanceof SelfConnection);
      assert.equal(listener.status, 'rejected');
      assert.ok(listener.reason instanceof ConnectionClosed);
      assert.equal(client.destroyed, true);
    } finally {
      await close();
    }
  });

  it('detects a self-connection by node nonce', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const shared = payload();
      const [dialer] = await Promise.allSettled([
        handshakeInitiator(client, options(nobleCrypto.generateKeyPair(), { payload: shared })),
        handshakeResponder(server, options(nobleCrypto.generateKeyPair(), { payload: shared })),
      ]);
      assert.equal(dialer.status, 'rejected');
      assert.ok(dialer.reason instanceof SelfConnection);
    } finally {
      await close();
    }
  });

  it('aborts with PeerIdMismatch before revealing the initiator when the responder is someone else', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const expected = peerIdFromPublicKey(nobleCrypto.generateKeyPair().publicKey);
      const [dialer, listener] = await Promise.allSettled([
        handshakeInitiator(client, options(nobleCrypto.generateKeyPair(), { expectedPeerId: expected })),
        handshakeResponder(server, options(nobleCrypto.generateKeyPair())),
      ]);
      assert.equal(dialer.status, 'rejected');
      assert.ok(dialer.reason instanceof PeerIdMismatch);
      assert.equal(listener.status, 'rejected');
      assert.ok(listener.reason instanceof ConnectionClosed);
    } finally {
      await close();
    }
  });

  it('rejects an incompatible peer: other protocol version, or required features missing', async () => {
    // The initiator checks the responder first, so a version mismatch stops it at message 2.
    {
      const { client, server, close } = await tcpPair();
      try {
        const [dialer, listener] = await Promise.allSettled([
          handshakeInitiator(client, options(nobleCrypto.generateKeyPair(), { payload: payload({ protocolVersion: PROTOCOL_VERSION + 1 }) })),
          handshakeResponder(server, options(nobleCrypto.generateKeyPair())),
        ]);
        assert.ok(dialer.status === 'rejected' && dialer.reason instanceof IncompatiblePeer);
        assert.ok(listener.status === 'rejected' && listener.reason instanceof ConnectionClosed);
      } finally {
        await close();
      }
    }
    // The responder requires a feature the initiator lacks: it rejects after message 3.
    {
      const { client, server, close } = await tcpPair();
      try {
        const [, listener] = await Promise.allSettled([
          handshakeInitiator(client, options(nobleCrypto.generateKeyPair(), { payload: payload({ featureFlags: 0b01 }) })),
          handshakeResponder(server, options(nobleCrypto.generateKeyPair(), { requiredFeatures: 0b10 })),
        ]);
        assert.ok(listener.status === 'rejected' && listener.reason instanceof IncompatiblePeer);
        assert.equal(server.destroyed, true);
      } finally {
        await close();
      }
    }
  });

  it('rejects promptly on abort with the signal reason and removes every listener', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const before = listenerCounts(client);
      const controller = new AbortController();
      const pending = handshakeInitiator(client, options(nobleCrypto.generateKeyPair(), { signal: controller.signal }));
      await once(server, 'data'); // message 1 arrived; the "responder" never answers
      controller.abort(new HandshakeTimeout(10_000));
      await assert.rejects(pending, HandshakeTimeout);
      assert.deepEqual(listenerCounts(client), before);
      assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
      assert.equal(client.destroyed, true);

      const preAborted = AbortSignal.abort(new HandshakeTimeout(1));
      await assert.rejects(handshakeResponder(server, options(nobleCrypto.generateKeyPair(), { signal: preAborted })), HandshakeTimeout);
    } finally {
      await close();
    }
  });

  it('rejects with ConnectionClosed when the peer closes mid-handshake, even inside a message', async () => {
    // Responder ends the connection after message 1 without answering.
    {
      const { client, server, close } = await tcpPair();
      try {
        const pending = handshakeInitiator(client, options(nobleCrypto.generateKeyPair()));
        await once(server, 'data');
        server.end();
        await assert.rejects(pending, ConnectionClosed);
      } finally {
        await close();
      }
    }
    // Responder sends half of a message, then ends: a cut, not bad bytes.
    {
      const { client, server, close } = await tcpPair();
      try {
        const pending = handshakeInitiator(client, options(nobleCrypto.generateKeyPair()));
        await once(server, 'data');
        server.end(Buffer.concat([Buffer.from([0, 200]), Buffer.alloc(50)]));
        await assert.rejects(pending, ConnectionClosed);
      } finally {
        await close();
      }
    }
    // Initiator resets the connection after message 1.
    {
      const { client, server, close } = await tcpPair();
      try {
        const pending = handshakeResponder(server, options(nobleCrypto.generateKeyPair()));
        const initiator = new HandshakeState({ initiator: true, staticKeyPair: nobleCrypto.generateKeyPair(), prologue: DEFAULT_PROLOGUE });
        client.write(frame(initiator.writeMessage(EMPTY)));
        await once(client, 'data'); // message 2
        client.resetAndDestroy();
        await assert.rejects(pending, ConnectionClosed);
      } finally {
        await close();
      }
    }
  });

  it('rejects garbage and a non-empty message 1 payload with ProtocolViolation', async () => {
    const { client, server, close } = await tcpPair();
    try {
      const pending = handshakeResponder(server, options(nobleCrypto.generateKeyPair()));
      const initiator = new HandshakeState({ initiator: true, staticKeyPair: nobleCrypto.generateKeyPair(), prologue: DEFAULT_PROLOGUE });
      client.write(frame(initiator.writeMessage(bytes('not empty'))));
      await assert.rejects(pending, ProtocolViolation);
    } finally {
      await close();
    }
    const second = await tcpPair();
    try {
      const pending = handshakeInitiator(second.client, options(nobleCrypto.generateKeyPair()));
      await once(second.server, 'data');
      second.server.write(frame(new Uint8Array(200).fill(9)));
      await assert.rejects(pending, ProtocolViolation);
    } finally {
      await second.close();
    }
  });
});

describe('handshake over an in-memory stream', () => {
  it('works when every byte arrives in its own chunk', async () => {
    const [a, b] = memoryPair('bytes');
    const [dialer, listener] = await Promise.all([
      handshakeInitiator(a, options(nobleCrypto.generateKeyPair())),
      handshakeResponder(b, options(nobleCrypto.generateKeyPair())),
    ]);
    assertInterop(dialer, listener);
    a.destroy();
    b.destroy();
  });

  it('returns bytes received past message 3 in leftover and leaves later bytes in the stream', async () => {
    const [a, b] = memoryPair('whole');
    const pending = handshakeResponder(b, options(nobleCrypto.generateKeyPair()));
    const initiator = new HandshakeState({ initiator: true, staticKeyPair: nobleCrypto.generateKeyPair(), prologue: DEFAULT_PROLOGUE });
    a.write(frame(initiator.writeMessage(EMPTY)));
    initiator.readMessage(await readFrameFrom(a, { bytes: Buffer.alloc(0) }));
    const after = Buffer.from('bytes after the handshake');
    const later = Buffer.from(' and some more');
    // Message 3 and application bytes in one chunk, then another chunk.
    a.write(Buffer.concat([frame(initiator.writeMessage(encodeHandshakePayload(payload()))), after]));
    a.write(later);
    const result = await pending;
    assert.deepEqual(result.leftover, after);
    const rest = once(b, 'data') as Promise<[Buffer]>;
    b.resume();
    assert.deepEqual((await rest)[0], later);
    a.destroy();
    b.destroy();
  });
});

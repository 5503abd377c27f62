/**
 * The published Noise test vectors (shared/vectors, README there) for
 * Noise_XX_25519_ChaChaPoly_SHA256, and one replay of a vector through two HandshakeStates and
 * their CipherStates, each side with its own crypto implementation. Every handshake ciphertext,
 * payload, transport message and the handshake hash must match.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { CipherState } from '../../transport/noise/cipher-state.js';
import { nobleCrypto } from '../../transport/noise/crypto.js';
import type { KeyPair, NoiseCrypto } from '../../transport/noise/crypto.js';
import { HandshakeState, NOISE_PROTOCOL_NAME } from '../../transport/noise/handshake-state.js';

const VECTORS_DIR = new URL('../../../shared/vectors/', import.meta.url);

/** The vector files in `shared/vectors`. */
export const VECTOR_FILES = ['cacophony-25519-ChaChaPoly-SHA256.json', 'snow-25519-ChaChaPoly-SHA256.json'];

/** XX has three handshake messages; the rest of a vector's messages are transport messages. */
const HANDSHAKE_MESSAGES = 3;

interface VectorMessage {
  payload: string;
  ciphertext: string;
}

/** One vector, as the files spell it (hex strings). */
export interface Vector {
  protocol_name: string;
  init_prologue: string;
  init_static?: string;
  init_ephemeral: string;
  resp_prologue: string;
  resp_static?: string;
  resp_ephemeral: string;
  handshake_hash?: string;
  messages: VectorMessage[];
}

/** The Noise_XX_25519_ChaChaPoly_SHA256 entries of a vector file. */
export function loadXxVectors(file: string): Vector[] {
  const parsed = JSON.parse(readFileSync(new URL(file, VECTORS_DIR), 'utf8')) as { vectors: Vector[] };
  return parsed.vectors.filter((vector) => vector.protocol_name === NOISE_PROTOCOL_NAME);
}

const EMPTY = new Uint8Array(0);

function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** The key pair of a vector's private key, its public key derived by `crypto` itself. */
function vectorKeyPair(crypto: NoiseCrypto, privateKeyHex: string | undefined): KeyPair {
  assert.ok(privateKeyHex !== undefined, 'XX vectors give both static keys');
  const privateKey = hex(privateKeyHex);
  return { privateKey, publicKey: crypto.publicKeyFromPrivateKey(privateKey) };
}

/** Drives one vector through both roles; throws an AssertionError at the first mismatch. */
export function replayVector(vector: Vector, initiatorCrypto: NoiseCrypto, responderCrypto: NoiseCrypto): void {
  const initiator = new HandshakeState({
    initiator: true,
    prologue: hex(vector.init_prologue),
    staticKeyPair: vectorKeyPair(initiatorCrypto, vector.init_static),
    ephemeralKeyPair: vectorKeyPair(initiatorCrypto, vector.init_ephemeral),
    crypto: initiatorCrypto,
  });
  const responder = new HandshakeState({
    initiator: false,
    prologue: hex(vector.resp_prologue),
    staticKeyPair: vectorKeyPair(responderCrypto, vector.resp_static),
    ephemeralKeyPair: vectorKeyPair(responderCrypto, vector.resp_ephemeral),
    crypto: responderCrypto,
  });
  assert.ok(vector.messages.length >= HANDSHAKE_MESSAGES);

  // Handshake: messages alternate initiator, responder, initiator.
  for (let i = 0; i < HANDSHAKE_MESSAGES; i++) {
    const message = vector.messages[i] as VectorMessage;
    const [writer, reader] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
    const ciphertext = writer.writeMessage(hex(message.payload));
    assert.equal(toHex(ciphertext), message.ciphertext, `handshake message ${i} ciphertext`);
    assert.equal(toHex(reader.readMessage(ciphertext)), message.payload, `handshake message ${i} payload`);
  }
  assert.ok(initiator.isComplete && responder.isComplete);
  assert.deepEqual(initiator.remoteStaticPublicKey, vectorKeyPair(nobleCrypto, vector.resp_static).publicKey);
  assert.deepEqual(responder.remoteStaticPublicKey, vectorKeyPair(nobleCrypto, vector.init_static).publicKey);

  const initiatorHash = toHex(initiator.getHandshakeHash());
  assert.equal(toHex(responder.getHandshakeHash()), initiatorHash);
  if (vector.handshake_hash !== undefined) assert.equal(initiatorHash, vector.handshake_hash);

  // Transport messages keep alternating after the handshake.
  const initiatorCiphers = initiator.split();
  const responderCiphers = responder.split();
  for (let i = HANDSHAKE_MESSAGES; i < vector.messages.length; i++) {
    const message = vector.messages[i] as VectorMessage;
    const [send, receive]: [CipherState, CipherState] =
      i % 2 === 0
        ? [initiatorCiphers.send, responderCiphers.receive]
        : [responderCiphers.send, initiatorCiphers.receive];
    const ciphertext = send.encryptWithAd(EMPTY, hex(message.payload));
    assert.equal(toHex(ciphertext), message.ciphertext, `transport message ${i} ciphertext`);
    assert.equal(toHex(receive.decryptWithAd(EMPTY, ciphertext)), message.payload, `transport message ${i} payload`);
  }
}

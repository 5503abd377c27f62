/**
 * Replays the published Noise test vectors (shared/vectors, README there) for
 * Noise_XX_25519_ChaChaPoly_SHA256 through our HandshakeState and CipherStates, driving both roles:
 * every handshake ciphertext, payload, transport message and the handshake hash must match.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { CipherState } from '../transport/noise/cipher-state.js';
import { nobleCrypto, type KeyPair } from '../transport/noise/crypto.js';
import { HandshakeState, NOISE_PROTOCOL_NAME } from '../transport/noise/handshake-state.js';

const VECTORS_DIR = new URL('../../shared/vectors/', import.meta.url);
const FILES = ['cacophony-25519-ChaChaPoly-SHA256.json', 'snow-25519-ChaChaPoly-SHA256.json'];

interface VectorMessage {
  payload: string;
  ciphertext: string;
}

interface Vector {
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

const HANDSHAKE_MESSAGES = 3;

function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function keyPair(privateKeyHex: string | undefined): KeyPair {
  assert.ok(privateKeyHex !== undefined, 'XX vectors give both static keys');
  const privateKey = hex(privateKeyHex);
  return { privateKey, publicKey: nobleCrypto.publicKeyFromPrivateKey(privateKey) };
}

function loadXxVectors(file: string): Vector[] {
  const parsed = JSON.parse(readFileSync(new URL(file, VECTORS_DIR), 'utf8')) as { vectors: Vector[] };
  return parsed.vectors.filter((vector) => vector.protocol_name === NOISE_PROTOCOL_NAME);
}

function replay(vector: Vector): void {
  const initiator = new HandshakeState({
    initiator: true,
    prologue: hex(vector.init_prologue),
    staticKeyPair: keyPair(vector.init_static),
    ephemeralKeyPair: keyPair(vector.init_ephemeral),
  });
  const responder = new HandshakeState({
    initiator: false,
    prologue: hex(vector.resp_prologue),
    staticKeyPair: keyPair(vector.resp_static),
    ephemeralKeyPair: keyPair(vector.resp_ephemeral),
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
  assert.deepEqual(initiator.remoteStaticPublicKey, keyPair(vector.resp_static).publicKey);
  assert.deepEqual(responder.remoteStaticPublicKey, keyPair(vector.init_static).publicKey);

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
    const ciphertext = send.encryptWithAd(new Uint8Array(0), hex(message.payload));
    assert.equal(toHex(ciphertext), message.ciphertext, `transport message ${i} ciphertext`);
    assert.equal(toHex(receive.decryptWithAd(new Uint8Array(0), ciphertext)), message.payload, `transport message ${i} payload`);
  }
}

for (const file of FILES) {
  describe(`Noise vectors: ${file}`, () => {
    const vectors = loadXxVectors(file);

    it(`holds at least one ${NOISE_PROTOCOL_NAME} entry`, () => {
      assert.ok(vectors.length > 0, `no ${NOISE_PROTOCOL_NAME} entries in ${file}`);
    });

    vectors.forEach((vector, index) => {
      it(`entry ${index}: ${vector.messages.length} messages, both roles`, () => {
        replay(vector);
      });
    });
  });
}

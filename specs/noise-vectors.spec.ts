/**
 * Replays the published Noise test vectors (shared/vectors, README there) for
 * Noise_XX_25519_ChaChaPoly_SHA256 through our HandshakeState and CipherStates, driving both
 * roles, with each crypto implementation on each side (`@noble` and `node:crypto`, and mixed):
 * every handshake ciphertext, payload, transport message and the handshake hash must match.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nobleCrypto } from '../transport/noise/crypto.js';
import type { NoiseCrypto } from '../transport/noise/crypto.js';
import { NOISE_PROTOCOL_NAME } from '../transport/noise/handshake-state.js';
import { nodeCrypto } from '../transport/noise/node-crypto.js';
import { loadXxVectors, replayVector, VECTOR_FILES } from './support/noise-vectors.js';

const IMPLEMENTATIONS: [string, NoiseCrypto][] = [
  ['noble', nobleCrypto],
  ['node', nodeCrypto],
];

for (const file of VECTOR_FILES) {
  describe(`Noise vectors: ${file}`, () => {
    const vectors = loadXxVectors(file);

    it(`holds at least one ${NOISE_PROTOCOL_NAME} entry`, () => {
      assert.ok(vectors.length > 0, `no ${NOISE_PROTOCOL_NAME} entries in ${file}`);
    });

    vectors.forEach((vector, index) => {
      for (const [initiatorName, initiatorCrypto] of IMPLEMENTATIONS) {
        for (const [responderName, responderCrypto] of IMPLEMENTATIONS) {
          it(`entry ${index}: ${vector.messages.length} messages, initiator ${initiatorName}, responder ${responderName}`, () => {
            replayVector(vector, initiatorCrypto, responderCrypto);
          });
        }
      }
    });
  });
}

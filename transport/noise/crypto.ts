/**
 * The cryptographic primitives of `Noise_*_25519_ChaChaPoly_SHA256` (Noise spec rev 34 §4, §12):
 * X25519 Diffie-Hellman, ChaCha20-Poly1305 AEAD, SHA-256 and the Noise HKDF.
 *
 * {@link NoiseCrypto} is the single seam between the Noise state machines and a crypto library:
 * CipherState, SymmetricState and HandshakeState call nothing else, so another implementation
 * (e.g. one on `node:crypto`) only has to implement this interface. {@link nobleCrypto} is the
 * default, built on the audited pure-JS `@noble/*` v2 libraries.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ProtocolViolation } from '../errors.js';

/** DHLEN for Curve25519: public keys, private keys and DH outputs are 32 bytes (Noise §12.1). */
export const DH_LENGTH = 32;
/** HASHLEN for SHA-256: 32 bytes (Noise §12.5). */
export const HASH_LENGTH = 32;
/** Cipher keys are 32 bytes (Noise §4.2). */
export const KEY_LENGTH = 32;
/** The AEAD authentication tag adds 16 bytes to every ciphertext (Noise §4.2, RFC 8439). */
export const TAG_LENGTH = 16;
/**
 * The nonce value 2^64-1 is reserved: a CipherState whose nonce reaches it refuses to encrypt or
 * decrypt (Noise §5.1), and REKEY uses it (Noise §4.2).
 */
export const MAX_NONCE = 0xffff_ffff_ffff_ffffn;

/** An X25519 key pair: two 32-byte arrays. `privateKey` is the raw (unclamped) scalar. */
export interface KeyPair {
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
}

/**
 * The primitives of Noise_25519_ChaChaPoly_SHA256 (Noise spec rev 34 §4).
 *
 * All byte arrays are `Uint8Array`; lengths are in bytes. Implementations must be stateless and
 * must not keep references to their arguments after returning.
 */
export interface NoiseCrypto {
  /** GENERATE_KEYPAIR() (§4.1): a fresh random X25519 key pair. */
  generateKeyPair(): KeyPair;

  /**
   * The 32-byte X25519 public key of a 32-byte private key (for stored keys and test vectors).
   * @throws RangeError if `privateKey` is not 32 bytes.
   */
  publicKeyFromPrivateKey(privateKey: Uint8Array): Uint8Array;

  /**
   * DH(key_pair, public_key) (§4.1): the 32-byte X25519 shared secret.
   * @throws ProtocolViolation if `publicKey` is not 32 bytes or is a low-order point whose shared
   *   secret would be all zeros (the key came from the remote peer, so this is its fault; §4.1
   *   allows rejecting invalid public keys).
   */
  dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array;

  /**
   * ENCRYPT(k, n, ad, plaintext) (§4.2) with ChaCha20-Poly1305 (§12.3): the 96-bit nonce is
   * 4 zero bytes followed by the 64-bit counter `nonce` little-endian. Returns ciphertext || tag,
   * `plaintext.length + 16` bytes.
   *
   * `output`, when given, must be exactly `plaintext.length + 16` bytes; the result is written
   * there and returned. `plaintext` may be `output.subarray(0, plaintext.length)` (in-place
   * encryption, which saves a copy when framing); any other overlap is not allowed.
   * @param key 32-byte cipher key.
   * @param nonce counter in [0, 2^64-1].
   * @param ad associated data (authenticated, not encrypted).
   */
  encrypt(key: Uint8Array, nonce: bigint, ad: Uint8Array, plaintext: Uint8Array, output?: Uint8Array): Uint8Array;

  /**
   * DECRYPT(k, n, ad, ciphertext) (§4.2): the plaintext, `ciphertext.length - 16` bytes, in a
   * fresh array. Nonce encoding as for {@link NoiseCrypto.encrypt}.
   * @throws ProtocolViolation if the ciphertext is shorter than the tag or fails authentication.
   */
  decrypt(key: Uint8Array, nonce: bigint, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array;

  /** HASH(data) (§4.3): SHA-256, 32 bytes. */
  hash(data: Uint8Array): Uint8Array;

  /**
   * HKDF(chaining_key, input_key_material, num_outputs) (§4.3): HMAC-SHA256 based, with
   * temp_key = HMAC(chaining_key, ikm), output1 = HMAC(temp_key, 0x01),
   * output_i = HMAC(temp_key, output_{i-1} || i). Each output is 32 bytes.
   * @param chainingKey 32 bytes.
   * @param inputKeyMaterial 0 or 32 bytes (or DHLEN), as Noise uses it.
   */
  hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 2): [Uint8Array, Uint8Array];
  hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 3): [Uint8Array, Uint8Array, Uint8Array];
}

/** The 12-byte ChaChaPoly nonce of Noise §12.3: 4 zero bytes, then the counter as u64 little-endian. */
function chachaNonce(n: bigint): Uint8Array {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, n, true);
  return nonce;
}

function hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 2): [Uint8Array, Uint8Array];
function hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 3): [Uint8Array, Uint8Array, Uint8Array];
function hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 2 | 3): Uint8Array[] {
  const tempKey = hmac(sha256, chainingKey, inputKeyMaterial);
  const output1 = hmac(sha256, tempKey, Uint8Array.of(0x01));
  const output2 = hmac(sha256, tempKey, concat2(output1, 0x02));
  if (numOutputs === 2) return [output1, output2];
  const output3 = hmac(sha256, tempKey, concat2(output2, 0x03));
  return [output1, output2, output3];
}

function concat2(bytes: Uint8Array, last: number): Uint8Array {
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  out[bytes.length] = last;
  return out;
}

/**
 * {@link NoiseCrypto} on `@noble/curves` (x25519), `@noble/ciphers` (chacha20poly1305) and
 * `@noble/hashes` (sha256, hmac). Randomness comes from `crypto.getRandomValues`.
 */
export const nobleCrypto: NoiseCrypto = {
  generateKeyPair(): KeyPair {
    const { secretKey, publicKey } = x25519.keygen();
    return { publicKey, privateKey: secretKey };
  },

  publicKeyFromPrivateKey(privateKey: Uint8Array): Uint8Array {
    if (privateKey.length !== DH_LENGTH) throw new RangeError(`X25519 private key must be ${DH_LENGTH} bytes`);
    return x25519.getPublicKey(privateKey);
  },

  dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
    if (publicKey.length !== DH_LENGTH) throw new ProtocolViolation(`X25519 public key must be ${DH_LENGTH} bytes`);
    try {
      return x25519.getSharedSecret(privateKey, publicKey);
    } catch (cause) {
      // noble rejects low-order points (all-zero shared secret).
      throw new ProtocolViolation('invalid X25519 public key', { cause });
    }
  },

  encrypt(key: Uint8Array, nonce: bigint, ad: Uint8Array, plaintext: Uint8Array, output?: Uint8Array): Uint8Array {
    return chacha20poly1305(key, chachaNonce(nonce), ad).encrypt(plaintext, output);
  },

  decrypt(key: Uint8Array, nonce: bigint, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (ciphertext.length < TAG_LENGTH) throw new ProtocolViolation('ciphertext shorter than the AEAD tag');
    try {
      // No output buffer: noble's fresh output is 4-byte aligned, which keeps ChaCha on its fast path.
      return chacha20poly1305(key, chachaNonce(nonce), ad).decrypt(ciphertext);
    } catch (cause) {
      throw new ProtocolViolation('AEAD authentication failed', { cause });
    }
  },

  hash(data: Uint8Array): Uint8Array {
    return sha256(data);
  },

  hkdf,
};

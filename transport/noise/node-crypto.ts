/**
 * {@link NoiseCrypto} on `node:crypto` (OpenSSL): the same primitives as `nobleCrypto` for
 * `Noise_*_25519_ChaChaPoly_SHA256` (Noise spec rev 34 §4, §12), many times faster on Node.
 * `nobleCrypto` stays the portable implementation and the reference: `specs/node-crypto.spec.ts`
 * replays the published vectors through both and cross-checks them byte for byte.
 *
 * Every result is a plain `Uint8Array`, never a `Buffer`: `Buffer#slice` returns a view rather
 * than a copy, and callers of the interface rely on `slice()` copying.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hash as oneShotHash,
  randomFillSync,
  type KeyObject,
} from 'node:crypto';
import { ProtocolViolation } from '../errors.js';
import { DH_LENGTH, KEY_LENGTH, TAG_LENGTH, nobleCrypto, type KeyPair, type NoiseCrypto } from './crypto.js';
import type { PiecewiseAead } from './cipher-state.js';

/** OpenSSL's name of ChaCha20-Poly1305 with a 96-bit nonce (RFC 8439), as `createCipheriv` takes it. */
const AEAD_ALGORITHM = 'chacha20-poly1305';

/**
 * Stands in for `x` in a private X25519 JWK. Node requires `x` to be a string but builds a private
 * OKP key from `d` alone and derives the public key itself; computing the real `x` would cost a
 * scalar multiplication per DH. Raw keys go through JWK rather than PKCS#8/SPKI DER because
 * OpenSSL 3's DER decoders are several times slower than the whole X25519 operation (measured on
 * Node 20.20: ~900 private-key DER imports/s vs ~9,000 JWK imports/s). {@link nodeCryptoAvailable}
 * checks this path against RFC 7748 §6.1, so a runtime that validated `x` would fall back to noble.
 */
const PLACEHOLDER_X = Buffer.alloc(DH_LENGTH).toString('base64url');

const MAX_SAFE_NONCE = BigInt(Number.MAX_SAFE_INTEGER);
/**
 * The nonce handed to `createCipheriv` / `createDecipheriv`, rewritten for every call: OpenSSL
 * copies it while the cipher is created, so one buffer serves all (bytes 0..3 stay zero).
 */
const NONCE = Buffer.alloc(12);

/**
 * The 12-byte ChaChaPoly nonce of Noise §12.3: 4 zero bytes, then the counter as u64 little-endian.
 * Returns the shared {@link NONCE}: pass it to a cipher at once, never keep it.
 */
function chachaNonce(n: bigint): Uint8Array {
  const nonce = NONCE;
  if (n >= 0n && n <= MAX_SAFE_NONCE) {
    // Number arithmetic: BigInt byte writes measured about 1 % of a bulk transfer's CPU.
    const value = Number(n);
    nonce.writeUInt32LE(value % 0x1_0000_0000, 4);
    nonce.writeUInt32LE(Math.floor(value / 0x1_0000_0000), 8);
    return nonce;
  }
  // Same encoding as nobleCrypto, including its wrap-around outside [0, 2^64-1] (CipherState never passes one).
  nonce.writeBigUInt64LE(BigInt.asUintN(64, n), 4);
  return nonce;
}

/** The last `TAG_LENGTH` bytes spread over `pieces` (a view when they lie in one piece, else a copy). */
function tagOf(pieces: readonly Uint8Array[], total: number): Uint8Array {
  const last = pieces[pieces.length - 1];
  if (last !== undefined && last.length >= TAG_LENGTH) return last.subarray(last.length - TAG_LENGTH);
  const tag = new Uint8Array(TAG_LENGTH);
  let offset = 0;
  for (const piece of pieces) {
    const start = Math.max(total - TAG_LENGTH - offset, 0);
    if (start < piece.length) tag.set(piece.subarray(start), offset + start - (total - TAG_LENGTH));
    offset += piece.length;
  }
  return tag;
}

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/** A plain Uint8Array of `buffer`: its memory when the Buffer owns a whole ArrayBuffer (node:crypto's outputs do), else a copy. */
function toBytes(buffer: Buffer): Uint8Array {
  if (buffer.byteOffset === 0 && buffer.buffer.byteLength === buffer.length) {
    return new Uint8Array(buffer.buffer, 0, buffer.length);
  }
  // A Buffer from Node's shared pool: copy, so no caller can reach the pool's other bytes.
  return new Uint8Array(buffer);
}

/**
 * KeyObjects already built for a private key array, with the key's base64url text at that time.
 * A handshake passes the same arrays again and again (our static key to every handshake, our
 * ephemeral key to two DH each), and building a KeyObject costs more than the X25519 operation
 * itself. Weak: an entry lives no longer than its array. The text is compared on every use, so an
 * array whose bytes changed since gets a fresh KeyObject.
 */
const privateKeyObjects = new WeakMap<Uint8Array, { readonly text: string; readonly key: KeyObject }>();

/**
 * KeyObjects of recently used public keys, by base64url text, oldest first. Only the peer's
 * ephemeral key is used twice (in two DH of one handshake); the peer's static key is used once
 * but stays referenced by the secure channel for the connection's life, so a cache keyed by the
 * array (as for private keys) kept a KeyObject per connection (about 0.8 KiB of heap each, measured
 * at 1,000 connections). Bounded instead: {@link PUBLIC_KEY_CACHE_SIZE} entries cover as many
 * handshakes in flight; past that a key is rebuilt, which costs time, never correctness.
 */
const publicKeyObjects = new Map<string, KeyObject>();
/** Entries of {@link publicKeyObjects}: handshakes in flight whose second DH still finds its key (the bench dials 64 at a time). */
const PUBLIC_KEY_CACHE_SIZE = 128;

function x25519PrivateKey(privateKey: Uint8Array): KeyObject {
  const d = base64url(privateKey);
  const cached = privateKeyObjects.get(privateKey);
  if (cached !== undefined && cached.text === d) return cached.key;
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d, x: PLACEHOLDER_X }, format: 'jwk' });
  privateKeyObjects.set(privateKey, { text: d, key });
  return key;
}

function x25519PublicKey(publicKey: Uint8Array): KeyObject {
  const x = base64url(publicKey);
  const cached = publicKeyObjects.get(x);
  if (cached !== undefined) return cached;
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
  if (publicKeyObjects.size >= PUBLIC_KEY_CACHE_SIZE) {
    // Maps iterate in insertion order: the first key is the oldest.
    for (const oldest of publicKeyObjects.keys()) {
      publicKeyObjects.delete(oldest);
      break;
    }
  }
  publicKeyObjects.set(x, key);
  return key;
}

function isAllZero(bytes: Uint8Array): boolean {
  let bits = 0;
  for (const byte of bytes) bits |= byte;
  return bits === 0;
}

function hmacSha256(key: Uint8Array, ...data: Uint8Array[]): Buffer {
  const mac = createHmac('sha256', key);
  for (const part of data) mac.update(part);
  return mac.digest();
}

const ONE = Uint8Array.of(0x01);
const TWO = Uint8Array.of(0x02);
const THREE = Uint8Array.of(0x03);

function hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 2): [Uint8Array, Uint8Array];
function hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 3): [Uint8Array, Uint8Array, Uint8Array];
function hkdf(chainingKey: Uint8Array, inputKeyMaterial: Uint8Array, numOutputs: 2 | 3): Uint8Array[] {
  // Noise §4.3 written out with HMAC rather than crypto.hkdfSync, which measured half as fast here.
  const tempKey = hmacSha256(chainingKey, inputKeyMaterial);
  const output1 = hmacSha256(tempKey, ONE);
  const output2 = hmacSha256(tempKey, output1, TWO);
  if (numOutputs === 2) return [toBytes(output1), toBytes(output2)];
  const output3 = hmacSha256(tempKey, output2, THREE);
  return [toBytes(output1), toBytes(output2), toBytes(output3)];
}

/**
 * {@link NoiseCrypto} on `node:crypto` alone: X25519 through `diffieHellman` on KeyObjects built
 * from raw 32-byte keys (JWK form), cached (see `privateKeyObjects`, `publicKeyObjects`), ChaCha20-Poly1305
 * through `createCipheriv` with a 16-byte tag, SHA-256 through the one-shot `hash`, the Noise HKDF
 * (§4.3) through `createHmac`. Randomness comes from `randomFillSync`.
 *
 * Behaves as `nobleCrypto` in every documented case: same outputs, lengths and error classes.
 * - `publicKeyFromPrivateKey`: RangeError unless the private key is 32 bytes.
 * - `dh`: ProtocolViolation if the public key is not 32 bytes or is a low-order point (all-zero
 *   shared secret), and, as in nobleCrypto, if the private key is not 32 bytes. Private keys are
 *   raw unclamped scalars; OpenSSL clamps them (RFC 7748 §5) as noble does.
 * - `encrypt`: RangeError if the key is not 32 bytes or `output` is not `plaintext.length + 16`
 *   bytes. In-place use (`plaintext` = `output.subarray(0, plaintext.length)`) works because
 *   OpenSSL returns the whole ciphertext before anything is written to `output`.
 * - `decrypt`: ProtocolViolation if the ciphertext is shorter than 16 bytes, fails
 *   authentication, or (as in nobleCrypto) the key is not 32 bytes. No plaintext is released
 *   before the tag is verified.
 * - `encryptPieces` / `decryptPieces` ({@link PiecewiseAead}, beyond the interface): the same
 *   AEAD over bytes given in pieces, so the secure channel neither gathers a frame nor copies
 *   ciphertext into a frame buffer. Same errors as `encrypt` / `decrypt`; results are fresh
 *   Buffers, and `decryptPieces` returns nothing before the tag is verified.
 *
 * Use it only where {@link nodeCryptoAvailable} is true; {@link defaultCrypto} chooses for you.
 */
export const nodeCrypto: NoiseCrypto & PiecewiseAead = {
  generateKeyPair(): KeyPair {
    // A raw random scalar, as noble's keygen gives; clamping happens inside every X25519 operation.
    const privateKey = randomFillSync(new Uint8Array(DH_LENGTH));
    return { publicKey: nodeCrypto.publicKeyFromPrivateKey(privateKey), privateKey };
  },

  publicKeyFromPrivateKey(privateKey: Uint8Array): Uint8Array {
    if (privateKey.length !== DH_LENGTH) throw new RangeError(`X25519 private key must be ${DH_LENGTH} bytes`);
    const { x } = createPublicKey(x25519PrivateKey(privateKey)).export({ format: 'jwk' });
    if (typeof x !== 'string') throw new Error('node:crypto exported an X25519 public key without x');
    return toBytes(Buffer.from(x, 'base64url'));
  },

  dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
    if (publicKey.length !== DH_LENGTH) throw new ProtocolViolation(`X25519 public key must be ${DH_LENGTH} bytes`);
    // nobleCrypto reports a bad private key length as ProtocolViolation too; keep the two alike.
    if (privateKey.length !== DH_LENGTH) throw new ProtocolViolation('invalid X25519 private key length');
    const ours = x25519PrivateKey(privateKey);
    let shared: Buffer;
    try {
      shared = diffieHellman({ privateKey: ours, publicKey: x25519PublicKey(publicKey) });
    } catch (cause) {
      // OpenSSL refuses to derive from a low-order point (all-zero shared secret).
      throw new ProtocolViolation('invalid X25519 public key', { cause });
    }
    // Belt and braces: a TLS library that did not refuse would return zeros (RFC 7748 §6.1).
    if (isAllZero(shared)) throw new ProtocolViolation('invalid X25519 public key: all-zero shared secret');
    return toBytes(shared);
  },

  encrypt(key: Uint8Array, nonce: bigint, ad: Uint8Array, plaintext: Uint8Array, output?: Uint8Array): Uint8Array {
    if (key.length !== KEY_LENGTH) throw new RangeError(`ChaCha20-Poly1305 key must be ${KEY_LENGTH} bytes`);
    const length = plaintext.length + TAG_LENGTH;
    if (output !== undefined && output.length !== length) {
      throw new RangeError(`output must be ${length} bytes, got ${output.length}`);
    }
    const cipher = createCipheriv(AEAD_ALGORITHM, key, chachaNonce(nonce), { authTagLength: TAG_LENGTH });
    if (ad.length > 0) cipher.setAAD(ad, { plaintextLength: plaintext.length });
    // Both are read in full before `output` is touched, which is what makes in-place encryption safe.
    const body = cipher.update(plaintext);
    const rest = cipher.final();
    const out = output ?? new Uint8Array(length);
    out.set(body, 0);
    out.set(rest, body.length);
    out.set(cipher.getAuthTag(), plaintext.length);
    return out;
  },

  decrypt(key: Uint8Array, nonce: bigint, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (ciphertext.length < TAG_LENGTH) throw new ProtocolViolation('ciphertext shorter than the AEAD tag');
    const length = ciphertext.length - TAG_LENGTH;
    try {
      const decipher = createDecipheriv(AEAD_ALGORITHM, key, chachaNonce(nonce), { authTagLength: TAG_LENGTH });
      decipher.setAuthTag(ciphertext.subarray(length));
      if (ad.length > 0) decipher.setAAD(ad, { plaintextLength: length });
      const body = decipher.update(ciphertext.subarray(0, length));
      // final() verifies the tag; until it returns, `body` stays ours.
      const rest = decipher.final();
      if (rest.length === 0) return toBytes(body);
      const plaintext = new Uint8Array(length);
      plaintext.set(body, 0);
      plaintext.set(rest, body.length);
      return plaintext;
    } catch (cause) {
      throw new ProtocolViolation('AEAD authentication failed', { cause });
    }
  },

  encryptPieces(key: Uint8Array, nonce: bigint, ad: Uint8Array, plaintext: readonly Uint8Array[]): Buffer[] {
    if (key.length !== KEY_LENGTH) throw new RangeError(`ChaCha20-Poly1305 key must be ${KEY_LENGTH} bytes`);
    const cipher = createCipheriv(AEAD_ALGORITHM, key, chachaNonce(nonce), { authTagLength: TAG_LENGTH });
    if (ad.length > 0) {
      let length = 0;
      for (const piece of plaintext) length += piece.length;
      cipher.setAAD(ad, { plaintextLength: length });
    }
    // Each update() returns a fresh Buffer: no copy into a frame buffer, the socket writes them as they are.
    const out: Buffer[] = [];
    for (const piece of plaintext) if (piece.length > 0) out.push(cipher.update(piece));
    const rest = cipher.final();
    if (rest.length > 0) out.push(rest);
    out.push(cipher.getAuthTag());
    return out;
  },

  decryptPieces(key: Uint8Array, nonce: bigint, ad: Uint8Array, ciphertext: readonly Uint8Array[]): Buffer[] {
    let total = 0;
    for (const piece of ciphertext) total += piece.length;
    if (total < TAG_LENGTH) throw new ProtocolViolation('ciphertext shorter than the AEAD tag');
    const length = total - TAG_LENGTH;
    try {
      const decipher = createDecipheriv(AEAD_ALGORITHM, key, chachaNonce(nonce), { authTagLength: TAG_LENGTH });
      decipher.setAuthTag(tagOf(ciphertext, total));
      if (ad.length > 0) decipher.setAAD(ad, { plaintextLength: length });
      const out: Buffer[] = [];
      let left = length;
      for (const piece of ciphertext) {
        if (left === 0) break;
        const n = Math.min(piece.length, left);
        if (n > 0) out.push(decipher.update(n === piece.length ? piece : piece.subarray(0, n)));
        left -= n;
      }
      // final() verifies the tag; the pieces are released to the caller only after it returns.
      const rest = decipher.final();
      if (rest.length > 0) out.push(rest);
      return out;
    } catch (cause) {
      throw new ProtocolViolation('AEAD authentication failed', { cause });
    }
  },

  hash(data: Uint8Array): Uint8Array {
    // The one-shot digest (Node ≥ 20.12) skips the Hash object: about twice as fast for Noise's short inputs.
    return toBytes(oneShotHash('sha256', data, 'buffer'));
  },

  hkdf,
};

function hex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, index) => byte === b[index]);
}

/** Known answers for the availability probe. */
const PROBE = {
  // RFC 7748 §6.1: Alice's private and public key, Bob's public key, their shared secret.
  alicePrivate: '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a',
  alicePublic: '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
  bobPublic: 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
  shared: '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
  // ENCRYPT(k = 00 01 .. 1f, n = 1, ad = "peerwarden/1", "node:crypto probe"), computed with nobleCrypto.
  sealed: 'f138973a8f49dd6159c2c17c22e7f6e5a0c8d3e681e40b541968b35cd78944fe25',
} as const;

function probe(): boolean {
  try {
    const alice = hex(PROBE.alicePrivate);
    if (!equalBytes(nodeCrypto.publicKeyFromPrivateKey(alice), hex(PROBE.alicePublic))) return false;
    if (!equalBytes(nodeCrypto.dh(alice, hex(PROBE.bobPublic)), hex(PROBE.shared))) return false;
    const key = Uint8Array.from({ length: KEY_LENGTH }, (_, index) => index);
    const ad = new TextEncoder().encode('peerwarden/1');
    const plaintext = new TextEncoder().encode('node:crypto probe');
    const sealed = nodeCrypto.encrypt(key, 1n, ad, plaintext);
    if (!equalBytes(sealed, hex(PROBE.sealed))) return false;
    return equalBytes(nodeCrypto.decrypt(key, 1n, ad, sealed), plaintext);
  } catch {
    // Any failure (no X25519 or chacha20-poly1305 in this OpenSSL, a JWK rule we rely on) means "not available".
    return false;
  }
}

let available: boolean | undefined;

/**
 * Whether this runtime's `node:crypto` has X25519 and ChaCha20-Poly1305 and gives the expected
 * answers through {@link nodeCrypto} (RFC 7748 §6.1 for X25519, a ChaChaPoly known answer). Probes
 * once (a few X25519 operations, well under a millisecond on Node 20) and caches the answer.
 * Never throws.
 */
export function nodeCryptoAvailable(): boolean {
  available ??= probe();
  return available;
}

/**
 * The {@link NoiseCrypto} to use by default: {@link nodeCrypto} when {@link nodeCryptoAvailable},
 * else `nobleCrypto`. Chosen once, when this module loads.
 */
export const defaultCrypto: NoiseCrypto = nodeCryptoAvailable() ? nodeCrypto : nobleCrypto;

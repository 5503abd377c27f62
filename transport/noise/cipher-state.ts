/**
 * CipherState (Noise spec rev 34 §5.1): a cipher key `k` (or none) and a 64-bit nonce counter `n`.
 * Used inside the handshake (through SymmetricState) and afterwards as the two transport ciphers
 * returned by Split().
 */
import { PeerwardenError } from '../errors.js';
import { KEY_LENGTH, MAX_NONCE, type NoiseCrypto } from './crypto.js';

const EMPTY = new Uint8Array(0);
const ZEROS = new Uint8Array(KEY_LENGTH);

/**
 * An optional capability of a {@link NoiseCrypto}: ENCRYPT and DECRYPT (Noise §4.2, §12.3) over
 * bytes given as a list of pieces, as they lie in a socket's chunks or a writer's buffers, so a
 * transport frame is neither gathered into one buffer nor copied out of the cipher's output.
 * `nodeCrypto` has it; a CipherState over a crypto without it concatenates and falls back to
 * `encrypt` / `decrypt`.
 */
export interface PiecewiseAead {
  /**
   * ENCRYPT(k, n, ad, plaintext) where `plaintext` is the concatenation of `pieces`.
   * @returns ciphertext || tag (`plaintext length + 16` bytes) as fresh Buffers, in order.
   * @throws RangeError if the key is not 32 bytes.
   */
  encryptPieces(key: Uint8Array, nonce: bigint, ad: Uint8Array, pieces: readonly Uint8Array[]): Buffer[];
  /**
   * DECRYPT(k, n, ad, ciphertext) where ciphertext || tag is the concatenation of `pieces`.
   * @returns the plaintext (`total - 16` bytes) as fresh Buffers, in order; nothing before the
   *   tag is verified.
   * @throws ProtocolViolation if the pieces hold fewer than 16 bytes or fail authentication.
   */
  decryptPieces(key: Uint8Array, nonce: bigint, ad: Uint8Array, pieces: readonly Uint8Array[]): Buffer[];
}

function isPiecewise(crypto: NoiseCrypto): crypto is NoiseCrypto & PiecewiseAead {
  const candidate = crypto as Partial<PiecewiseAead>;
  return typeof candidate.encryptPieces === 'function' && typeof candidate.decryptPieces === 'function';
}

function concatPieces(pieces: readonly Uint8Array[]): Uint8Array {
  if (pieces.length === 1) return pieces[0] as Uint8Array;
  return Buffer.concat(pieces);
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * One direction of Noise encryption: key `k` (32 bytes, or none before the first MixKey) and nonce
 * counter `n` (Noise §5.1).
 *
 * Nonce rule (§5.1): each successful encrypt/decrypt increments `n`; once `n` reaches 2^64-1 every
 * further EncryptWithAd/DecryptWithAd throws `PeerwardenError` with code `'NONCE_EXHAUSTED'`.
 * A failed decrypt leaves `n` unchanged (§5.1) and throws ProtocolViolation.
 */
export class CipherState {
  private key: Uint8Array | undefined;
  /**
   * `n` as two u32 halves, not a bigint: `n++` on a bigint allocated a new one per frame, and on
   * an idle connection it lived until the next frame (a ping interval), long enough to be
   * promoted. The bigint the primitives take is made per call and dies young.
   */
  private nonceHigh = 0;
  private nonceLow = 0;
  private readonly piecewise: PiecewiseAead | undefined;

  /** @param crypto the primitives; `key`, if given, is used as by InitializeKey(key). */
  constructor(
    private readonly crypto: NoiseCrypto,
    key?: Uint8Array,
  ) {
    this.piecewise = isPiecewise(crypto) ? crypto : undefined;
    this.initializeKey(key);
  }

  /**
   * InitializeKey(key) (§5.1): sets `k` (32 bytes, copied; `undefined` = empty) and `n = 0`.
   * @throws RangeError if the key is not 32 bytes.
   */
  initializeKey(key: Uint8Array | undefined): void {
    if (key !== undefined && key.length !== KEY_LENGTH) throw new RangeError(`cipher key must be ${KEY_LENGTH} bytes`);
    this.key = key === undefined ? undefined : key.slice();
    this.nonceHigh = 0;
    this.nonceLow = 0;
  }

  /** HasKey() (§5.1): whether `k` is set. */
  hasKey(): boolean {
    return this.key !== undefined;
  }

  /** The next nonce `n` this state will use, in [0, 2^64-1]. */
  get nonce(): bigint {
    const low = BigInt(this.nonceLow);
    return this.nonceHigh === 0 ? low : (BigInt(this.nonceHigh) << 32n) | low;
  }

  /**
   * SetNonce(nonce) (§5.1): sets `n`, e.g. to resume or test the overflow rule.
   * @throws RangeError outside [0, 2^64-1].
   */
  setNonce(nonce: bigint): void {
    if (nonce < 0n || nonce > MAX_NONCE) throw new RangeError('nonce must be in [0, 2^64-1]');
    this.nonceHigh = Number(nonce >> 32n);
    this.nonceLow = Number(nonce & 0xffff_ffffn);
  }

  /**
   * EncryptWithAd(ad, plaintext) (§5.1): with a key, `plaintext.length + 16` bytes of
   * ciphertext || tag and `n` incremented; without a key, `plaintext` itself.
   * `output` is passed to {@link NoiseCrypto.encrypt} (same rules: exact size, in-place allowed).
   * @throws PeerwardenError code `'NONCE_EXHAUSTED'` when `n` is 2^64-1.
   */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array, output?: Uint8Array): Uint8Array {
    const key = this.key;
    if (key === undefined) return plaintext;
    this.checkNonce();
    const ciphertext = this.crypto.encrypt(key, this.nonce, ad, plaintext, output);
    this.advanceNonce();
    return ciphertext;
  }

  /**
   * DecryptWithAd(ad, ciphertext) (§5.1): with a key, the plaintext (`ciphertext.length - 16`
   * bytes) and `n` incremented; without a key, `ciphertext` itself.
   * @throws ProtocolViolation if authentication fails (then `n` is not incremented).
   * @throws PeerwardenError code `'NONCE_EXHAUSTED'` when `n` is 2^64-1.
   */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const key = this.key;
    if (key === undefined) return ciphertext;
    this.checkNonce();
    const plaintext = this.crypto.decrypt(key, this.nonce, ad, ciphertext);
    this.advanceNonce();
    return plaintext;
  }

  /**
   * EncryptWithAd(ad, plaintext) (§5.1) where `plaintext` is the concatenation of `pieces`: the
   * same bytes as {@link encryptWithAd}, returned as Buffers whose concatenation is ciphertext ||
   * tag (without a key: the plaintext pieces themselves). Uses the crypto's
   * {@link PiecewiseAead} when it has one, so nothing is copied; else concatenates.
   * @throws PeerwardenError code `'NONCE_EXHAUSTED'` when `n` is 2^64-1.
   */
  encryptPiecesWithAd(ad: Uint8Array, pieces: readonly Uint8Array[]): Buffer[] {
    const key = this.key;
    if (key === undefined) return pieces.map(asBuffer);
    this.checkNonce();
    const piecewise = this.piecewise;
    const out =
      piecewise !== undefined
        ? piecewise.encryptPieces(key, this.nonce, ad, pieces)
        : [asBuffer(this.crypto.encrypt(key, this.nonce, ad, concatPieces(pieces)))];
    this.advanceNonce();
    return out;
  }

  /**
   * DecryptWithAd(ad, ciphertext) (§5.1) where ciphertext || tag is the concatenation of
   * `pieces`: the plaintext as Buffers in order (without a key: the pieces themselves).
   * @throws ProtocolViolation if authentication fails (then `n` is not incremented).
   * @throws PeerwardenError code `'NONCE_EXHAUSTED'` when `n` is 2^64-1.
   */
  decryptPiecesWithAd(ad: Uint8Array, pieces: readonly Uint8Array[]): Buffer[] {
    const key = this.key;
    if (key === undefined) return pieces.map(asBuffer);
    this.checkNonce();
    const piecewise = this.piecewise;
    const out =
      piecewise !== undefined
        ? piecewise.decryptPieces(key, this.nonce, ad, pieces)
        : [asBuffer(this.crypto.decrypt(key, this.nonce, ad, concatPieces(pieces)))];
    this.advanceNonce();
    return out;
  }

  /**
   * Rekey() (§5.1, §4.2 REKEY): `k` becomes the first 32 bytes of ENCRYPT(k, 2^64-1, empty,
   * 32 zero bytes); `n` is unchanged. Both peers must rekey at the same point of the stream.
   * @throws Error if there is no key.
   */
  rekey(): void {
    const key = this.key;
    if (key === undefined) throw new Error('Rekey() needs a key');
    this.key = this.crypto.encrypt(key, MAX_NONCE, EMPTY, ZEROS).slice(0, KEY_LENGTH);
  }

  /** `n` + 1, carrying into the high half (never past 2^64-1: checkNonce refuses that first). */
  private advanceNonce(): void {
    if (this.nonceLow === 0xffff_ffff) {
      this.nonceLow = 0;
      this.nonceHigh++;
    } else {
      this.nonceLow++;
    }
  }

  private checkNonce(): void {
    if (this.nonceHigh === 0xffff_ffff && this.nonceLow === 0xffff_ffff) throw new PeerwardenError('NONCE_EXHAUSTED', 'nonce 2^64-1 reached: this cipher must not be used again');
  }
}

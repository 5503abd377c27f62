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
 * One direction of Noise encryption: key `k` (32 bytes, or none before the first MixKey) and nonce
 * counter `n` (Noise §5.1).
 *
 * Nonce rule (§5.1): each successful encrypt/decrypt increments `n`; once `n` reaches 2^64-1 every
 * further EncryptWithAd/DecryptWithAd throws `PeerwardenError` with code `'NONCE_EXHAUSTED'`.
 * A failed decrypt leaves `n` unchanged (§5.1) and throws ProtocolViolation.
 */
export class CipherState {
  private key: Uint8Array | undefined;
  private n = 0n;

  /** @param crypto the primitives; `key`, if given, is used as by InitializeKey(key). */
  constructor(
    private readonly crypto: NoiseCrypto,
    key?: Uint8Array,
  ) {
    this.initializeKey(key);
  }

  /**
   * InitializeKey(key) (§5.1): sets `k` (32 bytes, copied; `undefined` = empty) and `n = 0`.
   * @throws RangeError if the key is not 32 bytes.
   */
  initializeKey(key: Uint8Array | undefined): void {
    if (key !== undefined && key.length !== KEY_LENGTH) throw new RangeError(`cipher key must be ${KEY_LENGTH} bytes`);
    this.key = key === undefined ? undefined : key.slice();
    this.n = 0n;
  }

  /** HasKey() (§5.1): whether `k` is set. */
  hasKey(): boolean {
    return this.key !== undefined;
  }

  /** The next nonce `n` this state will use, in [0, 2^64-1]. */
  get nonce(): bigint {
    return this.n;
  }

  /**
   * SetNonce(nonce) (§5.1): sets `n`, e.g. to resume or test the overflow rule.
   * @throws RangeError outside [0, 2^64-1].
   */
  setNonce(nonce: bigint): void {
    if (nonce < 0n || nonce > MAX_NONCE) throw new RangeError('nonce must be in [0, 2^64-1]');
    this.n = nonce;
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
    const ciphertext = this.crypto.encrypt(key, this.n, ad, plaintext, output);
    this.n++;
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
    const plaintext = this.crypto.decrypt(key, this.n, ad, ciphertext);
    this.n++;
    return plaintext;
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

  private checkNonce(): void {
    if (this.n >= MAX_NONCE) throw new PeerwardenError('NONCE_EXHAUSTED', 'nonce 2^64-1 reached: this cipher must not be used again');
  }
}

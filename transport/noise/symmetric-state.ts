/**
 * SymmetricState (Noise spec rev 34 §5.2): the chaining key `ck`, the handshake hash `h` and the
 * CipherState used while handshaking.
 */
import { CipherState } from './cipher-state.js';
import { HASH_LENGTH, type NoiseCrypto } from './crypto.js';

const EMPTY = new Uint8Array(0);

/**
 * Noise §5.2 SymmetricState. `ck` and `h` are 32 bytes (HASHLEN of SHA-256).
 * Errors come from the embedded {@link CipherState} (ProtocolViolation on a failed decrypt).
 */
export class SymmetricState {
  private readonly cipher: CipherState;
  private chainingKey: Uint8Array;
  private h: Uint8Array;

  /**
   * InitializeSymmetric(protocol_name) (§5.2): `h` = the UTF-8 protocol name zero-padded to 32
   * bytes, or its hash when longer; `ck = h`; no cipher key.
   */
  constructor(
    private readonly crypto: NoiseCrypto,
    protocolName: string,
  ) {
    const name = new TextEncoder().encode(protocolName);
    if (name.length <= HASH_LENGTH) {
      this.h = new Uint8Array(HASH_LENGTH);
      this.h.set(name);
    } else {
      this.h = crypto.hash(name);
    }
    this.chainingKey = this.h.slice();
    this.cipher = new CipherState(crypto);
  }

  /** MixKey(input_key_material) (§5.2): `ck, temp_k = HKDF(ck, ikm, 2)`, then InitializeKey(temp_k). */
  mixKey(inputKeyMaterial: Uint8Array): void {
    const [chainingKey, tempKey] = this.crypto.hkdf(this.chainingKey, inputKeyMaterial, 2);
    this.chainingKey = chainingKey;
    this.cipher.initializeKey(tempKey);
  }

  /** MixHash(data) (§5.2): `h = HASH(h || data)`. */
  mixHash(data: Uint8Array): void {
    const input = new Uint8Array(this.h.length + data.length);
    input.set(this.h);
    input.set(data, this.h.length);
    this.h = this.crypto.hash(input);
  }

  /**
   * MixKeyAndHash(input_key_material) (§5.2): `ck, temp_h, temp_k = HKDF(ck, ikm, 3)`, MixHash(temp_h),
   * InitializeKey(temp_k). Used by PSK patterns only; kept for completeness of §5.2.
   */
  mixKeyAndHash(inputKeyMaterial: Uint8Array): void {
    const [chainingKey, tempHash, tempKey] = this.crypto.hkdf(this.chainingKey, inputKeyMaterial, 3);
    this.chainingKey = chainingKey;
    this.mixHash(tempHash);
    this.cipher.initializeKey(tempKey);
  }

  /** GetHandshakeHash() (§5.2): a copy of `h`, 32 bytes. */
  getHandshakeHash(): Uint8Array {
    return this.h.slice();
  }

  /** Whether a cipher key is set (a MixKey has happened), so payloads are encrypted (§5.2). */
  hasKey(): boolean {
    return this.cipher.hasKey();
  }

  /** EncryptAndHash(plaintext) (§5.2): EncryptWithAd(h, plaintext), then MixHash(ciphertext). */
  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.cipher.encryptWithAd(this.h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  /**
   * DecryptAndHash(ciphertext) (§5.2): DecryptWithAd(h, ciphertext), then MixHash(ciphertext).
   * @throws ProtocolViolation if authentication fails.
   */
  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.cipher.decryptWithAd(this.h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  /**
   * Split() (§5.2): `temp_k1, temp_k2 = HKDF(ck, empty, 2)`; returns `[c1, c2]` where `c1`
   * encrypts initiator → responder and `c2` responder → initiator.
   */
  split(): [CipherState, CipherState] {
    const [key1, key2] = this.crypto.hkdf(this.chainingKey, EMPTY, 2);
    return [new CipherState(this.crypto, key1), new CipherState(this.crypto, key2)];
  }
}

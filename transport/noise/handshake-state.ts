/**
 * HandshakeState (Noise spec rev 34 §5.3) for the one pattern peerwarden speaks:
 * `Noise_XX_25519_ChaChaPoly_SHA256` (§7.5):
 *
 * ```
 * XX:
 *   -> e
 *   <- e, ee, s, es
 *   -> s, se
 * ```
 *
 * Pure state machine, no I/O: `writeMessage` / `readMessage` turn payloads into Noise messages and
 * back; framing and sockets live in `handshake.ts`.
 */
import { PeerwardenError, ProtocolViolation } from '../errors.js';
import type { CipherState } from './cipher-state.js';
import { DH_LENGTH, TAG_LENGTH, nobleCrypto, type KeyPair, type NoiseCrypto } from './crypto.js';
import { SymmetricState } from './symmetric-state.js';

/** The full Noise protocol name (§8); it seeds the handshake hash. */
export const NOISE_PROTOCOL_NAME = 'Noise_XX_25519_ChaChaPoly_SHA256';

/** Maximum size of any Noise message, handshake or transport, in bytes (§3). */
export const MAX_NOISE_MESSAGE_LENGTH = 65535;

type Token = 'e' | 's' | 'ee' | 'es' | 'se' | 'ss';

/** The message patterns of XX (§7.5); even indices are sent by the initiator. */
const XX_PATTERN: readonly (readonly Token[])[] = [['e'], ['e', 'ee', 's', 'es'], ['s', 'se']];

/** Options of {@link HandshakeState}. Keys are X25519, 32 bytes each. */
export interface HandshakeStateOptions {
  /** Our role: `true` for the initiator (who sends the first message). */
  readonly initiator: boolean;
  /** Our long-term static key pair `s`. */
  readonly staticKeyPair: KeyPair;
  /** Prologue mixed into the handshake hash (§6); both sides must use the same bytes. Default empty. */
  readonly prologue?: Uint8Array;
  /**
   * Ephemeral key pair `e` to use instead of a fresh random one. Only for replaying test vectors:
   * reusing an ephemeral key breaks the handshake's security.
   */
  readonly ephemeralKeyPair?: KeyPair;
  /** The primitives; default {@link nobleCrypto}. */
  readonly crypto?: NoiseCrypto;
}

/** The transport ciphers after the handshake, from our point of view. */
export interface TransportCiphers {
  /** Encrypts what we send (initiator: Split()'s c1; responder: c2). */
  readonly send: CipherState;
  /** Decrypts what we receive (initiator: c2; responder: c1). */
  readonly receive: CipherState;
}

/**
 * Noise §5.3 HandshakeState for pattern XX, either role.
 *
 * Messages alternate: the initiator writes message 0, reads 1, writes 2; the responder the
 * reverse. After the third message {@link HandshakeState.isComplete} is true, {@link split} gives
 * the transport ciphers and {@link getHandshakeHash} the final `h`.
 *
 * Errors: a message from the peer that is longer than 65535 bytes, too short to hold the keys and
 * tags its pattern requires, carries an invalid public key, or fails decryption raises
 * {@link ProtocolViolation}; after any error from `readMessage`/`writeMessage` the state is
 * spoiled and every later call throws. Calling out of turn throws a plain `Error`.
 */
export class HandshakeState {
  private readonly crypto: NoiseCrypto;
  private readonly symmetric: SymmetricState;
  private readonly initiator: boolean;
  private readonly s: KeyPair;
  private e: KeyPair | undefined;
  private readonly injectedEphemeral: KeyPair | undefined;
  private rs: Uint8Array | undefined;
  private re: Uint8Array | undefined;
  private messageIndex = 0;
  private failed = false;
  private splitDone = false;

  /**
   * Initialize(handshake_pattern = XX, initiator, prologue, s, e, rs = none, re = none) (§5.3).
   * @throws RangeError if a key is not 32 bytes.
   */
  constructor(options: HandshakeStateOptions) {
    this.crypto = options.crypto ?? nobleCrypto;
    this.initiator = options.initiator;
    checkKeyPair(options.staticKeyPair, 'static');
    if (options.ephemeralKeyPair !== undefined) checkKeyPair(options.ephemeralKeyPair, 'ephemeral');
    this.s = options.staticKeyPair;
    this.injectedEphemeral = options.ephemeralKeyPair;
    this.symmetric = new SymmetricState(this.crypto, NOISE_PROTOCOL_NAME);
    this.symmetric.mixHash(options.prologue ?? new Uint8Array(0));
    // XX has no pre-messages (§7.5), so nothing else is hashed here.
  }

  /** Whether we are the initiator. */
  get isInitiator(): boolean {
    return this.initiator;
  }

  /** Whether all three XX messages have been written or read. */
  get isComplete(): boolean {
    return this.messageIndex === XX_PATTERN.length;
  }

  /** Whether the next message is ours to write (false once complete). */
  get isMyTurn(): boolean {
    return !this.isComplete && (this.messageIndex % 2 === 0) === this.initiator;
  }

  /** The peer's static public key `rs` (32 bytes) once its `s` token was read, else undefined. */
  get remoteStaticPublicKey(): Uint8Array | undefined {
    return this.rs?.slice();
  }

  /** The peer's ephemeral public key `re` (32 bytes) once read, else undefined. */
  get remoteEphemeralPublicKey(): Uint8Array | undefined {
    return this.re?.slice();
  }

  /** GetHandshakeHash() (§5.2): a copy of `h` (32 bytes); final once {@link isComplete}. */
  getHandshakeHash(): Uint8Array {
    return this.symmetric.getHandshakeHash();
  }

  /**
   * WriteMessage(payload, message_buffer) (§5.3): the next Noise message, carrying `payload`
   * (encrypted unless it is the first message, which has no key yet).
   * @throws RangeError if the message would exceed 65535 bytes (§3).
   * @throws Error if it is not our turn or the state failed before.
   */
  writeMessage(payload: Uint8Array): Uint8Array {
    this.checkUsable();
    if (!this.isMyTurn) throw new Error('WriteMessage out of turn');
    const tokens = patternAt(this.messageIndex);
    const length = minimumLength(tokens, this.symmetric.hasKey()) + payload.length;
    if (length > MAX_NOISE_MESSAGE_LENGTH) {
      throw new RangeError(`Noise message of ${length} bytes exceeds ${MAX_NOISE_MESSAGE_LENGTH}`);
    }
    try {
      const message = new Uint8Array(length);
      let offset = 0;
      for (const token of tokens) {
        if (token === 'e') {
          const e = this.injectedEphemeral ?? this.crypto.generateKeyPair();
          this.e = e;
          message.set(e.publicKey, offset);
          offset += DH_LENGTH;
          this.symmetric.mixHash(e.publicKey);
        } else if (token === 's') {
          const encrypted = this.symmetric.encryptAndHash(this.s.publicKey);
          message.set(encrypted, offset);
          offset += encrypted.length;
        } else {
          this.mixDh(token);
        }
      }
      message.set(this.symmetric.encryptAndHash(payload), offset);
      this.messageIndex++;
      return message;
    } catch (error) {
      this.failed = true;
      throw error;
    }
  }

  /**
   * ReadMessage(message, payload_buffer) (§5.3): processes the peer's next Noise message and
   * returns its payload.
   * @throws ProtocolViolation if the message is longer than 65535 bytes (§3), shorter than its
   *   keys and tags, carries an invalid public key, or fails authentication.
   * @throws Error if it is not the peer's turn or the state failed before.
   */
  readMessage(message: Uint8Array): Uint8Array {
    this.checkUsable();
    if (this.isComplete || this.isMyTurn) throw new Error('ReadMessage out of turn');
    if (message.length > MAX_NOISE_MESSAGE_LENGTH) {
      this.failed = true;
      throw new ProtocolViolation(`Noise message of ${message.length} bytes exceeds ${MAX_NOISE_MESSAGE_LENGTH}`);
    }
    const tokens = patternAt(this.messageIndex);
    const minimum = minimumLength(tokens, this.symmetric.hasKey());
    if (message.length < minimum) {
      this.failed = true;
      throw new ProtocolViolation(
        `truncated Noise message ${this.messageIndex + 1}: ${message.length} bytes, at least ${minimum} needed`,
      );
    }
    try {
      let offset = 0;
      for (const token of tokens) {
        if (token === 'e') {
          const re = message.slice(offset, offset + DH_LENGTH);
          offset += DH_LENGTH;
          this.re = re;
          this.symmetric.mixHash(re);
        } else if (token === 's') {
          const length = DH_LENGTH + (this.symmetric.hasKey() ? TAG_LENGTH : 0);
          this.rs = this.symmetric.decryptAndHash(message.subarray(offset, offset + length)).slice();
          offset += length;
        } else {
          this.mixDh(token);
        }
      }
      const payload = this.symmetric.decryptAndHash(message.subarray(offset));
      this.messageIndex++;
      // Without a key the "plaintext" is a view of the caller's message; give back our own copy.
      return payload.slice();
    } catch (error) {
      this.failed = true;
      if (error instanceof PeerwardenError) throw error;
      throw new ProtocolViolation('invalid Noise message', { cause: error });
    }
  }

  /**
   * Split() (§5.2) oriented for our role. Callable once, after the handshake is complete: a second
   * pair of ciphers with the same keys would reuse nonces.
   * @throws Error if the handshake is not complete or split was already called.
   */
  split(): TransportCiphers {
    if (!this.isComplete) throw new Error('Split() before the handshake completed');
    if (this.splitDone) throw new Error('Split() may be called only once');
    this.splitDone = true;
    const [c1, c2] = this.symmetric.split();
    return this.initiator ? { send: c1, receive: c2 } : { send: c2, receive: c1 };
  }

  /** MixKey(DH(...)) for a DH token (§5.3); `es` / `se` name the initiator's key first. */
  private mixDh(token: Exclude<Token, 'e' | 's'>): void {
    const e = this.e;
    const { re, rs, s } = this;
    let privateKey: Uint8Array | undefined;
    let publicKey: Uint8Array | undefined;
    switch (token) {
      case 'ee':
        privateKey = e?.privateKey;
        publicKey = re;
        break;
      case 'es':
        [privateKey, publicKey] = this.initiator ? [e?.privateKey, rs] : [s.privateKey, re];
        break;
      case 'se':
        [privateKey, publicKey] = this.initiator ? [s.privateKey, re] : [e?.privateKey, rs];
        break;
      case 'ss':
        privateKey = s.privateKey;
        publicKey = rs;
        break;
    }
    // Unreachable for XX: every DH token follows the tokens that set its keys.
    if (privateKey === undefined || publicKey === undefined) throw new Error(`DH token ${token} before its keys`);
    this.symmetric.mixKey(this.crypto.dh(privateKey, publicKey));
  }

  private checkUsable(): void {
    if (this.failed) throw new Error('HandshakeState failed earlier and cannot be used');
  }
}

function patternAt(index: number): readonly Token[] {
  const tokens = XX_PATTERN[index];
  if (tokens === undefined) throw new Error('handshake already complete');
  return tokens;
}

/**
 * Bytes a message with these tokens holds besides its payload: 32 per `e`, 32 (+16 once a key
 * exists) per `s`, and the payload's tag once a key exists. A DH token creates the key.
 */
function minimumLength(tokens: readonly Token[], hasKey: boolean): number {
  let length = 0;
  let keyed = hasKey;
  for (const token of tokens) {
    if (token === 'e') length += DH_LENGTH;
    else if (token === 's') length += DH_LENGTH + (keyed ? TAG_LENGTH : 0);
    else keyed = true;
  }
  return length + (keyed ? TAG_LENGTH : 0);
}

function checkKeyPair(pair: KeyPair, what: string): void {
  if (pair.publicKey.length !== DH_LENGTH || pair.privateKey.length !== DH_LENGTH) {
    throw new RangeError(`${what} key pair must hold two ${DH_LENGTH}-byte keys`);
  }
}

/**
 * Peer IDs: the text name of a peer, derived from (and reversible to) its 32-byte X25519 static
 * public key, which the Noise XX handshake authenticates (DESIGN §5).
 */
import { PeerwardenError } from './errors.js';

/**
 * A peer ID in its text form: `pw` followed by the 32-byte X25519 static public key in lowercase
 * RFC 4648 §6 base32 (alphabet `a`–`z`, `2`–`7`) without `=` padding: 2 + 52 = 54 ASCII characters,
 * e.g. `pwaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` for the all-zero key. Only the
 * canonical encoding is valid: the 4 unused low bits of the last character must be zero, so every
 * key has exactly one ID. Compare IDs with `===`.
 *
 * Branded so that arbitrary strings are not taken for checked IDs; obtain one from
 * {@link peerIdFromPublicKey} or {@link parsePeerId}, or narrow with {@link isPeerId}.
 */
export type PeerId = string & { readonly __brand: 'PeerId' };

/** The text prefix of every {@link PeerId}. */
export const PEER_ID_PREFIX = 'pw';
/** Bytes of the public key a {@link PeerId} encodes. */
export const PEER_ID_KEY_LENGTH = 32;
/** Characters of a {@link PeerId}: 2 (prefix) + ceil(32 × 8 / 5) = 54. */
export const PEER_ID_LENGTH = PEER_ID_PREFIX.length + Math.ceil((PEER_ID_KEY_LENGTH * 8) / 5);

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
/** Character code → 5-bit value, -1 for characters outside the alphabet. */
const DECODE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i;

/** Malformed peer ID text: wrong prefix, length, alphabet or a non-canonical last character. */
export class InvalidPeerId extends PeerwardenError {
  constructor(message: string) {
    super('INVALID_PEER_ID', message);
  }
}

/**
 * The {@link PeerId} of a 32-byte X25519 static public key.
 * @throws RangeError if `publicKey` is not 32 bytes.
 */
export function peerIdFromPublicKey(publicKey: Uint8Array): PeerId {
  if (publicKey.length !== PEER_ID_KEY_LENGTH) {
    throw new RangeError(`a peer ID encodes a ${PEER_ID_KEY_LENGTH}-byte public key, got ${publicKey.length} bytes`);
  }
  // Characters collected and joined once: `text += c` 52 times would keep a 52-deep rope of
  // string pieces (about 1.4 KiB) alive for every peer ID held, i.e. every connection.
  const chars: string[] = [PEER_ID_PREFIX];
  let buffer = 0; // pending bits, at most 12 at a time
  let bits = 0;
  for (const byte of publicKey) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      chars.push(ALPHABET[(buffer >>> bits) & 31] as string);
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) chars.push(ALPHABET[(buffer << (5 - bits)) & 31] as string);
  return chars.join('') as PeerId;
}

/**
 * The 32-byte public key a peer ID encodes (the inverse of {@link peerIdFromPublicKey}).
 * @throws InvalidPeerId if `id` is not a canonical peer ID (see {@link PeerId}).
 */
export function publicKeyFromPeerId(id: string): Uint8Array {
  if (typeof id !== 'string') throw new InvalidPeerId('a peer ID must be a string');
  if (id.length !== PEER_ID_LENGTH) {
    throw new InvalidPeerId(`a peer ID has ${PEER_ID_LENGTH} characters, got ${id.length}`);
  }
  if (!id.startsWith(PEER_ID_PREFIX)) throw new InvalidPeerId(`a peer ID starts with '${PEER_ID_PREFIX}'`);
  const key = new Uint8Array(PEER_ID_KEY_LENGTH);
  let buffer = 0;
  let bits = 0;
  let index = 0;
  for (let i = PEER_ID_PREFIX.length; i < id.length; i++) {
    const code = id.charCodeAt(i);
    const value = code < 128 ? (DECODE[code] ?? -1) : -1;
    if (value < 0) throw new InvalidPeerId(`invalid character ${JSON.stringify(id[i])} in peer ID at ${i}`);
    buffer = (buffer << 5) | value;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      key[index++] = (buffer >>> bits) & 0xff;
      buffer &= (1 << bits) - 1;
    }
  }
  // 256 bits in 52 characters leave 4 padding bits, which must be zero for one ID per key.
  if (buffer !== 0) throw new InvalidPeerId('non-canonical peer ID: unused trailing bits are not zero');
  return key;
}

/** Whether `text` is a canonical peer ID (see {@link PeerId}); never throws. */
export function isPeerId(text: unknown): text is PeerId {
  if (typeof text !== 'string') return false;
  try {
    publicKeyFromPeerId(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * `text` checked and branded as a {@link PeerId}.
 * @throws InvalidPeerId if it is not a canonical peer ID.
 */
export function parsePeerId(text: string): PeerId {
  publicKeyFromPeerId(text);
  return text as PeerId;
}

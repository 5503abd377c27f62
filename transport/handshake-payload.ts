/**
 * The handshake payload: what a node tells its peer inside the encrypted Noise XX messages 2
 * (responder) and 3 (initiator); message 1's payload is empty (DESIGN §5).
 *
 * Binary layout, big-endian, version 1 of the format:
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 1 | format byte, `0x01` ({@link HANDSHAKE_PAYLOAD_FORMAT}) |
 * | 1 | 2 | protocol version, u16 |
 * | 3 | 4 | feature flags, u32 bitfield |
 * | 7 | 4 | privacy flags, u32 bitfield |
 * | 11 | 8 | node nonce, 8 random bytes |
 * | 19 | 1 | listen address count `n`, 0..{@link MAX_LISTEN_ADDRESSES} |
 * | 20 | … | `n` times: u8 length `L` (1..{@link MAX_LISTEN_ADDRESS_LENGTH}), then `L` bytes of address text |
 * | … | … | trailing bytes: ignored |
 *
 * Address text is printable ASCII without spaces (0x21–0x7E), e.g. `127.0.0.1:4001` or
 * `[::1]:4001`; its host:port syntax is checked by whoever dials it, not here.
 *
 * Forward compatibility: bytes after the last address are allowed and ignored, so a later
 * protocol version can append fields that older nodes skip. An incompatible layout change must
 * use a new format byte, which older decoders reject. The Noise message limit (65535 bytes) bounds
 * the whole payload.
 */
import { randomBytes } from 'node:crypto';
import { IncompatiblePeer, ProtocolViolation } from './errors.js';

/** The format byte this module writes and the only one it reads. */
export const HANDSHAKE_PAYLOAD_FORMAT = 0x01;
/** The wire protocol version this build speaks; peers must speak the same one. */
export const PROTOCOL_VERSION = 1;
/** Length of the node nonce, in bytes. */
export const NODE_NONCE_LENGTH = 8;
/** Most listen addresses a payload may carry. */
export const MAX_LISTEN_ADDRESSES = 16;
/** Longest listen address, in bytes (= ASCII characters). */
export const MAX_LISTEN_ADDRESS_LENGTH = 255;

const FIXED_LENGTH = 20; // format .. address count

/** The fields of a handshake payload (see the module doc for the wire layout). */
export interface HandshakePayload {
  /** Wire protocol version, u16 (0..65535). */
  readonly protocolVersion: number;
  /** Features this node supports, u32 bitfield. */
  readonly featureFlags: number;
  /** Privacy preferences of this node, u32 bitfield. */
  readonly privacyFlags: number;
  /** 8 random bytes chosen once per node run; seeing our own nonce means we dialed ourselves. */
  readonly nodeNonce: Uint8Array;
  /** Addresses the node accepts connections on, e.g. `127.0.0.1:4001`; at most 16, each 1..255 printable ASCII characters. */
  readonly listenAddresses: readonly string[];
}

/** A fresh random 8-byte node nonce (from `node:crypto`). */
export function createNodeNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NODE_NONCE_LENGTH));
}

/**
 * The wire form of `payload` (layout in the module doc), `20 + Σ(1 + address length)` bytes,
 * at most 4116.
 * @throws RangeError if a field is out of range: version not a u16, flags not u32, nonce not 8
 *   bytes, more than 16 addresses, or an address empty, longer than 255 or not printable ASCII.
 */
export function encodeHandshakePayload(payload: HandshakePayload): Uint8Array {
  const { protocolVersion, featureFlags, privacyFlags, nodeNonce, listenAddresses } = payload;
  if (!isUint(protocolVersion, 0xffff)) throw new RangeError('protocolVersion must be a u16');
  if (!isUint(featureFlags, 0xffff_ffff)) throw new RangeError('featureFlags must be a u32');
  if (!isUint(privacyFlags, 0xffff_ffff)) throw new RangeError('privacyFlags must be a u32');
  if (nodeNonce.length !== NODE_NONCE_LENGTH) throw new RangeError(`nodeNonce must be ${NODE_NONCE_LENGTH} bytes`);
  if (listenAddresses.length > MAX_LISTEN_ADDRESSES) {
    throw new RangeError(`at most ${MAX_LISTEN_ADDRESSES} listen addresses`);
  }
  let length = FIXED_LENGTH;
  for (const address of listenAddresses) {
    if (!isValidAddress(address)) {
      throw new RangeError(`listen address must be 1..${MAX_LISTEN_ADDRESS_LENGTH} printable ASCII characters: ${JSON.stringify(address)}`);
    }
    length += 1 + address.length;
  }
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  bytes[0] = HANDSHAKE_PAYLOAD_FORMAT;
  view.setUint16(1, protocolVersion);
  view.setUint32(3, featureFlags);
  view.setUint32(7, privacyFlags);
  bytes.set(nodeNonce, 11);
  bytes[19] = listenAddresses.length;
  let offset = FIXED_LENGTH;
  for (const address of listenAddresses) {
    bytes[offset++] = address.length;
    // Checked printable ASCII above, so one char code is one byte.
    for (let i = 0; i < address.length; i++) bytes[offset++] = address.charCodeAt(i);
  }
  return bytes;
}

/**
 * Parses a handshake payload received from a peer. Strict: every byte up to the last address
 * must be well-formed; trailing bytes after it are ignored (module doc).
 * @throws ProtocolViolation on an unknown format byte, truncated input, more than 16 addresses,
 *   or an address that is empty or not printable ASCII.
 */
export function decodeHandshakePayload(bytes: Uint8Array): HandshakePayload {
  if (bytes.length < FIXED_LENGTH) {
    throw new ProtocolViolation(`handshake payload truncated: ${bytes.length} bytes, at least ${FIXED_LENGTH} needed`);
  }
  if (bytes[0] !== HANDSHAKE_PAYLOAD_FORMAT) {
    throw new ProtocolViolation(`unknown handshake payload format 0x${(bytes[0] ?? 0).toString(16)}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint8(19);
  if (count > MAX_LISTEN_ADDRESSES) {
    throw new ProtocolViolation(`handshake payload lists ${count} addresses, at most ${MAX_LISTEN_ADDRESSES} allowed`);
  }
  const listenAddresses: string[] = [];
  let offset = FIXED_LENGTH;
  for (let n = 0; n < count; n++) {
    if (offset >= bytes.length) throw new ProtocolViolation('handshake payload truncated in the listen addresses');
    const length = view.getUint8(offset++);
    if (length === 0) throw new ProtocolViolation('empty listen address in handshake payload');
    if (offset + length > bytes.length) throw new ProtocolViolation('handshake payload truncated in a listen address');
    let address = '';
    for (let i = offset; i < offset + length; i++) {
      const code = view.getUint8(i);
      if (code < 0x21 || code > 0x7e) throw new ProtocolViolation('listen address is not printable ASCII');
      address += String.fromCharCode(code);
    }
    listenAddresses.push(address);
    offset += length;
  }
  return {
    protocolVersion: view.getUint16(1),
    featureFlags: view.getUint32(3),
    privacyFlags: view.getUint32(7),
    nodeNonce: bytes.slice(11, 19),
    listenAddresses,
  };
}

/**
 * Checks that a remote node can talk to us: the same protocol version, and every bit of
 * `requiredFeatures` (u32 bitfield, default 0) set in the remote's feature flags (DESIGN §5:
 * incompatible versions or missing required features close the connection).
 * @throws IncompatiblePeer naming the version mismatch or the missing feature bits.
 */
export function checkCompatibility(local: HandshakePayload, remote: HandshakePayload, requiredFeatures = 0): void {
  if (remote.protocolVersion !== local.protocolVersion) {
    throw new IncompatiblePeer(
      `peer speaks protocol version ${remote.protocolVersion}, we speak ${local.protocolVersion}`,
    );
  }
  const missing = (requiredFeatures & ~remote.featureFlags) >>> 0;
  if (missing !== 0) {
    throw new IncompatiblePeer(`peer lacks required features 0x${missing.toString(16).padStart(8, '0')}`);
  }
}

function isUint(value: number, max: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= max;
}

function isValidAddress(address: string): boolean {
  if (typeof address !== 'string' || address.length === 0 || address.length > MAX_LISTEN_ADDRESS_LENGTH) return false;
  for (let i = 0; i < address.length; i++) {
    const code = address.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) return false;
  }
  return true;
}

/**
 * The yamux frame header: constants, encoding and validating decoding.
 *
 * Source: HashiCorp yamux `spec.md` ("Framing"). Every frame starts with a 12-byte header, all
 * fields big-endian:
 *
 * ```
 * | version u8 | type u8 | flags u16 | stream ID u32 | length u32 |
 * ```
 *
 * Only Data frames carry a body (`length` bytes). For the other types `length` is a value:
 * the window delta (WindowUpdate), an opaque echo value (Ping) or an error code (GoAway).
 */
import { ProtocolViolation } from '../errors.js';

/** The only protocol version there is (spec.md, "Version Field": always 0). */
export const YAMUX_VERSION = 0;

/** Size of a frame header in bytes (spec.md, "Framing": 12 bytes of overhead). */
export const HEADER_LENGTH = 12;

/**
 * Receive window every stream starts with on both sides, in bytes (spec.md, "Flow Control":
 * 256 KB). A side may only enlarge it, by sending a WindowUpdate with its SYN or ACK.
 */
export const INITIAL_STREAM_WINDOW = 256 * 1024;

/** Largest value of the u32 stream ID, length and window fields. */
export const MAX_UINT32 = 0xffff_ffff;

/** Frame types (spec.md, "Type Field"). */
export const FrameType = {
  /** Carries `length` bytes of stream data; may be empty when it only carries flags. */
  Data: 0,
  /** Adds `length` bytes to the receiver's send window of a stream; may carry flags. */
  WindowUpdate: 1,
  /** RTT measurement and keep-alive; `length` is an opaque value echoed back. Stream 0 only. */
  Ping: 2,
  /** Session termination; `length` is a {@link GoAwayCode}. Stream 0 only. */
  GoAway: 3,
} as const;
/** One of the {@link FrameType} values (0–3). */
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Flag bits of the u16 flags field (spec.md, "Flag Field"). */
export const Flag = {
  /** Opens a stream (Data/WindowUpdate), or marks a Ping as a request. */
  SYN: 0x1,
  /** Accepts a stream (Data/WindowUpdate), or marks a Ping as the response. */
  ACK: 0x2,
  /** Half-close: the sender will send no more data on this stream. */
  FIN: 0x4,
  /** Resets (aborts) a stream immediately, or rejects a SYN. */
  RST: 0x8,
} as const;
/** One of the {@link Flag} bits. */
export type Flag = (typeof Flag)[keyof typeof Flag];

/** Every flag bit the spec defines; any other bit set is a protocol violation here. */
export const KNOWN_FLAGS = Flag.SYN | Flag.ACK | Flag.FIN | Flag.RST;

/** GoAway error codes, carried in the length field (spec.md, "Session termination"). */
export const GoAwayCode = {
  Normal: 0,
  ProtocolError: 1,
  InternalError: 2,
} as const;
/** One of the {@link GoAwayCode} values. */
export type GoAwayCode = (typeof GoAwayCode)[keyof typeof GoAwayCode];

/** A decoded frame header. All numbers are unsigned integers in the ranges of their fields. */
export interface FrameHeader {
  /** Always {@link YAMUX_VERSION} once decoded. */
  readonly version: number;
  readonly type: FrameType;
  /** Bit set of {@link Flag} values (u16). */
  readonly flags: number;
  /** u32; 0 is the session itself (Ping, GoAway), streams use 1.. (client odd, server even). */
  readonly streamId: number;
  /** u32: body length in bytes (Data), window delta in bytes (WindowUpdate), opaque (Ping), code (GoAway). */
  readonly length: number;
}

/** What {@link encodeHeader} needs: a header without the version, which is always 0. */
export type FrameHeaderInit = Omit<FrameHeader, 'version'>;

function isUint(value: number, max: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= max;
}

/**
 * Encodes a 12-byte frame header, version 0, big-endian (spec.md, "Framing").
 *
 * @param header type, flags (u16), stream ID (u32) and length (u32).
 * @returns a fresh 12-byte Buffer.
 * @throws RangeError when a field is outside its range (a programming error, never the peer's).
 */
export function encodeHeader(header: FrameHeaderInit): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LENGTH);
  writeHeader(out, 0, header);
  return out;
}

/**
 * Writes a frame header into `target` at `offset` (12 bytes), like {@link encodeHeader} without
 * allocating, so a header and a small body can share one buffer.
 *
 * @throws RangeError when a field is outside its range or `target` is too short.
 */
export function writeHeader(target: Buffer, offset: number, header: FrameHeaderInit): void {
  const { type, flags, streamId, length } = header;
  if (!isUint(type, 3)) throw new RangeError(`yamux frame type must be 0..3, got ${type}`);
  if (!isUint(flags, 0xffff)) throw new RangeError(`yamux flags must be a u16, got ${flags}`);
  if (!isUint(streamId, MAX_UINT32)) throw new RangeError(`yamux stream ID must be a u32, got ${streamId}`);
  if (!isUint(length, MAX_UINT32)) throw new RangeError(`yamux length must be a u32, got ${length}`);
  if (offset < 0 || offset + HEADER_LENGTH > target.length) {
    throw new RangeError('yamux header does not fit in the target buffer');
  }
  target.writeUInt8(YAMUX_VERSION, offset);
  target.writeUInt8(type, offset + 1);
  target.writeUInt16BE(flags, offset + 2);
  target.writeUInt32BE(streamId, offset + 4);
  target.writeUInt32BE(length, offset + 8);
}

/**
 * Decodes and validates a frame header from the first 12 bytes of `bytes`.
 *
 * Checks, each from spec.md: version is 0 ("Version Field"); type is 0–3 ("Type Field"); only
 * the four defined flag bits are set ("Flag Field"); Ping and GoAway use stream 0 while Data
 * and WindowUpdate never do ("StreamID Field"); a Ping is exactly a request (SYN) or a response
 * (ACK); a GoAway carries no flags; SYN and ACK never come together on one stream frame (a frame
 * either opens a stream or accepts one). GoAway codes other than 0–2 are accepted and left to
 * the session, as the spec allows more codes later. Lengths are checked by the session, which
 * knows the windows and caps.
 *
 * @param bytes at least 12 bytes; only the first 12 are read.
 * @returns the header.
 * @throws ProtocolViolation when the header breaks one of the rules above.
 * @throws RangeError when fewer than 12 bytes are given (a programming error).
 */
export function decodeHeader(bytes: Uint8Array): FrameHeader {
  if (bytes.length < HEADER_LENGTH) {
    throw new RangeError(`a yamux header needs ${HEADER_LENGTH} bytes, got ${bytes.length}`);
  }
  const view = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.readUInt8(0);
  const type = view.readUInt8(1);
  const flags = view.readUInt16BE(2);
  const streamId = view.readUInt32BE(4);
  const length = view.readUInt32BE(8);

  if (version !== YAMUX_VERSION) {
    throw new ProtocolViolation(`yamux: unsupported version ${version} (spec.md, Version Field: always 0)`);
  }
  if (!isFrameType(type)) {
    throw new ProtocolViolation(`yamux: unknown frame type ${type} (spec.md, Type Field: 0..3)`);
  }
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new ProtocolViolation(`yamux: unknown flag bits 0x${flags.toString(16)} (spec.md, Flag Field)`);
  }
  switch (type) {
    case FrameType.Ping:
      if (streamId !== 0) {
        throw new ProtocolViolation(`yamux: Ping on stream ${streamId} (spec.md, StreamID Field: stream 0 only)`);
      }
      if (flags !== Flag.SYN && flags !== Flag.ACK) {
        throw new ProtocolViolation(`yamux: Ping with flags 0x${flags.toString(16)} (must be SYN or ACK)`);
      }
      break;
    case FrameType.GoAway:
      if (streamId !== 0) {
        throw new ProtocolViolation(`yamux: GoAway on stream ${streamId} (spec.md, StreamID Field: stream 0 only)`);
      }
      if (flags !== 0) {
        throw new ProtocolViolation(`yamux: GoAway with flags 0x${flags.toString(16)} (must carry none)`);
      }
      break;
    default:
      if (streamId === 0) {
        throw new ProtocolViolation('yamux: stream frame on stream 0 (spec.md, StreamID Field: 0 is the session)');
      }
      if ((flags & (Flag.SYN | Flag.ACK)) === (Flag.SYN | Flag.ACK)) {
        throw new ProtocolViolation(`yamux: SYN and ACK together on stream ${streamId}`);
      }
  }
  return { version, type, flags, streamId, length };
}

/** Whether `value` is one of the four frame types. */
export function isFrameType(value: number): value is FrameType {
  return value === FrameType.Data || value === FrameType.WindowUpdate || value === FrameType.Ping || value === FrameType.GoAway;
}

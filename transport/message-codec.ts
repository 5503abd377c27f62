/**
 * The application message codec (DESIGN §4 Batching): how a batch of messages travels on a
 * peer's application stream.
 *
 * A message is an opaque byte array. On the wire each message is one record,
 * `u32 big-endian length || bytes`, and a batch is simply consecutive records: the receiver needs
 * no batch boundaries, it yields each message as soon as its record is complete. The stream below
 * (yamux over the secure channel) already splits and orders bytes, so records may arrive cut
 * anywhere; {@link MessageDecoder} reassembles them.
 */
import { ByteQueue } from './byte-queue.js';
import { ProtocolViolation } from './errors.js';

/** Bytes of a record's length prefix (u32, big-endian). */
const HEADER_BYTES = 4;

/**
 * Largest message, in bytes: 1 MiB (1 048 576). Our own limit, not from a spec: it bounds what a
 * receiver must buffer for one record (a remote peer can make it hold at most this plus the
 * 4-byte header), while leaving room for any message a supervisor should carry. Larger payloads
 * belong in their own protocol stream, chunked by the application.
 */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/**
 * Encodes `messages` as consecutive records `u32 BE length || bytes`, in order, into one Buffer
 * of `4 × messages.length + Σ lengths` bytes. Empty messages are allowed (a 4-byte record).
 *
 * @throws RangeError if a message is longer than {@link MAX_MESSAGE_BYTES}; nothing is encoded.
 */
export function encodeMessages(messages: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const [index, message] of messages.entries()) {
    if (message.byteLength > MAX_MESSAGE_BYTES) {
      throw new RangeError(`message ${index} is ${message.byteLength} bytes, above the ${MAX_MESSAGE_BYTES}-byte limit`);
    }
    total += HEADER_BYTES + message.byteLength;
  }
  const out = Buffer.allocUnsafe(total);
  let offset = 0;
  for (const message of messages) {
    out.writeUInt32BE(message.byteLength, offset);
    out.set(message, offset + HEADER_BYTES);
    offset += HEADER_BYTES + message.byteLength;
  }
  return out;
}

/**
 * Incremental decoder of the record stream written by {@link encodeMessages}. Feed it the stream's
 * chunks as they come, cut anywhere; it returns each complete message once, in order.
 *
 * Memory is bounded by the record header: a declared length above `maxMessageBytes` is rejected as
 * soon as its 4 header bytes are in, before any of the body is waited for, so a peer can make the
 * decoder hold at most `4 + maxMessageBytes` bytes between calls.
 *
 * After a {@link ProtocolViolation} the decoder is failed for good: the stream has lost framing,
 * so every later `push` or `end` throws again and the caller closes the stream.
 */
export class MessageDecoder {
  private readonly queue = new ByteQueue();
  private readonly maxMessageBytes: number;
  private failure: ProtocolViolation | undefined;

  /**
   * @param maxMessageBytes largest accepted message, bytes (default {@link MAX_MESSAGE_BYTES}).
   *   Lower it to bound memory further; senders using {@link encodeMessages} never exceed the default.
   * @throws RangeError unless `maxMessageBytes` is a non-negative safe integer.
   */
  constructor(maxMessageBytes: number = MAX_MESSAGE_BYTES) {
    if (!Number.isSafeInteger(maxMessageBytes) || maxMessageBytes < 0) {
      throw new RangeError(`maxMessageBytes must be a non-negative integer, got ${maxMessageBytes}`);
    }
    this.maxMessageBytes = maxMessageBytes;
  }

  /** Bytes received but not yet returned as a message (a partial record), header included. */
  get bufferedBytes(): number {
    return this.queue.length;
  }

  /**
   * Takes the next chunk of the stream and returns the messages it completes, in order, each a
   * fresh `Uint8Array` that shares no memory with the input (callers may keep or mutate it).
   * The unread tail of `chunk` is kept by reference until its record completes: do not mutate
   * `chunk` afterwards (socket chunks never are).
   *
   * @throws ProtocolViolation if a record declares a length above `maxMessageBytes`, or if the
   *   decoder already failed. Messages completed earlier in the same chunk are lost with it, which
   *   is fine: the stream is being closed.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failure) throw this.failure;
    this.queue.push(chunk);
    const messages: Uint8Array[] = [];
    for (;;) {
      const length = this.declaredLength();
      if (length === undefined || this.queue.length < HEADER_BYTES + length) break;
      this.queue.skip(HEADER_BYTES);
      // Copy: the body may be a view into the caller's chunk.
      messages.push(new Uint8Array(this.queue.read(length) as Buffer));
    }
    return messages;
  }

  /**
   * Signals the end of the stream (the remote side closed its half).
   *
   * @throws ProtocolViolation if a partial record is left (the peer cut a message short), or if
   *   the decoder already failed.
   */
  end(): void {
    if (this.failure) throw this.failure;
    const left = this.queue.length;
    if (left > 0) {
      const length = this.declaredLength();
      const expected = length === undefined ? 'a 4-byte record header' : `a ${length}-byte message`;
      this.queue.clear();
      this.failure = new ProtocolViolation(`stream ended inside ${expected}: ${left} bytes left over`);
      throw this.failure;
    }
  }

  /**
   * Length declared by the header of the next record, or undefined while its 4 header bytes are
   * not all in. Checked here, before any body byte is awaited, to keep memory bounded.
   *
   * @throws ProtocolViolation above `maxMessageBytes` (and fails the decoder).
   */
  private declaredLength(): number | undefined {
    const header = this.queue.peek(HEADER_BYTES);
    if (header === undefined) return undefined;
    const length = header.readUInt32BE(0);
    if (length > this.maxMessageBytes) {
      // Drop what is buffered: the rest of the stream cannot be framed and will not be read.
      this.queue.clear();
      this.failure = new ProtocolViolation(
        `message record declares ${length} bytes, above the ${this.maxMessageBytes}-byte limit`,
      );
      throw this.failure;
    }
    return length;
  }
}

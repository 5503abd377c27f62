/**
 * The secure channel: an encrypted, authenticated byte stream over a socket after the Noise XX
 * handshake (DESIGN §5).
 *
 * Wire format, each direction: a sequence of frames, each a 2-byte big-endian length `L`
 * (16..65535) followed by `L` bytes of ChaCha20-Poly1305 ciphertext || tag, encrypted with the
 * direction's CipherState (empty associated data, nonces 0, 1, 2, …; Noise spec rev 34 §5.1, §3
 * for the 65535-byte limit). A frame carries 0..65519 bytes of plaintext; frames are not message
 * boundaries: the stream is a byte stream.
 */
import { Duplex, type DuplexOptions } from 'node:stream';
import { ByteQueue } from './byte-queue.js';
import { ConnectionClosed, PeerwardenError, ProtocolViolation, withoutStack } from './errors.js';
import type { HandshakePayload } from './handshake-payload.js';
import type { CipherState } from './noise/cipher-state.js';
import { TAG_LENGTH } from './noise/crypto.js';
import type { HandshakeResult } from './noise/handshake.js';
import { publicKeyFromPeerId, type PeerId } from './peer-id.js';

/** Bytes of the big-endian length prefix of every frame. */
export const FRAME_LENGTH_BYTES = 2;
/** Largest frame body (ciphertext + tag), in bytes: the Noise message limit (§3). */
export const MAX_FRAME_CIPHERTEXT = 65535;
/** Largest plaintext one frame can carry, in bytes: 65535 - 16. */
export const MAX_FRAME_PLAINTEXT = MAX_FRAME_CIPHERTEXT - TAG_LENGTH;

/** Frames encrypted and handed to the socket in one corked batch (one `writev`, about 1 MiB). */
const FRAMES_PER_BATCH = 16;
/**
 * Bytes the socket may still hold unsent after a batch before we wait for its 'drain': enough
 * that the next batch is being encrypted while the kernel still has bytes to send.
 */
const SOCKET_BACKLOG = 256 * 1024;
/**
 * Pieces of a frame shorter than this (bytes) are copied together and encrypted in one call; a
 * frame shorter than this is sealed in place in one buffer (one socket write).
 */
const SMALL_PIECE = 4 * 1024;
/** Default high-water mark of the readable side, in bytes: about one full frame. */
const DEFAULT_READABLE_HIGH_WATER_MARK = 64 * 1024;
/** Default high-water mark of the writable side, in bytes: several frames, so writes batch. */
const DEFAULT_WRITABLE_HIGH_WATER_MARK = 256 * 1024;
const EMPTY = new Uint8Array(0);

/** Options of {@link SecureChannel}. */
export interface SecureChannelOptions {
  /**
   * High-water mark of the readable and writable sides, in bytes (default 65536 for the readable
   * side, 262144 for the writable side).
   */
  readonly highWaterMark?: number;
  /**
   * Keep our writable side open after the peer ended its side (default true). When false, the
   * channel ends its side (and the socket's) as soon as the peer's end arrives.
   */
  readonly allowHalfOpen?: boolean;
}

/**
 * A `Duplex` of plaintext bytes over `socket`, framed and encrypted as described in the module
 * doc. The channel owns the socket from construction on: do not read, write or pause it directly.
 *
 * - Writes of any size are split into frames of up to 65519 plaintext bytes; the frames of one
 *   write (or of several queued writes) are encrypted straight from the written buffers and
 *   handed to the corked socket, one `writev` per ~1 MiB, without copying the ciphertext.
 * - Backpressure: a write's callback runs once the socket holds at most 256 KiB unsent, else
 *   after its `'drain'`; when our readable side is full the socket is paused until `_read`.
 * - Errors: a frame shorter than the tag, a failed decrypt, or the connection ending inside a
 *   frame destroys the channel with `ProtocolViolation` (and destroys the socket); a socket error
 *   or a close before the peer's end destroys it with `ConnectionClosed` (socket error as `cause`).
 * - Half-close: `end()` ends the socket's writable side after every frame is flushed; the
 *   socket's `'end'` ends our readable side. The socket's `allowHalfOpen` is set to true so this
 *   channel decides (see {@link SecureChannelOptions.allowHalfOpen}).
 * - `destroy()` destroys the socket.
 */
export class SecureChannel extends Duplex {
  /** The authenticated peer. */
  readonly remotePeerId: PeerId;
  /** The peer's handshake payload. */
  readonly remotePayload: HandshakePayload;
  /**
   * The handshake hash as base64url text. A string rather than a 32-byte array: a small typed
   * array costs about 0.2 KiB of heap (view, ArrayBuffer, store), a string of 43 characters 64 bytes.
   */
  private readonly handshakeHashText: string;
  /** The underlying socket (owned by the channel). */
  readonly socket: Duplex;

  private readonly sendCipher: CipherState;
  private readonly receiveCipher: CipherState;
  private readonly inbound = new ByteQueue();
  /** push() returned false: the socket is paused until _read. */
  private readPaused = false;
  private remoteEnded = false;
  private endPushed = false;
  /** Continuation of a write waiting for the socket's 'drain' (called with an error if it closes). */
  private awaitingDrain: ((error?: Error) => void) | undefined;

  private readonly onData = (chunk: Buffer): void => {
    this.inbound.push(chunk);
    this.deliver();
  };
  private readonly onEnd = (): void => {
    this.remoteEnded = true;
    this.deliver();
  };
  private readonly onDrain = (): void => {
    const resume = this.awaitingDrain;
    this.awaitingDrain = undefined;
    resume?.();
  };
  private readonly onSocketError = (error: Error): void => {
    this.destroy(closedBy(error));
  };
  private readonly onClose = (): void => {
    const resume = this.awaitingDrain;
    this.awaitingDrain = undefined;
    if (resume) resume(withoutStack(() => new ConnectionClosed('connection closed while writing')));
    if (!this.remoteEnded) {
      this.destroy(withoutStack(() => new ConnectionClosed('connection closed')));
      return;
    }
    // The peer had finished sending: let what it sent be read to the end, then close, failing
    // only if bytes we were asked to send are lost.
    const finish = (): void => {
      this.destroy(
        this.writableFinished || this.writableLength === 0
          ? undefined
          : withoutStack(() => new ConnectionClosed('connection closed before our data was sent')),
      );
    };
    if (this.readableEnded) finish();
    else this.once('end', finish);
  };

  /**
   * @param socket the connected stream the handshake ran on (usually a `net.Socket`).
   * @param handshake the handshake's result: the ciphers, the peer's identity and the bytes read
   *   past the handshake (consumed before anything else from the socket).
   */
  constructor(socket: Duplex, handshake: HandshakeResult, options: SecureChannelOptions = {}) {
    const duplexOptions: DuplexOptions = {
      allowHalfOpen: options.allowHalfOpen ?? true,
      readableHighWaterMark: options.highWaterMark ?? DEFAULT_READABLE_HIGH_WATER_MARK,
      writableHighWaterMark: options.highWaterMark ?? DEFAULT_WRITABLE_HIGH_WATER_MARK,
      decodeStrings: true,
    };
    super(duplexOptions);
    this.socket = socket;
    this.sendCipher = handshake.send;
    this.receiveCipher = handshake.receive;
    this.remotePeerId = handshake.remotePeerId;
    this.remotePayload = handshake.remotePayload;
    this.handshakeHashText = Buffer.from(handshake.handshakeHash).toString('base64url');
    this.inbound.push(handshake.leftover);
    // We, not the socket, decide when our side ends (in _final).
    socket.allowHalfOpen = true;
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('drain', this.onDrain);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onClose);
    if (socket.destroyed) process.nextTick(() => this.destroy(new ConnectionClosed('socket closed before the channel')));
  }

  /**
   * The peer's static X25519 public key, 32 bytes: decoded from {@link remotePeerId}, which encodes
   * it (so the channel keeps no copy). A fresh array on every call.
   */
  get remotePublicKey(): Uint8Array {
    return publicKeyFromPeerId(this.remotePeerId);
  }

  /** The Noise handshake hash (Noise §5.3 `h` after the last message), 32 bytes, equal on both sides. A fresh array on every call. */
  get handshakeHash(): Uint8Array {
    return new Uint8Array(Buffer.from(this.handshakeHashText, 'base64url'));
  }

  override _read(): void {
    this.readPaused = false;
    this.deliver();
    if (!this.readPaused && !this.destroyed) this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writeChunks([chunk], callback);
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], callback: (error?: Error | null) => void): void {
    this.writeChunks(
      chunks.map((entry) => entry.chunk),
      callback,
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.socket.destroyed || this.socket.writableEnded) {
      callback(new ConnectionClosed('connection closed before end'));
      return;
    }
    this.socket.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const socket = this.socket;
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('drain', this.onDrain);
    socket.off('close', this.onClose);
    // 'error' stays attached: an error already scheduled on the socket must not go unhandled.
    this.inbound.clear();
    const resume = this.awaitingDrain;
    this.awaitingDrain = undefined;
    socket.destroy();
    if (resume) resume(error ?? withoutStack(() => new ConnectionClosed('channel destroyed')));
    callback(error);
  }

  /** Decrypts and pushes every complete frame until our readable side is full; handles the peer's end. */
  private deliver(): void {
    const inbound = this.inbound;
    while (!this.readPaused && !this.destroyed) {
      const prefix = inbound.peek(FRAME_LENGTH_BYTES);
      if (prefix === undefined) break;
      const length = prefix.readUInt16BE(0);
      if (length < TAG_LENGTH) {
        this.destroy(new ProtocolViolation(`frame of ${length} bytes cannot hold the ${TAG_LENGTH}-byte tag`));
        return;
      }
      if (inbound.length < FRAME_LENGTH_BYTES + length) break;
      inbound.skip(FRAME_LENGTH_BYTES);
      // Views of the socket's chunks: a frame spanning two reads is decrypted piece by piece, not gathered.
      const frame = inbound.readViews(length) as Buffer[];
      let plaintext: Buffer[];
      try {
        plaintext = this.receiveCipher.decryptPiecesWithAd(EMPTY, frame);
      } catch (error) {
        this.destroy(error instanceof PeerwardenError ? error : new ProtocolViolation('frame decrypt failed', { cause: error }));
        return;
      }
      let room = true;
      for (const piece of plaintext) {
        if (piece.length > 0) room = this.push(piece);
      }
      if (!room) {
        this.readPaused = true;
        this.socket.pause();
      }
    }
    if (this.remoteEnded && !this.readPaused && !this.endPushed && !this.destroyed) {
      if (inbound.length > 0) {
        this.destroy(new ProtocolViolation('connection ended in the middle of a frame'));
        return;
      }
      this.endPushed = true;
      this.push(null);
    }
  }

  /**
   * Encrypts `chunks` into frames, batch by batch, writing each batch to the corked socket; calls
   * `callback` once the socket holds at most {@link SOCKET_BACKLOG} bytes unsent (or drained).
   */
  private writeChunks(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    let remaining = 0;
    for (const chunk of chunks) remaining += chunk.length;
    let chunkIndex = 0;
    let chunkOffset = 0;

    // Copies the next `length` plaintext bytes into `target` (small frames).
    const copyInto = (target: Buffer, length: number): void => {
      let copied = 0;
      while (copied < length) {
        const chunk = chunks[chunkIndex] as Buffer;
        const n = Math.min(chunk.length - chunkOffset, length - copied);
        chunk.copy(target, copied, chunkOffset, chunkOffset + n);
        copied += n;
        chunkOffset += n;
        if (chunkOffset === chunk.length) {
          chunkIndex++;
          chunkOffset = 0;
        }
      }
    };

    // The next `length` plaintext bytes as views of the chunks; runs of small pieces are copied
    // into one buffer, so a frame of many small writes costs one cipher call, not one per write.
    const take = (length: number): Buffer[] => {
      const pieces: Buffer[] = [];
      let small: Buffer[] = [];
      let smallBytes = 0;
      const flushSmall = (): void => {
        if (small.length === 1) pieces.push(small[0] as Buffer);
        else if (small.length > 1) pieces.push(Buffer.concat(small, smallBytes));
        small = [];
        smallBytes = 0;
      };
      while (length > 0) {
        const chunk = chunks[chunkIndex] as Buffer;
        const n = Math.min(chunk.length - chunkOffset, length);
        const view = n === chunk.length ? chunk : chunk.subarray(chunkOffset, chunkOffset + n);
        if (n < SMALL_PIECE) {
          small.push(view);
          smallBytes += n;
        } else {
          flushSmall();
          pieces.push(view);
        }
        length -= n;
        chunkOffset += n;
        if (chunkOffset === chunk.length) {
          chunkIndex++;
          chunkOffset = 0;
        }
      }
      flushSmall();
      return pieces;
    };

    const next = (error?: Error): void => {
      if (error !== undefined) {
        callback(error);
        return;
      }
      const socket = this.socket;
      try {
        while (remaining > 0) {
          if (socket.destroyed || socket.writableEnded) {
            callback(new ConnectionClosed('connection closed while writing'));
            return;
          }
          socket.cork();
          try {
            for (let frames = 0; frames < FRAMES_PER_BATCH && remaining > 0; frames++) {
              const n = Math.min(remaining, MAX_FRAME_PLAINTEXT);
              if (n < SMALL_PIECE) {
                // A small frame is sealed in place in one buffer and leaves in one write.
                const frame = Buffer.allocUnsafe(FRAME_LENGTH_BYTES + n + TAG_LENGTH);
                frame.writeUInt16BE(n + TAG_LENGTH, 0);
                const body = frame.subarray(FRAME_LENGTH_BYTES);
                copyInto(body, n);
                this.sendCipher.encryptWithAd(EMPTY, body.subarray(0, n), body);
                socket.write(frame);
              } else {
                const sealed = this.sendCipher.encryptPiecesWithAd(EMPTY, take(n));
                const prefix = Buffer.allocUnsafe(FRAME_LENGTH_BYTES);
                prefix.writeUInt16BE(n + TAG_LENGTH, 0);
                socket.write(prefix);
                for (const part of sealed) socket.write(part);
              }
              remaining -= n;
            }
          } finally {
            // One writev for the whole batch.
            socket.uncork();
          }
          if (socket.writableLength > SOCKET_BACKLOG && socket.writableNeedDrain) {
            this.awaitingDrain = next;
            return;
          }
        }
      } catch (error) {
        callback(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      callback();
    };
    next();
  }
}

function closedBy(cause: Error): ConnectionClosed {
  const error = new ConnectionClosed(`connection failed: ${cause.message}`);
  Object.defineProperty(error, 'cause', { value: cause, configurable: true, writable: true });
  return error;
}

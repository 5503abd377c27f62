/**
 * One yamux stream as a Node `Duplex`, with the spec's open/close handshake and per-stream flow
 * control (HashiCorp yamux spec.md, "Message Flow" and "Flow Control").
 *
 * Receive side: data is queued here and handed to Node's readable buffer only when Node asks for
 * it (`_read`), which is when the application reads. The receive window is credited back to the
 * peer from those reads, never on receipt, so a slow reader bounds what the peer may send.
 *
 * Send side: a write waits (its callback is held) while the send window is zero and resumes on
 * the peer's WindowUpdate; the session cuts writes into Data frames and interleaves streams.
 */
import { Duplex } from 'node:stream';

import { ConnectionClosed, PeerwardenError, ProtocolViolation } from '../errors.js';
import { Flag, INITIAL_STREAM_WINDOW, MAX_UINT32 } from './frame.js';

/**
 * The peer reset the stream (a frame with RST, spec.md "Opening a stream" / "Closing a
 * stream"): it refused the stream or aborted it. Unread data is dropped. `streamId` is the u32 ID.
 */
export class StreamReset extends PeerwardenError {
  readonly streamId: number;

  constructor(streamId: number) {
    super('STREAM_RESET', `yamux stream ${streamId} was reset by the peer`);
    this.streamId = streamId;
  }
}

/**
 * What a stream needs from its session. Implemented by `YamuxSession`; not part of the public API.
 * @internal
 */
export interface YamuxStreamHost {
  /** Writes a WindowUpdate frame for `streamId` with `flags` and a window `delta` in bytes. */
  sendWindowUpdate(streamId: number, flags: number, delta: number): void;
  /** Writes one Data frame (no flags) carrying `payload`. */
  sendData(streamId: number, payload: Buffer): void;
  /** The stream has data to send and window to send it: schedule it on the connection. */
  requestSend(stream: YamuxStream): void;
  /** The stream is fully closed or reset: forget it. */
  release(stream: YamuxStream): void;
}

/** Who opened a stream: `outbound` by us (`openStream`), `inbound` by the peer (SYN received). */
export type StreamDirection = 'inbound' | 'outbound';

interface PendingWrite {
  readonly chunk: Buffer;
  offset: number;
  readonly callback: (error?: Error | null) => void;
}

/**
 * A yamux stream: a Node `Duplex` of bytes, created by `YamuxSession` (`openStream()` or the
 * session's `onStream`/'stream' for inbound streams); never construct one directly.
 *
 * - `end()` half-closes: a FIN is sent after all written data. The peer's FIN ends the readable
 *   side ('end' once the data is read). When both FINs have passed the stream is closed and the
 *   session forgets it (spec.md, "Closing a stream").
 * - `reset()` / `destroy()` before that sends RST and drops unread data. A RST from the peer
 *   destroys the stream with {@link StreamReset}; a dead session destroys it with the session's
 *   error or `ConnectionClosed`. Those errors are emitted as 'error' only when the application
 *   listens for 'error' (as `pipeline`, `finished` and async iteration do); otherwise the stream
 *   just closes, so an unobserved stream can never crash the process.
 * - Flow control (spec.md, "Flow Control"): the receive window (`initialWindow` bytes, at least
 *   the spec's 256 KiB) is credited back as the application reads, with one WindowUpdate whenever
 *   half a window has been read, like the Go reference. A write waits while the send window is
 *   exhausted and resumes on the peer's WindowUpdate, so `write()` backpressure reaches the writer.
 */
export class YamuxStream extends Duplex {
  /** The u32 stream ID: odd when the client opened it, even when the server did (spec.md, "StreamID Field"). */
  readonly id: number;
  /** Whether we opened the stream or the peer did. */
  readonly direction: StreamDirection;

  private readonly host: YamuxStreamHost;
  /** Receive window we aim to keep granted to the peer, in bytes. */
  private readonly windowSize: number;

  /** Bytes the peer may still send before our next WindowUpdate (spec.md, "Flow Control"). */
  private recvWindow = INITIAL_STREAM_WINDOW;
  /** Bytes we may still send before the peer's next WindowUpdate. */
  private sendWindowBytes = INITIAL_STREAM_WINDOW;

  /** Received data not yet handed to Node's readable buffer. */
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private bytesReceivedTotal = 0;
  private bytesSentTotal = 0;
  /** Node asked for data (`_read`) and has not been given any since. */
  private wantRead = false;
  private delivering = false;
  /** A credit check is queued for after the current read() (see `_read`). */
  private creditCheckQueued = false;

  private pending: PendingWrite | undefined;

  private remoteFin = false;
  private endPushed = false;
  private localFin = false;
  private acknowledged: boolean;
  /** Removed from the session: both FINs passed, reset either way, or the session died. */
  private released = false;
  /** The stream ended by a reset (sent or received) or by the session's death, not by two FINs. */
  private aborted = false;
  /** Why the stream was aborted, for a write still waiting when it is destroyed. */
  private abortReason: Error | undefined;

  /**
   * @param host the owning session's callbacks.
   * @param id the u32 stream ID.
   * @param direction who opened it.
   * @param windowSize receive window to grant the peer, in bytes (≥ 256 KiB, ≤ 2^32 − 1).
   * @internal
   */
  constructor(host: YamuxStreamHost, id: number, direction: StreamDirection, windowSize: number) {
    super({ allowHalfOpen: true, decodeStrings: true, objectMode: false });
    this.host = host;
    this.id = id;
    this.direction = direction;
    this.windowSize = windowSize;
    this.acknowledged = direction === 'inbound';
  }

  /** Bytes we may still send before the peer grants more (spec.md, "Flow Control"). */
  get sendWindow(): number {
    return this.sendWindowBytes;
  }

  /** Bytes the peer may still send before we grant more. */
  get receiveWindow(): number {
    return this.recvWindow;
  }

  /** Payload bytes received on this stream so far (Data frame bodies). */
  get bytesReceived(): number {
    return this.bytesReceivedTotal;
  }

  /** Payload bytes sent on this stream so far (handed to the connection). */
  get bytesSent(): number {
    return this.bytesSentTotal;
  }

  /** Received bytes the application has not read yet: our queue plus Node's readable buffer. */
  get bufferedBytes(): number {
    return this.queuedBytes + this.readableLength;
  }

  /** Whether the peer has acknowledged the stream (ACK received); inbound streams always are. */
  get established(): boolean {
    return this.acknowledged;
  }

  /**
   * Aborts the stream: sends RST (spec.md, "Closing a stream": hard close) and destroys it.
   * Unread and unsent data is dropped. Same as `destroy()` without an error.
   */
  reset(): void {
    this.destroy();
  }

  // ---- called by the session -------------------------------------------------------------

  /**
   * Sends the SYN that opens an outbound stream, as a WindowUpdate that also raises the peer's
   * view of our window from 256 KiB to `windowSize` (spec.md, "Flow Control").
   * @internal
   */
  sendSyn(): void {
    this.creditWindow(Flag.SYN);
  }

  /**
   * Accepts an inbound stream: a WindowUpdate with ACK (spec.md, "Opening a stream").
   * @internal
   */
  sendAck(): void {
    this.creditWindow(Flag.ACK);
  }

  /**
   * Checks, when a Data frame's header arrives and before its body is buffered, that the peer
   * may send `length` bytes now.
   * @throws ProtocolViolation when the stream's remote side has sent FIN already or `length`
   *   exceeds the receive window (spec.md, "Flow Control").
   * @internal
   */
  checkIncomingData(length: number): void {
    if (length === 0) return;
    if (this.remoteFin) {
      throw new ProtocolViolation(`yamux: data on stream ${this.id} after its FIN (spec.md, Closing a stream)`);
    }
    if (length > this.recvWindow) {
      throw new ProtocolViolation(
        `yamux: ${length} bytes on stream ${this.id} exceed its receive window of ${this.recvWindow} bytes (spec.md, Flow Control)`,
      );
    }
  }

  /**
   * Takes a Data frame's body. The session has called {@link checkIncomingData} first.
   * @internal
   */
  receiveData(payload: Buffer): void {
    if (payload.length === 0 || this.released) return;
    this.checkIncomingData(payload.length);
    this.recvWindow -= payload.length;
    this.bytesReceivedTotal += payload.length;
    this.queue.push(payload);
    this.queuedBytes += payload.length;
    this.deliver();
  }

  /**
   * Adds a WindowUpdate's delta (bytes) to the send window and resumes a waiting write.
   * @throws ProtocolViolation when the window would exceed 2^32 − 1 bytes (the u32 field).
   * @internal
   */
  receiveWindowUpdate(delta: number): void {
    if (delta === 0 || this.released) return;
    const next = this.sendWindowBytes + delta;
    if (next > MAX_UINT32) {
      throw new ProtocolViolation(`yamux: send window of stream ${this.id} overflows 2^32 - 1 bytes`);
    }
    this.sendWindowBytes = next;
    if (this.pending !== undefined) this.host.requestSend(this);
  }

  /** The peer accepted our stream (ACK). @internal */
  receiveAck(): void {
    this.acknowledged = true;
  }

  /** The peer half-closed (FIN): no more data will come. @internal */
  receiveFin(): void {
    if (this.remoteFin || this.released) return;
    this.remoteFin = true;
    this.deliver();
    this.releaseIfClosed();
  }

  /** The peer reset the stream (RST). @internal */
  receiveReset(): void {
    if (this.released) return;
    this.aborted = true;
    this.release();
    this.finishQuietly(new StreamReset(this.id));
  }

  /**
   * The session is gone: destroy without sending anything, with `error` when the application
   * listens for errors.
   * @internal
   */
  abort(error: Error): void {
    this.aborted = true;
    this.released = true;
    this.finishQuietly(error);
  }

  /** Whether the stream has a write waiting and window to send some of it. @internal */
  get wantsToSend(): boolean {
    return !this.released && this.pending !== undefined && this.sendWindowBytes > 0;
  }

  /**
   * Sends the next Data frame of the waiting write: at most `maxLength` bytes and at most the send
   * window. Completes the write (its callback) once its last byte is handed to the connection.
   * @internal
   */
  sendNextFrame(maxLength: number): void {
    const pending = this.pending;
    if (pending === undefined || this.released) return;
    const size = Math.min(pending.chunk.length - pending.offset, this.sendWindowBytes, maxLength);
    if (size <= 0) return;
    const payload = pending.chunk.subarray(pending.offset, pending.offset + size);
    pending.offset += size;
    this.sendWindowBytes -= size;
    this.bytesSentTotal += size;
    this.host.sendData(this.id, payload);
    if (pending.offset === pending.chunk.length) {
      this.pending = undefined;
      // After the bytes are on the connection, so a FIN sent from _final always follows them.
      pending.callback();
    }
  }

  // ---- Node stream implementation -----------------------------------------------------------

  override _read(_size: number): void {
    this.wantRead = true;
    this.deliver();
    // Node calls _read from read() before it takes the bytes out of its buffer; once it has, the
    // bytes are read and their window can be credited (deliver() saw them still buffered).
    if (!this.creditCheckQueued) {
      this.creditCheckQueued = true;
      queueMicrotask(() => {
        this.creditCheckQueued = false;
        if (!this.destroyed) this.creditWindow(0);
      });
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.startWrite(chunk, callback);
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], callback: (error?: Error | null) => void): void {
    // Coalesce small buffered writes into one send, so they share Data frames.
    const only = chunks.length === 1 ? chunks[0] : undefined;
    this.startWrite(only !== undefined ? only.chunk : Buffer.concat(chunks.map((entry) => entry.chunk)), callback);
  }

  private startWrite(chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (this.released) {
      callback(this.aborted ? new StreamReset(this.id) : new ConnectionClosed(`yamux stream ${this.id} is closed`));
      return;
    }
    if (chunk.length === 0) {
      callback();
      return;
    }
    this.pending = { chunk, offset: 0, callback };
    this.host.requestSend(this);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.released) {
      callback(this.aborted ? new StreamReset(this.id) : null);
      return;
    }
    this.localFin = true;
    // Go sends FIN as a WindowUpdate too; all data frames were written before _final runs.
    this.host.sendWindowUpdate(this.id, Flag.FIN, 0);
    callback();
    this.releaseIfClosed();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.released) {
      // Destroyed before both FINs passed: abort the stream on the wire too.
      this.aborted = true;
      this.host.sendWindowUpdate(this.id, Flag.RST, 0);
      this.release();
    }
    this.failPending(error ?? this.abortReason ?? new ConnectionClosed(`yamux stream ${this.id} was destroyed`));
    this.queue.length = 0;
    this.queuedBytes = 0;
    callback(error);
  }

  // ---- internals --------------------------------------------------------------------------

  /** Hands queued data to Node while it wants more; ends the readable side after the FIN. */
  private deliver(): void {
    if (this.delivering || this.destroyed) return;
    this.delivering = true;
    try {
      while (this.wantRead && this.queue.length > 0) {
        const chunk = this.queue.shift() as Buffer;
        this.queuedBytes -= chunk.length;
        // Cleared before push: a read() made from a 'data' handler inside push sets it again.
        this.wantRead = false;
        if (this.push(chunk)) this.wantRead = true;
      }
      if (this.queue.length === 0 && this.remoteFin && !this.endPushed) {
        this.endPushed = true;
        this.push(null);
      }
    } finally {
      this.delivering = false;
    }
    this.creditWindow(0);
  }

  /**
   * Grants the peer the bytes the application has read since the last grant, once they reach half
   * a window (spec.md, "Flow Control"; the threshold is the Go reference's). With a SYN or ACK the
   * update is always sent, carrying any enlargement beyond the initial 256 KiB.
   */
  private creditWindow(flags: number): void {
    if (flags === 0 && (this.remoteFin || this.released)) return; // nothing more will arrive
    // Bytes still unread in Node's readable buffer are not read yet either: crediting them would
    // let a reader that took one byte hold two windows (found by fuzzing).
    const delta = this.windowSize - this.queuedBytes - this.readableLength - this.recvWindow;
    if (flags === 0 && delta < this.windowSize / 2) return;
    const grant = Math.max(delta, 0);
    this.recvWindow += grant;
    this.host.sendWindowUpdate(this.id, flags, grant);
  }

  private releaseIfClosed(): void {
    if (this.localFin && this.remoteFin) this.release();
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.host.release(this);
  }

  private failPending(error: Error): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.callback(error);
  }

  /**
   * Destroys with `error` only when someone listens for it; an unhandled 'error' would crash.
   * A waiting write is failed from `_destroy`, after `destroyed` is set: failing it earlier
   * would make Node emit 'error' itself.
   */
  private finishQuietly(error: Error): void {
    this.abortReason = error;
    this.queue.length = 0;
    this.queuedBytes = 0;
    if (this.destroyed) {
      this.failPending(error);
      return;
    }
    this.destroy(this.listenerCount('error') > 0 ? error : undefined);
  }
}

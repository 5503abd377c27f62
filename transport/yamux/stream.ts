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
import { Fifo } from '../fifo.js';
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
  /** Writes one Data frame (no flags) whose payload is `length` bytes: the concatenation of `pieces`. */
  sendData(streamId: number, pieces: readonly Buffer[], length: number): void;
  /** The stream has data to send and window to send it: schedule it on the connection. */
  requestSend(stream: YamuxStream): void;
  /** The stream is fully closed or reset: forget it. */
  release(stream: YamuxStream): void;
  /**
   * Asks to grow a stream's receive window by `bytes` beyond its initial window: true when the
   * session's growth budget allows it (the bytes are then reserved until returned).
   */
  reserveWindow(bytes: number): boolean;
  /** Returns `bytes` of window growth to the session's budget (the stream is gone). */
  returnWindow(bytes: number): void;
  /** The latest round-trip time measured by a session ping, in ms, or undefined before any. */
  roundTripTime(): number | undefined;
  /** The session's clock, in ms. */
  now(): number;
}

/**
 * Auto-tuning of the receive window: a stream whose reader took half a window within
 * `max(4 × RTT, WINDOW_GROWTH_MIN_MS)` of the previous grant doubles its window (up to its
 * maximum). With no RTT known the floor alone applies, so a window grows until half of it takes
 * 10 ms to read: about 20 ms of the stream's rate, the delay its pipeline can absorb.
 */
const WINDOW_GROWTH_MIN_MS = 10;

/**
 * High-water mark of a stream's writable side, in bytes: a writer in a `while (write())` loop
 * hands the session several chunks in one tick, which leave in one batch (with Node's default of
 * 16 KiB every 64 KiB write would wait a tick for 'drain', and go out alone).
 */
const WRITABLE_HIGH_WATER_MARK = 256 * 1024;

/** Who opened a stream: `outbound` by us (`openStream`), `inbound` by the peer (SYN received). */
export type StreamDirection = 'inbound' | 'outbound';

/** A write (or several buffered ones) being sent frame by frame; its chunks are not copied. */
interface PendingWrite {
  readonly chunks: readonly Buffer[];
  /** The chunk being sent, and the offset in it. */
  index: number;
  offset: number;
  /** Bytes still to send. */
  left: number;
  readonly callback: (error?: Error | null) => void;
}

/**
 * Buffered writes are copied into one buffer when they are small on average (below this many
 * bytes each): one piece per frame is cheaper than many. Larger ones are sent as they are.
 */
const COALESCE_AVERAGE = 4 * 1024;

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
 *   half a window has been read, like the Go reference. A reader that keeps taking half a window
 *   within `max(4 × RTT, 10 ms)` doubles the window it grants, up to the session's
 *   `maxStreamWindow` and growth budget (the spec lets a receiver grant any credit; go-yamux and
 *   js yamux tune windows the same way): never more than the granted window is buffered. A write
 *   waits while the send window is exhausted and resumes on the peer's WindowUpdate, so `write()`
 *   backpressure reaches the writer.
 */
export class YamuxStream extends Duplex {
  /** The u32 stream ID: odd when the client opened it, even when the server did (spec.md, "StreamID Field"). */
  readonly id: number;
  /** Whether we opened the stream or the peer did. */
  readonly direction: StreamDirection;
  /**
   * Waiting in its session's send queue. Written only by the session (a flag on the stream instead
   * of a Set beside the queue, whose table was reallocated at every small send).
   * @internal
   */
  sendQueued = false;

  private readonly host: YamuxStreamHost;
  /** Receive window we aim to keep granted to the peer, in bytes (grows up to `maxWindowSize`). */
  private windowSize: number;
  /** Largest receive window this stream may grow to, in bytes. */
  private readonly maxWindowSize: number;
  /** Bytes by which `windowSize` has grown past its start, reserved from the session's budget. */
  private grownBytes = 0;
  /** When (the session's clock, ms) we last granted credit (or sent SYN/ACK). */
  private lastGrantAt = 0;

  /** Bytes the peer may still send before our next WindowUpdate (spec.md, "Flow Control"). */
  private recvWindow = INITIAL_STREAM_WINDOW;
  /** Bytes we may still send before the peer's next WindowUpdate. */
  private sendWindowBytes = INITIAL_STREAM_WINDOW;

  /** Received data not yet handed to Node's readable buffer. */
  private readonly queue = new Fifo<Buffer>();
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
   * @param maxWindowSize largest window auto-tuning may grow it to, in bytes (≥ `windowSize`).
   * @internal
   */
  constructor(host: YamuxStreamHost, id: number, direction: StreamDirection, windowSize: number, maxWindowSize: number = windowSize) {
    super({ allowHalfOpen: true, decodeStrings: true, objectMode: false, writableHighWaterMark: WRITABLE_HIGH_WATER_MARK });
    this.host = host;
    this.id = id;
    this.direction = direction;
    this.windowSize = windowSize;
    this.maxWindowSize = Math.max(maxWindowSize, windowSize);
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

  /** The receive window this stream keeps granted to the peer now, in bytes (grows with a fast reader). */
  get receiveWindowSize(): number {
    return this.windowSize;
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
    const size = Math.min(pending.left, this.sendWindowBytes, maxLength);
    if (size <= 0) return;
    // The payload as views of the written chunks, a frame may span several of them.
    const pieces: Buffer[] = [];
    for (let need = size; need > 0; ) {
      const chunk = pending.chunks[pending.index] as Buffer;
      const n = Math.min(chunk.length - pending.offset, need);
      pieces.push(n === chunk.length ? chunk : chunk.subarray(pending.offset, pending.offset + n));
      need -= n;
      pending.offset += n;
      if (pending.offset === chunk.length) {
        pending.index++;
        pending.offset = 0;
      }
    }
    pending.left -= size;
    this.sendWindowBytes -= size;
    this.bytesSentTotal += size;
    this.host.sendData(this.id, pieces, size);
    if (pending.left === 0) {
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
    this.startWrite([chunk], chunk.length, callback);
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], callback: (error?: Error | null) => void): void {
    // Buffered writes share Data frames: small ones are copied together, large ones are sent as they are.
    const list: Buffer[] = [];
    let total = 0;
    for (const entry of chunks) {
      if (entry.chunk.length === 0) continue;
      list.push(entry.chunk);
      total += entry.chunk.length;
    }
    const coalesce = list.length > 1 && total < list.length * COALESCE_AVERAGE;
    this.startWrite(coalesce ? [Buffer.concat(list, total)] : list, total, callback);
  }

  private startWrite(chunks: readonly Buffer[], total: number, callback: (error?: Error | null) => void): void {
    if (this.released) {
      callback(this.aborted ? new StreamReset(this.id) : new ConnectionClosed(`yamux stream ${this.id} is closed`));
      return;
    }
    if (total === 0) {
      callback();
      return;
    }
    this.pending = { chunks, index: 0, offset: 0, left: total, callback };
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
    this.queue.clear();
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
    const unread = this.queuedBytes + this.readableLength;
    if (flags === 0 && this.windowSize - unread - this.recvWindow < this.windowSize / 2) return;
    const now = this.host.now();
    if (flags === 0) this.maybeGrowWindow(now);
    this.lastGrantAt = now;
    const grant = Math.max(this.windowSize - unread - this.recvWindow, 0);
    this.recvWindow += grant;
    this.host.sendWindowUpdate(this.id, flags, grant);
  }

  /** Doubles the window when half of it was read soon after the previous grant (see WINDOW_GROWTH_MIN_MS). */
  private maybeGrowWindow(now: number): void {
    if (this.windowSize >= this.maxWindowSize) return;
    const rtt = this.host.roundTripTime() ?? 0;
    if (now - this.lastGrantAt >= Math.max(4 * rtt, WINDOW_GROWTH_MIN_MS)) return;
    const growth = Math.min(this.windowSize, this.maxWindowSize - this.windowSize);
    if (!this.host.reserveWindow(growth)) return;
    this.windowSize += growth;
    this.grownBytes += growth;
  }

  private releaseIfClosed(): void {
    if (this.localFin && this.remoteFin) this.release();
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    if (this.grownBytes > 0) this.host.returnWindow(this.grownBytes);
    this.grownBytes = 0;
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
    this.queue.clear();
    this.queuedBytes = 0;
    if (this.destroyed) {
      this.failPending(error);
      return;
    }
    this.destroy(this.listenerCount('error') > 0 ? error : undefined);
  }
}

/**
 * A yamux session (HashiCorp yamux spec.md) over any connected Node `Duplex`: a TCP socket, or
 * the encrypted secure channel in production (DESIGN §5, "Mux").
 *
 * Input is parsed incrementally from a ByteQueue, so a frame may be split across reads at any
 * byte and one read may carry many frames. Output honours the connection's backpressure: stream
 * data is written only while the connection does not need 'drain', streams take turns one Data
 * frame at a time, and control frames provoked by the peer (Ping replies, ACK, RST) stop the
 * session reading input once the connection's write backlog passes a bound, so a peer that does
 * not read cannot grow our memory. Any malformed or out-of-window input ends the session with a
 * GoAway(ProtocolError) and a {@link ProtocolViolation}; nothing is thrown out of an event handler.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';

import { ByteQueue } from '../byte-queue.js';
import { Fifo } from '../fifo.js';
import { ConnectionClosed, PeerwardenError, ProtocolViolation, withoutStack } from '../errors.js';
import {
  Flag,
  FrameType,
  GoAwayCode,
  HEADER_LENGTH,
  INITIAL_STREAM_WINDOW,
  MAX_UINT32,
  decodeHeader,
  encodeHeader,
  writeHeader,
} from './frame.js';
import type { FrameHeader } from './frame.js';
import { YamuxStream } from './stream.js';
import type { YamuxStreamHost } from './stream.js';

/** Default cap on concurrent inbound streams; a SYN beyond it is answered with RST. */
export const DEFAULT_MAX_STREAMS = 1024;
/**
 * Default payload cap of the Data frames we send, in bytes: large enough that framing costs
 * little, small enough that streams interleave fairly. Never above the spec's initial window, so
 * any peer's frame cap (at least that window) accepts our frames.
 */
export const DEFAULT_MAX_SEND_FRAME_LENGTH = 256 * 1024;
/** Default largest receive window a stream's auto-tuning may grow to, in bytes (as go-yamux and js yamux). */
export const DEFAULT_MAX_STREAM_WINDOW = 16 * 1024 * 1024;
/** Default budget, in bytes, of receive window the streams of one session may grow beyond their initial windows, together. */
export const DEFAULT_WINDOW_GROWTH_BUDGET = 32 * 1024 * 1024;
/** Default write backlog (bytes) tolerated beyond the connection's own buffering before we stop reading. */
export const DEFAULT_MAX_PENDING_BYTES = 1024 * 1024;
/** After a protocol violation, how long (ms) the GoAway may take to flush before the connection is destroyed. */
const VIOLATION_LINGER_MS = 2_000;
/** Bodies up to this size (bytes) are copied next to their header: one write instead of two. */
const COALESCE_LIMIT = 4 * 1024;

/** The clock a session uses (a subset of the injected clock of `streams/clock.ts`). */
export interface SessionTimers {
  setTimeout(fn: () => void, ms: number): object | number;
  clearTimeout(handle: object | number): void;
  /** Current time in ms, for receive-window auto-tuning; `performance.now()` when absent. */
  now?(): number;
}

const GLOBAL_TIMERS: SessionTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Options of a {@link YamuxSession}. Sizes are in bytes. */
export interface YamuxSessionOptions {
  /**
   * Our side of the session: the client opens odd stream IDs, the server even ones (spec.md,
   * "StreamID Field"). Normally the dialer is the client.
   */
  role: 'client' | 'server';
  /** Called with each inbound stream, already accepted (ACK sent); also emitted as 'stream'. */
  onStream?: (stream: YamuxStream) => void;
  /**
   * Receive window granted to the peer on every stream, in bytes. Default and minimum 256 KiB
   * (spec.md, "Flow Control"), at most 2^32 − 1. A larger window is announced with the SYN/ACK.
   */
  initialWindow?: number;
  /** Cap on concurrent inbound streams; a SYN beyond it is refused with RST. Default 1024. */
  maxStreams?: number;
  /**
   * Largest receive window a stream may grow to, in bytes: a stream whose reader keeps up grants
   * the peer more credit than `initialWindow` (doubling while half a window is read within
   * `max(4 × RTT, 10 ms)`), as the spec allows ("Flow Control": a receiver may send any window
   * update). Default 16 MiB; at least `initialWindow` (equal disables growth), at most 2^32 − 1.
   */
  maxStreamWindow?: number;
  /**
   * Bytes of receive window the session's streams may grow, together, beyond their initial
   * windows. Default 32 MiB. Worst-case receive buffering of a session is about
   * `maxStreams × initialWindow + windowGrowthBudget`.
   */
  windowGrowthBudget?: number;
  /**
   * Cap on the length of a received Data frame, in bytes; longer is a protocol violation.
   * Default `maxStreamWindow` (a frame longer than the window is a violation anyway; other
   * implementations send frames up to the whole window). Bodies are handed to their stream as
   * they arrive, so a long frame is never buffered whole.
   */
  maxFrameLength?: number;
  /** Payload cap of the Data frames we send, in bytes. Default 256 KiB. */
  maxSendFrameLength?: number;
  /**
   * Timers for the linger after a protocol violation (GoAway sent, then up to 2 s for it to
   * flush before the connection is destroyed) and, through `now()`, the time that window
   * auto-tuning compares. Default the global timers (unref'd) and `performance.now()`; the link
   * passes the injected clock, so virtual time governs it in specs.
   */
  timers?: SessionTimers;
  /**
   * Write backlog, in bytes, tolerated beyond the connection's high-water mark and one Data
   * frame before the session stops reading input until the connection drains. Default 1 MiB.
   */
  maxPendingBytes?: number;
}

/** Events of a {@link YamuxSession} with their listener arguments. */
export interface YamuxSessionEvents {
  /** An inbound stream, accepted (ACK sent). */
  stream: [stream: YamuxStream];
  /** The peer sent GoAway with this code (see `GoAwayCode`): it takes no new streams; existing ones go on. */
  goaway: [code: number];
  /**
   * The session failed: a {@link ProtocolViolation}, a connection error, or `destroy(error)`.
   * Emitted only when someone listens, so an unobserved session never throws; 'close' follows.
   */
  error: [error: Error];
  /** The session ended; `error` is set when it failed (see 'error'), undefined after a clean end. */
  close: [error?: Error];
}

/** Why `openStream()` refused: our GoAway, the peer's GoAway, or the u32 stream IDs ran out. */
export type StreamOpenRefusedReason = 'local-goaway' | 'remote-goaway' | 'ids-exhausted';

/**
 * `openStream()` cannot open a stream although the session is still up: a GoAway was sent or
 * received (spec.md, "Session termination"), or this side's stream IDs are exhausted (u32).
 */
export class StreamOpenRefused extends PeerwardenError {
  readonly reason: StreamOpenRefusedReason;

  constructor(reason: StreamOpenRefusedReason) {
    const text: Record<StreamOpenRefusedReason, string> = {
      'local-goaway': 'this side sent GoAway',
      'remote-goaway': 'the peer sent GoAway',
      'ids-exhausted': 'stream IDs are exhausted',
    };
    super('STREAM_OPEN_REFUSED', `yamux: cannot open a stream: ${text[reason]}`);
    this.reason = reason;
  }
}

interface PendingPing {
  readonly start: number;
  readonly resolve: (rttMs: number) => void;
  readonly reject: (error: Error) => void;
}

function checkSize(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const size = value ?? fallback;
  if (!Number.isInteger(size) || size < min || size > max) {
    throw new RangeError(`yamux: ${name} must be an integer in [${min}, ${max}], got ${size}`);
  }
  return size;
}

/**
 * A yamux session over a connected `Duplex`.
 *
 * ```ts
 * const session = new YamuxSession(socket, { role: 'client' });
 * const stream = session.openStream();          // YamuxStream (a Node Duplex)
 * const rttMs = await session.ping();
 * await session.close();                        // GoAway(Normal), FIN all streams, then end
 * ```
 *
 * Events: 'stream' (inbound stream), 'goaway' (peer's GoAway code), 'error' (only when listened),
 * 'close' (error or undefined). The session attaches to the connection's 'data', 'end', 'error',
 * 'close' and 'drain' events and owns its lifetime from then on.
 *
 * Memory is bounded: per stream, received data ≤ the receive window it granted (at most
 * `maxStreamWindow`; growth beyond `initialWindow` is shared out of `windowGrowthBudget`) plus
 * the stream's readable high-water mark; inbound streams ≤ `maxStreams`; partial input ≤ one
 * header (Data bodies go to their stream as they arrive); queued output ≤ the connection's
 * high-water mark + one frame + `maxPendingBytes` (input is paused beyond that).
 *
 * @throws RangeError from the constructor when an option is out of range.
 */
export class YamuxSession extends EventEmitter<YamuxSessionEvents> {
  private readonly connection: Duplex;
  private readonly onStreamHandler: ((stream: YamuxStream) => void) | undefined;
  private readonly initialWindow: number;
  private readonly maxStreamWindow: number;
  /** Window growth still available to the session's streams, in bytes. */
  private growthLeft: number;
  /** The latest ping round trip, in ms. */
  private rttMs: number | undefined;
  private readonly maxStreams: number;
  private readonly maxFrameLength: number;
  private readonly maxSendFrameLength: number;
  private readonly pauseThreshold: number;
  /** What this session's streams call back into: one small object rather than a closure per method (about 0.5 KiB per session). */
  private readonly host: YamuxStreamHost;

  /** {@link YamuxStreamHost} of one session; nested so that it may call the session's private members. */
  private static readonly StreamHost = class implements YamuxStreamHost {
    constructor(private readonly session: YamuxSession) {}
    sendWindowUpdate(streamId: number, flags: number, delta: number): void {
      this.session.writeFrame(FrameType.WindowUpdate, flags, streamId, delta);
    }
    sendData(streamId: number, pieces: readonly Buffer[], length: number): void {
      this.session.writeFrame(FrameType.Data, 0, streamId, length, pieces);
    }
    requestSend(stream: YamuxStream): void {
      this.session.requestSend(stream);
    }
    release(stream: YamuxStream): void {
      this.session.release(stream);
    }
    reserveWindow(bytes: number): boolean {
      if (bytes > this.session.growthLeft) return false;
      this.session.growthLeft -= bytes;
      return true;
    }
    returnWindow(bytes: number): void {
      this.session.growthLeft += bytes;
    }
    roundTripTime(): number | undefined {
      return this.session.rttMs;
    }
    now(): number {
      const timers = this.session.timers;
      return timers.now === undefined ? performance.now() : timers.now();
    }
  };

  private readonly streams = new Map<number, YamuxStream>();
  private inboundCount = 0;
  private nextStreamId: number;
  /** Highest stream ID the peer has opened: frames for higher IDs without SYN were never opened. */
  private highestRemoteId = 0;

  private readonly input = new ByteQueue();
  /** Header of the Data frame whose body is arriving. */
  private header: FrameHeader | undefined;
  /** Body bytes of that frame still to come. */
  private bodyLeft = 0;
  /** The stream that gets that body as it arrives; undefined when the body is dropped. */
  private bodyStream: YamuxStream | undefined;
  /** The inbound stream that frame opened (SYN), announced once the body is in. */
  private bodyOpened: YamuxStream | undefined;
  private processing = false;
  private inputPaused = false;

  /** Streams with data and window to send, served round-robin one frame at a time. */
  private readonly ready = new Fifo<YamuxStream>();
  private pumping = false;

  /** Pings waiting for their answer, by opaque value; made at the first ping (the link pings on its control stream instead). */
  private pings: Map<number, PendingPing> | undefined;
  private nextPingId = 0;

  private localGoAway = false;
  private remoteGoAway = false;
  private closing = false;
  private terminated = false;
  private connectionEnding = false;
  private corked = false;
  private closePromise: Promise<void> | undefined;
  private readonly closeWaiters: (() => void)[] = [];
  private lingerTimer: object | number | undefined;
  private readonly timers: SessionTimers;

  /**
   * Attaches a session to a connected `connection`.
   * @param connection a connected byte Duplex (TCP socket, secure channel); not in object mode.
   * @param options see {@link YamuxSessionOptions}.
   * @throws RangeError when an option is out of range.
   */
  constructor(connection: Duplex, options: YamuxSessionOptions) {
    super();
    if (options.role !== 'client' && options.role !== 'server') {
      throw new RangeError(`yamux: role must be 'client' or 'server'`);
    }
    this.connection = connection;
    this.onStreamHandler = options.onStream;
    this.initialWindow = checkSize('initialWindow', options.initialWindow, INITIAL_STREAM_WINDOW, INITIAL_STREAM_WINDOW, MAX_UINT32);
    this.maxStreamWindow = checkSize(
      'maxStreamWindow',
      options.maxStreamWindow,
      Math.max(DEFAULT_MAX_STREAM_WINDOW, this.initialWindow),
      this.initialWindow,
      MAX_UINT32,
    );
    this.growthLeft = checkSize('windowGrowthBudget', options.windowGrowthBudget, DEFAULT_WINDOW_GROWTH_BUDGET, 0, Number.MAX_SAFE_INTEGER);
    this.maxStreams = checkSize('maxStreams', options.maxStreams, DEFAULT_MAX_STREAMS, 0, MAX_UINT32);
    this.maxFrameLength = checkSize('maxFrameLength', options.maxFrameLength, this.maxStreamWindow, 1, MAX_UINT32);
    this.maxSendFrameLength = checkSize('maxSendFrameLength', options.maxSendFrameLength, DEFAULT_MAX_SEND_FRAME_LENGTH, 1, MAX_UINT32);
    const maxPendingBytes = checkSize('maxPendingBytes', options.maxPendingBytes, DEFAULT_MAX_PENDING_BYTES, 0, Number.MAX_SAFE_INTEGER);
    // Data alone never exceeds high-water mark + one frame: only peer-provoked control frames can.
    this.pauseThreshold = connection.writableHighWaterMark + this.maxSendFrameLength + HEADER_LENGTH + maxPendingBytes;
    this.nextStreamId = options.role === 'client' ? 1 : 2;
    const timers = options.timers ?? GLOBAL_TIMERS;
    this.timers = timers;

    this.host = new YamuxSession.StreamHost(this);

    connection.on('data', this.onData);
    connection.on('end', this.onEnd);
    connection.on('error', this.onError);
    connection.on('close', this.onClose);
    connection.on('drain', this.onDrain);
    if (connection.destroyed || !connection.readable) {
      queueMicrotask(() => this.terminate(undefined));
    }
  }

  /** Streams currently open (not yet fully closed or reset), both directions. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Whether the session has ended (closed, destroyed, failed, or the connection went away). */
  get closed(): boolean {
    return this.terminated;
  }

  /**
   * Opens an outbound stream: sends its SYN (a WindowUpdate) at once; data may follow without
   * waiting for the ACK (spec.md, "Opening a stream"). The peer may still refuse with RST, which
   * destroys the stream with `StreamReset`.
   * @returns the new stream.
   * @throws ConnectionClosed when the session is closing or closed.
   * @throws StreamOpenRefused after a GoAway either way, or when this side's u32 stream IDs are used up.
   */
  openStream(): YamuxStream {
    if (this.terminated || this.closing) throw new ConnectionClosed('yamux session is closed');
    if (this.localGoAway) throw new StreamOpenRefused('local-goaway');
    if (this.remoteGoAway) throw new StreamOpenRefused('remote-goaway');
    if (this.nextStreamId > MAX_UINT32) throw new StreamOpenRefused('ids-exhausted');
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new YamuxStream(this.host, id, 'outbound', this.initialWindow, this.maxStreamWindow);
    this.streams.set(id, stream);
    stream.sendSyn();
    return stream;
  }

  /**
   * Measures the round trip with a Ping (spec.md, "Type Field": Ping SYN, answered by Ping ACK
   * echoing the opaque value).
   * @returns the round-trip time in ms (sub-ms precision, from `performance.now()`).
   * @throws ConnectionClosed (rejection) when the session is closed or closes before the answer.
   */
  ping(): Promise<number> {
    if (this.terminated) return Promise.reject(new ConnectionClosed('yamux session is closed'));
    const id = this.nextPingId;
    this.nextPingId = (this.nextPingId + 1) % (MAX_UINT32 + 1);
    return new Promise<number>((resolve, reject) => {
      (this.pings ??= new Map()).set(id, { start: performance.now(), resolve, reject });
      this.writeFrame(FrameType.Ping, Flag.SYN, 0, id);
    });
  }

  /**
   * Sends GoAway (once): from now on no new streams either way; streams already open go on
   * (spec.md, "Session termination"). Inbound SYNs are refused with RST.
   * @param code a `GoAwayCode` (u32), default Normal (0).
   * @throws RangeError when `code` is not a u32.
   */
  goAway(code: number = GoAwayCode.Normal): void {
    if (!Number.isInteger(code) || code < 0 || code > MAX_UINT32) {
      throw new RangeError(`yamux: GoAway code must be a u32, got ${code}`);
    }
    if (this.terminated || this.localGoAway) return;
    this.localGoAway = true;
    this.writeFrame(FrameType.GoAway, 0, 0, code);
  }

  /**
   * Closes gracefully: sends GoAway(Normal), ends (FIN) every stream after its queued data, waits
   * until every stream is closed both ways or reset (the peer must FIN or RST its side), then
   * ends the connection and resolves once our side of it has flushed ('finish'). The connection
   * closes fully when the peer ends its side. The wait is unbounded by design: the owner bounds
   * it (DESIGN §2, gracefulShutdownTimeout) and calls `destroy()`, which also settles this promise.
   * @returns a promise that resolves when the session is closed; it never rejects.
   */
  close(): Promise<void> {
    if (this.closePromise !== undefined) return this.closePromise;
    this.closePromise = new Promise<void>((resolve) => {
      if (this.terminated) {
        resolve();
        return;
      }
      this.closeWaiters.push(resolve);
    });
    if (!this.terminated) {
      this.goAway(GoAwayCode.Normal);
      this.closing = true;
      for (const stream of [...this.streams.values()]) {
        if (!stream.writableEnded && !stream.destroyed) stream.end();
      }
      this.maybeEndConnection();
    }
    return this.closePromise;
  }

  /**
   * Ends the session at once: destroys every stream (with `error` when given, else
   * `ConnectionClosed`), rejects pending pings with `ConnectionClosed`, destroys the connection,
   * emits 'error' (when given and listened) and 'close'. Idempotent.
   * @param error why, passed to streams and to the 'error'/'close' events.
   */
  destroy(error?: Error): void {
    if (this.terminated) return;
    this.terminate(error);
    this.connection.destroy();
  }

  // ---- input --------------------------------------------------------------------------------

  private readonly onData = (chunk: unknown): void => {
    if (this.terminated) return; // late bytes after the end are ignored
    if (!(chunk instanceof Uint8Array)) {
      this.destroy(new TypeError('yamux: the connection must deliver bytes, not strings or objects'));
      return;
    }
    this.input.push(chunk);
    this.processInput();
  };

  /**
   * Parses and handles every frame queued, unless paused for output backpressure. A Data body is
   * handed to its stream piece by piece as it arrives (its length was admitted against the window
   * from the header), so the session never gathers a body into one buffer.
   */
  private processInput(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      while (!this.terminated && !this.inputPaused) {
        let header = this.header;
        if (header === undefined) {
          const bytes = this.input.read(HEADER_LENGTH);
          if (bytes === undefined) break;
          header = decodeHeader(bytes);
          this.admit(header);
          if (header.type !== FrameType.Data || header.length === 0) {
            this.handleFrame(header);
            continue;
          }
          this.header = header;
          this.bodyLeft = header.length;
          this.bodyStream = this.beginStreamFrame(header);
        }
        const piece = this.input.shift(this.bodyLeft);
        if (piece === undefined) break;
        this.bodyLeft -= piece.length;
        this.bodyStream?.receiveData(piece);
        if (this.bodyLeft === 0) {
          const stream = this.bodyStream;
          this.header = undefined;
          this.bodyStream = undefined;
          if (stream !== undefined) this.endStreamFrame(header, stream);
        }
      }
    } catch (error) {
      this.failFromInput(error);
    } finally {
      this.processing = false;
    }
  }

  /**
   * Checks a Data frame's length as soon as its header arrives, before its body is buffered, so
   * the peer can never make us hold more than a window (spec.md, "Flow Control").
   */
  private admit(header: FrameHeader): void {
    if (header.type !== FrameType.Data || header.length === 0) return;
    if (header.length > this.maxFrameLength) {
      throw new ProtocolViolation(`yamux: Data frame of ${header.length} bytes exceeds the cap of ${this.maxFrameLength} bytes`);
    }
    const stream = this.streams.get(header.streamId);
    if ((header.flags & Flag.SYN) !== 0) {
      // A new stream starts with the spec's 256 KiB window whatever we will announce later.
      if (stream === undefined && header.length > INITIAL_STREAM_WINDOW) {
        throw new ProtocolViolation(`yamux: SYN with ${header.length} bytes exceeds the initial window (spec.md, Flow Control)`);
      }
      return;
    }
    stream?.checkIncomingData(header.length);
  }

  /** Handles a frame without a body: Ping, GoAway, WindowUpdate or an empty Data frame. */
  private handleFrame(header: FrameHeader): void {
    switch (header.type) {
      case FrameType.Ping:
        if (header.flags === Flag.SYN) {
          this.writeFrame(FrameType.Ping, Flag.ACK, 0, header.length);
        } else {
          this.settlePing(header.length);
        }
        return;
      case FrameType.GoAway:
        this.remoteGoAway = true;
        this.emit('goaway', header.length);
        return;
      default: {
        const stream = this.beginStreamFrame(header);
        if (stream === undefined) return;
        if (header.type === FrameType.WindowUpdate) stream.receiveWindowUpdate(header.length);
        this.endStreamFrame(header, stream);
      }
    }
  }

  /**
   * The first half of a stream frame, before any body: opens the stream on SYN (or refuses it),
   * finds it otherwise, takes an ACK.
   * @returns the stream, or undefined when the frame (and its body) is to be dropped.
   */
  private beginStreamFrame(header: FrameHeader): YamuxStream | undefined {
    const { streamId: id, flags } = header;
    let stream = this.streams.get(id);
    this.bodyOpened = undefined;
    if ((flags & Flag.SYN) !== 0) {
      if (stream !== undefined) {
        throw new ProtocolViolation(`yamux: SYN for stream ${id}, which is already open`);
      }
      if (this.isLocalId(id)) {
        throw new ProtocolViolation(`yamux: peer opened stream ${id}, an ID of our parity (spec.md, StreamID Field)`);
      }
      if (id > this.highestRemoteId) this.highestRemoteId = id;
      if ((flags & Flag.RST) !== 0) return undefined; // opened and aborted at once: nothing to accept
      stream = this.accept(id);
      if (stream === undefined) return undefined; // refused with RST; its data is dropped
      this.bodyOpened = stream;
    } else if (stream === undefined) {
      if (this.neverOpened(id)) {
        throw new ProtocolViolation(`yamux: frame for stream ${id}, which was never opened`);
      }
      // A frame for a stream that is already closed or reset can cross our RST: drop it
      // (spec.md, "Opening a stream"; the Go reference discards such data too).
      return undefined;
    }
    if ((flags & Flag.ACK) !== 0) stream.receiveAck();
    return stream;
  }

  /** The second half of a stream frame, after its body: FIN, RST, and announcing a stream it opened. */
  private endStreamFrame(header: FrameHeader, stream: YamuxStream): void {
    const opened = this.bodyOpened;
    this.bodyOpened = undefined;
    if ((header.flags & Flag.FIN) !== 0) stream.receiveFin();
    if ((header.flags & Flag.RST) !== 0) stream.receiveReset();
    if (opened !== undefined) this.announce(opened);
  }

  /** Accepts an inbound stream (sends ACK), or refuses it with RST and returns undefined. */
  private accept(id: number): YamuxStream | undefined {
    const hasTaker = this.onStreamHandler !== undefined || this.listenerCount('stream') > 0;
    if (this.localGoAway || this.closing || !hasTaker || this.inboundCount >= this.maxStreams) {
      this.writeFrame(FrameType.WindowUpdate, Flag.RST, id, 0);
      return undefined;
    }
    const stream = new YamuxStream(this.host, id, 'inbound', this.initialWindow, this.maxStreamWindow);
    this.streams.set(id, stream);
    this.inboundCount += 1;
    stream.sendAck();
    return stream;
  }

  /** Hands an accepted inbound stream to the application; a throwing handler resets only that stream. */
  private announce(stream: YamuxStream): void {
    try {
      this.onStreamHandler?.(stream);
      this.emit('stream', stream);
    } catch (error) {
      stream.reset();
      if (this.listenerCount('error') > 0) {
        this.emit('error', error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  private settlePing(id: number): void {
    const pending = this.pings?.get(id);
    if (pending === undefined) return; // unsolicited or late answer: harmless
    this.pings?.delete(id);
    const rtt = Math.max(performance.now() - pending.start, Number.MIN_VALUE);
    this.rttMs = rtt;
    pending.resolve(rtt);
  }

  private isLocalId(id: number): boolean {
    return id % 2 === this.nextStreamId % 2;
  }

  private neverOpened(id: number): boolean {
    return this.isLocalId(id) ? id >= this.nextStreamId : id > this.highestRemoteId;
  }

  private failFromInput(error: unknown): void {
    if (error instanceof ProtocolViolation) {
      this.fail(error, GoAwayCode.ProtocolError);
    } else {
      // Our own bug or an application handler throwing mid-frame: the session state is suspect.
      const cause = error instanceof Error ? error : new Error(String(error));
      this.fail(cause, GoAwayCode.InternalError);
    }
  }

  /**
   * Ends the session on an error: GoAway with `code` when the connection can still carry it,
   * destroy streams, then end the connection and destroy it once flushed (or after a linger).
   */
  private fail(error: Error, code: number): void {
    if (this.terminated) return;
    if (this.connection.writable) {
      this.connection.write(encodeHeader({ type: FrameType.GoAway, flags: 0, streamId: 0, length: code }));
    }
    this.terminate(error);
    if (this.connection.destroyed) return;
    const finish = (): void => {
      if (this.lingerTimer !== undefined) this.timers.clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      this.connection.destroy();
    };
    if (this.connection.writableFinished || !this.connection.writable) {
      finish();
      return;
    }
    this.connection.once('finish', finish);
    this.connection.end();
    this.lingerTimer = this.timers.setTimeout(finish, VIOLATION_LINGER_MS);
  }

  // ---- connection events --------------------------------------------------------------------

  private readonly onEnd = (): void => {
    if (this.terminated) return;
    // A frame cut by the end is the transport's truncation, not a malformed frame.
    const cut = this.header !== undefined || this.input.length > 0;
    this.terminate(cut ? withoutStack(() => new ConnectionClosed('yamux: the connection ended in the middle of a frame')) : undefined);
    if (this.connection.writable) this.connection.end();
  };

  private readonly onError = (error: Error): void => {
    // Kept attached for the connection's whole life: an 'error' without a listener would crash.
    if (this.terminated) return;
    this.terminate(error);
    this.connection.destroy();
  };

  private readonly onClose = (): void => {
    if (this.lingerTimer !== undefined) this.timers.clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.terminate(undefined);
  };

  private readonly onDrain = (): void => {
    if (this.terminated) return;
    if (this.inputPaused && this.connection.writableLength <= this.pauseThreshold) {
      this.inputPaused = false;
      this.connection.resume();
      this.processInput();
    }
    this.pump();
  };

  // ---- output -------------------------------------------------------------------------------

  /**
   * Writes one frame if the connection can still take it; pauses input on a large backlog.
   * `payload` (Data frames) is the body in pieces, `length` bytes together.
   */
  private writeFrame(type: FrameType, flags: number, streamId: number, length: number, payload?: readonly Buffer[]): void {
    if (this.terminated || !this.connection.writable) return;
    if (!this.corked) {
      // Frames written in one tick (SYN + data + FIN, Ping replies) leave in one write.
      this.corked = true;
      this.connection.cork();
      process.nextTick(this.uncork);
    }
    if (payload === undefined || length === 0) {
      this.connection.write(encodeHeader({ type, flags, streamId, length }));
    } else if (length <= COALESCE_LIMIT) {
      const frame = Buffer.allocUnsafe(HEADER_LENGTH + length);
      writeHeader(frame, 0, { type, flags, streamId, length });
      let offset = HEADER_LENGTH;
      for (const piece of payload) {
        piece.copy(frame, offset);
        offset += piece.length;
      }
      this.connection.write(frame);
    } else {
      this.connection.write(encodeHeader({ type, flags, streamId, length }));
      for (const piece of payload) this.connection.write(piece);
    }
    if (!this.inputPaused && this.connection.writableLength > this.pauseThreshold) {
      // The peer provokes output faster than it reads it: stop reading until 'drain'.
      this.inputPaused = true;
      this.connection.pause();
    }
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.connection.uncork();
  };

  private requestSend(stream: YamuxStream): void {
    if (this.terminated) return;
    if (!stream.sendQueued) {
      stream.sendQueued = true;
      this.ready.push(stream);
    }
    this.pump();
  }

  /** Sends Data frames round-robin, one per stream per turn, while the connection takes them. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.ready.length > 0 && !this.terminated && this.connection.writable && !this.connection.writableNeedDrain) {
        const stream = this.ready.shift() as YamuxStream;
        if (!stream.sendQueued) continue; // released meanwhile
        stream.sendQueued = false;
        stream.sendNextFrame(this.maxSendFrameLength);
        if (stream.wantsToSend && !stream.sendQueued) {
          stream.sendQueued = true;
          this.ready.push(stream);
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  private release(stream: YamuxStream): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    if (stream.direction === 'inbound') this.inboundCount -= 1;
    stream.sendQueued = false;
    this.maybeEndConnection();
  }

  /** During close(): once no stream is left, end the connection and finish on 'finish'. */
  private maybeEndConnection(): void {
    if (!this.closing || this.terminated || this.connectionEnding || this.streams.size > 0) return;
    this.connectionEnding = true;
    if (!this.connection.writable) {
      this.terminate(undefined);
      return;
    }
    this.connection.once('finish', () => this.terminate(undefined));
    this.connection.end();
  }

  /** Marks the session ended, tears down streams and pings, emits 'error'/'close'. Idempotent. */
  private terminate(error: Error | undefined): void {
    if (this.terminated) return;
    this.terminated = true;
    this.closing = true;
    this.input.clear();
    this.header = undefined;
    this.bodyStream = undefined;
    this.bodyOpened = undefined;
    if (this.inputPaused) {
      // Keep reading (and dropping) so the connection's end is still seen.
      this.inputPaused = false;
      this.connection.resume();
    }
    const streamError = error ?? withoutStack(() => new ConnectionClosed('yamux session closed'));
    const streams = [...this.streams.values()];
    this.streams.clear();
    this.inboundCount = 0;
    for (let stream = this.ready.shift(); stream !== undefined; stream = this.ready.shift()) stream.sendQueued = false;
    for (const stream of streams) stream.abort(streamError);
    const pings = this.pings ? [...this.pings.values()] : [];
    this.pings = undefined;
    for (const ping of pings) ping.reject(withoutStack(() => new ConnectionClosed('yamux session closed before the ping was answered')));
    if (error !== undefined && this.listenerCount('error') > 0) this.emit('error', error);
    this.emit('close', error);
    for (const resolve of this.closeWaiters.splice(0)) resolve();
  }
}

/**
 * The control stream: the first yamux stream of every connection, opened by the dialer, carrying
 * ping/pong and the goodbye that tells the remote why we are closing (DESIGN §4, §2).
 *
 * Wire format, one message per frame: `u16 length (big-endian, ≥ 1, ≤ 1024)`, then `u8 type` and
 * a body of `length − 1` bytes:
 * - `1 PING`, body: 8 opaque bytes; the receiver answers with `2 PONG` carrying the same bytes.
 * - `3 GOODBYE`, body: `u8 reason code` (see {@link DISCONNECT_REASONS}), `u8 flags`
 *   (bit 0: the connection is a duplicate of another one to the same peer).
 * Unknown types are ignored (forward compatibility); a frame over 1024 bytes, an empty frame,
 * a malformed ping/pong or goodbye is a ProtocolViolation.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { ByteQueue } from './byte-queue.js';
import { reasonCode, reasonFromCode } from './disconnect-reason.js';
import type { DisconnectReason } from './disconnect-reason.js';
import { ConnectionClosed, ProtocolViolation, withoutStack } from './errors.js';

/** Protocol name under which the control stream is opened. */
export const CONTROL_PROTOCOL = '/peerwarden/control/1';

const MAX_CONTROL_FRAME = 1024;
const PING = 1;
const PONG = 2;
const GOODBYE = 3;
const FLAG_DUPLICATE = 1;

/** Swallows an error nobody needs any more. */
function ignoreError(): void {
  // nothing to do: the channel was detached
}

/** A goodbye as received from the remote. */
export interface Goodbye {
  readonly reason: DisconnectReason;
  /** The remote closes this connection because another one to the same peer survives. */
  readonly duplicate: boolean;
}

/** Events of a {@link ControlChannel}. */
export interface ControlChannelEvents {
  goodbye: [Goodbye];
  /** The control stream failed (ProtocolViolation) or closed (ConnectionClosed). */
  error: [Error];
}

/**
 * Ping/pong and goodbye over one control stream (a Duplex, normally a yamux stream).
 * The channel answers pings by itself. It never throws from stream callbacks: failures are
 * emitted as `error` and pending pings are rejected.
 */
export class ControlChannel extends EventEmitter<ControlChannelEvents> {
  private readonly inbound = new ByteQueue();
  /**
   * A ping waiting for its pong, and its number. Pings are usually one at a time, and a Map whose
   * only entry comes and goes reallocates its table on every ping: garbage that lived for the
   * ping interval and was promoted.
   */
  private firstPing: PendingPing | undefined;
  private firstPingId = 0;
  /** Pings sent while {@link firstPing} was taken (rare: an app ping during a monitor ping), by number. */
  private morePings: Map<number, PendingPing> | undefined;
  /** Number of the next ping, 0..2^32-1 (wraps): sent as the 8-byte body 0x00000000 || number (big-endian). */
  private nextPing = 0;
  private failed: Error | undefined;
  /** We closed it ({@link close}, {@link detach}): later pings reject, and nothing is announced. */
  private closedByUs = false;
  private readonly onStreamData = (chunk: Buffer): void => this.onData(chunk);
  // Errors are built only when still needed: capturing a stack costs more than the whole close.
  private readonly onStreamEnd = (): void => {
    if (this.usable) this.fail(withoutStack(() => new ConnectionClosed('control stream ended')));
  };
  private readonly onStreamClose = (): void => {
    if (this.usable) this.fail(withoutStack(() => new ConnectionClosed('control stream closed')));
  };
  private readonly onStreamError = (error: Error): void => this.fail(error);

  constructor(private readonly stream: Duplex) {
    super();
    stream.on('data', this.onStreamData);
    stream.on('end', this.onStreamEnd);
    stream.on('close', this.onStreamClose);
    stream.on('error', this.onStreamError);
  }

  /** Neither failed nor closed by us. */
  private get usable(): boolean {
    return this.failed === undefined && !this.closedByUs;
  }

  /**
   * Sends a ping and resolves when its pong arrives. The caller measures RTT and applies the
   * ping timeout on its own clock.
   * @throws ConnectionClosed (as the rejection) if the channel closes first.
   */
  ping(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closedByUs) return Promise.reject(new ConnectionClosed('control channel closed'));
    const id = this.nextPing;
    this.nextPing = (id + 1) % PING_NUMBERS;
    const frame = frameOf(PING, PING_BODY_LENGTH);
    frame.writeUInt32BE(0, 3);
    frame.writeUInt32BE(id, 7);
    return new Promise<void>((resolve, reject) => {
      if (this.firstPing === undefined) {
        this.firstPing = { resolve, reject };
        this.firstPingId = id;
      } else {
        (this.morePings ??= new Map()).set(id, { resolve, reject });
      }
      this.send(frame);
    });
  }

  /**
   * Sends a goodbye with the reason and ends our side of the control stream.
   * Resolves once the frame has been handed to the stream (flushing the socket is the link's job).
   */
  goodbye(reason: DisconnectReason, duplicate = false): Promise<void> {
    if (!this.usable) return Promise.resolve();
    const frame = frameOf(GOODBYE, 2);
    frame[3] = reasonCode(reason);
    frame[4] = duplicate ? FLAG_DUPLICATE : 0;
    return new Promise<void>((resolve) => {
      this.send(frame, () => resolve());
    });
  }

  /** Destroys the control stream; pending pings reject with ConnectionClosed. Emits no `error` (we closed it). */
  close(): void {
    if (this.usable && this.pingsPending) this.fail(new ConnectionClosed('control channel closed'), false);
    this.closedByUs = true;
    this.stream.destroy();
  }

  /**
   * Lets go of the stream without ending or destroying it, for an owner that destroys it next
   * with the whole connection: pending pings reject with ConnectionClosed, no `error` is emitted,
   * and every listener of the channel leaves the stream. A yamux session then aborts the stream
   * quietly: no RST frame on a connection that goes anyway, and, with nobody listening, no error
   * whose stack Node would format. The owner must destroy the stream at once (e.g.
   * `session.destroy()`, then {@link close}): an error it emitted later would be uncaught. A
   * stream already destroyed keeps a no-op error listener, as its error may be on its way.
   */
  detach(): void {
    if (this.usable && this.pingsPending) this.fail(new ConnectionClosed('control channel closed'), false);
    this.closedByUs = true;
    this.stream.off('data', this.onStreamData);
    this.stream.off('end', this.onStreamEnd);
    this.stream.off('close', this.onStreamClose);
    this.stream.off('error', this.onStreamError);
    if (this.stream.destroyed) this.stream.on('error', ignoreError);
  }

  /** Writes a whole frame (see {@link frameOf}); `done` runs once the stream took it, or at once if it is closed. */
  private send(frame: Buffer, done?: () => void): void {
    if (this.stream.writableEnded || this.stream.destroyed) {
      done?.();
      return;
    }
    this.stream.write(frame, () => done?.());
  }

  private onData(chunk: Buffer): void {
    if (!this.usable) return;
    this.inbound.push(chunk);
    while (this.inbound.length >= 2) {
      const length = (this.inbound.peek(2) as Buffer).readUInt16BE(0);
      if (length === 0 || length > MAX_CONTROL_FRAME) {
        this.violation(`control frame length ${length} outside 1..${MAX_CONTROL_FRAME}`);
        return;
      }
      if (this.inbound.length < 2 + length) return;
      this.inbound.skip(2);
      const frame = this.inbound.read(length) as Buffer;
      this.onFrame(frame[0] as number, frame.subarray(1));
      if (!this.usable) return;
    }
  }

  private onFrame(type: number, body: Buffer): void {
    switch (type) {
      case PING: {
        if (body.length !== PING_BODY_LENGTH) return this.violation('ping body must be 8 bytes');
        const pong = frameOf(PONG, PING_BODY_LENGTH);
        body.copy(pong, 3);
        this.send(pong);
        return;
      }
      case PONG: {
        if (body.length !== PING_BODY_LENGTH) return this.violation('pong body must be 8 bytes');
        // We only send numbers below 2^32; any other pong is unsolicited: harmless and ignored.
        if (body.readUInt32BE(0) !== 0) return;
        this.settlePing(body.readUInt32BE(4));
        return;
      }
      case GOODBYE: {
        const reason = body.length === 2 ? reasonFromCode(body[0] as number) : undefined;
        if (reason === undefined) return this.violation('malformed goodbye');
        this.emit('goodbye', { reason, duplicate: ((body[1] as number) & FLAG_DUPLICATE) !== 0 });
        return;
      }
      default:
        return; // unknown control message: ignored so that newer peers can add messages
    }
  }

  private get pingsPending(): boolean {
    return this.firstPing !== undefined || (this.morePings !== undefined && this.morePings.size > 0);
  }

  /** Resolves the ping numbered `id`, if it is waiting. */
  private settlePing(id: number): void {
    let pending: PendingPing | undefined;
    if (this.firstPing !== undefined && this.firstPingId === id) {
      pending = this.firstPing;
      this.firstPing = undefined;
    } else {
      pending = this.morePings?.get(id);
      this.morePings?.delete(id);
    }
    pending?.resolve();
  }

  private violation(message: string): void {
    this.fail(new ProtocolViolation(message));
    this.stream.destroy();
  }

  private fail(error: Error, announce = true): void {
    if (this.failed || this.closedByUs) return;
    this.failed = error;
    const first = this.firstPing;
    const more = this.morePings;
    this.firstPing = undefined;
    this.morePings = undefined;
    first?.reject(error);
    if (more) for (const ping of more.values()) ping.reject(error);
    if (announce) this.emit('error', error);
  }
}

/** A ping waiting for its pong. */
interface PendingPing {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/** Bytes of a ping or pong body. */
const PING_BODY_LENGTH = 8;
/** Ping numbers wrap here: at most this many pings are told apart (one ping every 10 s wraps after ~1,360 years). */
const PING_NUMBERS = 2 ** 32;

/** A frame of `type` with room for a `bodyLength`-byte body at offset 3 (length prefix and type filled in). */
function frameOf(type: number, bodyLength: number): Buffer {
  const frame = Buffer.allocUnsafe(3 + bodyLength);
  frame.writeUInt16BE(1 + bodyLength, 0);
  frame[2] = type;
  return frame;
}

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
  private readonly pendingPings = new Map<string, () => void>();
  private readonly rejectors = new Map<string, (error: Error) => void>();
  private nextPing = 0n;
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
    const body = Buffer.allocUnsafe(8);
    body.writeBigUInt64BE(this.nextPing++ & 0xffffffffffffffffn);
    const key = body.toString('hex');
    return new Promise<void>((resolve, reject) => {
      this.pendingPings.set(key, resolve);
      this.rejectors.set(key, reject);
      this.writeFrame(PING, body);
    });
  }

  /**
   * Sends a goodbye with the reason and ends our side of the control stream.
   * Resolves once the frame has been handed to the stream (flushing the socket is the link's job).
   */
  goodbye(reason: DisconnectReason, duplicate = false): Promise<void> {
    if (!this.usable) return Promise.resolve();
    const body = Buffer.from([reasonCode(reason), duplicate ? FLAG_DUPLICATE : 0]);
    return new Promise<void>((resolve) => {
      this.writeFrame(GOODBYE, body, () => resolve());
    });
  }

  /** Destroys the control stream; pending pings reject with ConnectionClosed. Emits no `error` (we closed it). */
  close(): void {
    if (this.usable && this.rejectors.size > 0) this.fail(new ConnectionClosed('control channel closed'), false);
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
    if (this.usable && this.rejectors.size > 0) this.fail(new ConnectionClosed('control channel closed'), false);
    this.closedByUs = true;
    this.stream.off('data', this.onStreamData);
    this.stream.off('end', this.onStreamEnd);
    this.stream.off('close', this.onStreamClose);
    this.stream.off('error', this.onStreamError);
    if (this.stream.destroyed) this.stream.on('error', ignoreError);
  }

  private writeFrame(type: number, body: Buffer, done?: () => void): void {
    const frame = Buffer.allocUnsafe(3 + body.length);
    frame.writeUInt16BE(1 + body.length, 0);
    frame[2] = type;
    body.copy(frame, 3);
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
      case PING:
        if (body.length !== 8) return this.violation('ping body must be 8 bytes');
        this.writeFrame(PONG, Buffer.from(body));
        return;
      case PONG: {
        if (body.length !== 8) return this.violation('pong body must be 8 bytes');
        const key = body.toString('hex');
        const resolve = this.pendingPings.get(key);
        this.pendingPings.delete(key);
        this.rejectors.delete(key);
        resolve?.(); // an unsolicited pong is harmless and ignored
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

  private violation(message: string): void {
    this.fail(new ProtocolViolation(message));
    this.stream.destroy();
  }

  private fail(error: Error, announce = true): void {
    if (this.failed || this.closedByUs) return;
    this.failed = error;
    for (const reject of this.rejectors.values()) reject(error);
    this.pendingPings.clear();
    this.rejectors.clear();
    if (announce) this.emit('error', error);
  }
}

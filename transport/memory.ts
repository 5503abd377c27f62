/**
 * The in-memory transport (DESIGN §5 "memory (test pipe with fault injection)", §8 "Model-based
 * specs … over the in-memory transport with injected faults"): a simulated network of hosts in
 * one process, with no sockets, where the same Noise and yamux layers run unchanged on
 * {@link Transport} byte streams.
 *
 * Time: every delay goes through the injected {@link Clock}; with no `delay` or `throttle` fault
 * no timer is ever set: bytes move on microtasks (plus one `setImmediate` per completed dial and
 * per closed stream), so on a `VirtualClock` a whole handshake takes no virtual time.
 *
 * What it copies from TCP (RFC 9293), because Noise, yamux and the supervisor rely on it:
 * - in-order delivery, half-close (`end()` is a FIN after every earlier byte; §3.6);
 * - `destroy()` before our FIN is an abort: the peer sees ECONNRESET (§3.5.3). Bytes that reach
 *   an end already destroyed are answered with a reset (§3.5.2), so writing into a connection
 *   whose far end is gone fails, as on a real socket;
 * - backpressure: a writer's callback waits while the reader's readable buffer is at its
 *   high-water mark, and at most {@link WINDOW_BYTES} are in flight per direction;
 * - `halfOpen`: one end may close or abort without the other ever learning it (§3.5.1);
 * - event order of `net.Socket`: nothing reaches a dialed stream before the turn after `dial()`
 *   resolved, and `'close'` comes a loop phase after `destroy()`, so whatever layer destroyed the
 *   stream with its own error (a secure channel's ProtocolViolation) reports that error first.
 */
import { isIPv6 } from 'node:net';
import { Duplex } from 'node:stream';
// Type-only: the clock lives in streams/, and transport/ must not import streams/ at run time (DESIGN §1).
import type { Clock, TimerHandle } from '../streams/clock.js';
import { ConnectionClosed, DialFailed } from './errors.js';
import { formatAddress, parseAddress } from './tcp.js';
import { guardErrors } from './transport.js';
import type { RawConnection, Transport, TransportListener } from './transport.js';

/** Options of a {@link MemoryNetwork}. */
export interface MemoryNetworkOptions {
  /**
   * The clock every fault delay and throttle runs on; default wall-clock time (the behaviour of
   * `systemClock` in `streams/clock.ts`). Specs pass a `VirtualClock`.
   */
  clock?: Clock;
}

/**
 * A fault on a {@link MemoryConnection}, active from `inject` until its remover is called.
 * Several faults combine: delays add up, the lowest throttle wins, any stall or halfOpen holds.
 *
 * - `delay`: each chunk arrives `ms` (≥ 0) milliseconds after it was written, order kept; applies
 *   to bytes written while it is active (bytes already in flight keep their arrival time), and
 *   also to connection set-up (the SYN and its answer, each `ms` late).
 * - `throttle`: each direction carries at most `bytesPerSecond` (> 0) bytes per second, sent in
 *   pieces of 10 ms worth (at least 1 byte); a piece arrives when its last byte has passed.
 * - `stall`: nothing is delivered (bytes, FIN and resets are held, not lost) until removed; the
 *   writer blocks once {@link WINDOW_BYTES} are held. A dial waits too.
 * - `halfOpen`: everything is silently dropped both ways, including FIN and the reset of a
 *   `destroy()`, so the other end never learns (RFC 9293 §3.5.1); dropped bytes are lost. After
 *   {@link WINDOW_BYTES} dropped the writer blocks, as TCP's unacknowledged send buffer would.
 *   A dial waits (the SYN is lost) until removed or aborted.
 * - `corrupt`: each forwarded byte, with `probability` (0..1), gets one random bit flipped;
 *   `random` (default `Math.random`, values in [0, 1)) makes it reproducible.
 * - `cutAt`: once `offset` bytes (counted from the start of the connection) have been written in
 *   `direction` (default `both`: either one), the reader gets exactly the bytes before `offset`
 *   and then a reset, and the writer is reset at once. Checked as bytes are written: if the count
 *   is already past `offset`, the next write in that direction resets with nothing more delivered.
 */
export type MemoryFault =
  | { kind: 'delay'; ms: number }
  | { kind: 'throttle'; bytesPerSecond: number }
  | { kind: 'stall' }
  | { kind: 'halfOpen' }
  | { kind: 'corrupt'; probability: number; random?: () => number }
  | { kind: 'cutAt'; offset: number; direction?: 'dialerToListener' | 'listenerToDialer' | 'both' };

/** One connection of a {@link MemoryNetwork}, as seen by specs and fault injection. */
export interface MemoryConnection {
  /** Unique within its network, increasing from 1 in dial order. */
  readonly id: number;
  /** `host:port` of the dialing side (its port is ephemeral, 49152–65535). */
  readonly dialer: string;
  /** `host:port` of the listening side. */
  readonly listener: string;
  /**
   * Resets the connection now, whatever its faults: both ends are destroyed with an Error whose
   * `code` is `'ECONNRESET'` (their `'error'` then `'close'`). A dial still pending rejects with
   * DialFailed. Idempotent.
   */
  reset(): void;
  /**
   * Applies `fault` to this connection only, at once.
   * @returns removes the fault (idempotent); held bytes then move on.
   * @throws RangeError when a fault parameter is out of range (see {@link MemoryFault}).
   */
  inject(fault: MemoryFault): () => void;
}

/** Largest piece, in bytes, one write is cut into on the way (a "segment"). */
export const SEGMENT_BYTES = 64 * 1024;
/**
 * Bytes one direction holds in flight (written, not yet pushed to the reader, plus 64 bytes per
 * segment) before the writer's callback waits: with the reader's high-water mark, this bounds the
 * memory of a connection whose reader does not read.
 */
export const WINDOW_BYTES = 128 * 1024;
/**
 * What each data segment costs in the window beyond its bytes (like a kernel buffer's per-packet
 * overhead), so a flood of 1-byte writes holds at most WINDOW_BYTES / 64 segments, not 128 Ki.
 */
const SEGMENT_OVERHEAD_BYTES = 64;
/** Duration, in ms, of one throttled piece: a throttle sends `bytesPerSecond / 100` bytes at a time. */
const THROTTLE_TICK_MS = 10;
/** IANA's dynamic port range (RFC 6335 §6), where ephemeral and port-0 ports are picked. */
const EPHEMERAL_FIRST = 49152;
const EPHEMERAL_LAST = 65535;

/** An Error with a Node-style `code` (`ECONNRESET`, `ECONNREFUSED`, `EADDRINUSE`, …). */
function networkError(code: string, detail: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`${code}: ${detail}`);
  error.code = code;
  return error;
}

function resetError(): NodeJS.ErrnoException {
  return networkError('ECONNRESET', 'connection reset by peer');
}

/** Validates a host literal: an IPv4, IPv6 (brackets optional) or name. IPv6 is lower-cased. */
function normalizeHost(host: string): string {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const parsed = parseAddress(formatAddress({ host: bare, port: 1 }));
  return isIPv6(parsed.host) ? parsed.host.toLowerCase() : parsed.host;
}

function validateFault(fault: MemoryFault): void {
  switch (fault.kind) {
    case 'delay':
      if (!(Number.isFinite(fault.ms) && fault.ms >= 0)) throw new RangeError(`delay: ms must be finite and >= 0, got ${fault.ms}`);
      return;
    case 'throttle':
      if (!(Number.isFinite(fault.bytesPerSecond) && fault.bytesPerSecond > 0)) {
        throw new RangeError(`throttle: bytesPerSecond must be finite and > 0, got ${fault.bytesPerSecond}`);
      }
      return;
    case 'stall':
    case 'halfOpen':
      return;
    case 'corrupt':
      if (!(fault.probability >= 0 && fault.probability <= 1)) {
        throw new RangeError(`corrupt: probability must be in [0, 1], got ${fault.probability}`);
      }
      return;
    case 'cutAt': {
      if (!(Number.isSafeInteger(fault.offset) && fault.offset >= 0)) {
        throw new RangeError(`cutAt: offset must be an integer >= 0, got ${fault.offset}`);
      }
      const direction = fault.direction ?? 'both';
      if (direction !== 'both' && direction !== 'dialerToListener' && direction !== 'listenerToDialer') {
        throw new RangeError(`cutAt: unknown direction ${String(direction)}`);
      }
      return;
    }
    default: {
      const unknown: { kind?: unknown } = fault;
      throw new RangeError(`unknown fault kind ${String(unknown.kind)}`);
    }
  }
}

/** Bytes to pass before the next corrupted one: geometric with parameter `p`, one draw. */
function corruptionGap(p: number, random: () => number): number {
  if (p >= 1) return 0;
  const gap = Math.floor(Math.log(1 - random()) / Math.log(1 - p));
  return Number.isFinite(gap) && gap >= 0 ? gap : Number.POSITIVE_INFINITY;
}

/** 0: the dialer's end; 1: the listener's end. A lane is named by the side that writes into it. */
type Side = 0 | 1;

const other = (side: Side): Side => (side === 0 ? 1 : 0);

interface Effective {
  delayMs: number;
  bytesPerSecond: number | undefined;
  stall: boolean;
  halfOpen: boolean;
}

interface ActiveFault {
  readonly fault: MemoryFault;
  /** corrupt: bytes to pass before the next flip, per writing side (drawn lazily). */
  readonly gaps: [number | undefined, number | undefined];
}

type LaneItem = { kind: 'data'; bytes: Buffer; due: number } | { kind: 'end'; due: number } | { kind: 'reset'; due: number };

interface HeldWrite {
  readonly bytes: Buffer;
  offset: number;
  /** The bytes are our own copy (from `_writev`): no need to copy again. */
  readonly owned: boolean;
  readonly callback: (error?: Error | null) => void;
}

/** One end of a connection: the Duplex handed out as `RawConnection.stream`. */
class Endpoint extends Duplex {
  /** Bytes pushed into our readable side. */
  delivered = 0;
  /** Our readable side is below its high-water mark (last `push` returned true, or `_read` asked). */
  wantsData = true;
  /** Destroyed (by us or by a reset). */
  gone = false;
  /** Destroyed because of a reset from the network: do not send one back. */
  resetReceived = false;

  constructor(
    private readonly connection: Connection,
    private readonly side: Side,
  ) {
    // 'close' is ours to emit (see _destroy), as net.Socket does.
    super({ allowHalfOpen: true, decodeStrings: true, emitClose: false });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.connection.lane(this.side).write(chunk, false, callback);
  }

  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], callback: (error?: Error | null) => void): void {
    this.connection.lane(this.side).write(Buffer.concat(chunks.map((entry) => entry.chunk)), true, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    // A FIN is queued behind every byte written; like TCP, 'finish' does not wait for its delivery.
    this.connection.lane(this.side).enqueueEnd();
    callback();
  }

  override _read(): void {
    this.wantsData = true;
    this.connection.lane(other(this.side)).scheduleFlush();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.gone = true;
    this.connection.endpointDestroyed(this.side, error);
    callback(error);
    // Like net.Socket, whose 'close' comes from the handle's close callback in a later loop phase:
    // a layer that destroys us with its own error (a secure channel's ProtocolViolation) gets to
    // emit that error before our 'close' reaches its owner.
    setImmediate(() => this.emit('close'));
  }
}

/** One direction of a connection: bytes written by side `from`, delivered to the other side. */
class Lane {
  /** Bytes written into this direction since the connection opened (what `cutAt` counts). */
  passed = 0;
  /** Our writer sent its FIN. */
  endSent = false;
  private readonly items: LaneItem[] = [];
  private inFlight = 0;
  /** Bytes dropped by `halfOpen`; they occupy the window until the fault goes. */
  private blackholed = 0;
  private held: HeldWrite | undefined;
  private throttleFreeAt = Number.NEGATIVE_INFINITY;
  private deliverTimer: TimerHandle | undefined;
  private deliverDue = Number.POSITIVE_INFINITY;
  private pumpTimer: TimerHandle | undefined;
  private flushQueued = false;
  private bounced = false;
  /** A cutAt fired here: nothing more passes. */
  private cutting = false;
  private closed = false;

  constructor(
    private readonly connection: Connection,
    private readonly from: Side,
  ) {}

  private get clock(): Clock {
    return this.connection.clock;
  }

  /** Takes one write; its callback runs once every byte is in flight and the reader has room. */
  write(bytes: Buffer, owned: boolean, callback: (error?: Error | null) => void): void {
    if (this.closed) {
      callback(resetError());
      return;
    }
    this.held = { bytes, offset: 0, owned, callback };
    this.pump();
  }

  enqueueEnd(): void {
    this.endSent = true;
    this.enqueueMarker('end');
  }

  /** Sends a reset to the reader, behind the bytes already in flight (lost under `halfOpen`). */
  enqueueReset(): void {
    this.enqueueMarker('reset');
  }

  /** Our writer was destroyed: its held write fails. */
  failHeld(error: Error): void {
    const held = this.held;
    this.held = undefined;
    // Deferred: Node's Writable must not see the callback from inside its own destroy().
    if (held) queueMicrotask(() => held.callback(error));
  }

  /** Faults changed: re-pace, release held bytes, re-arm timers. */
  refresh(effective: Effective): void {
    if (this.closed) return;
    if (!effective.halfOpen) this.blackholed = 0;
    if (this.pumpTimer !== undefined) {
      this.clock.clearTimeout(this.pumpTimer);
      this.pumpTimer = undefined;
    }
    this.pump();
    this.scheduleFlush();
  }

  scheduleFlush(): void {
    if (this.flushQueued || this.closed) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  /** Stops everything; no timer of this lane remains. */
  close(): void {
    this.closed = true;
    this.items.length = 0;
    this.inFlight = 0;
    this.held = undefined;
    this.cancelDeliverTimer();
    if (this.pumpTimer !== undefined) this.clock.clearTimeout(this.pumpTimer);
    this.pumpTimer = undefined;
  }

  private enqueueMarker(kind: 'end' | 'reset'): void {
    if (this.closed) return;
    const effective = this.connection.effective();
    if (effective.halfOpen) return;
    this.items.push({ kind, due: this.clock.now() + effective.delayMs });
    this.scheduleFlush();
  }

  /** Moves the held write into flight, segment by segment, as window, throttle and cutAt allow. */
  private pump(): void {
    const held = this.held;
    if (held === undefined || this.closed || this.cutting) return;
    while (held.offset < held.bytes.length) {
      const effective = this.connection.effective();
      const room = WINDOW_BYTES - this.inFlight - this.blackholed;
      if (room <= 0) return; // flush() pumps again when the reader takes bytes
      let n = Math.min(held.bytes.length - held.offset, SEGMENT_BYTES, room);
      const now = this.clock.now();
      const rate = effective.bytesPerSecond;
      if (rate !== undefined) {
        if (this.throttleFreeAt > now) {
          if (this.pumpTimer !== undefined) return; // already waiting for the link
          this.pumpTimer = this.clock.setTimeout(() => {
            this.pumpTimer = undefined;
            this.pump();
          }, this.throttleFreeAt - now);
          return;
        }
        n = Math.min(n, Math.max(1, Math.floor((rate * THROTTLE_TICK_MS) / 1000)));
      }
      const cutLimit = this.connection.cutLimit(this.from, this.passed);
      const cutNow = cutLimit !== undefined && cutLimit <= n;
      if (cutNow) n = cutLimit;
      if (n > 0) {
        const view = held.bytes.subarray(held.offset, held.offset + n);
        // Copied: the writer may reuse its buffer once the callback ran.
        const segment = held.owned ? view : Buffer.from(view);
        held.offset += n;
        this.passed += n;
        let due = now + effective.delayMs;
        if (rate !== undefined) {
          this.throttleFreeAt = Math.max(this.throttleFreeAt, now) + (n * 1000) / rate;
          due = this.throttleFreeAt + effective.delayMs;
        }
        if (effective.halfOpen) {
          this.blackholed += n;
        } else {
          this.connection.corrupt(this.from, segment);
          this.items.push({ kind: 'data', bytes: segment, due });
          this.inFlight += n + SEGMENT_OVERHEAD_BYTES;
          this.scheduleFlush();
        }
      }
      if (cutNow) {
        this.cutting = true;
        this.connection.cut(this.from);
        return;
      }
    }
    if (!this.connection.readerHasRoom(other(this.from))) return; // the reader's _read flushes and pumps
    this.held = undefined;
    held.callback();
  }

  /** Delivers every item that is due, in order, as far as the reader takes them. */
  private flush(): void {
    const to = other(this.from);
    if (this.closed || (to === 0 && !this.connection.dialerReady)) return;
    while (!this.closed) {
      const effective = this.connection.effective();
      if (effective.stall) {
        this.cancelDeliverTimer();
        break;
      }
      const head = this.items[0];
      if (head === undefined) break;
      const now = this.clock.now();
      if (head.due > now) {
        this.armDeliverTimer(head.due, now);
        break;
      }
      if (effective.halfOpen) {
        this.dropHead();
        continue;
      }
      const target = this.connection.endpoint(to);
      if (head.kind === 'reset') {
        this.items.length = 0;
        this.inFlight = 0;
        this.connection.resetEnd(to);
        break;
      }
      if (target === undefined || target.gone) {
        // RFC 9293 §3.5.2: a segment for a connection that no longer exists is answered by a reset.
        this.dropHead();
        if (head.kind === 'data' && !this.bounced) {
          this.bounced = true;
          this.connection.lane(to).enqueueReset();
        }
        continue;
      }
      if (head.kind === 'end') {
        this.items.shift();
        target.push(null);
        continue;
      }
      if (!target.wantsData) {
        // A reset is not held back by a full receive buffer: it discards what is unread.
        if (this.items.some((item) => item.kind === 'reset' && item.due <= now)) {
          while (this.items[0]?.kind !== 'reset') this.dropHead();
          continue;
        }
        break;
      }
      this.items.shift();
      this.inFlight -= head.bytes.length + SEGMENT_OVERHEAD_BYTES;
      target.delivered += head.bytes.length;
      if (!target.push(head.bytes)) target.wantsData = false;
    }
    this.pump();
  }

  private dropHead(): void {
    const head = this.items.shift();
    if (head?.kind === 'data') this.inFlight -= head.bytes.length + SEGMENT_OVERHEAD_BYTES;
  }

  private armDeliverTimer(due: number, now: number): void {
    if (this.deliverTimer !== undefined && this.deliverDue === due) return;
    this.cancelDeliverTimer();
    this.deliverDue = due;
    this.deliverTimer = this.clock.setTimeout(() => {
      this.deliverTimer = undefined;
      this.deliverDue = Number.POSITIVE_INFINITY;
      this.flush();
    }, due - now);
  }

  private cancelDeliverTimer(): void {
    if (this.deliverTimer !== undefined) this.clock.clearTimeout(this.deliverTimer);
    this.deliverTimer = undefined;
    this.deliverDue = Number.POSITIVE_INFINITY;
  }
}

/** A dial in progress: SYN on its way, or the answer on its way back. */
interface PendingDial {
  readonly resolve: (connection: RawConnection) => void;
  readonly reject: (error: Error) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
  phase: 'syn' | 'synAck' | 'refused';
  /** A step is scheduled (timer or microtask); `token` tells a stale one. */
  scheduled: boolean;
  token: number;
  timer: TimerHandle | undefined;
  refusal: Error | undefined;
}

/** Everything about one connection; {@link MemoryConnection} is its public face. */
class Connection implements MemoryConnection {
  state: 'connecting' | 'open' | 'finished' = 'connecting';
  /**
   * The dialer has had its connection for a whole loop turn. Until then nothing is delivered to
   * its end: on a real socket, bytes or a reset come in a later I/O callback than 'connect', so
   * the code awaiting `dial()` always gets to attach its listeners first.
   */
  dialerReady = false;
  private readonly faults = new Set<ActiveFault>();
  private readonly lanes: readonly [Lane, Lane];
  private ends: readonly [Endpoint, Endpoint] | undefined;
  private dial: PendingDial | undefined;

  constructor(
    private readonly network: NetworkCore,
    readonly id: number,
    readonly dialer: string,
    readonly listener: string,
    /** Dialer host and ephemeral port, released when the connection finishes. */
    private readonly dialerHost: string,
    private readonly dialerPort: number,
  ) {
    this.lanes = [new Lane(this, 0), new Lane(this, 1)];
  }

  get clock(): Clock {
    return this.network.clock;
  }

  lane(side: Side): Lane {
    return this.lanes[side];
  }

  endpoint(side: Side): Endpoint | undefined {
    return this.ends?.[side];
  }

  reset(): void {
    this.resetWith(resetError());
  }

  /** Resets both ends now; a pending dial rejects with DialFailed whose cause is `cause`. */
  resetWith(cause: Error): void {
    if (this.state === 'finished') return;
    const dial = this.dial;
    if (dial) this.failDial(dial, cause);
    this.resetEnd(0);
    this.resetEnd(1);
    if (this.ends === undefined) this.finish();
  }

  inject(fault: MemoryFault): () => void {
    validateFault(fault);
    if (this.state === 'finished') return () => undefined;
    const active: ActiveFault = { fault, gaps: [undefined, undefined] };
    this.faults.add(active);
    this.faultsChanged();
    return () => {
      if (this.faults.delete(active)) this.faultsChanged();
    };
  }

  effective(): Effective {
    const effective: Effective = { delayMs: 0, bytesPerSecond: undefined, stall: false, halfOpen: false };
    for (const { fault } of this.faults) {
      if (fault.kind === 'delay') effective.delayMs += fault.ms;
      else if (fault.kind === 'throttle') {
        effective.bytesPerSecond = Math.min(effective.bytesPerSecond ?? Number.POSITIVE_INFINITY, fault.bytesPerSecond);
      } else if (fault.kind === 'stall') effective.stall = true;
      else if (fault.kind === 'halfOpen') effective.halfOpen = true;
    }
    return effective;
  }

  /** Bytes side `from` may still write before a `cutAt` fires, or undefined without one. */
  cutLimit(from: Side, passed: number): number | undefined {
    let limit: number | undefined;
    for (const { fault } of this.faults) {
      if (fault.kind !== 'cutAt') continue;
      const direction = fault.direction ?? 'both';
      if (direction === 'dialerToListener' && from !== 0) continue;
      if (direction === 'listenerToDialer' && from !== 1) continue;
      const left = Math.max(0, fault.offset - passed);
      limit = limit === undefined ? left : Math.min(limit, left);
    }
    return limit;
  }

  /** A `cutAt` fired in the lane of `from`: the reader gets the bytes so far then a reset; the writer is reset now. */
  cut(from: Side): void {
    this.lanes[from].enqueueReset();
    queueMicrotask(() => this.resetEnd(from));
  }

  /** Flips bits of `segment` (our own copy) for every active `corrupt` fault. */
  corrupt(from: Side, segment: Buffer): void {
    for (const active of this.faults) {
      const { fault } = active;
      if (fault.kind !== 'corrupt' || fault.probability <= 0) continue;
      const random = fault.random ?? Math.random;
      let position = active.gaps[from] ?? corruptionGap(fault.probability, random);
      while (position < segment.length) {
        const bit = Math.min(7, Math.floor(random() * 8));
        segment[position] = (segment[position] ?? 0) ^ (1 << bit);
        position += 1 + corruptionGap(fault.probability, random);
      }
      active.gaps[from] = position - segment.length;
    }
  }

  /** Whether the end `side` can take more bytes (or is gone, so its bytes just bounce). */
  readerHasRoom(side: Side): boolean {
    const end = this.ends?.[side];
    return end === undefined || end.gone || end.readableLength < end.readableHighWaterMark;
  }

  /** Destroys end `side` with ECONNRESET, unless it is already gone. */
  resetEnd(side: Side): void {
    const end = this.ends?.[side];
    if (end === undefined || end.gone) return;
    end.resetReceived = true;
    end.destroy(resetError());
  }

  /** End `side` was destroyed: abort towards the peer unless our FIN was sent; finish when both are gone. */
  endpointDestroyed(side: Side, error: Error | null): void {
    const end = this.ends?.[side];
    const lane = this.lanes[side];
    lane.failHeld(error ?? networkError('ERR_STREAM_DESTROYED', 'write after the stream was destroyed'));
    if (end !== undefined && !end.resetReceived && !lane.endSent) lane.enqueueReset();
    const dial = this.dial;
    if (side === 0 && dial) this.failDial(dial, new ConnectionClosed('dialing end destroyed'));
    if (this.ends?.every((e) => e.gone) === true) this.finish();
  }

  // ---- dialing -------------------------------------------------------------------------------

  startDial(resolve: (connection: RawConnection) => void, reject: (error: Error) => void, signal: AbortSignal | undefined): void {
    const dial: PendingDial = {
      resolve,
      reject,
      signal,
      onAbort: () => {
        if (this.dial === dial) this.abortDial(dial);
      },
      phase: 'syn',
      scheduled: false,
      token: 0,
      timer: undefined,
      refusal: undefined,
    };
    this.dial = dial;
    signal?.addEventListener('abort', dial.onAbort, { once: true });
    this.dialStep();
  }

  private faultsChanged(): void {
    const effective = this.effective();
    for (const lane of this.lanes) lane.refresh(effective);
    this.dialStep();
  }

  /** Schedules the next leg of the dial: one `delay` (or one microtask) per leg; a SYN waits out stall and halfOpen. */
  private dialStep(): void {
    const dial = this.dial;
    if (dial === undefined || dial.scheduled) return;
    const effective = this.effective();
    if (dial.phase === 'syn' && (effective.stall || effective.halfOpen)) return; // faultsChanged() calls again
    dial.scheduled = true;
    const token = ++dial.token;
    const run = (): void => {
      dial.timer = undefined;
      if (this.dial !== dial || dial.token !== token) return;
      dial.scheduled = false;
      this.dialArrive(dial);
    };
    if (effective.delayMs > 0) dial.timer = this.clock.setTimeout(run, effective.delayMs);
    else queueMicrotask(run);
  }

  private dialArrive(dial: PendingDial): void {
    if (dial.phase === 'syn') {
      const listener = this.network.acceptingListener(this.listener);
      if (listener === undefined) {
        dial.phase = 'refused';
        dial.refusal = networkError('ECONNREFUSED', `connect ${this.listener}`);
        this.dialStep();
        return;
      }
      const ends: readonly [Endpoint, Endpoint] = [new Endpoint(this, 0), new Endpoint(this, 1)];
      // Guarded from birth: a reset can land on the dialer's end before its dial resolves.
      guardErrors(ends[0]);
      guardErrors(ends[1]);
      this.ends = ends;
      this.state = 'open';
      dial.phase = 'synAck';
      this.dialStep();
      listener.onConnection({ stream: ends[1], remoteAddress: this.dialer, bytesRead: () => ends[1].delivered });
      return;
    }
    this.settleDial(dial);
    if (dial.phase === 'refused') {
      this.finish();
      dial.reject(new DialFailed(this.listener, { cause: dial.refusal }));
      return;
    }
    const ends = this.ends;
    if (ends === undefined) return;
    dial.resolve({ stream: ends[0], remoteAddress: this.listener, bytesRead: () => ends[0].delivered });
    setImmediate(() => {
      this.dialerReady = true;
      this.lanes[1].scheduleFlush();
    });
  }

  private abortDial(dial: PendingDial): void {
    const reason: unknown = dial.signal?.reason;
    this.failDial(dial, reason ?? new Error('aborted'));
    // Nothing stays open: the accepted end (if any) sees a reset, as after an aborted TCP connect.
    const dialing = this.ends?.[0];
    if (dialing) dialing.destroy();
    else this.finish();
  }

  private failDial(dial: PendingDial, cause: unknown): void {
    this.settleDial(dial);
    dial.reject(new DialFailed(this.listener, { cause }));
  }

  private settleDial(dial: PendingDial): void {
    if (this.dial !== dial) return;
    this.dial = undefined;
    dial.token++;
    if (dial.timer !== undefined) this.clock.clearTimeout(dial.timer);
    dial.timer = undefined;
    dial.signal?.removeEventListener('abort', dial.onAbort);
  }

  /** Both ends gone (or never made): stop all timers, free the port, forget the connection. */
  private finish(): void {
    if (this.state === 'finished') return;
    this.state = 'finished';
    const dial = this.dial;
    if (dial) this.failDial(dial, new ConnectionClosed('connection finished'));
    for (const lane of this.lanes) lane.close();
    this.network.forget(this, this.dialerHost, this.dialerPort);
  }
}

interface ListenerEntry {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly onConnection: (connection: RawConnection) => void;
}

interface GlobalFault {
  readonly fault: MemoryFault;
  readonly match: (connection: MemoryConnection) => boolean;
  readonly removers: Map<Connection, () => void>;
}

/** The network's state, shared by its transports and connections (not exported). */
class NetworkCore {
  readonly listeners = new Map<string, ListenerEntry>();
  readonly connections = new Set<Connection>();
  readonly globalFaults = new Set<GlobalFault>();
  private readonly usedPorts = new Map<string, Set<number>>();
  private readonly portCursor = new Map<string, number>();
  private readonly down = new Set<string>();
  private nextId = 1;
  closed = false;

  constructor(readonly clock: Clock) {}

  dial(fromHost: string, address: string, signal: AbortSignal | undefined): Promise<RawConnection> {
    return new Promise<RawConnection>((resolve, reject) => {
      let target: string;
      try {
        const parsed = parseAddress(address);
        target = formatAddress({ host: normalizeHost(parsed.host), port: parsed.port });
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (signal?.aborted === true) {
        const reason: unknown = signal.reason;
        reject(new DialFailed(target, { cause: reason }));
        return;
      }
      if (this.closed) {
        reject(new DialFailed(target, { cause: networkError('ENETDOWN', 'network closed') }));
        return;
      }
      let port: number;
      try {
        port = this.reservePort(fromHost, 0);
      } catch (error) {
        reject(new DialFailed(target, { cause: error }));
        return;
      }
      const dialer = formatAddress({ host: fromHost, port });
      const connection = new Connection(this, this.nextId++, dialer, target, fromHost, port);
      this.connections.add(connection);
      for (const global of this.globalFaults) {
        if (global.match(connection)) global.removers.set(connection, connection.inject(global.fault));
      }
      connection.startDial(resolve, reject, signal);
    });
  }

  listen(boundHost: string, address: string, onConnection: (connection: RawConnection) => void): Promise<TransportListener> {
    return new Promise<TransportListener>((resolve, reject) => {
      // Settled on a microtask: never synchronously, like a real bind.
      queueMicrotask(() => {
        try {
          resolve(this.bind(boundHost, address, onConnection));
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    });
  }

  private bind(boundHost: string, address: string, onConnection: (connection: RawConnection) => void): TransportListener {
    const parsed = parseAddress(address, { listen: true });
    const host = normalizeHost(parsed.host);
    if (this.closed) throw networkError('ENETDOWN', `listen ${address}: network closed`);
    // A wildcard binds the transport's own host; any other foreign address is not ours.
    if (host !== boundHost && host !== '0.0.0.0' && host !== '::') {
      throw networkError('EADDRNOTAVAIL', `listen ${address}: not an address of host ${boundHost}`);
    }
    const port = this.reservePort(boundHost, parsed.port);
    const entry: ListenerEntry = { address: formatAddress({ host: boundHost, port }), host: boundHost, port, onConnection };
    this.listeners.set(entry.address, entry);
    return {
      address: entry.address,
      close: () => {
        this.unbind(entry);
        return Promise.resolve();
      },
    };
  }

  private unbind(entry: ListenerEntry): void {
    if (this.listeners.get(entry.address) !== entry) return;
    this.listeners.delete(entry.address);
    this.usedPorts.get(entry.host)?.delete(entry.port);
  }

  /** The listener a SYN to `address` reaches, or undefined when refused (none, or down). */
  acceptingListener(address: string): ListenerEntry | undefined {
    const entry = this.listeners.get(address);
    if (entry === undefined || this.down.has(entry.address) || this.down.has(entry.host)) return undefined;
    return entry;
  }

  setDown(target: string, down: boolean): void {
    let key: string;
    try {
      const parsed = parseAddress(target);
      key = formatAddress({ host: normalizeHost(parsed.host), port: parsed.port });
    } catch {
      key = normalizeHost(target);
    }
    if (down) this.down.add(key);
    else this.down.delete(key);
  }

  inject(fault: MemoryFault, match: (connection: MemoryConnection) => boolean): () => void {
    validateFault(fault);
    const global: GlobalFault = { fault, match, removers: new Map() };
    this.globalFaults.add(global);
    for (const connection of this.connections) {
      if (connection.state !== 'finished' && match(connection)) global.removers.set(connection, connection.inject(fault));
    }
    return () => {
      if (!this.globalFaults.delete(global)) return;
      for (const remove of global.removers.values()) remove();
      global.removers.clear();
    };
  }

  forget(connection: Connection, dialerHost: string, dialerPort: number): void {
    this.connections.delete(connection);
    this.usedPorts.get(dialerHost)?.delete(dialerPort);
    for (const global of this.globalFaults) global.removers.delete(connection);
  }

  close(): void {
    this.closed = true;
    for (const entry of [...this.listeners.values()]) this.unbind(entry);
    const down = networkError('ENETDOWN', 'network closed');
    for (const connection of [...this.connections]) connection.resetWith(down);
    for (const global of [...this.globalFaults]) global.removers.clear();
    this.globalFaults.clear();
  }

  /**
   * Reserves `port` on `host`, or a free one in the dynamic range when `port` is 0.
   * @throws Error `EADDRINUSE` when taken; `EADDRNOTAVAIL` when the range is full.
   */
  private reservePort(host: string, port: number): number {
    let used = this.usedPorts.get(host);
    if (used === undefined) {
      used = new Set();
      this.usedPorts.set(host, used);
    }
    if (port !== 0) {
      if (used.has(port)) throw networkError('EADDRINUSE', `address already in use ${formatAddress({ host, port })}`);
      used.add(port);
      return port;
    }
    const span = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1;
    let candidate = this.portCursor.get(host) ?? EPHEMERAL_FIRST;
    for (let tried = 0; tried < span; tried++) {
      if (candidate > EPHEMERAL_LAST) candidate = EPHEMERAL_FIRST;
      if (!used.has(candidate)) {
        used.add(candidate);
        this.portCursor.set(host, candidate + 1);
        return candidate;
      }
      candidate++;
    }
    throw networkError('EADDRNOTAVAIL', `no free port on ${host}`);
  }
}

/**
 * A simulated network of hosts in one process (DESIGN §5, §8): no sockets, time on the injected
 * clock, faults injectable per connection or network-wide. Each {@link MemoryNetwork.transport}
 * is a {@link Transport} bound to one host IP; dials between hosts give `RawConnection`s whose
 * streams behave like TCP sockets (see the module doc).
 *
 * Nothing here keeps the process alive: after {@link MemoryNetwork.close}, or once both ends of
 * every connection are destroyed, no timer remains on the clock.
 */
export class MemoryNetwork {
  private readonly core: NetworkCore;

  /** @param options.clock the clock of every delay; default wall-clock time. */
  constructor(options: MemoryNetworkOptions = {}) {
    this.core = new NetworkCore(options.clock ?? wallClock);
  }

  /**
   * A Transport bound to `host` (IPv4 `'10.0.0.1'`, IPv6 `'fd00::1'` with or without brackets, or
   * a name). Dials from it come from `host` and an ephemeral port (49152–65535); it listens on
   * `host:port`, or on the wildcard `0.0.0.0:port` / `[::]:port`, which binds `host`.
   *
   * Its `dial` resolves asynchronously and rejects with DialFailed when nothing listens there,
   * the target is down ({@link MemoryNetwork.setDown}), the signal aborts (cause: its reason),
   * the network is closed, or the connection is reset while dialing; `cause` is an Error with
   * `code` `ECONNREFUSED`, `ENETDOWN` or `ECONNRESET`. Its `listen` rejects with an Error whose
   * `code` is `EADDRINUSE` (taken), `EADDRNOTAVAIL` (another host's address) or `ENETDOWN`.
   * Both reject with ProtocolViolation for a malformed address.
   * @throws ProtocolViolation when `host` is not a valid host literal.
   */
  transport(host: string): Transport {
    const bound = normalizeHost(host);
    const core = this.core;
    return {
      dial: (address, signal) => core.dial(bound, address, signal),
      listen: (address, onConnection) => core.listen(bound, address, onConnection),
    };
  }

  /** Live connections (both ends handed out and not both destroyed), in dial order. */
  connections(): MemoryConnection[] {
    return [...this.core.connections].filter((connection) => connection.state === 'open');
  }

  /**
   * Makes dials to `target` refused (`down = true`) or accepted again (`false`). `target` is a
   * `'host:port'` (one listener) or a `'host'` (every port of it). Connections already open are
   * not touched; a dial whose SYN is still delayed is checked when it arrives.
   * @throws ProtocolViolation when `target` is neither a `host:port` nor a host literal.
   */
  setDown(target: string, down: boolean): void {
    this.core.setDown(target, down);
  }

  /**
   * Installs `fault` on every connection now open or dialing, and on every later one, for which
   * `match` (default: all) returns true — until the returned function is called, which removes it
   * from all of them (idempotent).
   * @throws RangeError when a fault parameter is out of range (see {@link MemoryFault}).
   */
  inject(fault: MemoryFault, match: (connection: MemoryConnection) => boolean = () => true): () => void {
    return this.core.inject(fault, match);
  }

  /**
   * Destroys everything: listeners stop accepting, every connection is reset (both ends see
   * ECONNRESET), pending dials reject with DialFailed (cause `ENETDOWN`), later dials and listens
   * fail. Idempotent.
   */
  close(): void {
    this.core.close();
  }
}

/** Wall-clock time, as `systemClock` of streams/clock.ts (not imported: see the import note). */
const wallClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.max(0, ms || 0)),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

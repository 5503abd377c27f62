/**
 * The production clock's timers: every timer of the process on one host timer, run in due order,
 * in short slices.
 *
 * Why not one Node `Timeout` per timer: a supervisor at 10,000 connections schedules about 3,000
 * timers a second (ping ticks, ping deadlines, inactivity checks, XState delays). Each `Timeout`
 * (about 120 bytes, linked into Node's per-duration lists) of a ping tick lives the ping interval,
 * long enough to be promoted to the old generation; they were half the memory that outlived a
 * scavenge. Here a timer is a small entry in a binary heap, and a caller that reschedules (a ping
 * tick) reuses its entry ({@link TimerQueue.reschedule}), so a steady schedule allocates nothing.
 *
 * Why slices: Node runs every timer of a list that is due in one macrotask. After any stall (a GC
 * pause, a burst of handshakes) thousands of ping ticks are due at once and run back to back for
 * tens to hundreds of ms, during which no socket event (a close, a pong) is handled, and the pongs
 * of that burst come back as a burst. The queue runs due timers for `sliceMs`, then yields a
 * macrotask turn (`setImmediate`) so I/O and close callbacks run before the next slice. A
 * continuation's slice is stretched to the time the loop spent elsewhere since the last one, so
 * that under a backlog of both, timers get half the loop and never starve behind busy sockets.
 */
import type { Clock, TimerHandle } from './clock.js';

/** What a {@link TimerQueue} needs from its host: Node's timers by default; specs pass a fake. */
export interface TimerHost {
  /** Monotonic time, ms (fractional). */
  now(): number;
  /** Calls `fn` once after about `ms` (a whole number >= 1) ms; the handle cancels it. */
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
  /** Calls `fn` once on the next macrotask turn, after pending I/O callbacks. */
  setImmediate(fn: () => void): unknown;
  clearImmediate(handle: unknown): void;
}

/** Node's timers and `performance.now()`. */
const NODE_HOST: TimerHost = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  setImmediate: (fn) => setImmediate(fn),
  clearImmediate: (handle) => clearImmediate(handle as ReturnType<typeof setImmediate>),
};

/** Settings of a {@link TimerQueue}. */
export interface TimerQueueOptions {
  /**
   * Run of timer callbacks in one macrotask, ms, before the queue yields to I/O; at least one
   * callback runs per turn. A continuation after a yield may run as long as the rest of the loop
   * took since the previous slice (never less than `sliceMs`). Default
   * {@link DEFAULT_TIMER_SLICE_MS}.
   */
  readonly sliceMs?: number;
  /** Where time and the one host timer come from; Node's by default. */
  readonly host?: TimerHost;
}

/**
 * Default {@link TimerQueueOptions.sliceMs}: 0.5 ms, half the reaction time the benchmarks ask of
 * a supervisor at 10,000 connections (issue 7: socket destroyed → Backoff, p99 ≤ 1 ms).
 */
export const DEFAULT_TIMER_SLICE_MS = 0.5;

/**
 * How early a timer may run, ms. Node's own timers compare whole-ms loop times, so they fire up
 * to 1 ms early by `performance.now()`; the queue keeps that tolerance rather than re-arming the
 * host timer for the last fraction of a ms.
 */
const EARLY_MS = 1;

/** One scheduled timer: the handle {@link TimerQueue.setTimeout} returns. */
class QueuedTimer {
  /** Due time, ms of the host clock. */
  due = 0;
  /** Scheduling order: ties in `due` run in this order. */
  seq = 0;
  /** Position in the heap; -1 when not scheduled (ran, cleared or never scheduled). */
  index = -1;

  constructor(
    readonly queue: TimerQueue,
    public fn: () => void,
  ) {}
}

/**
 * A {@link Clock} whose timers share one host timer: a binary min-heap on (due time, scheduling
 * order), run in that order, `sliceMs` of callbacks per macrotask, stretched for a continuation
 * to the time the rest of the loop took (see the module comment for why). `systemClock` is one, shared by every supervisor of the process.
 *
 * Semantics match `setTimeout`: a callback runs once, no earlier than 1 ms before its due time
 * (as Node's timers); a cleared timer never runs; a callback that throws propagates like a timer's
 * (`uncaughtException`) after the queue has re-armed for the rest. The host timer is held only
 * while a timer is scheduled, so an empty queue keeps nothing alive
 * (`process.getActiveResourcesInfo()` shows no `Timeout` or `Immediate` of it).
 */
export class TimerQueue implements Clock {
  private readonly heap: QueuedTimer[] = [];
  private readonly host: TimerHost;
  private readonly sliceMs: number;
  private sequence = 0;
  /** The armed host timer, and the time it was armed for. */
  private hostTimer: unknown = undefined;
  private hostDue = Infinity;
  /** The pending continuation after a slice ran out. */
  private continuation: unknown = undefined;
  private running = false;
  /** When the last run ended, ms; with a continuation pending, the time since is I/O's share. */
  private lastRunEndedAt = 0;
  private readonly runDue = (): void => this.run();

  /**
   * @param options the slice (ms) and the host; Node's timers and a 0.5 ms slice by default.
   * @throws RangeError when `sliceMs` is not finite and >= 0.
   */
  constructor(options: TimerQueueOptions = {}) {
    const sliceMs = options.sliceMs ?? DEFAULT_TIMER_SLICE_MS;
    if (!Number.isFinite(sliceMs) || sliceMs < 0) throw new RangeError(`sliceMs must be finite and >= 0, got ${sliceMs}`);
    this.sliceMs = sliceMs;
    this.host = options.host ?? NODE_HOST;
  }

  /** The host's monotonic time, ms (fractional). */
  now(): number {
    return this.host.now();
  }

  /** Number of timers scheduled (a leak check: 0 once everything is stopped). */
  get pendingTimers(): number {
    return this.heap.length;
  }

  /** Runs `fn` once after `ms` ms (negative or NaN counts as 0); returns its handle. */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = new QueuedTimer(this, fn);
    this.insert(timer, ms);
    return timer;
  }

  /** Cancels a timer; a handle that ran, was cleared or belongs to another clock is ignored. */
  clearTimeout(handle: TimerHandle): void {
    if (!(handle instanceof QueuedTimer) || handle.queue !== this || handle.index < 0) return;
    this.remove(handle);
    if (this.heap.length === 0) this.disarm();
  }

  /**
   * Schedules `fn` after `ms`, reusing `handle` (a handle of this queue, pending or not) instead
   * of allocating one; a pending `handle` is moved, not run. A caller that reschedules forever (a
   * ping tick) allocates nothing.
   * @returns the handle of the new schedule: `handle` itself when it was this queue's.
   */
  reschedule(handle: TimerHandle | undefined, fn: () => void, ms: number): TimerHandle {
    if (!(handle instanceof QueuedTimer) || handle.queue !== this) return this.setTimeout(fn, ms);
    if (handle.index >= 0) this.remove(handle);
    handle.fn = fn;
    this.insert(handle, ms);
    return handle;
  }

  private insert(timer: QueuedTimer, ms: number): void {
    timer.due = this.host.now() + Math.max(0, ms || 0);
    timer.seq = ++this.sequence;
    const heap = this.heap;
    timer.index = heap.length;
    heap.push(timer);
    this.siftUp(timer.index);
    if (timer.index === 0) this.arm();
  }

  private remove(timer: QueuedTimer): void {
    const heap = this.heap;
    const index = timer.index;
    const last = heap.pop() as QueuedTimer;
    timer.index = -1;
    if (last === timer) return;
    heap[index] = last;
    last.index = index;
    this.siftDown(index);
    this.siftUp(last.index);
  }

  /** Arms the host timer for the earliest timer, unless a run is under way or already due. */
  private arm(): void {
    if (this.running || this.continuation !== undefined) return;
    const first = this.heap[0];
    if (first === undefined) {
      this.disarm();
      return;
    }
    if (this.hostTimer !== undefined) {
      if (this.hostDue <= first.due) return; // fires early, finds nothing due and re-arms
      this.host.clearTimer(this.hostTimer);
    }
    // Whole ms: Node keeps one list per distinct duration.
    this.hostTimer = this.host.setTimer(this.runDue, Math.max(1, Math.ceil(first.due - this.host.now())));
    this.hostDue = first.due;
  }

  private disarm(): void {
    if (this.hostTimer !== undefined) this.host.clearTimer(this.hostTimer);
    if (this.continuation !== undefined) this.host.clearImmediate(this.continuation);
    this.hostTimer = undefined;
    this.hostDue = Infinity;
    this.continuation = undefined;
  }

  /** Runs due timers in order for one slice; then continues next turn or re-arms. */
  private run(): void {
    const backlogged = this.continuation !== undefined;
    this.hostTimer = undefined;
    this.hostDue = Infinity;
    this.continuation = undefined;
    this.running = true;
    const heap = this.heap;
    const startedAt = this.host.now();
    // A continuation gets at least the time the loop spent elsewhere since the last slice: under
    // a backlog of both, timers get half the loop, never starve behind busy sockets.
    const budgetMs = backlogged ? Math.max(this.sliceMs, startedAt - this.lastRunEndedAt) : this.sliceMs;
    // Timers scheduled by these callbacks wait for the next turn, as with Node's setTimeout(fn, 0).
    const lastSeq = this.sequence;
    let now = startedAt;
    try {
      for (let first = heap[0]; first !== undefined && first.due <= now + EARLY_MS && first.seq <= lastSeq; first = heap[0]) {
        this.remove(first);
        first.fn();
        now = this.host.now();
        if (now - startedAt >= budgetMs) break;
      }
    } finally {
      this.running = false;
      this.lastRunEndedAt = now;
      const first = heap[0];
      if (first !== undefined && first.due <= now + EARLY_MS) this.continuation = this.host.setImmediate(this.runDue);
      else this.arm();
    }
  }

  private siftUp(index: number): void {
    const heap = this.heap;
    const timer = heap[index] as QueuedTimer;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex] as QueuedTimer;
      if (!before(timer, parent)) break;
      heap[index] = parent;
      parent.index = index;
      index = parentIndex;
    }
    heap[index] = timer;
    timer.index = index;
  }

  private siftDown(index: number): void {
    const heap = this.heap;
    const length = heap.length;
    const timer = heap[index] as QueuedTimer;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      let child = left;
      if (right < length && before(heap[right] as QueuedTimer, heap[left] as QueuedTimer)) child = right;
      const childTimer = heap[child] as QueuedTimer;
      if (!before(childTimer, timer)) break;
      heap[index] = childTimer;
      childTimer.index = index;
      index = child;
    }
    heap[index] = timer;
    timer.index = index;
  }
}

/** Heap order: earlier due time first, then earlier scheduling. */
function before(a: QueuedTimer, b: QueuedTimer): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}

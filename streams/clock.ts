/**
 * The one injected source of time. XState delays (`createActor(machine, { clock })`) and RxJS
 * schedulers ({@link clockScheduler}) both read it, so a spec that passes a {@link VirtualClock}
 * runs hours of connection life in milliseconds, and production uses {@link systemClock}.
 */
import { Subscription } from 'rxjs';
import type { SchedulerAction, SchedulerLike } from 'rxjs';
import { TimerQueue } from './timer-queue.js';

/** Opaque handle of a scheduled timer, returned by {@link Clock.setTimeout}. */
export type TimerHandle = object | number;

/**
 * A source of time and timers. It is a superset of XState v5's `Clock`, so it can be passed as
 * `createActor(machine, { clock })`.
 */
export interface Clock {
  /** Monotonic time in ms (fractional); only differences are meaningful. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds (negative or NaN counts as 0). */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer; a handle that already ran or was cleared is ignored. */
  clearTimeout(handle: TimerHandle): void;
  /**
   * Optional: schedules `fn` after `ms` like `setTimeout`, reusing `handle` (one this clock
   * returned, pending or not; a pending one is moved, not run) so that a caller rescheduling
   * forever allocates nothing. Returns the handle of the new schedule.
   */
  reschedule?(handle: TimerHandle | undefined, fn: () => void, ms: number): TimerHandle;
}

/**
 * Wall-clock time: `performance.now()`, and every timer of the process on one Node timer (a
 * {@link TimerQueue}: due order, run in 0.5 ms slices, stretched only as far as the I/O between
 * them took, so that I/O is not held up by a burst of due timers).
 */
export const systemClock: Clock = new TimerQueue();

/**
 * Virtual time for specs: nothing runs until {@link VirtualClock.advance} moves time forward.
 * Timers run in due-time order (ties in scheduling order), including timers that running timers
 * schedule within the advanced span.
 */
export class VirtualClock implements Clock {
  private time = 0;
  private sequence = 0;
  private readonly timers = new Map<number, { due: number; seq: number; fn: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const seq = ++this.sequence;
    this.timers.set(seq, { due: this.time + Math.max(0, ms || 0), seq, fn });
    return seq;
  }

  clearTimeout(handle: TimerHandle): void {
    if (typeof handle === 'number') this.timers.delete(handle);
  }

  /** Number of timers still scheduled (a leak check: 0 after everything is stopped). */
  get pendingTimers(): number {
    return this.timers.size;
  }

  /**
   * Moves time forward by `ms`, running every timer due on the way, synchronously.
   * Use {@link VirtualClock.advanceAsync} when timers trigger promise work that must settle
   * between them.
   */
  advance(ms: number): void {
    const target = this.time + ms;
    for (let next = this.nextDue(target); next; next = this.nextDue(target)) {
      this.timers.delete(next.seq);
      this.time = next.due;
      next.fn();
    }
    this.time = target;
  }

  /**
   * Like {@link VirtualClock.advance}, but lets queued microtasks and I/O callbacks run before and
   * after every timer, so promise chains started by one timer settle before the next fires.
   */
  async advanceAsync(ms: number): Promise<void> {
    const target = this.time + ms;
    await settle();
    for (let next = this.nextDue(target); next; next = this.nextDue(target)) {
      this.timers.delete(next.seq);
      this.time = next.due;
      next.fn();
      await settle();
    }
    this.time = target;
  }

  private nextDue(limit: number): { due: number; seq: number; fn: () => void } | undefined {
    let best: { due: number; seq: number; fn: () => void } | undefined;
    for (const timer of this.timers.values()) {
      if (timer.due > limit) continue;
      if (!best || timer.due < best.due || (timer.due === best.due && timer.seq < best.seq)) best = timer;
    }
    return best;
  }
}

/** Resolves after pending microtasks and one macrotask turn have run (no time passes). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * An RxJS scheduler whose timers run on `clock`, for `interval`, `timer`, `timeout`, `delay` and
 * friends. Semantics follow RxJS's `asyncScheduler`: an action may reschedule itself from inside
 * its work (that is how `interval` repeats), and unsubscribing cancels its pending timer.
 */
export function clockScheduler(clock: Clock): SchedulerLike {
  return {
    now: () => clock.now(),
    schedule<T>(work: (this: SchedulerAction<T>, state: T) => void, delay = 0, state?: T): Subscription {
      return new ClockAction<T>(clock, work).schedule(state, delay);
    },
  };
}

class ClockAction<T> extends Subscription implements SchedulerAction<T> {
  /** The latest timer; kept after it ran, for the clock to reuse ({@link Clock.reschedule}). */
  private handle: TimerHandle | undefined;
  private pending = false;
  private state: T | undefined;
  /** The timer callback, made once per action rather than once per schedule (a ping tick reschedules forever). */
  private fire: (() => void) | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly work: (this: SchedulerAction<T>, state: T) => void,
  ) {
    // No finalizer closure: unsubscribe() is overridden to cancel (one closure and array fewer per timer).
    super();
  }

  schedule(state?: T, delay = 0): Subscription {
    if (this.closed) return this;
    this.state = state;
    this.fire ??= () => this.run();
    const clock = this.clock;
    if (clock.reschedule) {
      this.handle = clock.reschedule(this.handle, this.fire, delay);
    } else {
      this.cancel();
      this.handle = clock.setTimeout(this.fire, delay);
    }
    this.pending = true;
    return this;
  }

  override unsubscribe(): void {
    this.cancel();
    super.unsubscribe();
  }

  private run(): void {
    this.pending = false;
    if (this.closed) return;
    try {
      this.work.call(this, this.state as T);
    } catch (error) {
      this.unsubscribe();
      throw error;
    }
  }

  private cancel(): void {
    if (this.pending) {
      this.clock.clearTimeout(this.handle as TimerHandle);
      this.pending = false;
    }
  }
}

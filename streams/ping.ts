/**
 * The ping pipeline (DESIGN §4): every `intervalMs` a ping on the connection's control stream;
 * each answered ping is an RTT sample, each ping unanswered within `timeoutMs` is a loss.
 */
import { Observable } from 'rxjs';
import type { SchedulerAction, SchedulerLike, Subscription } from 'rxjs';

/** One ping's outcome: an RTT in ms (fractional, > 0 on a real clock) or a loss. */
export type PingSample = { readonly kind: 'rtt'; readonly rttMs: number } | { readonly kind: 'lost' };

/** Settings of {@link pingSamples}. */
export interface PingOptions {
  /** Time between ping starts, ms (DESIGN §6: 10 000). The first ping goes out at once. */
  readonly intervalMs: number;
  /** A ping not answered within this many ms is lost (DESIGN §6: 5 000). */
  readonly timeoutMs: number;
  /** Scheduler for the interval, the timeout and RTT measurement (`now()`). */
  readonly scheduler: SchedulerLike;
}

/**
 * Pings with `ping` (which resolves when the pong arrives) on a schedule and emits one sample per
 * ping.
 * - The first ping goes out on the scheduler's next turn, then one every `intervalMs` counted from
 *   the start, not from when the previous tick ran: a tick delayed by a busy event loop does not
 *   shift the ones after it. So pings of connections dialed at different times stay spread out
 *   instead of bunching up behind every stall (at 10,000 connections a bunch of pings is a stall
 *   of its own). Ticks missed entirely are skipped, not made up.
 * - A ping still in flight when the next tick comes is not overlapped (the tick is skipped).
 * - An answer after the timeout, or an error after it, is ignored.
 * Errors from `ping` (the connection closed) end the Observable with that error.
 * Costs two scheduled timers per ping (tick and timeout) and no RxJS operator chain; see
 * {@link schedulePings} for the same schedule without an Observable.
 * @throws RangeError at call time when `intervalMs` is not finite and > 0 or `timeoutMs` is negative or NaN.
 */
export function pingSamples(ping: () => Promise<void>, options: PingOptions): Observable<PingSample> {
  checkPingOptions(options);
  return new Observable<PingSample>((subscriber) => {
    const schedule = new PingSchedule(
      ping,
      options,
      (sample) => subscriber.next(sample),
      (error) => subscriber.error(error),
    );
    return () => schedule.stop();
  });
}

/**
 * The schedule of {@link pingSamples} as plain callbacks, for a caller that already holds a
 * subscription (the link monitor runs pings, health and verdicts under one): `onSample` gets each
 * outcome; `onError` gets the error of a failed `ping` (or one it threw), after which nothing more
 * is called.
 * @returns the stop function: cancels the tick and any pending timeout; an answer arriving later
 *   is ignored. Idempotent.
 * @throws RangeError when `intervalMs` is not finite and > 0 or `timeoutMs` is negative or NaN.
 */
export function schedulePings(
  ping: () => Promise<void>,
  options: PingOptions,
  onSample: (sample: PingSample) => void,
  onError: (error: unknown) => void,
): () => void {
  checkPingOptions(options);
  const schedule = new PingSchedule(ping, options, onSample, onError);
  return () => schedule.stop();
}

/** The state of one ping schedule as plain fields (one object per link, not a closure per step). */
class PingSchedule {
  /** When the current tick was due, ms. */
  private due: number;
  /** Number of the ping in flight; 0 when none. */
  private pending = 0;
  private started = 0;
  private stopped = false;
  private deadline: Subscription | undefined;
  private ticks: Subscription | undefined;

  constructor(
    private readonly ping: () => Promise<void>,
    private readonly options: PingOptions,
    private readonly onSample: (sample: PingSample) => void,
    private readonly onError: (error: unknown) => void,
  ) {
    const { intervalMs, scheduler } = options;
    this.due = scheduler.now();
    const tick = (action: SchedulerAction<undefined>): void => {
      if (this.stopped) return;
      if (this.pending === 0) this.start();
      if (this.stopped) return;
      const now = scheduler.now();
      let due = this.due + intervalMs;
      if (due <= now) due += (Math.floor((now - due) / intervalMs) + 1) * intervalMs;
      this.due = due;
      action.schedule(undefined, due - now);
    };
    this.ticks = scheduler.schedule(function (this: SchedulerAction<undefined>) {
      tick(this);
    }, 0);
    if (this.stopped) this.ticks.unsubscribe(); // a scheduler that ran the first tick at once
  }

  stop(): void {
    this.stopped = true;
    this.pending = 0;
    this.ticks?.unsubscribe();
    this.deadline?.unsubscribe();
    this.deadline = undefined;
  }

  private settle(id: number, sample: PingSample): void {
    if (id !== this.pending) return; // timed out already, or the schedule stopped
    this.pending = 0;
    this.deadline?.unsubscribe();
    this.deadline = undefined;
    this.onSample(sample);
  }

  private fail(error: unknown): void {
    this.stop();
    this.onError(error);
  }

  private start(): void {
    const id = ++this.started;
    this.pending = id;
    const { scheduler, timeoutMs } = this.options;
    const sentAt = scheduler.now();
    this.deadline = scheduler.schedule(() => this.settle(id, LOST), timeoutMs);
    let answer: Promise<void>;
    try {
      answer = this.ping();
    } catch (error) {
      this.fail(error);
      return;
    }
    answer.then(
      () => this.settle(id, { kind: 'rtt', rttMs: scheduler.now() - sentAt }),
      (error: unknown) => {
        if (id === this.pending) this.fail(error);
      },
    );
  }
}

/** The one lost-ping sample (samples are read-only, so every loss can share it). */
const LOST: PingSample = Object.freeze({ kind: 'lost' });

function checkPingOptions({ intervalMs, timeoutMs }: PingOptions): void {
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) throw new RangeError(`ping intervalMs must be finite and > 0, got ${intervalMs}`);
  if (!(timeoutMs >= 0)) throw new RangeError(`ping timeoutMs must be >= 0, got ${timeoutMs}`);
}

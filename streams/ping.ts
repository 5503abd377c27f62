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
 * Costs two scheduled timers per ping (tick and timeout) and no RxJS operator chain.
 * @throws RangeError at call time when `intervalMs` is not finite and > 0 or `timeoutMs` is negative or NaN.
 */
export function pingSamples(ping: () => Promise<void>, options: PingOptions): Observable<PingSample> {
  const { intervalMs, timeoutMs, scheduler } = options;
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) throw new RangeError(`ping intervalMs must be finite and > 0, got ${intervalMs}`);
  if (!(timeoutMs >= 0)) throw new RangeError(`ping timeoutMs must be >= 0, got ${timeoutMs}`);
  return new Observable<PingSample>((subscriber) => {
    let due = scheduler.now(); // when the current tick was due, ms
    let pending = 0; // number of the ping in flight; 0 when none
    let started = 0;
    let deadline: Subscription | undefined;

    const settle = (id: number, sample: PingSample): void => {
      if (id !== pending) return; // timed out already, or the pipeline ended
      pending = 0;
      deadline?.unsubscribe();
      deadline = undefined;
      subscriber.next(sample);
    };
    const start = (): void => {
      const id = ++started;
      pending = id;
      const sentAt = scheduler.now();
      deadline = scheduler.schedule(() => settle(id, { kind: 'lost' }), timeoutMs);
      let answer: Promise<void>;
      try {
        answer = ping();
      } catch (error) {
        subscriber.error(error);
        return;
      }
      answer.then(
        () => settle(id, { kind: 'rtt', rttMs: scheduler.now() - sentAt }),
        (error: unknown) => {
          if (id === pending) subscriber.error(error);
        },
      );
    };

    const ticks = scheduler.schedule(function (this: SchedulerAction<undefined>) {
      if (pending === 0) start();
      const now = scheduler.now();
      due += intervalMs;
      if (due <= now) due += (Math.floor((now - due) / intervalMs) + 1) * intervalMs;
      this.schedule(undefined, due - now);
    }, 0);

    return () => {
      pending = 0;
      ticks.unsubscribe();
      deadline?.unsubscribe();
    };
  });
}

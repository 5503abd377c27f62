/**
 * The ping pipeline (DESIGN §4): every `intervalMs` a ping on the connection's control stream;
 * each answered ping is an RTT sample, each ping unanswered within `timeoutMs` is a loss.
 */
import { defer, exhaustMap, from, map, of, timeout, timer } from 'rxjs';
import type { Observable, SchedulerLike } from 'rxjs';

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
 * ping. A ping still in flight when the next tick comes is not overlapped (the tick is skipped).
 * Errors from `ping` (the connection closed) end the Observable with that error.
 */
export function pingSamples(ping: () => Promise<void>, options: PingOptions): Observable<PingSample> {
  const { intervalMs, timeoutMs, scheduler } = options;
  return timer(0, intervalMs, scheduler).pipe(
    exhaustMap(() =>
      defer(() => {
        const sentAt = scheduler.now();
        return from(ping()).pipe(
          map((): PingSample => ({ kind: 'rtt', rttMs: scheduler.now() - sentAt })),
          timeout({ first: timeoutMs, scheduler, with: () => of<PingSample>({ kind: 'lost' }) }),
        );
      }),
    ),
  );
}

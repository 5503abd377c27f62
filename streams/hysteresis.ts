/**
 * Connected ⇄ Degraded with hysteresis (DESIGN §4, issue 5): the state changes only after k
 * consecutive samples agree, so one slow ping never flaps it; and a connection that stays Critical
 * too long is flagged for replacement.
 */
import { Observable } from 'rxjs';
import type { OperatorFunction, SchedulerLike, Subscription } from 'rxjs';
import type { HealthCategory } from './health.js';

/** `poor`: enter Degraded. `good`: back to Connected. */
export type DegradedVerdict = 'poor' | 'good';

function isPoorOrWorse(category: HealthCategory): boolean {
  return category === 'Poor' || category === 'Critical';
}

function isGoodOrBetter(category: HealthCategory): boolean {
  return category === 'Good' || category === 'Excellent';
}

/**
 * Turns health categories into Degraded verdicts (issue 5). Starts good (Connected).
 * - While good: emits `poor` once `k` consecutive samples are Poor or Critical.
 * - While poor: emits `good` once `k` consecutive samples are Good or Excellent.
 *
 * Fair breaks both streaks: it is neither evidence of trouble nor of recovery, so a link hovering
 * around Fair keeps its state. `null` categories (no score known) are skipped: they neither count
 * nor break a streak. Verdicts therefore alternate, `poor` first, and fewer than `k` bad samples
 * in a row (with `k ≥ 2`: one slow ping) never change the state. Completion and errors pass through.
 * @param k samples in a row needed to change state, an integer ≥ 1.
 * @throws RangeError at call time when `k` is not an integer ≥ 1.
 */
export function degradedVerdicts(k: number): OperatorFunction<HealthCategory | null, DegradedVerdict> {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be an integer >= 1, got ${k}`);
  return (source) =>
    new Observable<DegradedVerdict>((subscriber) => {
      let degraded = false;
      let streak = 0;
      return source.subscribe({
        next(category) {
          if (category === null) return;
          const counts = degraded ? isGoodOrBetter(category) : isPoorOrWorse(category);
          streak = counts ? streak + 1 : 0;
          if (streak < k) return;
          degraded = !degraded;
          streak = 0;
          subscriber.next(degraded ? 'poor' : 'good');
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
    });
}

/**
 * Emits once each time the category has stayed Critical for `limitMs` (issue 5: such a connection
 * is replaced). The timer starts at the first Critical sample of a run and is cancelled by any
 * other category; `null` samples (no score known) are skipped. After an emission the run is spent:
 * further Critical samples do not restart the timer until a non-Critical sample has ended the run,
 * so one long Critical run emits once. When the source completes or errors, a pending timer is
 * cancelled and the completion or error passes through.
 * @param limitMs how long a run must last, ms (finite, ≥ 0).
 * @param scheduler runs the timer.
 * @throws RangeError at call time when `limitMs` is negative or not finite.
 */
export function criticalFor(limitMs: number, scheduler: SchedulerLike): OperatorFunction<HealthCategory | null, void> {
  if (!Number.isFinite(limitMs) || limitMs < 0) throw new RangeError(`limitMs must be finite and >= 0, got ${limitMs}`);
  return (source) =>
    new Observable<void>((subscriber) => {
      let timer: Subscription | undefined;
      let spent = false; // this run already emitted
      const cancel = (): void => {
        timer?.unsubscribe();
        timer = undefined;
      };
      const subscription = source.subscribe({
        next(category) {
          if (category === null) return;
          if (category !== 'Critical') {
            cancel();
            spent = false;
            return;
          }
          if (timer !== undefined || spent) return;
          timer = scheduler.schedule(() => {
            timer = undefined;
            spent = true;
            subscriber.next();
          }, limitMs);
        },
        error(error: unknown) {
          cancel();
          subscriber.error(error);
        },
        complete() {
          cancel();
          subscriber.complete();
        },
      });
      return () => {
        cancel();
        subscription.unsubscribe();
      };
    });
}

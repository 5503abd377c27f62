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
  checkStreak(k);
  return (source) =>
    new Observable<DegradedVerdict>((subscriber) => {
      const hysteresis = new DegradedHysteresis(k);
      return source.subscribe({
        next(category) {
          const verdict = hysteresis.next(category);
          if (verdict !== undefined) subscriber.next(verdict);
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
    });
}

function checkStreak(k: number): void {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be an integer >= 1, got ${k}`);
}

/**
 * The state of {@link degradedVerdicts} as plain fields, fed one category at a time (the link
 * monitor keeps one per link instead of an operator chain). Starts good (Connected).
 */
export class DegradedHysteresis {
  private degraded = false;
  private streak = 0;

  /**
   * @param k samples in a row needed to change state, an integer ≥ 1.
   * @throws RangeError when `k` is not an integer ≥ 1.
   */
  constructor(private readonly k: number) {
    checkStreak(k);
  }

  /** Takes one category; returns the verdict it completes, if any (rules of {@link degradedVerdicts}). */
  next(category: HealthCategory | null): DegradedVerdict | undefined {
    if (category === null) return undefined;
    const counts = this.degraded ? isGoodOrBetter(category) : isPoorOrWorse(category);
    this.streak = counts ? this.streak + 1 : 0;
    if (this.streak < this.k) return undefined;
    this.degraded = !this.degraded;
    this.streak = 0;
    return this.degraded ? 'poor' : 'good';
  }
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
  checkLimit(limitMs);
  return (source) =>
    new Observable<void>((subscriber) => {
      const watch = new CriticalWatch(limitMs, scheduler, () => subscriber.next());
      const subscription = source.subscribe({
        next: (category) => watch.next(category),
        error(error: unknown) {
          watch.stop();
          subscriber.error(error);
        },
        complete() {
          watch.stop();
          subscriber.complete();
        },
      });
      return () => {
        watch.stop();
        subscription.unsubscribe();
      };
    });
}

function checkLimit(limitMs: number): void {
  if (!Number.isFinite(limitMs) || limitMs < 0) throw new RangeError(`limitMs must be finite and >= 0, got ${limitMs}`);
}

/**
 * The state and timer of {@link criticalFor} without an Observable, fed one category at a time
 * (the link monitor keeps one per link): calls `onCritical` when a Critical run has lasted
 * `limitMs`, under the same rules.
 */
export class CriticalWatch {
  private timer: Subscription | undefined;
  /** This run already fired. */
  private spent = false;

  /**
   * @param limitMs how long a run must last, ms (finite, ≥ 0).
   * @param scheduler runs the timer.
   * @param onCritical called once per run that reaches `limitMs`.
   * @throws RangeError when `limitMs` is negative or not finite.
   */
  constructor(
    private readonly limitMs: number,
    private readonly scheduler: SchedulerLike,
    private readonly onCritical: () => void,
  ) {
    checkLimit(limitMs);
  }

  /** Takes one category: a Critical one starts the run's timer, any other ends the run. */
  next(category: HealthCategory | null): void {
    if (category === null) return;
    if (category !== 'Critical') {
      this.stop();
      this.spent = false;
      return;
    }
    if (this.timer !== undefined || this.spent) return;
    this.timer = this.scheduler.schedule(() => {
      this.timer = undefined;
      this.spent = true;
      this.onCritical();
    }, this.limitMs);
  }

  /** Cancels a pending timer (the run may start again with the next Critical category). */
  stop(): void {
    this.timer?.unsubscribe();
    this.timer = undefined;
  }
}

/**
 * Batching of outgoing messages (DESIGN §4 Batching, §6 defaults): a peer's messages are grouped
 * so that one write carries many of them, without holding any message back for long.
 */
import { Observable } from 'rxjs';
import type { OperatorFunction, SchedulerLike, Subscription } from 'rxjs';

/** Settings of {@link batch}. */
export interface BatchOptions {
  /** A batch is emitted as soon as it holds this many items (DESIGN §6: 128 messages). Integer ≥ 1. */
  readonly maxBatch: number;
  /** A batch is emitted at the latest this many ms after its first item arrived (DESIGN §6: 50 ms). ≥ 0. */
  readonly maxDelayMs: number;
}

/** DESIGN §6 (after QuDAG): 128 messages or 50 ms, whichever comes first. */
export const DEFAULT_BATCH_OPTIONS: BatchOptions = { maxBatch: 128, maxDelayMs: 50 };

/**
 * Groups a stream of items into arrays, keeping their order.
 *
 * - A batch is emitted as soon as it holds `maxBatch` items, or `maxDelayMs` after its first item
 *   arrived (a timer on `scheduler`), whichever comes first; so no item waits longer than
 *   `maxDelayMs`. The timer starts with each batch's first item, not on a fixed period.
 * - Never an empty batch: with no items, nothing is emitted and no timer runs.
 * - Source completion emits the partial batch, then completes (a graceful close loses nothing).
 * - A source error emits the partial batch, then the error.
 * - Unsubscribing drops the partial batch and cancels the timer: to flush, complete the source.
 *
 * Each emitted array is new and not touched again by the operator.
 *
 * @throws RangeError (when called) unless `maxBatch` is an integer ≥ 1 and `maxDelayMs` a finite
 *   number ≥ 0.
 */
export function batch<T>(options: BatchOptions, scheduler: SchedulerLike): OperatorFunction<T, T[]> {
  const { maxBatch, maxDelayMs } = options;
  if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) throw new RangeError(`maxBatch must be an integer ≥ 1, got ${maxBatch}`);
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < 0) throw new RangeError(`maxDelayMs must be ≥ 0 ms, got ${maxDelayMs}`);

  return (source) =>
    new Observable<T[]>((subscriber) => {
      let pending: T[] = [];
      let timer: Subscription | undefined;

      const cancelTimer = (): void => {
        timer?.unsubscribe();
        timer = undefined;
      };
      // Reset state before emitting: a subscriber may synchronously feed the source again.
      const flush = (): void => {
        cancelTimer();
        if (pending.length === 0) return;
        const out = pending;
        pending = [];
        subscriber.next(out);
      };

      const subscription = source.subscribe({
        next: (item) => {
          pending.push(item);
          if (pending.length >= maxBatch) flush();
          else if (pending.length === 1) timer = scheduler.schedule(flush, maxDelayMs);
        },
        error: (error: unknown) => {
          flush();
          subscriber.error(error);
        },
        complete: () => {
          flush();
          subscriber.complete();
        },
      });

      return () => {
        subscription.unsubscribe();
        cancelTimer();
        pending = [];
      };
    });
}

/**
 * Inactivity detection (DESIGN §6: `inactivityTimeout`, 60 s without a message received): a
 * half-open connection looks open to the socket but receives nothing, not even pongs.
 *
 * It polls a monotonically growing receive counter (e.g. `socket.bytesRead`) instead of hooking
 * every chunk, so the data path pays nothing. A silence is detected between `timeoutMs` and
 * `timeoutMs + checkEveryMs` after the last byte.
 */
import { Observable } from 'rxjs';
import type { SchedulerLike } from 'rxjs';

/** Settings of {@link inactivity}. */
export interface InactivityOptions {
  /** Silence that counts as inactivity, ms (DESIGN §6: 60 000). */
  readonly timeoutMs: number;
  /** How often the counter is read, ms; default a quarter of `timeoutMs`. */
  readonly checkEveryMs?: number;
  readonly scheduler: SchedulerLike;
}

/**
 * Emits once, then completes, when `received()` has not changed for at least `timeoutMs`.
 * @param received a counter that grows whenever anything is received (bytes, messages).
 */
export function inactivity(received: () => number, options: InactivityOptions): Observable<void> {
  return new Observable<void>((subscriber) =>
    watchInactivity(received, options, () => {
      subscriber.next();
      subscriber.complete();
    }),
  );
}

/**
 * The watch of {@link inactivity} as a plain callback, for a caller that already holds a
 * subscription (the link monitor): calls `onInactive` once, when `received()` has not changed for
 * at least `timeoutMs`.
 * @returns the stop function (cancels the check timer; idempotent).
 */
export function watchInactivity(received: () => number, options: InactivityOptions, onInactive: () => void): () => void {
  const { timeoutMs, scheduler } = options;
  const checkEveryMs = Math.max(1, options.checkEveryMs ?? Math.ceil(timeoutMs / 4));
  let lastCount = received();
  let lastChange = scheduler.now();
  const check = scheduler.schedule(function watch() {
    const count = received();
    const now = scheduler.now();
    if (count !== lastCount) {
      lastCount = count;
      lastChange = now;
    } else if (now - lastChange >= timeoutMs) {
      onInactive();
      return;
    }
    this.schedule(undefined, Math.min(checkEveryMs, Math.max(1, lastChange + timeoutMs - now)));
  }, checkEveryMs);
  return () => check.unsubscribe();
}

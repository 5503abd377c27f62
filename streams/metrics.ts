/**
 * The standalone parts of the metrics pipeline (DESIGN §4 "Metrics", issue 5 item 4): a sliding
 * rate meter for messages per second, a latency window for average and p99 RTT, the traffic
 * figures they produce, and a sampler that turns a snapshot function into an Observable.
 *
 * Everything reads time from an injected source (a `now()` function or a `SchedulerLike`), so
 * specs run in virtual time (streams/clock.ts) and production uses the system clock.
 */
import { Observable } from 'rxjs';
import type { SchedulerLike } from 'rxjs';

/** Buckets per window of a {@link RateMeter}: its resolution is a tenth of the window. */
const BUCKETS_PER_WINDOW = 10;

/**
 * Counts events in a sliding window and reports their rate per second over the last `windowMs`.
 *
 * Memory is bounded: the window is cut into 10 buckets of `windowMs / 10` each, and the meter
 * holds 11 of them in a ring (the 10 that may overlap the window plus the current one), whatever
 * the number of marks. The rate is `events in [now - windowMs, now] / (windowMs / 1000)`, where
 * the oldest, partly covered bucket counts in proportion to the part of it still inside the
 * window (events are assumed evenly spread within a bucket). So the estimate lies between the
 * exact counts over `windowMs - windowMs/10` and `windowMs + windowMs/10`.
 *
 * The rate ramps up over the first window after creation (the window is not shortened), like a
 * moving average. Time that goes backwards (it should not: `now` is monotonic) is treated as
 * standing still.
 */
export class RateMeter {
  private readonly bucketMs: number;
  /** Ring of bucket indexes (`floor(t / bucketMs)`) and their counts; -Infinity marks unused. */
  private readonly indexes: number[];
  private readonly counts: number[];
  /** Latest time seen, ms: the monotonic guard. */
  private latest = -Infinity;

  /**
   * @param windowMs the window, ms (finite, > 0).
   * @param now the time source, ms (e.g. `() => scheduler.now()` or `clock.now`).
   * @throws RangeError when `windowMs` is not a finite number > 0.
   */
  constructor(
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {
    if (!Number.isFinite(windowMs) || windowMs <= 0) throw new RangeError(`RateMeter: windowMs must be finite and > 0, got ${windowMs}`);
    this.bucketMs = windowMs / BUCKETS_PER_WINDOW;
    this.indexes = new Array<number>(BUCKETS_PER_WINDOW + 1).fill(-Infinity);
    this.counts = new Array<number>(BUCKETS_PER_WINDOW + 1).fill(0);
  }

  /** Number of buckets the meter holds: 11, constant (the memory bound). */
  get bucketCount(): number {
    return this.counts.length;
  }

  /**
   * Records `count` events now (default 1).
   * @throws RangeError when `count` is not a finite number ≥ 0.
   */
  mark(count = 1): void {
    if (!Number.isFinite(count) || count < 0) throw new RangeError(`RateMeter.mark: count must be finite and >= 0, got ${count}`);
    const index = this.currentIndex();
    const slot = index % this.counts.length;
    if (this.indexes[slot] !== index) {
      // The slot holds a bucket that has left the window: recycle it.
      this.indexes[slot] = index;
      this.counts[slot] = 0;
    }
    this.counts[slot] = (this.counts[slot] ?? 0) + count;
  }

  /** Events per second over the last `windowMs` (≥ 0; 0 when nothing was marked in the window). */
  perSecond(): number {
    const current = this.currentIndex();
    const oldest = current - BUCKETS_PER_WINDOW;
    // Share of the oldest bucket still inside [now - windowMs, now].
    const oldestWeight = 1 - (this.latest - current * this.bucketMs) / this.bucketMs;
    let events = 0;
    for (let slot = 0; slot < this.counts.length; slot++) {
      const index = this.indexes[slot] ?? -Infinity;
      const count = this.counts[slot] ?? 0;
      if (index > oldest && index <= current) events += count;
      else if (index === oldest) events += count * oldestWeight;
    }
    return events / (this.windowMs / 1000);
  }

  private currentIndex(): number {
    this.latest = Math.max(this.latest, this.now());
    return Math.floor(this.latest / this.bucketMs);
  }
}

/** Default number of samples a {@link LatencyWindow} keeps. */
const DEFAULT_LATENCY_SAMPLES = 1024;

/**
 * Latency summary over the last `maxSamples` samples (a ring: the oldest sample is evicted when a
 * new one arrives and the window is full): average and p99, in ms; null when empty.
 *
 * p99 uses the nearest-rank method: the smallest sample such that at least 99 % of the samples
 * are ≤ it, i.e. the `ceil(0.99 · n)`-th smallest. Both figures are computed on demand from at most
 * `maxSamples` numbers (O(n log n) for p99, cached until the next `add`).
 */
export class LatencyWindow {
  private readonly samples: number[] = [];
  /** Where the next sample goes once the ring is full. */
  private next = 0;
  private sorted: number[] | null = null;

  /**
   * @param maxSamples how many of the latest samples count (integer ≥ 1; default 1024).
   * @throws RangeError when `maxSamples` is not an integer ≥ 1.
   */
  constructor(private readonly maxSamples = DEFAULT_LATENCY_SAMPLES) {
    if (!Number.isInteger(maxSamples) || maxSamples < 1) throw new RangeError(`LatencyWindow: maxSamples must be an integer >= 1, got ${maxSamples}`);
  }

  /**
   * Adds one latency sample, ms.
   * @throws RangeError when `ms` is not a finite number ≥ 0 (one NaN would poison every figure).
   */
  add(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`LatencyWindow.add: ms must be finite and >= 0, got ${ms}`);
    if (this.samples.length < this.maxSamples) this.samples.push(ms);
    else {
      this.samples[this.next] = ms;
      this.next = (this.next + 1) % this.maxSamples;
    }
    this.sorted = null;
  }

  /** Number of samples held (≤ `maxSamples`). */
  get count(): number {
    return this.samples.length;
  }

  /** Mean of the samples held, ms; null when empty. */
  average(): number | null {
    if (this.samples.length === 0) return null;
    // Summed afresh each time: a running sum with subtractions would drift.
    let sum = 0;
    for (const ms of this.samples) sum += ms;
    return sum / this.samples.length;
  }

  /** 99th percentile (nearest rank) of the samples held, ms; null when empty. */
  p99(): number | null {
    const n = this.samples.length;
    if (n === 0) return null;
    this.sorted ??= [...this.samples].sort((a, b) => a - b);
    return this.sorted[Math.ceil(0.99 * n) - 1] ?? null;
  }
}

/** The traffic figures of issue 5 item 4 that the supervisor's own counters do not give. */
export interface TrafficMetrics {
  /** Application messages received per second over the rate window (a {@link RateMeter}). */
  readonly messagesInPerSecond: number;
  /** Application messages sent per second over the rate window. */
  readonly messagesOutPerSecond: number;
  /** Mean ping RTT over the latency window (a {@link LatencyWindow}), ms; null before any sample. */
  readonly latencyAvgMs: number | null;
  /** 99th percentile ping RTT (nearest rank), ms; null before any sample. */
  readonly latencyP99Ms: number | null;
  /** V8 heap in use (`process.memoryUsage().heapUsed`), bytes. */
  readonly heapUsedBytes: number;
  /** Resident set size of the process (`process.memoryUsage().rss`), bytes. */
  readonly rssBytes: number;
}

/**
 * Emits `sample()` at once (synchronously, on subscribe), then every `intervalMs` on `scheduler`,
 * until unsubscribed. Ticks are due at `start + k · intervalMs` (not chained delays), so a slow
 * scheduler does not make the series drift. An exception thrown by `sample` ends the Observable
 * with that error.
 *
 * @param intervalMs time between samples, ms (finite, > 0).
 * @throws RangeError (at call time) when `intervalMs` is not a finite number > 0.
 */
export function sampleEvery<T>(intervalMs: number, sample: () => T, scheduler: SchedulerLike): Observable<T> {
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) throw new RangeError(`sampleEvery: intervalMs must be finite and > 0, got ${intervalMs}`);
  return new Observable<T>((subscriber) => {
    const start = scheduler.now();
    let tick = 0;
    const emit = (): boolean => {
      try {
        subscriber.next(sample());
        return true;
      } catch (error) {
        subscriber.error(error);
        return false;
      }
    };
    if (!emit() || subscriber.closed) return undefined;
    return scheduler.schedule(function next() {
      if (!emit() || subscriber.closed) return;
      tick++;
      this.schedule(undefined, Math.max(0, start + (tick + 1) * intervalMs - scheduler.now()));
    }, intervalMs);
  });
}

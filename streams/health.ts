/**
 * Health scoring (DESIGN §4): a latency, a reliability and a bandwidth score, each in [0,1],
 * averaged into one score and a category. The score functions are pure, so they are
 * property-tested alone and a user may replace them; {@link healthSamples} applies them to the
 * ping pipeline's output.
 */
import { defer, map } from 'rxjs';
import type { Observable, SchedulerLike } from 'rxjs';
import type { PingSample } from './ping.js';

/**
 * Where the latency score falls from 1 to 0, as round-trip times in ms.
 * Valid when `0 <= goodMs < badMs` (both finite).
 */
export interface LatencyScale {
  /** At or below this RTT (ms) the latency score is 1. */
  readonly goodMs: number;
  /** At or above this RTT (ms) the latency score is 0. */
  readonly badMs: number;
}

/**
 * Default latency scale: 50 ms / 1000 ms. Below 50 ms (a same-region round trip) extra speed
 * makes no difference to a request/response protocol; at 1 s an interactive exchange is unusable,
 * and it is still well inside the 5 s ping timeout (DESIGN §6), so slow-but-answering peers are
 * told apart from lost pings.
 */
export const DEFAULT_LATENCY_SCALE: LatencyScale = { goodMs: 50, badMs: 1_000 };

function checkScale(scale: LatencyScale): void {
  const { goodMs, badMs } = scale;
  if (!Number.isFinite(goodMs) || !Number.isFinite(badMs) || goodMs < 0 || badMs <= goodMs) {
    throw new RangeError(`latency scale needs 0 <= goodMs < badMs, got goodMs=${goodMs} badMs=${badMs}`);
  }
}

/**
 * Latency score of one round-trip time.
 *
 * Formula: `1` when `rttMs <= goodMs`, `0` when `rttMs >= badMs`, else
 * `(badMs - rttMs) / (badMs - goodMs)` (linear). Unitless in [0,1], non-increasing in `rttMs`.
 * @param rttMs round-trip time, ms (`Infinity` scores 0).
 * @param scale defaults to {@link DEFAULT_LATENCY_SCALE}.
 * @throws RangeError when `rttMs` is NaN or negative, or the scale is invalid (see {@link LatencyScale}).
 */
export function latencyScore(rttMs: number, scale: LatencyScale = DEFAULT_LATENCY_SCALE): number {
  checkScale(scale);
  if (Number.isNaN(rttMs) || rttMs < 0) throw new RangeError(`RTT must be a non-negative number of ms, got ${rttMs}`);
  if (rttMs <= scale.goodMs) return 1;
  if (rttMs >= scale.badMs) return 0;
  return (scale.badMs - rttMs) / (scale.badMs - scale.goodMs);
}

/**
 * Reliability score: the share of pings answered (DESIGN §4, "answered / sent over a window").
 *
 * Formula: `answered / sent`. Unitless in [0,1], non-decreasing in `answered` for a fixed `sent`.
 * @param answered pings answered within the ping timeout (a count).
 * @param sent pings sent (a count) in the same window.
 * @returns the score, or `null` when `sent === 0` (nothing known yet).
 * @throws RangeError when either count is negative, not finite, or `answered > sent`.
 */
export function reliabilityScore(answered: number, sent: number): number | null {
  if (!Number.isFinite(answered) || !Number.isFinite(sent) || answered < 0 || sent < 0 || answered > sent) {
    throw new RangeError(`reliability needs 0 <= answered <= sent, got answered=${answered} sent=${sent}`);
  }
  return sent === 0 ? null : answered / sent;
}

/**
 * Bandwidth score: measured throughput against a reference throughput.
 *
 * Formula: `min(1, bytesPerSecond / referenceBytesPerSecond)`. Unitless in [0,1], non-decreasing
 * in `bytesPerSecond`. Note it measures use, not capacity: a link that moves little scores low.
 * @param bytesPerSecond measured throughput, bytes/s (`Infinity` scores 1).
 * @param referenceBytesPerSecond the throughput that scores 1, bytes/s, finite and > 0.
 * @returns the score, or `null` when `bytesPerSecond === 0`: no traffic says nothing about the
 *   link, so the score is left out of the mean (issue 5).
 * @throws RangeError when `bytesPerSecond` is NaN or negative, or the reference is not finite and > 0.
 */
export function bandwidthScore(bytesPerSecond: number, referenceBytesPerSecond: number): number | null {
  if (!Number.isFinite(referenceBytesPerSecond) || referenceBytesPerSecond <= 0) {
    throw new RangeError(`reference bandwidth must be a finite number of bytes/s > 0, got ${referenceBytesPerSecond}`);
  }
  if (Number.isNaN(bytesPerSecond) || bytesPerSecond < 0) {
    throw new RangeError(`bandwidth must be a non-negative number of bytes/s, got ${bytesPerSecond}`);
  }
  if (bytesPerSecond === 0) return null;
  return Math.min(1, bytesPerSecond / referenceBytesPerSecond);
}

/**
 * Overall score (DESIGN §4): the arithmetic mean of the known scores, unitless in [0,1].
 * @param scores component scores in [0,1]; `null` means unknown and is left out.
 * @returns the mean, or `null` when no score is known.
 * @throws RangeError when a score is NaN or outside [0,1].
 */
export function overallScore(scores: readonly (number | null)[]): number | null {
  let sum = 0;
  let count = 0;
  for (const score of scores) {
    if (score === null) continue;
    if (!(score >= 0 && score <= 1)) throw new RangeError(`a score must be in [0,1], got ${score}`);
    sum += score;
    count++;
  }
  return count === 0 ? null : sum / count;
}

/** Health categories, best first (DESIGN §4). */
export type HealthCategory = 'Excellent' | 'Good' | 'Fair' | 'Poor' | 'Critical';

/**
 * Category of an overall score (DESIGN §4): Excellent ≥ 0.8, Good ≥ 0.6, Fair ≥ 0.4, Poor ≥ 0.2,
 * else Critical. Each lower bound belongs to its category (0.8 is Excellent).
 * @throws RangeError when `score` is NaN or outside [0,1].
 */
export function categorize(score: number): HealthCategory {
  if (!(score >= 0 && score <= 1)) throw new RangeError(`a score must be in [0,1], got ${score}`);
  if (score >= 0.8) return 'Excellent';
  if (score >= 0.6) return 'Good';
  if (score >= 0.4) return 'Fair';
  if (score >= 0.2) return 'Poor';
  return 'Critical';
}

/** Settings of {@link healthSamples}. */
export interface HealthOptions {
  /** Latency scale (see {@link DEFAULT_LATENCY_SCALE}). */
  readonly latency: LatencyScale;
  /** Reliability window: the last this many ping outcomes (a count, integer ≥ 1; default 10). */
  readonly reliabilityWindow: number;
  /** Bandwidth window, ms (> 0; default 10 000, one ping interval of DESIGN §6). */
  readonly bandwidthWindowMs: number;
  /**
   * Throughput that scores 1, bytes/s (> 0). Default 1 MiB/s (1 048 576): a modest broadband
   * link's sustained rate; a peer connection moving that much is fully in use.
   */
  readonly referenceBytesPerSecond: number;
  /**
   * RTT a lost ping counts as for the latency score, ms; `null` keeps the previous score. The
   * link passes its ping timeout: a ping lost after `pingTimeout` took at least that long.
   */
  readonly lostPingRttMs: number | null;
}

/** Defaults of {@link HealthOptions}: 50/1000 ms, 10 pings, 10 s, 1 MiB/s, a loss keeps the latency score. */
export const DEFAULT_HEALTH_OPTIONS: HealthOptions = {
  latency: DEFAULT_LATENCY_SCALE,
  reliabilityWindow: 10,
  bandwidthWindowMs: 10_000,
  referenceBytesPerSecond: 1_048_576,
  lostPingRttMs: null,
};

/** One health reading, taken at a ping outcome. Scores are unitless in [0,1]; `null` is unknown. */
export interface HealthSample {
  /** When the ping outcome arrived, ms of the scheduler's clock. */
  readonly atMs: number;
  /** This outcome's RTT, ms; `null` when the ping was lost. */
  readonly rttMs: number | null;
  /** Score of the latest RTT seen so far (a loss keeps the previous one); `null` until one arrives. */
  readonly latency: number | null;
  /** Answered / sent over the last `reliabilityWindow` outcomes. */
  readonly reliability: number | null;
  /** Score of the throughput over the last `bandwidthWindowMs`; `null` when nothing moved. */
  readonly bandwidth: number | null;
  /** Mean of the known scores ({@link overallScore}). */
  readonly score: number | null;
  /** {@link categorize} of `score`; `null` when `score` is. */
  readonly category: HealthCategory | null;
}

/** Dropped pairs a {@link HealthScorer} lets accumulate before it compacts its pair arrays. */
const PAIRS_COMPACT_AT = 16;

/** Resolved options by the object passed in: every link of a supervisor passes the same one. */
const resolvedOptions = new WeakMap<Partial<HealthOptions>, HealthOptions>();

function resolveOptions(options: Partial<HealthOptions> | undefined): HealthOptions {
  const cached = options && resolvedOptions.get(options);
  if (cached) return cached;
  const resolved: HealthOptions = { ...DEFAULT_HEALTH_OPTIONS, ...options };
  checkScale(resolved.latency);
  if (!Number.isInteger(resolved.reliabilityWindow) || resolved.reliabilityWindow < 1) {
    throw new RangeError(`reliabilityWindow must be an integer >= 1, got ${resolved.reliabilityWindow}`);
  }
  if (!Number.isFinite(resolved.bandwidthWindowMs) || resolved.bandwidthWindowMs <= 0) {
    throw new RangeError(`bandwidthWindowMs must be finite and > 0, got ${resolved.bandwidthWindowMs}`);
  }
  if (!Number.isFinite(resolved.referenceBytesPerSecond) || resolved.referenceBytesPerSecond <= 0) {
    throw new RangeError(`referenceBytesPerSecond must be finite and > 0, got ${resolved.referenceBytesPerSecond}`);
  }
  if (resolved.lostPingRttMs !== null && !(resolved.lostPingRttMs >= 0)) {
    throw new RangeError(`lostPingRttMs must be null or >= 0, got ${resolved.lostPingRttMs}`);
  }
  if (options) resolvedOptions.set(options, resolved);
  return resolved;
}

/**
 * One {@link HealthSample} per ping outcome: a {@link HealthScorer} per subscription, applied to
 * each outcome of `pings`.
 *
 * - latency: {@link latencyScore} of the latest RTT (`null` until one arrives); a lost ping
 *   counts as `lostPingRttMs` when set, else keeps the previous score.
 * - reliability: {@link reliabilityScore} over the last `reliabilityWindow` outcomes.
 * - bandwidth: `bytes()` is read when subscribing and at each outcome, and (time, count) pairs are
 *   kept for the window. Throughput = bytes moved since the baseline × 1000 / max(window, span) in
 *   bytes/s, where the baseline is the newest pair at least `bandwidthWindowMs` old (or the
 *   oldest, on a younger connection) and span its age in ms: on a young connection that is bytes
 *   in the last window / window seconds (nothing was moved before it started); when outcomes are
 *   further apart than the window it is the mean rate over the span. A counter that goes
 *   backwards is taken as reset: the window restarts there.
 *
 * Memory is bounded: `reliabilityWindow` outcomes and the pairs younger than the window.
 * Each subscription has its own windows.
 * @param pings the ping pipeline's output ({@link PingSample}).
 * @param bytes a monotone counter of bytes received + sent on the connection. Pings themselves
 *   count, so a link moving only pings scores near 0 on bandwidth and an idle but otherwise perfect
 *   link averages about 0.67 (Good); pass a counter of application bytes to leave idle links out.
 * @param scheduler clock of `atMs` and of the bandwidth window (`now()` only; nothing is scheduled).
 * @param options merged over {@link DEFAULT_HEALTH_OPTIONS}.
 * @throws RangeError at call time for invalid options; the Observable errors with RangeError
 *   if a sample's RTT is NaN or negative.
 */
export function healthSamples(
  pings: Observable<PingSample>,
  bytes: () => number,
  scheduler: SchedulerLike,
  options?: Partial<HealthOptions>,
): Observable<HealthSample> {
  const resolved = resolveOptions(options);
  return defer(() => {
    const scorer = new HealthScorer(bytes, scheduler, resolved);
    return pings.pipe(map((ping) => scorer.score(ping)));
  });
}

/**
 * The health state of one connection as plain fields, scored one ping outcome at a time (the rules
 * are those of {@link healthSamples}, which runs one per subscription). Memory is bounded:
 * `reliabilityWindow` outcomes and the (time, count) pairs younger than the bandwidth window.
 */
export class HealthScorer {
  private readonly options: HealthOptions;
  /** Answered?, oldest first, at most `reliabilityWindow`. */
  private readonly outcomes: boolean[] = [];
  private answered = 0;
  private latestLatency: number | null = null;
  /**
   * The (time ms, counter) pairs as two number arrays, oldest first from `pairStart`, whose pair
   * is the baseline; never empty (the constructor's pair, and each outcome pushes one). Unboxed numbers rather than a pair object per outcome: a pair lives a
   * bandwidth window (10 s), long enough to be promoted to the old generation, at every ping of
   * every connection.
   */
  private readonly pairTimes: number[] = [];
  private readonly pairCounts: number[] = [];
  private pairStart = 0;

  /**
   * Reads `bytes()` and `scheduler.now()` once now, as the bandwidth baseline.
   * @param bytes a monotone counter of bytes on the connection (see {@link healthSamples}).
   * @param scheduler the clock of `atMs` and of the bandwidth window (`now()` only).
   * @param options merged over {@link DEFAULT_HEALTH_OPTIONS}.
   * @throws RangeError for invalid options.
   */
  constructor(
    private readonly bytes: () => number,
    private readonly scheduler: SchedulerLike,
    options?: Partial<HealthOptions>,
  ) {
    this.options = resolveOptions(options);
    this.pairTimes.push(scheduler.now());
    this.pairCounts.push(bytes());
  }

  /**
   * Scores one ping outcome, taken now.
   * @throws RangeError when the sample's RTT is NaN or negative.
   */
  score(ping: PingSample): HealthSample {
    const { latency: scale, reliabilityWindow, bandwidthWindowMs, referenceBytesPerSecond, lostPingRttMs } = this.options;
    const atMs = this.scheduler.now();
    const rttMs = ping.kind === 'rtt' ? ping.rttMs : null;
    if (rttMs !== null) this.latestLatency = latencyScore(rttMs, scale);
    else if (lostPingRttMs !== null) this.latestLatency = latencyScore(lostPingRttMs, scale);

    const outcomes = this.outcomes;
    outcomes.push(rttMs !== null);
    if (rttMs !== null) this.answered++;
    if (outcomes.length > reliabilityWindow && outcomes.shift()) this.answered--;
    const reliability = reliabilityScore(this.answered, outcomes.length);

    const count = this.bytes();
    const times = this.pairTimes;
    const counts = this.pairCounts;
    if (count < (counts[counts.length - 1] as number)) {
      times.length = 0;
      counts.length = 0;
      this.pairStart = 0;
    }
    times.push(atMs);
    counts.push(count);
    // Keep exactly one pair at or before the window's start: the baseline.
    while (times.length - this.pairStart > 1 && (times[this.pairStart + 1] as number) <= atMs - bandwidthWindowMs) this.pairStart++;
    if (this.pairStart >= PAIRS_COMPACT_AT && this.pairStart * 2 >= times.length) {
      times.splice(0, this.pairStart);
      counts.splice(0, this.pairStart);
      this.pairStart = 0;
    }
    const baseAtMs = times[this.pairStart] as number;
    const baseCount = counts[this.pairStart] as number;
    const bytesPerSecond = ((count - baseCount) * 1000) / Math.max(bandwidthWindowMs, atMs - baseAtMs);
    const bandwidth = bandwidthScore(bytesPerSecond, referenceBytesPerSecond);

    const score = overallScore([this.latestLatency, reliability, bandwidth]);
    return {
      atMs,
      rttMs,
      latency: this.latestLatency,
      reliability,
      bandwidth,
      score,
      category: score === null ? null : categorize(score),
    };
  }
}

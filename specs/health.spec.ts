/**
 * Health scoring and Degraded hysteresis (DESIGN §4, issue 5): score functions as properties,
 * the pipelines as marble tests and properties in virtual time (RxJS TestScheduler, VirtualClock).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Subject, map, of } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { clockScheduler, VirtualClock } from '../streams/clock.js';
import {
  DEFAULT_HEALTH_OPTIONS,
  bandwidthScore,
  categorize,
  healthSamples,
  latencyScore,
  overallScore,
  reliabilityScore,
} from '../streams/health.js';
import type { HealthCategory, HealthSample, LatencyScale } from '../streams/health.js';
import { criticalFor, degradedVerdicts } from '../streams/hysteresis.js';
import type { DegradedVerdict } from '../streams/hysteresis.js';
import type { PingSample } from '../streams/ping.js';

const CATEGORIES: readonly HealthCategory[] = ['Critical', 'Poor', 'Fair', 'Good', 'Excellent'];
const rank = (category: HealthCategory): number => CATEGORIES.indexOf(category);
const isBad = (c: HealthCategory | null): boolean => c === 'Poor' || c === 'Critical';
const isGood = (c: HealthCategory | null): boolean => c === 'Good' || c === 'Excellent';

/** Rounds every number inside `value` to 1e-9, so expected means need not match bit for bit. */
function roundDeep(value: unknown): unknown {
  if (typeof value === 'number') return Number.isFinite(value) ? Math.round(value * 1e9) / 1e9 : value;
  if (Array.isArray(value)) return value.map(roundDeep);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, roundDeep(inner)]));
  }
  return value;
}

function marbles(): TestScheduler {
  return new TestScheduler((actual: unknown, expected: unknown) => assert.deepStrictEqual(roundDeep(actual), roundDeep(expected)));
}

/** Next float below a positive `x`. */
function below(x: number): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  view.setBigUint64(0, view.getBigUint64(0) - 1n);
  return view.getFloat64(0);
}

const scaleArb: fc.Arbitrary<LatencyScale> = fc
  .tuple(fc.double({ min: 0, max: 10_000, noNaN: true }), fc.double({ min: 1e-3, max: 10_000, noNaN: true }))
  .map(([goodMs, width]) => ({ goodMs, badMs: goodMs + width }))
  .filter((scale) => scale.badMs > scale.goodMs);
const rttArb = fc.oneof(fc.double({ min: 0, max: 100_000, noNaN: true }), fc.constant(Infinity));

describe('latencyScore', () => {
  it('is in [0,1] and non-increasing in the RTT (property)', () => {
    fc.assert(
      fc.property(scaleArb, rttArb, rttArb, (scale, a, b) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        const sLow = latencyScore(low, scale);
        const sHigh = latencyScore(high, scale);
        assert.ok(sLow >= 0 && sLow <= 1 && sHigh >= 0 && sHigh <= 1);
        assert.ok(sLow >= sHigh, `score(${low})=${sLow} < score(${high})=${sHigh}`);
      }),
    );
  });

  it('is 1 at or below goodMs, 0 at or above badMs, linear between (default 50 / 1000 ms)', () => {
    assert.deepEqual(DEFAULT_HEALTH_OPTIONS.latency, { goodMs: 50, badMs: 1000 });
    assert.equal(latencyScore(0), 1);
    assert.equal(latencyScore(50), 1);
    assert.equal(latencyScore(525), 0.5);
    assert.equal(latencyScore(1000), 0);
    assert.equal(latencyScore(Infinity), 0);
    const scale = { goodMs: 100, badMs: 500 };
    assert.equal(latencyScore(200, scale), 0.75);
    assert.equal(latencyScore(400, scale), 0.25);
  });

  it('throws RangeError on NaN or negative RTT and on an invalid scale', () => {
    assert.throws(() => latencyScore(Number.NaN), RangeError);
    assert.throws(() => latencyScore(-1), RangeError);
    assert.throws(() => latencyScore(10, { goodMs: 100, badMs: 100 }), RangeError);
    assert.throws(() => latencyScore(10, { goodMs: -1, badMs: 100 }), RangeError);
    assert.throws(() => latencyScore(10, { goodMs: 0, badMs: Number.NaN }), RangeError);
  });
});

describe('reliabilityScore', () => {
  const counts = fc.nat({ max: 10_000 }).chain((sent) => fc.tuple(fc.nat({ max: sent }), fc.nat({ max: sent }), fc.constant(sent)));

  it('is answered / sent, in [0,1], non-decreasing in answered (property)', () => {
    fc.assert(
      fc.property(counts, ([a, b, sent]) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        const sLow = reliabilityScore(low, sent);
        const sHigh = reliabilityScore(high, sent);
        if (sent === 0) {
          assert.equal(sLow, null);
          return;
        }
        assert.ok(sLow !== null && sHigh !== null);
        assert.equal(sLow, low / sent);
        assert.ok(sLow >= 0 && sHigh <= 1 && sLow <= sHigh);
      }),
    );
  });

  it('is null with nothing sent and throws RangeError on impossible counts', () => {
    assert.equal(reliabilityScore(0, 0), null);
    assert.equal(reliabilityScore(9, 10), 0.9);
    assert.equal(reliabilityScore(10, 10), 1);
    assert.throws(() => reliabilityScore(11, 10), RangeError);
    assert.throws(() => reliabilityScore(1, 0), RangeError);
    assert.throws(() => reliabilityScore(-1, 10), RangeError);
    assert.throws(() => reliabilityScore(Number.NaN, 10), RangeError);
  });
});

describe('bandwidthScore', () => {
  const rateArb = fc.oneof(fc.double({ min: 0, max: 1e12, noNaN: true }), fc.constant(Infinity));
  const referenceArb = fc.double({ min: 1, max: 1e10, noNaN: true });

  it('is in [0,1] (null without traffic) and non-decreasing in bytes/s (property)', () => {
    fc.assert(
      fc.property(rateArb, rateArb, referenceArb, (a, b, reference) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        const sLow = bandwidthScore(low, reference);
        const sHigh = bandwidthScore(high, reference);
        assert.equal(sLow === null, low === 0);
        assert.equal(sHigh === null, high === 0);
        if (sHigh !== null) assert.ok(sHigh >= 0 && sHigh <= 1); // 0 only when the ratio underflows
        if (sLow !== null && sHigh !== null) assert.ok(sLow <= sHigh);
      }),
    );
  });

  it('is min(1, rate / reference); the default reference is 1 MiB/s', () => {
    const reference = DEFAULT_HEALTH_OPTIONS.referenceBytesPerSecond;
    assert.equal(reference, 1024 * 1024);
    assert.equal(bandwidthScore(512 * 1024, reference), 0.5);
    assert.equal(bandwidthScore(reference, reference), 1);
    assert.equal(bandwidthScore(2 * reference, reference), 1);
    assert.equal(bandwidthScore(0, reference), null);
  });

  it('throws RangeError on a negative or NaN rate and a non-positive reference', () => {
    assert.throws(() => bandwidthScore(-1, 1000), RangeError);
    assert.throws(() => bandwidthScore(Number.NaN, 1000), RangeError);
    assert.throws(() => bandwidthScore(10, 0), RangeError);
    assert.throws(() => bandwidthScore(10, Infinity), RangeError);
  });
});

describe('overallScore and categorize', () => {
  const scoreArb = fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null });

  it('overallScore is the mean of the known scores, null when none is known (property)', () => {
    fc.assert(
      fc.property(fc.array(scoreArb, { maxLength: 6 }), (scores) => {
        const known = scores.filter((s): s is number => s !== null);
        const mean = overallScore(scores);
        if (known.length === 0) {
          assert.equal(mean, null);
          return;
        }
        assert.ok(mean !== null);
        assert.ok(Math.abs(mean - known.reduce((a, b) => a + b, 0) / known.length) < 1e-12);
        assert.ok(mean >= 0 && mean <= 1);
        assert.ok(mean >= Math.min(...known) - 1e-12 && mean <= Math.max(...known) + 1e-12);
      }),
    );
    assert.equal(overallScore([1, null, 0.5]), 0.75);
    assert.throws(() => overallScore([1.5]), RangeError);
    assert.throws(() => overallScore([Number.NaN]), RangeError);
  });

  it('categorize follows the DESIGN §4 thresholds at the exact boundaries', () => {
    const table: Array<[number, HealthCategory]> = [
      [1, 'Excellent'],
      [0.8, 'Excellent'],
      [below(0.8), 'Good'],
      [0.6, 'Good'],
      [below(0.6), 'Fair'],
      [0.4, 'Fair'],
      [below(0.4), 'Poor'],
      [0.2, 'Poor'],
      [below(0.2), 'Critical'],
      [0, 'Critical'],
    ];
    for (const [score, category] of table) assert.equal(categorize(score), category, `categorize(${score})`);
    assert.throws(() => categorize(Number.NaN), RangeError);
    assert.throws(() => categorize(-0.1), RangeError);
    assert.throws(() => categorize(1.1), RangeError);
  });

  it('categorize is monotone in the score (property)', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (a, b) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        assert.ok(rank(categorize(low)) <= rank(categorize(high)));
      }),
    );
  });
});

describe('healthSamples', () => {
  const options = { latency: { goodMs: 50, badMs: 1050 }, reliabilityWindow: 4, bandwidthWindowMs: 10, referenceBytesPerSecond: 1000 };
  const rtt = (rttMs: number): PingSample => ({ kind: 'rtt', rttMs });
  const lost: PingSample = { kind: 'lost' };

  it('scores each ping outcome: latest RTT, sliding reliability, bytes over the window (marbles)', () => {
    const scheduler = marbles();
    scheduler.run(({ cold, expectObservable }) => {
      let counter = 0;
      // The byte counter moves at 5 ms (to 5) and 15 ms (to 25); pings come every 10 ms.
      cold('5ms x 9ms y', { x: 5, y: 25 }).subscribe((value) => (counter = value));
      const pings = cold('a 9ms b 9ms c 9ms d 9ms e 9ms f 9ms g', {
        a: rtt(50),
        b: lost,
        c: rtt(550),
        d: lost,
        e: lost,
        f: rtt(1050),
        g: lost,
      });
      const sample = (
        atMs: number,
        rttMs: number | null,
        latency: number | null,
        reliability: number,
        bandwidth: number | null,
        score: number,
        category: HealthCategory,
      ): HealthSample => ({ atMs, rttMs, latency, reliability, bandwidth, score, category });
      expectObservable(healthSamples(pings, () => counter, scheduler, options)).toBe(
        'a 9ms b 9ms c 9ms d 9ms e 9ms f 9ms g',
        {
          a: sample(0, 50, 1, 1, null, 1, 'Excellent'), // no bytes yet: bandwidth left out
          b: sample(10, null, 1, 1 / 2, 0.5, 2 / 3, 'Good'), // 5 B in 10 ms = 500 B/s of 1000
          c: sample(20, 550, 0.5, 2 / 3, 1, (0.5 + 2 / 3 + 1) / 3, 'Good'), // 20 B in 10 ms, capped at 1
          d: sample(30, null, 0.5, 2 / 4, null, 0.5, 'Fair'), // nothing moved in the last window
          e: sample(40, null, 0.5, 1 / 4, null, 0.375, 'Poor'), // window of 4: b lost, c, d, e lost
          f: sample(50, 1050, 0, 2 / 4, null, 0.25, 'Poor'),
          g: sample(60, null, 0, 1 / 4, null, 0.125, 'Critical'),
        },
      );
    });
  });

  it('averages over the span when outcomes are further apart than the window, and restarts on a counter reset (marbles)', () => {
    const scheduler = marbles();
    scheduler.run(({ cold, expectObservable }) => {
      let counter = 0;
      cold('20ms x 7ms y', { x: 30, y: 2 }).subscribe((value) => (counter = value));
      const pings = cold('a 24ms b 4ms c', { a: rtt(50), b: rtt(50), c: rtt(50) });
      const base = { rttMs: 50, latency: 1, reliability: 1 };
      expectObservable(
        healthSamples(pings, () => counter, scheduler, { ...options, referenceBytesPerSecond: 2400 }),
      ).toBe('a 24ms b 4ms c', {
        a: { ...base, atMs: 0, bandwidth: null, score: 1, category: 'Excellent' },
        // 30 B over the 25 ms since the baseline = 1200 B/s, half the reference.
        b: { ...base, atMs: 25, bandwidth: 0.5, score: 2.5 / 3, category: 'Excellent' },
        // The counter went back to 2: taken as a reset, the window restarts with nothing moved.
        c: { ...base, atMs: 30, bandwidth: null, score: 1, category: 'Excellent' },
      });
    });
  });

  it('rejects invalid options at call time and errors the stream on a negative RTT', () => {
    const scheduler = clockScheduler(new VirtualClock());
    const pings = of<PingSample>(rtt(-1));
    assert.throws(() => healthSamples(pings, () => 0, scheduler, { reliabilityWindow: 0 }), RangeError);
    assert.throws(() => healthSamples(pings, () => 0, scheduler, { bandwidthWindowMs: 0 }), RangeError);
    assert.throws(() => healthSamples(pings, () => 0, scheduler, { referenceBytesPerSecond: -1 }), RangeError);
    assert.throws(() => healthSamples(pings, () => 0, scheduler, { latency: { goodMs: 10, badMs: 5 } }), RangeError);
    let failure: unknown;
    healthSamples(pings, () => 0, scheduler).subscribe({ error: (error: unknown) => (failure = error) });
    assert.ok(failure instanceof RangeError);
  });

  it('every sample matches its definition over the windows, for any ping outcomes and traffic (property)', () => {
    const step = fc.record({
      gapMs: fc.integer({ min: 0, max: 30_000 }),
      rttMs: fc.option(fc.integer({ min: 0, max: 5_000 }), { nil: null }),
      moved: fc.nat({ max: 5_000_000 }),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 12 }), (steps, reliabilityWindow) => {
        const clock = new VirtualClock();
        const pings = new Subject<PingSample>();
        let counter = 0;
        const seen: HealthSample[] = [];
        const subscription = healthSamples(pings, () => counter, clockScheduler(clock), { reliabilityWindow }).subscribe((s) => seen.push(s));
        const answered: boolean[] = [];
        let latestRtt: number | null = null;
        for (const { gapMs, rttMs, moved } of steps) {
          clock.advance(gapMs);
          counter += moved;
          pings.next(rttMs === null ? { kind: 'lost' } : { kind: 'rtt', rttMs });
          answered.push(rttMs !== null);
          if (rttMs !== null) latestRtt = rttMs;
          const sample = seen[seen.length - 1];
          assert.ok(sample !== undefined);
          const window = answered.slice(-reliabilityWindow);
          assert.equal(sample.atMs, clock.now());
          assert.equal(sample.rttMs, rttMs);
          assert.equal(sample.latency, latestRtt === null ? null : latencyScore(latestRtt));
          assert.equal(sample.reliability, window.filter(Boolean).length / window.length);
          for (const s of [sample.latency, sample.reliability, sample.bandwidth, sample.score]) {
            if (s !== null) assert.ok(s >= 0 && s <= 1);
          }
          assert.equal(sample.score, overallScore([sample.latency, sample.reliability, sample.bandwidth]));
          assert.equal(sample.category, sample.score === null ? null : categorize(sample.score));
        }
        assert.equal(seen.length, steps.length);
        subscription.unsubscribe();
        assert.equal(clock.pendingTimers, 0);
      }),
    );
  });

  it('one slow or lost ping among good ones never produces a Degraded verdict (property, end to end)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 40 }),
        fc.nat(),
        fc.option(fc.integer({ min: 0, max: 60_000 }), { nil: null }),
        fc.array(fc.nat({ max: 10_000_000 }), { minLength: 41, maxLength: 41 }),
        fc.integer({ min: 2, max: 5 }),
        (goodRtts, at, slowRtt, moved, k) => {
          const clock = new VirtualClock();
          const pings = new Subject<PingSample>();
          let counter = 0;
          const verdicts: DegradedVerdict[] = [];
          const subscription = healthSamples(pings, () => counter, clockScheduler(clock))
            .pipe(
              map((s) => s.category),
              degradedVerdicts(k),
            )
            .subscribe((v) => verdicts.push(v));
          const outcomes: PingSample[] = goodRtts.map((rttMs) => ({ kind: 'rtt', rttMs }));
          outcomes.splice(at % (outcomes.length + 1), 0, slowRtt === null ? { kind: 'lost' } : { kind: 'rtt', rttMs: slowRtt });
          outcomes.forEach((outcome, i) => {
            clock.advance(10_000);
            counter += moved[i] ?? 0;
            pings.next(outcome);
          });
          subscription.unsubscribe();
          assert.deepEqual(verdicts, []);
        },
      ),
    );
  });
});

const categoryValues: Record<string, HealthCategory | null> = {
  e: 'Excellent',
  g: 'Good',
  f: 'Fair',
  p: 'Poor',
  c: 'Critical',
  n: null,
};
const categoryArb = fc.constantFrom<HealthCategory | null>(...CATEGORIES, null);

/** Feeds `categories` one by one through `degradedVerdicts(k)`; returns each verdict with the index of the sample that caused it. */
function verdictsOf(categories: readonly (HealthCategory | null)[], k: number): Array<{ index: number; verdict: DegradedVerdict }> {
  const source = new Subject<HealthCategory | null>();
  const out: Array<{ index: number; verdict: DegradedVerdict }> = [];
  let index = 0;
  const subscription = source.pipe(degradedVerdicts(k)).subscribe((verdict) => out.push({ index, verdict }));
  for (; index < categories.length; index++) source.next(categories[index] ?? null);
  subscription.unsubscribe();
  return out;
}

describe('degradedVerdicts', () => {
  it('k = 3: poor after 3 Poor-or-worse in a row, good after 3 Good-or-better; Fair breaks a streak, null is skipped (marbles)', () => {
    marbles().run(({ cold, expectObservable }) => {
      const source = cold('-g-p-p-f-p-c-n-p-g-g-g-|', categoryValues);
      expectObservable(source.pipe(degradedVerdicts(3))).toBe('---------------x-----y-|', { x: 'poor', y: 'good' });
    });
    marbles().run(({ cold, expectObservable }) => {
      const source = cold('pppggfgge|', categoryValues);
      expectObservable(source.pipe(degradedVerdicts(3))).toBe('--x-----y|', { x: 'poor', y: 'good' });
    });
    marbles().run(({ cold, expectObservable }) => {
      // While degraded, a Poor or Critical sample breaks the recovery streak too; errors pass through.
      const source = cold('pppggpggcggg#', categoryValues);
      expectObservable(source.pipe(degradedVerdicts(3))).toBe('--x--------y#', { x: 'poor', y: 'good' });
    });
  });

  it('rejects k that is not an integer >= 1', () => {
    assert.throws(() => degradedVerdicts(0), RangeError);
    assert.throws(() => degradedVerdicts(1.5), RangeError);
  });

  it('one slow ping (a single Poor or Critical sample among the others) never produces a verdict (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom<HealthCategory | null>('Excellent', 'Good', 'Fair', null), { maxLength: 50 }),
        fc.nat(),
        fc.constantFrom<HealthCategory>('Poor', 'Critical'),
        fc.integer({ min: 2, max: 6 }),
        (others, at, slow, k) => {
          const categories = [...others];
          categories.splice(at % (categories.length + 1), 0, slow);
          assert.deepEqual(verdictsOf(categories, k), []);
        },
      ),
    );
  });

  it('one good sample while degraded never brings the connection back (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 6 }),
        fc.array(fc.constantFrom<HealthCategory | null>('Poor', 'Critical', 'Fair', null), { maxLength: 50 }),
        fc.nat(),
        fc.constantFrom<HealthCategory>('Good', 'Excellent'),
        (k, others, at, good) => {
          const tail = [...others];
          tail.splice(at % (tail.length + 1), 0, good);
          const verdicts = verdictsOf([...Array<HealthCategory>(k).fill('Critical'), ...tail], k);
          assert.deepEqual(verdicts.map((v) => v.verdict), ['poor']);
        },
      ),
    );
  });

  it("verdicts alternate starting with 'poor', and each is emitted exactly when the last k known samples agree (property)", () => {
    fc.assert(
      fc.property(fc.array(categoryArb, { maxLength: 120 }), fc.integer({ min: 1, max: 5 }), (categories, k) => {
        const verdicts = verdictsOf(categories, k);
        verdicts.forEach((v, i) => assert.equal(v.verdict, i % 2 === 0 ? 'poor' : 'good'));
        // Oracle: the state before sample i follows the verdicts emitted before i; a verdict comes at i
        // iff the k most recent known samples up to i all point away from that state.
        let degraded = false;
        let next = 0;
        const known: HealthCategory[] = [];
        categories.forEach((category, i) => {
          if (category !== null) known.push(category);
          const last = known.slice(-k);
          const expected = category !== null && last.length === k && last.every(degraded ? isGood : isBad);
          const emitted = verdicts[next]?.index === i;
          assert.equal(emitted, expected, `sample ${i}`);
          if (emitted) {
            next++;
            degraded = !degraded;
          }
        });
        assert.equal(next, verdicts.length);
      }),
    );
  });
});

describe('criticalFor', () => {
  it('emits once a Critical run lasts the limit; any other category cancels; a spent run does not restart (marbles)', () => {
    const scheduler = marbles();
    scheduler.run(({ cold, expectObservable }) => {
      const source = cold('c-c-g-c-c-n--c-f-c--|', categoryValues);
      // c@0 cancelled by g@4; c@6 lasts to 11 (null@10 skipped); c@13 is the same, spent run; f@15
      // ends it; c@17's timer is cancelled by completion at 20.
      expectObservable(source.pipe(criticalFor(5, scheduler))).toBe('-----------x--------|', { x: undefined });
    });
  });

  it('works in real units: 60 s of Critical, a Fair 1 ms before the limit resets it (marbles)', () => {
    const scheduler = marbles();
    scheduler.run(({ cold, expectObservable }) => {
      const source = cold('c 59998ms f c 90s c', categoryValues);
      expectObservable(source.pipe(criticalFor(60_000, scheduler))).toBe('120s x', { x: undefined });
    });
  });

  it('rejects a negative limit, and leaves no timer behind on unsubscribe', () => {
    const clock = new VirtualClock();
    const scheduler = clockScheduler(clock);
    assert.throws(() => criticalFor(-1, scheduler), RangeError);
    const source = new Subject<HealthCategory | null>();
    let fired = 0;
    const subscription = source.pipe(criticalFor(1_000, scheduler)).subscribe(() => fired++);
    source.next('Critical');
    assert.equal(clock.pendingTimers, 1);
    subscription.unsubscribe();
    assert.equal(clock.pendingTimers, 0);
    clock.advance(5_000);
    assert.equal(fired, 0);
  });

  it('emits at start + limit for each Critical run that lasts the limit, and nowhere else (property)', () => {
    const step = fc.record({ gapMs: fc.integer({ min: 1, max: 100 }), category: categoryArb });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80 }), fc.integer({ min: 0, max: 300 }), (steps, whole) => {
        const limitMs = whole + 0.5; // samples come on whole ms: no ties between a sample and the timer
        const clock = new VirtualClock();
        const source = new Subject<HealthCategory | null>();
        const fired: number[] = [];
        const subscription = source.pipe(criticalFor(limitMs, clockScheduler(clock))).subscribe(() => fired.push(clock.now()));
        // Oracle: a run starts at a Critical sample after a non-Critical one (or the start) and ends
        // at the next non-Critical one; nulls do not count.
        const expected: number[] = [];
        let t = 0;
        let runStart: number | null = null;
        for (const { gapMs, category } of steps) {
          t += gapMs;
          clock.setTimeout(() => source.next(category), t);
          if (category === null) continue;
          if (category === 'Critical') runStart ??= t;
          else {
            if (runStart !== null && runStart + limitMs < t) expected.push(runStart + limitMs);
            runStart = null;
          }
        }
        if (runStart !== null) expected.push(runStart + limitMs);
        clock.advance(t + limitMs + 1);
        assert.deepEqual(fired, expected);
        subscription.unsubscribe();
        assert.equal(clock.pendingTimers, 0);
      }),
    );
  });
});

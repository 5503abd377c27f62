/**
 * The link monitor (streams/link-monitor.ts): pings, health, verdicts, the Critical limit, lost
 * pings and inactivity under one subscription. The main property is model-based: for any script
 * of pong delays, traffic and interval changes, it reports exactly what the operator chain it
 * replaced reports (pingSamples under switchMap, healthSamples, degradedVerdicts, criticalFor,
 * inactivity), at the same virtual times.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { map, merge, share, switchMap } from 'rxjs';
import type { Observable } from 'rxjs';
import { clockScheduler, VirtualClock } from '../streams/clock.js';
import type { TimerHandle } from '../streams/clock.js';
import { healthSamples } from '../streams/health.js';
import { inactivity } from '../streams/inactivity.js';
import { criticalFor, degradedVerdicts } from '../streams/hysteresis.js';
import { LatestValue } from '../streams/latest-value.js';
import { createLinkMonitor } from '../streams/link-monitor.js';
import type { HealthSettings, LinkMonitorEvent, MonitoredLink } from '../streams/link-monitor.js';
import { pingSamples } from '../streams/ping.js';

/** What one ping meets: its pong after `pongMs` (null: never), and other bytes received or moved meanwhile. */
interface Step {
  readonly pongMs: number | null;
  readonly otherBytesAtMs: number | null;
  readonly appBytes: number;
}

interface Script {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly inactivityTimeoutMs: number;
  readonly health: HealthSettings;
  readonly steps: readonly Step[];
  /** The interval changes to `to` at `atMs`, when set. */
  readonly change: { readonly atMs: number; readonly to: number } | null;
  readonly durationMs: number;
}

/** A link whose pongs and traffic follow the script, on `clock`. */
class ScriptedLink implements MonitoredLink {
  bytesRead = 0;
  appBytes = 0;
  pings = 0;
  /** The script's own timers (pongs, other traffic), cancelled by {@link ScriptedLink.stop}. */
  private readonly timers = new Set<TimerHandle>();
  constructor(
    private readonly clock: VirtualClock,
    private readonly steps: readonly Step[],
  ) {}

  ping(): Promise<void> {
    const step = this.steps[this.pings++ % this.steps.length] as Step;
    this.appBytes += step.appBytes;
    if (step.otherBytesAtMs !== null) this.after(step.otherBytesAtMs, () => (this.bytesRead += 100));
    return new Promise((resolve) => {
      if (step.pongMs === null) return;
      this.after(step.pongMs, () => {
        this.bytesRead += 12;
        resolve();
      });
    });
  }

  stop(): void {
    for (const timer of this.timers) this.clock.clearTimeout(timer);
    this.timers.clear();
  }

  private after(ms: number, fn: () => void): void {
    const timer = this.clock.setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }
}

type Stamped = { readonly atMs: number; readonly event: LinkMonitorEvent };

/** The operator chain the monitor replaced, wired the way the link actor used to wire it. */
function referenceChain(link: ScriptedLink, script: Script, intervals: Observable<number>, clock: VirtualClock): Observable<LinkMonitorEvent> {
  const scheduler = clockScheduler(clock);
  let receivedAtPing = link.bytesRead;
  const ping = (): Promise<void> => {
    receivedAtPing = link.bytesRead;
    return link.ping();
  };
  const samples = intervals.pipe(switchMap((intervalMs) => pingSamples(ping, { intervalMs, timeoutMs: script.timeoutMs, scheduler })));
  const scored = healthSamples(samples, () => link.appBytes, scheduler, {
    lostPingRttMs: script.timeoutMs,
    ...script.health.options,
  }).pipe(share());
  const categories = scored.pipe(map((sample) => sample.category));
  // share() feeds its subscribers in this order, like the link actor's four subscriptions did.
  return merge(
    scored.pipe(map((sample): LinkMonitorEvent => ({ type: 'sample', sample }))),
    categories.pipe(
      degradedVerdicts(script.health.degradedAfter),
      map((verdict): LinkMonitorEvent => ({ type: 'verdict', verdict })),
    ),
    categories.pipe(
      criticalFor(script.health.criticalLimitMs, scheduler),
      map((): LinkMonitorEvent => ({ type: 'critical' })),
    ),
    scored.pipe(
      switchMap((sample) => (sample.rttMs === null && link.bytesRead === receivedAtPing ? [{ type: 'pingLost' } as const] : [])),
    ),
    inactivity(() => link.bytesRead, { timeoutMs: script.inactivityTimeoutMs, scheduler }).pipe(
      map((): LinkMonitorEvent => ({ type: 'inactive' })),
    ),
  );
}

/** Runs the script against `build`; returns the events with their times and what is left running. */
async function run(
  script: Script,
  build: (link: ScriptedLink, intervals: Observable<number>, clock: VirtualClock) => Observable<LinkMonitorEvent>,
): Promise<{ events: Stamped[]; pendingTimers: number; followers: number; error: unknown }> {
  const clock = new VirtualClock();
  const link = new ScriptedLink(clock, script.steps);
  const interval = new LatestValue(script.intervalMs);
  const events: Stamped[] = [];
  let error: unknown;
  const subscription = build(link, interval.changes, clock).subscribe({
    next: (event) => events.push({ atMs: clock.now(), event }),
    error: (e: unknown) => (error = e),
  });
  if (script.change) {
    await clock.advanceAsync(script.change.atMs);
    interval.set(script.change.to);
    await clock.advanceAsync(script.durationMs - script.change.atMs);
  } else {
    await clock.advanceAsync(script.durationMs);
  }
  subscription.unsubscribe();
  link.stop();
  return { events, pendingTimers: clock.pendingTimers, followers: interval.followerCount, error };
}

const monitorOf = (script: Script) => (link: ScriptedLink, intervals: Observable<number>, clock: VirtualClock) =>
  createLinkMonitor({
    pingIntervalMs: intervals,
    pingTimeoutMs: script.timeoutMs,
    health: script.health,
    inactivityTimeoutMs: script.inactivityTimeoutMs,
    scheduler: clockScheduler(clock),
  })(link);

const stepArb: fc.Arbitrary<Step> = fc.record({
  pongMs: fc.option(fc.integer({ min: 1, max: 3_000 }), { nil: null, freq: 3 }),
  otherBytesAtMs: fc.option(fc.integer({ min: 0, max: 3_000 }), { nil: null }),
  appBytes: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20_000_000 })),
});

const scriptArb: fc.Arbitrary<Script> = fc
  .record({
    intervalMs: fc.integer({ min: 500, max: 4_000 }),
    timeoutMs: fc.integer({ min: 100, max: 2_500 }),
    inactivityTimeoutMs: fc.integer({ min: 2_000, max: 30_000 }),
    degradedAfter: fc.integer({ min: 1, max: 4 }),
    criticalLimitMs: fc.integer({ min: 0, max: 20_000 }),
    badMs: fc.integer({ min: 10, max: 2_000 }),
    steps: fc.array(stepArb, { minLength: 1, maxLength: 12 }),
    change: fc.option(fc.record({ atMs: fc.integer({ min: 0, max: 30_000 }), to: fc.integer({ min: 300, max: 6_000 }) }), { nil: null }),
  })
  .map((r) => ({
    intervalMs: r.intervalMs,
    timeoutMs: r.timeoutMs,
    inactivityTimeoutMs: r.inactivityTimeoutMs,
    health: {
      options: { latency: { goodMs: 5, badMs: r.badMs }, reliabilityWindow: 4, bandwidthWindowMs: 5_000 },
      degradedAfter: r.degradedAfter,
      criticalLimitMs: r.criticalLimitMs,
    },
    steps: r.steps,
    change: r.change,
    durationMs: 40_000,
  }));

describe('createLinkMonitor', () => {
  it('reports exactly what the operator chain it replaced reports, at the same times (model-based property)', async () => {
    await fc.assert(
      fc.asyncProperty(scriptArb, async (script) => {
        const actual = await run(script, monitorOf(script));
        const expected = await run(script, (link, intervals, clock) => referenceChain(link, script, intervals, clock));
        assert.deepStrictEqual(actual.events, expected.events);
        assert.ok(actual.events.some((e) => e.event.type === 'sample'), 'the script pings at least once');
        assert.equal(actual.error, undefined);
        assert.equal(actual.pendingTimers, 0, 'no timer is left after unsubscribe');
        assert.equal(actual.followers, 0, 'the interval is no longer followed');
      }),
      { numRuns: 60 },
    );
  });

  /** DESIGN §6 timings: ping every 10 s, lost after 5 s; every ping is lost. */
  const lostPings = (overrides: Partial<Script>): Script => ({
    intervalMs: 10_000,
    timeoutMs: 5_000,
    inactivityTimeoutMs: 60_000,
    health: { options: {}, degradedAfter: 3, criticalLimitMs: 60_000 },
    steps: [{ pongMs: null, otherBytesAtMs: null, appBytes: 0 }],
    change: null,
    durationMs: 6_000,
    ...overrides,
  });

  it('orders one lost ping on a silent link as sample, verdict, pingLost; then inactive', async () => {
    const script = lostPings({
      inactivityTimeoutMs: 12_000,
      health: { options: {}, degradedAfter: 1, criticalLimitMs: 60_000 },
      durationMs: 14_000,
    });
    const { events } = await run(script, monitorOf(script));
    assert.deepEqual(
      events.map(({ atMs, event }) => `${atMs} ${event.type === 'verdict' ? `verdict:${event.verdict}` : event.type}`),
      // Lost at 5 s: latency 0 (counted as the 5 s timeout), reliability 0: Critical, a poor verdict with k = 1.
      ['5000 sample', '5000 verdict:poor', '5000 pingLost', '12000 inactive'],
    );
  });

  it('does not report pingLost when other bytes arrived while the ping was out', async () => {
    const script = lostPings({ steps: [{ pongMs: null, otherBytesAtMs: 1_000, appBytes: 0 }] });
    const { events } = await run(script, monitorOf(script));
    assert.deepEqual(
      events.map(({ event }) => event.type),
      ['sample'],
    );
  });

  it('errors with the ping failure and leaves no timer', async () => {
    const clock = new VirtualClock();
    const failure = new Error('connection closed');
    const link: MonitoredLink = { bytesRead: 0, appBytes: 0, ping: () => Promise.reject(failure) };
    const interval = new LatestValue(1_000);
    let error: unknown;
    createLinkMonitor({
      pingIntervalMs: interval.changes,
      pingTimeoutMs: 500,
      health: { options: {}, degradedAfter: 3, criticalLimitMs: 60_000 },
      inactivityTimeoutMs: 60_000,
      scheduler: clockScheduler(clock),
    })(link).subscribe({ error: (e: unknown) => (error = e) });
    await clock.advanceAsync(10);
    assert.equal(error, failure);
    assert.equal(clock.pendingTimers, 0);
    assert.equal(interval.followerCount, 0);
  });

  it('rejects invalid settings with RangeError when built', () => {
    const clock = new VirtualClock();
    const base = {
      pingIntervalMs: new LatestValue(1_000).changes,
      pingTimeoutMs: 500,
      health: { options: {}, degradedAfter: 3, criticalLimitMs: 60_000 },
      inactivityTimeoutMs: 60_000,
      scheduler: clockScheduler(clock),
    };
    assert.throws(() => createLinkMonitor({ ...base, pingTimeoutMs: Number.NaN }), RangeError);
    assert.throws(() => createLinkMonitor({ ...base, inactivityTimeoutMs: 0 }), RangeError);
    assert.throws(() => createLinkMonitor({ ...base, health: { ...base.health, degradedAfter: 0 } }), RangeError);
    assert.throws(() => createLinkMonitor({ ...base, health: { ...base.health, criticalLimitMs: -1 } }), RangeError);
    assert.throws(() => createLinkMonitor({ ...base, health: { ...base.health, options: { reliabilityWindow: 0 } } }), RangeError);
    assert.equal(clock.pendingTimers, 0);
  });
});

/**
 * The injected clock and the ping pipeline, in virtual time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { interval, take, timer, toArray, firstValueFrom } from 'rxjs';
import { clockScheduler, VirtualClock } from '../streams/clock.js';
import type { Clock } from '../streams/clock.js';
import { inactivity } from '../streams/inactivity.js';
import { pingSamples } from '../streams/ping.js';
import type { PingSample } from '../streams/ping.js';

describe('VirtualClock', () => {
  it('runs timers in due order, ties in scheduling order, including timers scheduled while advancing', () => {
    const clock = new VirtualClock();
    const order: string[] = [];
    clock.setTimeout(() => order.push('b@20'), 20);
    clock.setTimeout(() => {
      order.push('a@10');
      clock.setTimeout(() => order.push('c@15'), 5);
    }, 10);
    clock.setTimeout(() => order.push('d@20'), 20);
    const cancelled = clock.setTimeout(() => order.push('never'), 5);
    clock.clearTimeout(cancelled);
    clock.advance(19);
    assert.deepEqual(order, ['a@10', 'c@15']);
    assert.equal(clock.now(), 19);
    clock.advance(1);
    assert.deepEqual(order, ['a@10', 'c@15', 'b@20', 'd@20']);
    assert.equal(clock.pendingTimers, 0);
  });

  it('fires every timer exactly once at its due time (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 10_000 }), { maxLength: 50 }), fc.integer({ min: 1, max: 20 }), (delays, steps) => {
        const clock = new VirtualClock();
        const fired: Array<{ due: number; at: number }> = [];
        for (const delay of delays) clock.setTimeout(() => fired.push({ due: delay, at: clock.now() }), delay);
        for (let i = 0; i < steps; i++) clock.advance(10_000 / steps + 1);
        assert.equal(fired.length, delays.length);
        for (const { due, at } of fired) assert.equal(at, due);
        assert.deepEqual(fired.map((f) => f.at), [...fired.map((f) => f.at)].sort((a, b) => a - b));
      }),
    );
  });
});

describe('clockScheduler', () => {
  it('drives RxJS interval and timer on the virtual clock, and unsubscribing cancels the timer', async () => {
    const clock = new VirtualClock();
    const scheduler = clockScheduler(clock);
    const values = firstValueFrom(interval(1_000, scheduler).pipe(take(3), toArray()));
    clock.advance(3_000);
    assert.deepEqual(await values, [0, 1, 2]);
    assert.equal(clock.pendingTimers, 0);

    const seen: number[] = [];
    const subscription = timer(500, 500, scheduler).subscribe((value) => seen.push(value));
    clock.advance(1_200);
    subscription.unsubscribe();
    assert.deepEqual(seen, [0, 1]);
    assert.equal(clock.pendingTimers, 0, 'no timer left after unsubscribe');
    assert.equal(scheduler.now(), clock.now());
  });
});

describe('pingSamples', () => {
  it('emits RTT samples measured on the clock, and a loss when no pong comes within the timeout', async () => {
    const clock = new VirtualClock();
    const scheduler = clockScheduler(clock);
    const answerAfter = [30, 12, null, 40]; // ms until the pong; null: never
    let call = 0;
    const ping = (): Promise<void> =>
      new Promise<void>((resolve) => {
        const after = answerAfter[call++];
        if (after !== null && after !== undefined) clock.setTimeout(resolve, after);
      });
    const samples: PingSample[] = [];
    const subscription = pingSamples(ping, { intervalMs: 1_000, timeoutMs: 500, scheduler }).subscribe((sample) =>
      samples.push(sample),
    );
    await clock.advanceAsync(3_100);
    subscription.unsubscribe();
    assert.deepEqual(samples, [
      { kind: 'rtt', rttMs: 30 },
      { kind: 'rtt', rttMs: 12 },
      { kind: 'lost' },
      { kind: 'rtt', rttMs: 40 },
    ]);
    assert.equal(clock.pendingTimers, 0, 'no timer is left once the pipeline is unsubscribed');
  });

  it('does not overlap pings when one takes longer than the interval', async () => {
    const clock = new VirtualClock();
    const scheduler = clockScheduler(clock);
    let inFlight = 0;
    let maxInFlight = 0;
    const ping = (): Promise<void> =>
      new Promise<void>((resolve) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        clock.setTimeout(() => {
          inFlight--;
          resolve();
        }, 2_500);
      });
    const subscription = pingSamples(ping, { intervalMs: 1_000, timeoutMs: 5_000, scheduler }).subscribe();
    await clock.advanceAsync(10_000);
    subscription.unsubscribe();
    assert.equal(maxInFlight, 1);
  });

  it('keeps its phase after a stall: ticks stay at multiples of the interval from the start', async () => {
    const clock = new VirtualClock();
    // A blocked event loop: every timer due in [2_500, 3_200) runs at 3_200 instead.
    const stalled: Clock = {
      now: () => clock.now(),
      setTimeout: (fn, ms) => {
        const due = clock.now() + ms;
        return clock.setTimeout(fn, due >= 2_500 && due < 3_200 ? 3_200 - clock.now() : ms);
      },
      clearTimeout: (handle) => clock.clearTimeout(handle),
    };
    const sentAt: number[] = [];
    const ping = (): Promise<void> =>
      new Promise<void>((resolve) => {
        sentAt.push(clock.now());
        clock.setTimeout(resolve, 10);
      });
    const subscription = pingSamples(ping, { intervalMs: 1_000, timeoutMs: 500, scheduler: clockScheduler(stalled) }).subscribe();
    await clock.advanceAsync(5_500);
    subscription.unsubscribe();
    assert.deepEqual(sentAt, [0, 1_000, 2_000, 3_200, 4_000, 5_000]);
    assert.equal(clock.pendingTimers, 0);
  });

  it('skips ticks missed entirely and rejects a bad interval', async () => {
    const clock = new VirtualClock();
    let late = true;
    // The second tick (due at 1_000) runs at 3_500: ticks at 2_000 and 3_000 are gone.
    const stalled: Clock = {
      now: () => clock.now(),
      setTimeout: (fn, ms) => {
        const delay = late && clock.now() + ms === 1_000 ? 3_500 - clock.now() : ms;
        if (delay !== ms) late = false;
        return clock.setTimeout(fn, delay);
      },
      clearTimeout: (handle) => clock.clearTimeout(handle),
    };
    const sentAt: number[] = [];
    const ping = (): Promise<void> => {
      sentAt.push(clock.now());
      return Promise.resolve();
    };
    const subscription = pingSamples(ping, { intervalMs: 1_000, timeoutMs: 500, scheduler: clockScheduler(stalled) }).subscribe();
    await clock.advanceAsync(4_500);
    subscription.unsubscribe();
    assert.deepEqual(sentAt, [0, 3_500, 4_000]);
    assert.throws(() => pingSamples(ping, { intervalMs: 0, timeoutMs: 500, scheduler: clockScheduler(clock) }), RangeError);
  });

  it('ends with the error when ping throws at once, leaving no timer', async () => {
    const clock = new VirtualClock();
    let failure: unknown;
    pingSamples(
      () => {
        throw new Error('no control stream');
      },
      { intervalMs: 1_000, timeoutMs: 500, scheduler: clockScheduler(clock) },
    ).subscribe({ error: (error: unknown) => (failure = error) });
    await clock.advanceAsync(0);
    assert.equal((failure as Error).message, 'no control stream');
    assert.equal(clock.pendingTimers, 0);
  });

  it('ends with the error when the connection closes', async () => {
    const clock = new VirtualClock();
    const scheduler = clockScheduler(clock);
    let failure: unknown;
    pingSamples(() => Promise.reject(new Error('closed')), { intervalMs: 1_000, timeoutMs: 500, scheduler }).subscribe({
      error: (error: unknown) => (failure = error),
    });
    await clock.advanceAsync(0);
    assert.equal((failure as Error).message, 'closed');
    assert.equal(clock.pendingTimers, 0);
  });
});

describe('inactivity', () => {
  it('fires once the counter stays still for the timeout, not while it moves', () => {
    const clock = new VirtualClock();
    const scheduler = clockScheduler(clock);
    let bytes = 0;
    let firedAt: number | undefined;
    const subscription = inactivity(() => bytes, { timeoutMs: 60_000, scheduler }).subscribe(() => (firedAt = clock.now()));
    for (let t = 0; t < 300_000; t += 10_000) {
      bytes += 100; // traffic every 10 s
      clock.advance(10_000);
    }
    assert.equal(firedAt, undefined, 'steady traffic is never inactive');
    const lastByteAt = clock.now();
    clock.advance(120_000);
    assert.ok(firedAt !== undefined, 'silence is detected');
    assert.ok(firedAt - lastByteAt >= 60_000 && firedAt - lastByteAt <= 60_000 + 15_000, `detected after ${firedAt - lastByteAt} ms`);
    assert.equal(clock.pendingTimers, 0, 'completes and leaves no timer');
    subscription.unsubscribe();
  });

  it('detects silence within [timeout, timeout + check period] for any traffic pattern (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 59_000 }), { maxLength: 30 }), fc.integer({ min: 1_000, max: 60_000 }), (gaps, timeoutMs) => {
        const clock = new VirtualClock();
        let bytes = 0;
        let firedAt: number | undefined;
        const checkEveryMs = Math.ceil(timeoutMs / 4);
        const subscription = inactivity(() => bytes, { timeoutMs, checkEveryMs, scheduler: clockScheduler(clock) }).subscribe(
          () => (firedAt = clock.now()),
        );
        let lastByteAt = 0;
        for (const gap of gaps) {
          if (gap >= timeoutMs || firedAt !== undefined) break;
          clock.advance(gap);
          bytes++;
          lastByteAt = clock.now();
        }
        clock.advance(timeoutMs * 3);
        subscription.unsubscribe();
        assert.ok(firedAt !== undefined);
        assert.ok(firedAt - lastByteAt >= timeoutMs, 'never early');
        assert.ok(firedAt - lastByteAt <= timeoutMs + checkEveryMs, 'never later than one check period');
        assert.equal(clock.pendingTimers, 0);
      }),
    );
  });
});

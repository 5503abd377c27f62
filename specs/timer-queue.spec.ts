/**
 * The production clock's timer queue (streams/timer-queue.ts), on a fake host: model-based against
 * the rules of setTimeout (each timer runs once, not before its due time less 1 ms, in due order;
 * cleared timers never run), plus the slice limit and the one-host-timer invariant.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { clockScheduler } from '../streams/clock.js';
import { TimerQueue } from '../streams/timer-queue.js';
import type { TimerHost } from '../streams/timer-queue.js';

/** Node's timers in virtual time: whole-ms host timers, immediates, and callbacks that cost time. */
class FakeHost implements TimerHost {
  time = 0;
  private nextId = 1;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  readonly immediates = new Map<number, () => void>();
  /** Socket events ready: they run before immediates, as Node's poll phase comes before check. */
  readonly io: (() => void)[] = [];
  /** Host callbacks run so far. */
  turns = 0;

  now(): number {
    return this.time;
  }

  setTimer(fn: () => void, ms: number): unknown {
    assert.ok(Number.isInteger(ms) && ms >= 1, `host timer of ${ms} ms`);
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, fn });
    return id;
  }

  clearTimer(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  setImmediate(fn: () => void): unknown {
    const id = this.nextId++;
    this.immediates.set(id, fn);
    return id;
  }

  clearImmediate(handle: unknown): void {
    this.immediates.delete(handle as number);
  }

  /** Armed host callbacks (timers + immediates). */
  get armed(): number {
    return this.timers.size + this.immediates.size;
  }

  /**
   * Runs one macrotask: the oldest immediate, else the earliest host timer due by `until` (time
   * moves to it). Returns false when nothing is due by `until`.
   */
  turn(until: number): boolean {
    const ready = this.io.shift();
    if (ready) {
      ready();
      return true;
    }
    const [immediateId, immediate] = this.immediates.entries().next().value ?? [];
    if (immediateId !== undefined && immediate) {
      this.immediates.delete(immediateId);
      this.turns++;
      immediate();
      return true;
    }
    let earliest: [number, { at: number; fn: () => void }] | undefined;
    for (const entry of this.timers) if (!earliest || entry[1].at < earliest[1].at) earliest = entry;
    if (!earliest || earliest[1].at > until) return false;
    this.timers.delete(earliest[0]);
    this.time = Math.max(this.time, earliest[1].at);
    this.turns++;
    earliest[1].fn();
    return true;
  }

  /** Runs every macrotask due within `ms`, then moves time to the end of that span. */
  advance(ms: number): void {
    const until = this.time + ms;
    while (this.turn(until)) assert.ok(this.armed <= 1, `${this.armed} host callbacks armed`);
    this.time = Math.max(this.time, until);
  }
}

type Op =
  | { kind: 'schedule'; delayMs: number; costMs: number; nested: number | null }
  | { kind: 'clear'; pick: number }
  | { kind: 'reschedule'; pick: number; delayMs: number }
  | { kind: 'advance'; ms: number };

const delayArb = fc.oneof(fc.constant(0), fc.double({ min: 0, max: 40, noNaN: true }), fc.integer({ min: 0, max: 40 }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('schedule' as const),
      delayMs: delayArb,
      costMs: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.4, noNaN: true })),
      nested: fc.option(delayArb, { nil: null }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('clear' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('reschedule' as const), pick: fc.nat(), delayMs: delayArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.double({ min: 0, max: 30, noNaN: true }) }) },
);

/** What the model knows of one timer. */
interface ModelTimer {
  readonly name: number;
  due: number;
  seq: number;
  pending: boolean;
  runs: number;
  handle: object | number;
  costMs: number;
  nested: number | null;
}

describe('TimerQueue', () => {
  it('runs each timer once, in due order, not before due − 1 ms, never a cleared one, holding one host callback (model-based property)', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), fc.constantFrom(0, 0.5, 2), (ops, sliceMs) => {
        const host = new FakeHost();
        const queue = new TimerQueue({ host, sliceMs });
        const timers: ModelTimer[] = [];
        let seq = 0;
        let names = 0;
        /** Per host turn: the callbacks' costs, to check the slice limit. */
        let turnCost = 0;
        let turnCalls = 0;
        let turnsSeen = -1;
        let turnStartSeq = 0;

        const checkRun = (timer: ModelTimer): void => {
          if (host.turns !== turnsSeen) {
            turnsSeen = host.turns;
            turnCost = 0;
            turnCalls = 0;
            turnStartSeq = seq;
          }
          assert.ok(timer.pending, `timer ${timer.name} ran while not pending (ran ${timer.runs}×)`);
          assert.ok(host.time >= timer.due - 1 - 1e-9, `timer ${timer.name} ran at ${host.time}, due ${timer.due}`);
          // Due order: no timer pending from before this turn is due earlier (or as early and older).
          for (const other of timers) {
            if (other === timer || !other.pending || other.seq > turnStartSeq) continue;
            const earlier = other.due < timer.due || (other.due === timer.due && other.seq < timer.seq);
            assert.ok(!earlier, `timer ${timer.name} (due ${timer.due}) ran before ${other.name} (due ${other.due})`);
          }
          // The slice: another callback runs in the same turn only while the turn's cost < sliceMs.
          if (turnCalls > 0) assert.ok(turnCost < sliceMs, `callback ${turnCalls + 1} of a turn after ${turnCost} ms (slice ${sliceMs})`);
          timer.pending = false;
          timer.runs++;
          turnCalls++;
          turnCost += timer.costMs;
          host.time += timer.costMs;
          if (timer.nested !== null) schedule(timer.nested, 0, null);
        };

        const schedule = (delayMs: number, costMs: number, nested: number | null): void => {
          const timer: ModelTimer = { name: ++names, due: host.time + delayMs, seq: ++seq, pending: true, runs: 0, handle: 0, costMs, nested };
          timer.handle = queue.setTimeout(() => checkRun(timer), delayMs);
          timers.push(timer);
        };

        for (const op of ops) {
          switch (op.kind) {
            case 'schedule':
              schedule(op.delayMs, op.costMs, op.nested);
              break;
            case 'clear': {
              const timer = timers[op.pick % Math.max(1, timers.length)];
              if (!timer) break;
              queue.clearTimeout(timer.handle);
              timer.pending = false;
              break;
            }
            case 'reschedule': {
              const timer = timers[op.pick % Math.max(1, timers.length)];
              if (!timer) break;
              const handle = queue.reschedule(timer.handle, () => checkRun(timer), op.delayMs);
              assert.equal(handle, timer.handle, 'a handle of the queue is reused');
              timer.due = host.time + op.delayMs;
              timer.seq = ++seq;
              timer.pending = true;
              break;
            }
            case 'advance':
              host.advance(op.ms);
              break;
          }
          assert.ok(host.armed <= 1, `${host.armed} host callbacks armed`);
          assert.equal(queue.pendingTimers, timers.filter((timer) => timer.pending).length);
        }
        // Drain: every pending timer runs, within 1 ms of its due time when callbacks cost nothing.
        for (let i = 0; i < 10_000 && queue.pendingTimers > 0; i++) host.advance(50);
        for (const timer of timers) assert.ok(!timer.pending, `timer ${timer.name} never ran`);
        assert.equal(queue.pendingTimers, 0);
        assert.equal(host.armed, 0, 'nothing armed once the queue is empty');
      }),
      { numRuns: 300 },
    );
  });

  it('is on time: with free callbacks each timer runs within 1 ms after its due time', () => {
    fc.assert(
      fc.property(fc.array(delayArb, { minLength: 1, maxLength: 60 }), (delays) => {
        const host = new FakeHost();
        const queue = new TimerQueue({ host });
        const lateness: number[] = [];
        for (const delay of delays) {
          const due = host.time + delay;
          queue.setTimeout(() => lateness.push(host.time - due), delay);
          host.advance(0.25);
        }
        while (host.turn(Infinity));
        assert.equal(lateness.length, delays.length);
        for (const late of lateness) assert.ok(late >= -1 && late <= 1, `ran ${late} ms after due`);
      }),
    );
  });

  it('yields between slices: a burst of due timers takes one turn per slice, and a host event queued meanwhile runs between them', () => {
    const host = new FakeHost();
    const queue = new TimerQueue({ host, sliceMs: 0.5 });
    const order: string[] = [];
    for (let i = 0; i < 100; i++) {
      queue.setTimeout(() => {
        order.push(`t${i}`);
        host.time += 0.1;
      }, 10);
    }
    host.time = 50; // a stall: all 100 are overdue
    assert.ok(host.turn(Infinity));
    host.io.push(() => order.push('io'));
    while (host.turn(Infinity));
    // 0.1 ms each, slice 0.5 ms: 5 per turn, 20 turns; the queued event ran after the first slice.
    assert.equal(order.indexOf('io'), 5);
    assert.equal(order.length, 101);
    assert.equal(host.turns, 20); // host callbacks of the queue (the event is not one)
  });

  it('does not starve behind busy I/O: a continuation may run as long as the I/O that ran since the last slice', () => {
    const host = new FakeHost();
    const queue = new TimerQueue({ host, sliceMs: 0.5 });
    let ran = 0;
    for (let i = 0; i < 100; i++) {
      queue.setTimeout(() => {
        ran++;
        host.time += 0.1;
      }, 10);
    }
    host.time = 50;
    host.turn(Infinity);
    assert.equal(ran, 5);
    host.io.push(() => {
      host.time += 2; // a burst of socket reads
    });
    host.turn(Infinity); // the I/O
    host.turn(Infinity); // the continuation: 2 ms of timers, not 0.5
    assert.equal(ran, 25);
    host.turn(Infinity); // nothing else ran in between: back to one slice
    assert.equal(ran, 30);
  });

  it('runs a timer scheduled with delay 0 by a running callback on the next turn, not in the same one', () => {
    const host = new FakeHost();
    const queue = new TimerQueue({ host, sliceMs: 100 });
    const order: string[] = [];
    queue.setTimeout(() => {
      order.push('a');
      queue.setTimeout(() => order.push('c'), 0);
    }, 5);
    queue.setTimeout(() => order.push('b'), 5);
    host.turn(Infinity);
    assert.deepEqual(order, ['a', 'b']);
    host.turn(Infinity);
    assert.deepEqual(order, ['a', 'b', 'c']);
  });

  it('re-arms after a callback throws: the error propagates to the host, the other timers still run', () => {
    const host = new FakeHost();
    const queue = new TimerQueue({ host });
    const ran: string[] = [];
    queue.setTimeout(() => {
      throw new Error('boom');
    }, 5);
    queue.setTimeout(() => ran.push('later'), 5);
    assert.throws(() => host.turn(Infinity), /boom/);
    assert.equal(host.armed, 1);
    while (host.turn(Infinity));
    assert.deepEqual(ran, ['later']);
    assert.equal(host.armed, 0);
  });

  it('lets an RxJS action reschedule forever on one entry (no handle per tick), and cancels it on unsubscribe', () => {
    const host = new FakeHost();
    const queue = new TimerQueue({ host });
    const handles = new Set<unknown>();
    const setTimeoutOf = queue.setTimeout.bind(queue);
    const rescheduleOf = queue.reschedule.bind(queue);
    queue.setTimeout = (fn, ms) => {
      const handle = setTimeoutOf(fn, ms);
      handles.add(handle);
      return handle;
    };
    queue.reschedule = (handle, fn, ms) => {
      const next = rescheduleOf(handle, fn, ms);
      handles.add(next);
      return next;
    };
    let ticks = 0;
    const subscription = clockScheduler(queue).schedule(function () {
      ticks++;
      this.schedule(undefined, 10);
    }, 10);
    for (let i = 0; i < 50; i++) host.turn(Infinity);
    assert.equal(ticks, 50);
    assert.equal(handles.size, 1);
    subscription.unsubscribe();
    assert.equal(queue.pendingTimers, 0);
    assert.equal(host.armed, 0);
  });

  it('rejects a slice that is negative or not finite', () => {
    assert.throws(() => new TimerQueue({ sliceMs: -1 }), RangeError);
    assert.throws(() => new TimerQueue({ sliceMs: Number.NaN }), RangeError);
  });

  it('holds no Node timer once its timers ran or were cleared (real host)', async () => {
    const queue = new TimerQueue();
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const handle = queue.setTimeout(() => assert.fail('cleared timer ran'), 60_000);
    assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, timersBefore + 1);
    queue.clearTimeout(handle);
    assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, timersBefore);
    await new Promise<void>((resolve) => queue.setTimeout(resolve, 0));
    assert.equal(queue.pendingTimers, 0);
    assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, timersBefore);
  });
});

/**
 * The metrics pipeline's standalone parts (issue 5 item 4): RateMeter and LatencyWindow in virtual
 * time, sampleEvery on RxJS schedulers, and the Prometheus text exposition format 0.0.4.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { take } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { clockScheduler, VirtualClock } from '../streams/clock.js';
import { LatencyWindow, RateMeter, sampleEvery } from '../streams/metrics.js';
import { renderPrometheus } from '../streams/prometheus.js';
import type { MetricFamily } from '../streams/prometheus.js';

describe('RateMeter', () => {
  it('reports a steady rate once the window is full, and 0 after a window of silence', () => {
    let now = 0;
    const meter = new RateMeter(1_000, () => now);
    assert.equal(meter.perSecond(), 0);
    // 100 events per second: one every 10 ms, from t = 0 to t = 2 990.
    for (; now < 3_000; now += 10) meter.mark();
    now = 2_990;
    // The window [1 990, 2 990] holds 101 marks; the estimate lies within a bucket (10 marks) of it.
    assert.ok(Math.abs(meter.perSecond() - 100) <= 10, `rate ${meter.perSecond()}`);
    now = 2_999;
    assert.ok(Math.abs(meter.perSecond() - 100) <= 10, `rate ${meter.perSecond()}`);
    now = 2_990 + 1_200;
    assert.equal(meter.perSecond(), 0);
  });

  it('counts weighted marks and scales by the window length in seconds', () => {
    let now = 0;
    const meter = new RateMeter(10_000, () => now);
    meter.mark(30);
    now = 5_000;
    meter.mark(20);
    meter.mark(0);
    now = 9_999;
    assert.equal(meter.perSecond(), 5); // 50 events over 10 s
    now = 10_500; // half of the oldest bucket [0, 1 000) is still inside the window
    assert.equal(meter.perSecond(), (15 + 20) / 10);
    now = 11_000;
    assert.equal(meter.perSecond(), 2);
    now = 15_000 + 1_000;
    assert.equal(meter.perSecond(), 0);
  });

  it('treats time that goes backwards as standing still', () => {
    let now = 5_000;
    const meter = new RateMeter(1_000, () => now);
    meter.mark(10);
    now = 1_000;
    meter.mark(10);
    assert.equal(meter.perSecond(), 20);
  });

  it('keeps memory bounded (11 buckets) over a million marks and stays exact', () => {
    let now = 0;
    const meter = new RateMeter(60_000, () => now);
    for (let i = 0; i < 1_000_000; i++) {
      now = i * 7; // 1e6 marks over ~1.9 hours
      meter.mark();
    }
    assert.equal(meter.bucketCount, 11);
    // Marks every 7 ms: 60 s hold about 8 571 of them, i.e. ~142.86 per second.
    assert.ok(Math.abs(meter.perSecond() - 60_000 / 7 / 60) < 1_000 / 7 / 60 + 1e-9, `rate ${meter.perSecond()}`);
  });

  it('lies between the exact counts over windowMs ∓ one bucket (property, oracle)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1_000, 5_000, 60_000),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: 0, max: 5 }), fc.boolean()), { maxLength: 200 }),
        (windowMs, steps) => {
          let now = 0;
          const meter = new RateMeter(windowMs, () => now);
          const marks: Array<{ at: number; count: number }> = [];
          const bucketMs = windowMs / 10;
          for (const [gap, count, query] of steps) {
            now += gap;
            if (query) {
              const countIn = (from: number): number => marks.filter((m) => m.at >= from && m.at <= now).reduce((s, m) => s + m.count, 0);
              const low = countIn(now - windowMs + bucketMs) / (windowMs / 1000);
              const high = countIn(now - windowMs - bucketMs) / (windowMs / 1000);
              const rate = meter.perSecond();
              assert.ok(rate >= low - 1e-9 && rate <= high + 1e-9, `rate ${rate} not in [${low}, ${high}]`);
            } else {
              meter.mark(count);
              marks.push({ at: now, count });
            }
          }
        },
      ),
    );
  });

  it('rejects a window or count that is not a finite positive number', () => {
    for (const bad of [0, -1, NaN, Infinity]) assert.throws(() => new RateMeter(bad, () => 0), RangeError);
    const meter = new RateMeter(1_000, () => 0);
    for (const bad of [-1, NaN, Infinity]) assert.throws(() => meter.mark(bad), RangeError);
  });
});

describe('LatencyWindow', () => {
  it('is empty (null figures) before any sample', () => {
    const window = new LatencyWindow();
    assert.equal(window.count, 0);
    assert.equal(window.average(), null);
    assert.equal(window.p99(), null);
  });

  it('uses the nearest rank for p99', () => {
    const ranks = (n: number): number | null => {
      const window = new LatencyWindow(n);
      for (let i = 1; i <= n; i++) window.add(n + 1 - i); // descending order: the window must sort
      return window.p99();
    };
    assert.equal(ranks(1), 1);
    assert.equal(ranks(100), 99); // ceil(99) = 99th
    assert.equal(ranks(101), 100); // ceil(99.99) = 100th
    assert.equal(ranks(200), 198);
    assert.equal(ranks(1024), 1014); // ceil(1013.76)
  });

  it('evicts the oldest samples once full', () => {
    const window = new LatencyWindow(3);
    for (const ms of [1, 2, 3]) window.add(ms);
    assert.equal(window.average(), 2);
    window.add(100);
    assert.equal(window.count, 3);
    assert.equal(window.average(), 35);
    assert.equal(window.p99(), 100);
    for (const ms of [0, 0, 0]) window.add(ms);
    assert.equal(window.average(), 0);
    assert.equal(window.p99(), 0);
  });

  it('matches a sorted-array oracle over the last maxSamples samples (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { maxLength: 300 }),
        (maxSamples, samples) => {
          const window = new LatencyWindow(maxSamples);
          for (const ms of samples) window.add(ms);
          const kept = samples.slice(-maxSamples);
          assert.equal(window.count, kept.length);
          if (kept.length === 0) {
            assert.equal(window.average(), null);
            assert.equal(window.p99(), null);
            return;
          }
          const sorted = [...kept].sort((a, b) => a - b);
          assert.equal(window.p99(), sorted[Math.ceil(0.99 * sorted.length) - 1]);
          const mean = kept.reduce((s, x) => s + x, 0) / kept.length;
          const average = window.average();
          assert.ok(average !== null && Math.abs(average - mean) <= 1e-9 * Math.max(1, mean), `${average} vs ${mean}`);
          assert.ok(average >= (sorted[0] ?? 0) - 1e-9 && average <= (sorted.at(-1) ?? 0) + 1e-9);
        },
      ),
    );
  });

  it('rejects bad sizes and samples', () => {
    for (const bad of [0, -1, 1.5, NaN]) assert.throws(() => new LatencyWindow(bad), RangeError);
    const window = new LatencyWindow();
    for (const bad of [-1, NaN, Infinity]) assert.throws(() => window.add(bad), RangeError);
    assert.equal(window.count, 0);
  });
});

describe('sampleEvery', () => {
  const marbles = (): TestScheduler => new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));

  it('emits at once, then every interval, until unsubscribed', () => {
    const scheduler = marbles();
    scheduler.run(({ expectObservable }) => {
      let n = 0;
      expectObservable(sampleEvery(10, () => ++n, scheduler), '^ 35ms !').toBe('a 9ms b 9ms c 9ms d', { a: 1, b: 2, c: 3, d: 4 });
    });
  });

  it('ends with the error that sample() throws', () => {
    const scheduler = marbles();
    const failure = new Error('snapshot failed');
    scheduler.run(({ expectObservable }) => {
      let n = 0;
      const sample = (): number => {
        if (++n === 3) throw failure;
        return n;
      };
      expectObservable(sampleEvery(5, sample, scheduler)).toBe('a 4ms b 4ms #', { a: 1, b: 2 }, failure);
    });
  });

  it('completes with take() and leaves no timer behind on the injected clock', () => {
    const clock = new VirtualClock();
    const seen: Array<[number, number]> = [];
    let done = false;
    sampleEvery(1_000, () => clock.now(), clockScheduler(clock))
      .pipe(take(4))
      .subscribe({ next: (at) => seen.push([at, clock.now()]), complete: () => (done = true) });
    clock.advance(10_000);
    assert.deepEqual(seen, [
      [0, 0],
      [1_000, 1_000],
      [2_000, 2_000],
      [3_000, 3_000],
    ]);
    assert.ok(done);
    assert.equal(clock.pendingTimers, 0);

    const early = sampleEvery(1_000, () => 0, clockScheduler(clock)).pipe(take(1)).subscribe();
    assert.ok(early.closed);
    assert.equal(clock.pendingTimers, 0);
  });

  it('rejects an interval that is not a finite positive number', () => {
    const scheduler = clockScheduler(new VirtualClock());
    for (const bad of [0, -5, NaN, Infinity]) assert.throws(() => sampleEvery(bad, () => 0, scheduler), RangeError);
  });
});

/** What the hand-written parser reads back: labels as ordered entries. */
interface ParsedFamily {
  name: string;
  help: string;
  type: string;
  samples: Array<{ labels: Array<[string, string]>; value: number }>;
}

/**
 * A small strict parser of the subset of the text format 0.0.4 that renderPrometheus writes:
 * HELP, TYPE, then samples of that family, every line ending in a line feed.
 */
function parsePrometheus(text: string): ParsedFamily[] {
  assert.ok(text === '' || text.endsWith('\n'), 'the last line ends with a line feed');
  const lines = text.split('\n').slice(0, -1);
  const families: ParsedFamily[] = [];
  const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
  for (let i = 0; i < lines.length; ) {
    const helpLine = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/s.exec(lines[i++] ?? '');
    assert.ok(helpLine, `HELP line expected at line ${i}`);
    const [, name = '', escapedHelp = ''] = helpLine;
    const typeLine = /^# TYPE (\S+) (counter|gauge)$/.exec(lines[i++] ?? '');
    assert.ok(typeLine && typeLine[1] === name, `TYPE line of ${name} expected at line ${i}`);
    const family: ParsedFamily = { name, help: unescape(escapedHelp, false), type: typeLine[2] ?? '', samples: [] };
    families.push(family);
    while (i < lines.length && !(lines[i] ?? '').startsWith('#')) {
      const line = lines[i++] ?? '';
      const sampleName = metricName.exec(line)?.[0];
      assert.equal(sampleName, name);
      let at = name.length;
      const labels: Array<[string, string]> = [];
      if (line[at] === '{') {
        at++;
        while (line[at] !== '}') {
          if (labels.length > 0) assert.equal(line[at++], ',');
          const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(at))?.[0];
          assert.ok(labelName, `label name expected in ${JSON.stringify(line)}`);
          at += labelName.length;
          assert.equal(line.slice(at, at + 2), '="');
          at += 2;
          let raw = '';
          while (line[at] !== '"') {
            const c = line[at++];
            assert.ok(c !== undefined, 'unterminated label value');
            raw += c;
            if (c === '\\') raw += line[at++] ?? '';
          }
          at++;
          labels.push([labelName, unescape(raw, true)]);
        }
        at++;
      }
      assert.equal(line[at++], ' ');
      family.samples.push({ labels, value: parseGoFloat(line.slice(at)) });
    }
  }
  return families;
}

function unescape(text: string, quotes: boolean): string {
  return text.replace(/\\(.?)/g, (_, c: string) => {
    if (c === 'n') return '\n';
    if (c === '\\' || (quotes && c === '"')) return c;
    throw new Error(`bad escape \\${c}`);
  });
}

/** Go's ParseFloat syntax as far as the renderer uses it. */
function parseGoFloat(text: string): number {
  if (text === 'NaN') return NaN;
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  assert.match(text, /^-?\d+(\.\d+)?(e[+-]\d{2,3})?$/);
  return Number(text);
}

describe('renderPrometheus', () => {
  it('renders a fixed example exactly', () => {
    const families: MetricFamily[] = [
      {
        name: 'peerwarden_dials_total',
        help: 'Outbound dials started.',
        type: 'counter',
        samples: [{ value: 1027 }],
      },
      {
        name: 'peerwarden_connections',
        help: 'Connections by state and direction.',
        type: 'gauge',
        samples: [
          { labels: { state: 'connected', direction: 'outbound' }, value: 3 },
          { labels: { state: 'connected', direction: 'inbound' }, value: 0 },
        ],
      },
      { name: 'peerwarden_latency_p99_ms', help: 'p99 ping RTT, ms.', type: 'gauge', samples: [{ value: 12.5 }] },
      { name: 'peerwarden_idle', help: 'No samples.', type: 'gauge', samples: [] },
    ];
    assert.equal(
      renderPrometheus(families),
      [
        '# HELP peerwarden_dials_total Outbound dials started.',
        '# TYPE peerwarden_dials_total counter',
        'peerwarden_dials_total 1027',
        '# HELP peerwarden_connections Connections by state and direction.',
        '# TYPE peerwarden_connections gauge',
        'peerwarden_connections{state="connected",direction="outbound"} 3',
        'peerwarden_connections{state="connected",direction="inbound"} 0',
        '# HELP peerwarden_latency_p99_ms p99 ping RTT, ms.',
        '# TYPE peerwarden_latency_p99_ms gauge',
        'peerwarden_latency_p99_ms 12.5',
        '# HELP peerwarden_idle No samples.',
        '# TYPE peerwarden_idle gauge',
        '',
      ].join('\n'),
    );
    assert.equal(renderPrometheus([]), '');
  });

  it('escapes \\ and line feed in HELP, and \\, " and line feed in label values', () => {
    const text = renderPrometheus([
      {
        name: 'msdos_file_access_time_seconds',
        help: 'Path C:\\DIR, "quoted",\nsecond line',
        type: 'gauge',
        samples: [{ labels: { path: 'C:\\DIR\\FILE.TXT', error: 'Cannot find file:\n"FILE.TXT"' }, value: 1.458255915e9 }],
      },
    ]);
    assert.equal(
      text,
      '# HELP msdos_file_access_time_seconds Path C:\\\\DIR, "quoted",\\nsecond line\n' +
        '# TYPE msdos_file_access_time_seconds gauge\n' +
        'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1458255915\n',
    );
  });

  it('validates metric and label names, types and uniqueness with RangeError', () => {
    const family = (name: string, labels?: Record<string, string>): MetricFamily => ({
      name,
      help: '',
      type: 'gauge',
      samples: [labels ? { labels, value: 1 } : { value: 1 }],
    });
    for (const name of ['', '0abc', 'a-b', 'a b', 'é', 'a.b', 'a{']) assert.throws(() => renderPrometheus([family(name)]), RangeError, name);
    for (const name of ['a', '_', ':', 'a:b_c0', 'A_Z:9', '__name__']) assert.doesNotThrow(() => renderPrometheus([family(name)]), name);
    for (const label of ['', '0a', 'a:b', 'a-b', 'a b', 'ü']) assert.throws(() => renderPrometheus([family('m', { [label]: 'v' })]), RangeError, label);
    for (const label of ['a', '_', 'le', 'A_9', '__reserved']) assert.doesNotThrow(() => renderPrometheus([family('m', { [label]: 'v' })]), label);
    const badType = { ...family('m'), type: 'histogram' } as unknown as MetricFamily;
    assert.throws(() => renderPrometheus([badType]), RangeError);
    assert.throws(() => renderPrometheus([family('m'), family('m')]), RangeError);
    assert.throws(
      () =>
        renderPrometheus([
          { name: 'm', help: '', type: 'gauge', samples: [{ labels: { a: '1', b: '2' }, value: 1 }, { labels: { b: '2', a: '1' }, value: 2 }] },
        ]),
      RangeError,
    );
    assert.throws(() => renderPrometheus([{ name: 'm', help: '', type: 'gauge', samples: [{ value: 1 }, { labels: {}, value: 2 }] }]), RangeError);
  });

  it('writes values as Go does: NaN, ±Inf, shortest digits, Go exponent layout; safe integers in plain digits', () => {
    const cases: Array<[number, string]> = [
      [NaN, 'NaN'],
      [Infinity, '+Inf'],
      [-Infinity, '-Inf'],
      [0, '0'],
      [-0, '0'],
      [1, '1'],
      [-1, '-1'],
      [42, '42'],
      [1_234_567, '1234567'], // Go: 1.234567e+06
      [Number.MAX_SAFE_INTEGER, '9007199254740991'],
      [-Number.MAX_SAFE_INTEGER, '-9007199254740991'],
      [2 ** 53, '9.007199254740992e+15'],
      [1e21, '1e+21'],
      [0.1, '0.1'],
      [-2.25, '-2.25'],
      [12.47, '12.47'],
      [123_456.7, '123456.7'],
      [1_234_567.5, '1.2345675e+06'],
      [1.7560473e7 + 0.5, '1.75604735e+07'],
      [0.0001, '0.0001'],
      [0.00012345, '0.00012345'],
      [0.00001, '1e-05'],
      [-1.5e-7, '-1.5e-07'],
      [5e-324, '5e-324'],
      [Number.MAX_VALUE, '1.7976931348623157e+308'],
      [1 / 3, '0.3333333333333333'],
    ];
    const text = renderPrometheus([{ name: 'v', help: 'values', type: 'gauge', samples: cases.map(([value], i) => ({ labels: { i: String(i) }, value })) }]);
    const lines = text.split('\n').slice(2, -1);
    assert.deepEqual(
      lines.map((line) => line.slice(line.indexOf(' ') + 1)),
      cases.map(([, expected]) => expected),
    );
    for (const [value] of cases) {
      const [parsed] = parsePrometheus(renderPrometheus([{ name: 'v', help: '', type: 'gauge', samples: [{ value }] }]));
      assert.equal(parsed?.samples[0]?.value, value === 0 ? 0 : value);
    }
  });

  it('is read back exactly by a hand-written parser of the format (property)', () => {
    // Any code point, lone surrogates included (a custom unit: fast-check's 'binary' unit is slow).
    const anyCodePoint = fc.integer({ min: 0, max: 0x10ffff }).map((cp) => String.fromCodePoint(cp));
    const text = fc.oneof(
      fc.string({ unit: anyCodePoint }),
      fc.string({ unit: fc.constantFrom('\\', '\n', '"', ' ', '\t', '#', '{', '}', ',', '=', 'a', 'n', 'é', '🙂') }),
    );
    const labels = fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,8}$/), text), {
      maxLength: 4,
      selector: ([name]) => name,
    });
    const value = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(NaN, Infinity, -Infinity, -0, 2 ** 53, Number.MAX_SAFE_INTEGER));
    const samples = fc.uniqueArray(fc.record({ labels, value }), {
      maxLength: 5,
      selector: ({ labels: entries }) => JSON.stringify([...entries].sort(([a], [b]) => (a < b ? -1 : 1))),
    });
    const family = fc.record({
      name: fc.stringMatching(/^[a-zA-Z_:][a-zA-Z0-9_:]{0,12}$/),
      help: text,
      type: fc.constantFrom('counter' as const, 'gauge' as const),
      samples,
    });
    fc.assert(
      fc.property(fc.uniqueArray(family, { maxLength: 5, selector: (f) => f.name }), (generated) => {
        const families: MetricFamily[] = generated.map((f) => ({
          ...f,
          samples: f.samples.map((s) => (s.labels.length === 0 ? { value: s.value } : { labels: Object.fromEntries(s.labels), value: s.value })),
        }));
        const parsed = parsePrometheus(renderPrometheus(families));
        assert.deepEqual(
          parsed,
          generated.map((f) => ({ ...f, samples: f.samples.map((s) => ({ labels: s.labels, value: s.value === 0 ? 0 : s.value })) })),
        );
      }),
      { numRuns: 300 },
    );
  });
});

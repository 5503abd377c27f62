/**
 * The benchmark's statistics and table (bench/stats.ts, issue 7): median, min, max and the
 * nearest-rank percentile against their definitions, per-run ratios and target verdicts, and a
 * markdown table that reads back to the cells it was given. Pure functions: no processes, no clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';

import {
  TABLE_HEADER,
  formatNumber,
  formatSamples,
  judgeTarget,
  max,
  median,
  min,
  percentile,
  renderMarkdownTable,
  runRatios,
  tableRow,
  type MetricSpec,
  type SamplesByImpl,
  type Target,
} from '../bench/stats.js';

const figure = fc.double({ min: -1e9, max: 1e9, noNaN: true, noDefaultInfinity: true });
const figures = fc.array(figure, { minLength: 1, maxLength: 60 });
const positive = fc.double({ min: 1e-3, max: 1e6, noNaN: true, noDefaultInfinity: true });
const percent = fc.double({ min: 1e-6, max: 100, noNaN: true });

const countWhere = (values: readonly number[], test: (value: number) => boolean): number => values.filter(test).length;

/** Reads one rendered table line back into trimmed cells (`\x` is a literal x, `|` a boundary). */
function parseLine(line: string): string[] {
  assert.ok(line.startsWith('| ') && line.endsWith(' |'), line);
  const cells: string[] = [];
  let cell = '';
  for (let index = 1; index < line.length - 1; index++) {
    const char = line[index] as string;
    if (char === '\\') {
      cell += line[++index] ?? '';
    } else if (char === '|') {
      cells.push(cell.trim());
      cell = '';
    } else {
      cell += char;
    }
  }
  cells.push(cell.trim());
  return cells;
}

describe('bench statistics', () => {
  it('min and max are members that bound every value; median lies between them and splits the list in halves', () => {
    fc.assert(
      fc.property(figures, (values) => {
        const low = min(values);
        const high = max(values);
        const middle = median(values);
        assert.ok(values.includes(low) && values.includes(high));
        assert.ok(values.every((value) => low <= value && value <= high));
        assert.ok(low <= middle && middle <= high);
        assert.ok(countWhere(values, (value) => value < middle) <= values.length / 2);
        assert.ok(countWhere(values, (value) => value > middle) <= values.length / 2);
      }),
    );
  });

  it('median is the middle value, or the mean of the two middle values, whatever the order', () => {
    fc.assert(
      fc.property(
        figures.chain((values) => fc.tuple(fc.constant(values), fc.shuffledSubarray(values, { minLength: values.length, maxLength: values.length }))),
        ([values, shuffled]) => {
          assert.equal(median(shuffled), median(values));
          const sorted = [...values].sort((a, b) => a - b);
          const middle = Math.floor(sorted.length / 2);
          const expected = sorted.length % 2 === 1 ? sorted[middle] : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
          assert.equal(median(values), expected);
        },
      ),
    );
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([5]), 5);
  });

  it('percentile is the nearest rank: a member with at least p % of the values at or below it, and fewer below it', () => {
    fc.assert(
      fc.property(figures, percent, (values, p) => {
        const value = percentile(values, p);
        const rank = Math.ceil((p / 100) * values.length);
        assert.ok(values.includes(value));
        assert.ok(countWhere(values, (other) => other <= value) >= rank);
        assert.ok(countWhere(values, (other) => other < value) < Math.max(rank, 1));
      }),
    );
    const hundred = Array.from({ length: 100 }, (_, index) => index + 1);
    assert.equal(percentile(hundred, 99), 99);
    assert.equal(percentile(hundred, 50), 50);
    assert.equal(percentile([7, 1, 3], 100), 7);
  });

  it('percentile grows with p and reaches the max at 100', () => {
    fc.assert(
      fc.property(figures, percent, percent, (values, a, b) => {
        const [lower, upper] = a <= b ? [a, b] : [b, a];
        assert.ok(percentile(values, lower) <= percentile(values, upper));
        assert.equal(percentile(values, 100), max(values));
      }),
    );
  });

  it('refuses an empty list and p outside (0, 100]', () => {
    for (const summary of [min, max, median, (values: readonly number[]) => percentile(values, 50)]) {
      assert.throws(() => summary([]), RangeError);
    }
    for (const p of [0, -1, 100.5, Number.NaN]) assert.throws(() => percentile([1, 2], p), RangeError);
  });
});

describe('bench ratios and targets', () => {
  const run = fc.option(positive, { nil: undefined, freq: 4 });

  it('runRatios pairs runs: one ratio per run where both figures exist', () => {
    fc.assert(
      fc.property(fc.array(run, { maxLength: 8 }), fc.array(run, { maxLength: 8 }), (top, bottom) => {
        const expected: number[] = [];
        for (let index = 0; index < Math.min(top.length, bottom.length); index++) {
          const a = top[index];
          const b = bottom[index];
          if (a !== undefined && b !== undefined) expected.push(a / b);
        }
        assert.deepEqual(runRatios(top, bottom), expected);
      }),
    );
  });

  it('a ratio target is met exactly when the median per-run ratio is on the right side of the factor', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(positive, positive), { minLength: 1, maxLength: 7 }),
        fc.double({ min: 0.01, max: 100, noNaN: true }),
        fc.constantFrom<'>=' | '<='>('>=', '<='),
        (pairs, factor, op) => {
          const samples: SamplesByImpl = { peerwarden: pairs.map(([a]) => a), 'js-libp2p': pairs.map(([, b]) => b), 'raw TCP': [] };
          const target: Target = { kind: 'ratio', op, factor, versus: 'js-libp2p' };
          const ratio = median(pairs.map(([a, b]) => a / b));
          const verdict = judgeTarget(target, samples);
          assert.equal(verdict.measured, ratio);
          assert.equal(verdict.verdict, (op === '>=' ? ratio >= factor : ratio <= factor) ? 'yes' : 'no');
        },
      ),
    );
  });

  it('a limit target is judged on peerwarden median; without figures a target is n/a', () => {
    const target: Target = { kind: 'limit', op: '<=', value: 1 };
    const samples = (peerwarden: (number | undefined)[]): SamplesByImpl => ({ peerwarden, 'js-libp2p': [5, 5, 5], 'raw TCP': [] });
    assert.deepEqual(judgeTarget(target, samples([0.5, 2, 0.9])), { verdict: 'yes', measured: 0.9 });
    assert.deepEqual(judgeTarget(target, samples([1.5, 2, undefined])), { verdict: 'no', measured: 1.75 });
    assert.deepEqual(judgeTarget(target, samples([undefined, undefined])), { verdict: 'n/a', measured: undefined });
    assert.equal(judgeTarget({ kind: 'ratio', op: '>=', factor: 2, versus: 'raw TCP' }, samples([1, 2])).verdict, 'n/a');
  });
});

describe('bench table', () => {
  it('a system cell is median (min–max), marks missing runs, and tells "not run" from "failed"', () => {
    assert.equal(formatSamples([]), '—');
    assert.equal(formatSamples([undefined, undefined]), 'failed');
    assert.equal(formatSamples([172.4, 181.2, 165.9]), '172 (166–181)');
    assert.equal(formatSamples([1555, undefined, 1659]), '1,607 (1,555–1,659) [2/3 runs]');
    assert.equal(formatSamples([0.8312]), '0.831');
    fc.assert(
      fc.property(fc.array(fc.option(figure, { nil: undefined }), { minLength: 1, maxLength: 6 }), (samples) => {
        const present = samples.filter((value) => value !== undefined).length;
        const cell = formatSamples(samples);
        assert.equal(cell.endsWith(`[${present}/${samples.length} runs]`), present > 0 && present < samples.length);
        if (present === 0) assert.equal(cell, 'failed');
      }),
    );
  });

  it('formatNumber keeps 3 significant digits below 100 and whole, grouped numbers above', () => {
    assert.equal(formatNumber(1612.4), '1,612');
    assert.equal(formatNumber(45.26), '45.3');
    assert.equal(formatNumber(1.2678), '1.27');
    assert.equal(formatNumber(0.041234), '0.0412');
    assert.equal(formatNumber(0), '0');
    fc.assert(
      fc.property(figure, (value) => {
        const back = Number(formatNumber(value).replace(/,/g, ''));
        // Rounded to at most 3 significant digits below 100, to the unit above: within 0.5 %.
        assert.ok(Math.abs(back - value) <= Math.max(0.5, Math.abs(value) * 0.005), `${value} -> ${formatNumber(value)}`);
      }),
    );
  });

  it('renders a table whose lines all have the same width and read back to the given cells', () => {
    const cell = fc.string({ maxLength: 12, unit: fc.constantFrom('a', 'Z', '1', ' ', '|', '\\', '-', '\n', '×', '–') });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }).chain((columns) =>
          fc.tuple(fc.array(cell, { minLength: columns, maxLength: columns }), fc.array(fc.array(cell, { minLength: 0, maxLength: columns }), { maxLength: 6 })),
        ),
        ([header, rows]) => {
          const lines = renderMarkdownTable(header, rows).split('\n');
          assert.equal(lines.length, rows.length + 2);
          assert.ok(lines.every((line) => line.length === (lines[0] as string).length));
          const expected = (row: readonly string[]): string[] => header.map((_, column) => (row[column] ?? '').replace(/\n/g, ' ').trim());
          assert.deepEqual(parseLine(lines[0] as string), expected(header));
          assert.ok(parseLine(lines[1] as string).every((separator) => /^-{3,}$/.test(separator)));
          rows.forEach((row, index) => assert.deepEqual(parseLine(lines[index + 2] as string), expected(row)));
        },
      ),
    );
    assert.throws(() => renderMarkdownTable(['a'], [['1', '2']]), RangeError);
  });

  it('a row has one cell per header column, with the ratio, the target and its verdict', () => {
    const metric: MetricSpec = {
      key: 'mbPerSec',
      label: 'one-stream throughput',
      unit: 'MB/s',
      targets: [
        { kind: 'ratio', op: '>=', factor: 2, versus: 'js-libp2p' },
        { kind: 'ratio', op: '>=', factor: 0.45, versus: 'raw TCP' },
      ],
    };
    const row = tableRow({
      caseId: 'throughput',
      metric,
      samples: { peerwarden: [800, 700, 900], 'js-libp2p': [300, 350, 320], 'raw TCP': [1600, 1500, 1700] },
    });
    assert.equal(row.length, TABLE_HEADER.length);
    assert.deepEqual(row, [
      'throughput',
      'one-stream throughput',
      'MB/s',
      '800 (700–900)',
      '320 (300–350)',
      '1,600 (1,500–1,700)',
      '2.67× (2.00–2.81)',
      '≥ 2× js-libp2p and ≥ 0.45× raw TCP',
      'yes (0.5× raw TCP)',
    ]);
    const heap = tableRow({
      caseId: 'hold-1000',
      metric: { key: 'heapPerConnKiB', label: 'heap per connection', unit: 'KiB', targets: [{ kind: 'ratio', op: '<=', factor: 1 / 3, versus: 'js-libp2p' }] },
      samples: { peerwarden: [30], 'js-libp2p': [60], 'raw TCP': [] },
    });
    assert.deepEqual(heap.slice(3), ['30.0', '60.0', '—', '0.5×', '≤ 1/3 × js-libp2p', 'no']);
  });
});

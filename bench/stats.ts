/**
 * Summary statistics of the benchmark and the table it prints: pure functions, no I/O.
 *
 * A cell of the table is `median (min–max)` over the runs of one system; the ratio column is
 * peerwarden / js-libp2p computed per run (both measured in the same run, moments apart) and
 * summarised the same way; a target is judged on medians.
 */
import type { ImplName } from './impl.js';

/** The systems in the order of the table's columns. */
export const IMPL_ORDER: readonly ImplName[] = ['peerwarden', 'js-libp2p', 'raw TCP'];

function checkNonEmpty(values: readonly number[], what: string): void {
  if (values.length === 0) throw new RangeError(`${what} of no values`);
}

/** Smallest value. @throws RangeError on an empty list. */
export function min(values: readonly number[]): number {
  checkNonEmpty(values, 'min');
  return values.reduce((a, b) => (b < a ? b : a));
}

/** Largest value. @throws RangeError on an empty list. */
export function max(values: readonly number[]): number {
  checkNonEmpty(values, 'max');
  return values.reduce((a, b) => (b > a ? b : a));
}

/**
 * The median: the middle value of the sorted list, or the mean of the two middle values when the
 * count is even. @throws RangeError on an empty list.
 */
export function median(values: readonly number[]): number {
  checkNonEmpty(values, 'median');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] as number;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] as number) + upper) / 2;
}

/**
 * The `p`-th percentile by the nearest-rank method: the smallest value such that at least `p` %
 * of the values are less than or equal to it, i.e. `sorted[ceil(p / 100 · n) − 1]`. Always one of
 * the values; `percentile(v, 100)` is the maximum. With 2,000 samples, p99 is the 1,980th smallest.
 * @param p in (0, 100].
 * @throws RangeError on an empty list or `p` outside (0, 100].
 */
export function percentile(values: readonly number[], p: number): number {
  checkNonEmpty(values, 'percentile');
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile needs p in (0, 100], got ${p}`);
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

/**
 * A number for the table: thousands separated, 0 decimals from 100 up, 1 from 10, 2 from 1,
 * 3 significant digits below 1 (`1,612`, `45.3`, `1.27`, `0.0412`).
 */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude === 0) return '0';
  if (magnitude < 1) return value.toLocaleString('en-US', { maximumSignificantDigits: 3 });
  const decimals = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : 2;
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/**
 * One system's cell: `median (min–max)` over the runs that produced the figure, with
 * `[k/n runs]` appended when only `k` of the `n` runs did. `samples` has one entry per run
 * (`undefined`: that run failed or lacked the figure); an empty list means the system was not run
 * (`—`); no figure at all reads `failed`.
 */
export function formatSamples(samples: readonly (number | undefined)[]): string {
  if (samples.length === 0) return '—';
  const values = samples.filter((value): value is number => value !== undefined);
  if (values.length === 0) return 'failed';
  const summary =
    values.length === 1 ? formatNumber(values[0] as number) : `${formatNumber(median(values))} (${formatNumber(min(values))}–${formatNumber(max(values))})`;
  return values.length < samples.length ? `${summary} [${values.length}/${samples.length} runs]` : summary;
}

/**
 * Per-run ratios `numerator[i] / denominator[i]` for the runs where both are figures and the
 * denominator is not 0. The lists are indexed by run.
 */
export function runRatios(numerator: readonly (number | undefined)[], denominator: readonly (number | undefined)[]): number[] {
  const ratios: number[] = [];
  for (let run = 0; run < Math.min(numerator.length, denominator.length); run++) {
    const top = numerator[run];
    const bottom = denominator[run];
    if (top !== undefined && bottom !== undefined && bottom !== 0) ratios.push(top / bottom);
  }
  return ratios;
}

/**
 * A target of the issue for one figure of peerwarden:
 * - `ratio`: peerwarden / `versus` (per run, then the median) compared with `factor`;
 * - `limit`: peerwarden's median compared with `value` (in the metric's unit).
 */
export type Target =
  | { readonly kind: 'ratio'; readonly op: '>=' | '<='; readonly factor: number; readonly versus: ImplName }
  | { readonly kind: 'limit'; readonly op: '>=' | '<='; readonly value: number };

/** One row of the table: a figure of one case. */
export interface MetricSpec {
  /** Key of the figure in a case's `RESULT` metrics. */
  readonly key: string;
  /** What the row shows, e.g. `p99 RTT`. */
  readonly label: string;
  /** Unit of the figure, e.g. `ms`, `conn/s`, `KiB`. */
  readonly unit: string;
  /** Targets on peerwarden's figure; empty when the issue sets none. */
  readonly targets: readonly Target[];
}

/** Samples of one figure: per system, one entry per run (`[]`: system not run). */
export type SamplesByImpl = Readonly<Record<ImplName, readonly (number | undefined)[]>>;

/** Outcome of one target: met, missed, or no figures to judge (`n/a`). */
export interface TargetVerdict {
  readonly verdict: 'yes' | 'no' | 'n/a';
  /** The figure the target was judged on (median ratio or median value); undefined with `n/a`. */
  readonly measured: number | undefined;
}

function compare(value: number, op: '>=' | '<=', bound: number): boolean {
  return op === '>=' ? value >= bound : value <= bound;
}

/** Judges one target on the samples (medians, see {@link Target}). */
export function judgeTarget(target: Target, samples: SamplesByImpl): TargetVerdict {
  const own = samples.peerwarden;
  const measured =
    target.kind === 'ratio'
      ? ((ratios) => (ratios.length === 0 ? undefined : median(ratios)))(runRatios(own, samples[target.versus]))
      : ((values) => (values.length === 0 ? undefined : median(values)))(own.filter((value): value is number => value !== undefined));
  if (measured === undefined) return { verdict: 'n/a', measured };
  const bound = target.kind === 'ratio' ? target.factor : target.value;
  return { verdict: compare(measured, target.op, bound) ? 'yes' : 'no', measured };
}

/** A bound as written in the issue: as few digits as it needs (`5`, `0.45`, `20`). */
function formatBound(value: number): string {
  return value.toLocaleString('en-US', { maximumFractionDigits: 3 });
}

/** A factor for a target: `5×`, `0.45×`, `1/3 ×` for unit fractions. */
function formatFactor(factor: number): string {
  const inverse = 1 / factor;
  if (factor < 1 && Math.abs(inverse - Math.round(inverse)) < 1e-9) return `1/${Math.round(inverse)} ×`;
  return `${formatBound(factor)}×`;
}

/** A target as the table shows it: `≥ 5× js-libp2p`, `≤ 1 ms`. */
export function formatTarget(target: Target, unit: string): string {
  const op = target.op === '>=' ? '≥' : '≤';
  return target.kind === 'ratio' ? `${op} ${formatFactor(target.factor)} ${target.versus}` : `${op} ${formatBound(target.value)} ${unit}`;
}

/** The system the ratio column compares peerwarden with. */
export const RATIO_BASELINE: ImplName = 'js-libp2p';

/**
 * The "met" cell of a row: `yes`/`no` over all its targets (`n/a` if any target lacks figures
 * and none is missed; empty without targets). Ratios against a system other than the ratio
 * column's are shown with it, e.g. `yes (0.52× raw TCP)`.
 */
export function formatVerdicts(targets: readonly Target[], samples: SamplesByImpl): string {
  if (targets.length === 0) return '';
  const verdicts = targets.map((target) => ({ target, ...judgeTarget(target, samples) }));
  const overall = verdicts.some((v) => v.verdict === 'no') ? 'no' : verdicts.some((v) => v.verdict === 'n/a') ? 'n/a' : 'yes';
  const details = verdicts
    .filter((v) => v.target.kind === 'ratio' && v.target.versus !== RATIO_BASELINE && v.measured !== undefined)
    .map((v) => `${formatNumber(v.measured as number)}× ${(v.target as { versus: ImplName }).versus}`);
  return details.length === 0 ? overall : `${overall} (${details.join(', ')})`;
}

/** The ratio cell: peerwarden / js-libp2p per run, `median× (min–max)`, `—` without pairs. */
export function formatRatio(samples: SamplesByImpl): string {
  const ratios = runRatios(samples.peerwarden, samples[RATIO_BASELINE]);
  if (ratios.length === 0) return '—';
  if (ratios.length === 1) return `${formatNumber(ratios[0] as number)}×`;
  return `${formatNumber(median(ratios))}× (${formatNumber(min(ratios))}–${formatNumber(max(ratios))})`;
}

/** Header of the results table. */
export const TABLE_HEADER: readonly string[] = ['case', 'metric', 'unit', ...IMPL_ORDER, 'peerwarden/js-libp2p', 'target', 'met'];

/** One figure of one case with its samples, as {@link tableRow} takes it. */
export interface MetricSamples {
  readonly caseId: string;
  readonly metric: MetricSpec;
  readonly samples: SamplesByImpl;
}

/** The cells of one table row, in {@link TABLE_HEADER}'s order. */
export function tableRow(row: MetricSamples): string[] {
  const { metric, samples } = row;
  return [
    row.caseId,
    metric.label,
    metric.unit,
    ...IMPL_ORDER.map((impl) => formatSamples(samples[impl])),
    formatRatio(samples),
    metric.targets.map((target) => formatTarget(target, metric.unit)).join(' and '),
    formatVerdicts(metric.targets, samples),
  ];
}

/** A cell's text made safe for one markdown table cell: `|` escaped, line breaks as spaces. */
export function escapeCell(text: string): string {
  return text.replace(/\r\n|\r|\n/g, ' ').replace(/\\/g, '\\\\').replace(/\|/g, '\\|');
}

/**
 * A GitHub-flavoured markdown table, columns padded to a common width so it also reads as plain
 * text. Rows shorter than the header are padded with empty cells.
 * @throws RangeError when a row has more cells than the header.
 */
export function renderMarkdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  for (const row of rows) {
    if (row.length > header.length) throw new RangeError(`a row has ${row.length} cells, the header ${header.length}`);
  }
  const cells = [header, ...rows].map((row) => header.map((_, column) => escapeCell(row[column] ?? '')));
  const widths = header.map((_, column) => Math.max(3, ...cells.map((row) => (row[column] as string).length)));
  const line = (row: readonly string[]): string => `| ${row.map((cell, column) => cell.padEnd(widths[column] as number)).join(' | ')} |`;
  const [head, ...body] = cells;
  return [line(head as string[]), line(widths.map((width) => '-'.repeat(width))), ...body.map(line)].join('\n');
}

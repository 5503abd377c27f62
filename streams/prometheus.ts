/**
 * Rendering metrics in the Prometheus text exposition format, version 0.0.4 (prometheus.io,
 * "Exposition formats" → "Text format details"), for a `/metrics` endpoint or a log line.
 */

/** The HTTP `Content-Type` of {@link renderPrometheus}'s output (format version 0.0.4). */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * One metric family: a name, its docstring, its type and its samples (one per label set).
 *
 * By Prometheus convention a counter's name ends in `_total` (e.g. `peerwarden_dials_total`) and
 * names carry their unit (`_bytes`, `_seconds`); {@link renderPrometheus} does not enforce this.
 */
export interface MetricFamily {
  /** Metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`. */
  readonly name: string;
  /** Docstring (any text; backslash and line feed are escaped on output). */
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  /**
   * The samples. Label names match `[a-zA-Z_][a-zA-Z0-9_]*` (names starting with `__` are
   * reserved by Prometheus), label values are any text, and are rendered in the object's key
   * order. The value may be NaN or ±Infinity.
   */
  readonly samples: readonly { readonly labels?: Readonly<Record<string, string>>; readonly value: number }[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Renders `families` in the text exposition format 0.0.4, in the order given: per family a
 * `# HELP name docstring` line, a `# TYPE name type` line, then one line per sample,
 * `name{label="value",…} value` (no braces when a sample has no labels), no timestamps. Every line
 * ends with `\n`, so the text ends with a line feed (and is empty when `families` is).
 *
 * Escaping (format 0.0.4): in HELP, `\` → `\\` and line feed → `\n`; in label values, also
 * `"` → `\"`. Values are written as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes them (the
 * reference Prometheus client does so), i.e. the shortest text that reads back to the same
 * number, with `NaN`, `+Inf` and `-Inf`, and -0 as `0` — except that safe integers
 * (|v| ≤ 2^53 − 1) are written in plain digits, where Go would write e.g. `1.234567e+06`: both
 * read back to the same value, and counters stay readable.
 *
 * @throws RangeError when a metric name or a label name does not match its pattern, a type is
 *   neither `counter` nor `gauge`, two families share a name, or two samples of a family share
 *   a label set (the format leaves ingestion undefined in those cases).
 */
export function renderPrometheus(families: readonly MetricFamily[]): string {
  const names = new Set<string>();
  const lines: string[] = [];
  for (const family of families) {
    const { name, help, type } = family;
    if (!METRIC_NAME.test(name)) throw new RangeError(`renderPrometheus: invalid metric name ${JSON.stringify(name)}`);
    if (type !== 'counter' && type !== 'gauge') throw new RangeError(`renderPrometheus: invalid type ${JSON.stringify(type)} of ${name}`);
    if (names.has(name)) throw new RangeError(`renderPrometheus: duplicate metric family ${name}`);
    names.add(name);
    lines.push(`# HELP ${name} ${escapeHelp(help)}\n`, `# TYPE ${name} ${type}\n`);
    const labelSets = new Set<string>();
    for (const sample of family.samples) {
      const pairs = renderLabelPairs(name, sample.labels);
      // A label set is unordered: {a,b} and {b,a} are the same series.
      const key = [...pairs].sort().join(',');
      if (labelSets.has(key)) throw new RangeError(`renderPrometheus: duplicate label set {${key}} in ${name}`);
      labelSets.add(key);
      lines.push(`${name}${pairs.length === 0 ? '' : `{${pairs.join(',')}}`} ${formatValue(sample.value)}\n`);
    }
  }
  return lines.join('');
}

/** The `name="escaped value"` pairs of a sample's labels, in key order. */
function renderLabelPairs(metric: string, labels: Readonly<Record<string, string>> | undefined): string[] {
  if (!labels) return [];
  return Object.entries(labels).map(([key, value]) => {
    if (!LABEL_NAME.test(key)) throw new RangeError(`renderPrometheus: invalid label name ${JSON.stringify(key)} in ${metric}`);
    return `${key}="${escapeLabelValue(value)}"`;
  });
}

function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

function escapeLabelValue(text: string): string {
  return text.replace(/[\\\n"]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** A float as Go's `FormatFloat(v, 'g', -1, 64)` writes it, but safe integers in plain digits. */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  if (Number.isSafeInteger(value)) return String(value); // -0 gives "0", as in Go
  // toExponential() without an argument gives the shortest round-trip digits (ECMA-262
  // Number.prototype.toExponential), the same digits Go's shortest formatting picks.
  const [mantissa = '', exponentText = '0'] = value.toExponential().split('e');
  const exponent = Number(exponentText);
  const sign = value < 0 ? '-' : '';
  const digits = mantissa.replace('-', '').replace('.', '');
  // Go's %g with shortest precision switches to exponent form below 1e-4 and from 1e6 on
  // (strconv: "if precision was the shortest possible, use precision 6 for this decision").
  if (exponent < -4 || exponent >= 6) {
    const fraction = digits.length > 1 ? `.${digits.slice(1)}` : '';
    const magnitude = String(Math.abs(exponent)).padStart(2, '0');
    return `${sign}${digits[0] ?? ''}${fraction}e${exponent < 0 ? '-' : '+'}${magnitude}`;
  }
  if (exponent >= 0) {
    const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, '0');
    const fraction = digits.slice(exponent + 1);
    return `${sign}${whole}${fraction ? `.${fraction}` : ''}`;
  }
  return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
}

/**
 * `npm run bench`: measures every case for every system, alternately, and prints one table.
 *
 * ```
 * npm run bench [-- --runs N --cases a,b --impls x,y --out FILE]
 * ```
 * - `--runs N`: measurements per case and system (default 3);
 * - `--cases`: case ids of `bench/case.ts` (default all: conn-seq, conn-32, throughput, ping,
 *   hold-1000, hold-10000);
 * - `--impls`: systems (default all: `peerwarden`, `js-libp2p`, `raw TCP`; also `pw`, `libp2p`,
 *   `tcp`); a system whose `bench/impls/` file is missing or does not load is skipped with a message;
 * - `--out FILE`: where the report goes (default `BENCHMARKS.md` at the repo root).
 *
 * For each case, run after run, the systems take turns (the order rotates by one each run), each
 * measurement in a process of its own (`node --expose-gc --import tsx bench/case.ts`, stderr
 * inherited, its `RESULT` line parsed). Progress goes to stderr; the table (markdown) to stdout and,
 * with the machine, Node version, command and how each case is measured, to the report file.
 *
 * Exits 0 when at least one measurement produced figures, 1 when none did, 2 on a usage error.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { CASES, RESULT_PREFIX, findCase, type CaseDefinition } from './case.js';
import type { ImplName } from './impl.js';
import { ImplUnavailable, loadImpl, parseImplName } from './peers.js';
import { IMPL_ORDER, TABLE_HEADER, formatNumber, renderMarkdownTable, tableRow, type SamplesByImpl } from './stats.js';

/** Default measurements per case and system (issue 7: at least 3). */
export const DEFAULT_RUNS = 3;

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const CASE_FILE = fileURLToPath(new URL('./case.ts', import.meta.url));
const DEFAULT_OUT = fileURLToPath(new URL('../BENCHMARKS.md', import.meta.url));

/** The parsed command line of the runner. */
export interface BenchArguments {
  readonly runs: number;
  /** Cases to run, in table order. */
  readonly cases: readonly CaseDefinition[];
  /** Systems to run, in table order. */
  readonly impls: readonly ImplName[];
  /** Path of the report file. */
  readonly out: string;
}

function list(text: string | undefined): string[] | undefined {
  return text?.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

/**
 * Parses the runner's arguments (without `node` and the script).
 * @throws RangeError (or node's parseArgs TypeError) on an unknown flag, a bad number, an unknown
 *   case or system, or an empty list.
 */
export function parseBenchArguments(argv: readonly string[]): BenchArguments {
  const { values } = parseArgs({
    args: [...argv],
    options: { runs: { type: 'string' }, cases: { type: 'string' }, impls: { type: 'string' }, out: { type: 'string' } },
    strict: true,
  });
  const runs = values.runs === undefined ? DEFAULT_RUNS : Number(values.runs);
  if (!Number.isSafeInteger(runs) || runs < 1) throw new RangeError(`--runs needs a positive integer, got ${values.runs}`);
  const caseIds = list(values.cases);
  const implNames = list(values.impls);
  if (caseIds?.length === 0) throw new RangeError('--cases needs at least one case');
  if (implNames?.length === 0) throw new RangeError('--impls needs at least one system');
  const wantedCases = new Set((caseIds ?? CASES.map((definition) => definition.id)).map((id) => findCase(id).id));
  const wantedImpls = new Set((implNames ?? IMPL_ORDER).map(parseImplName));
  return {
    runs,
    cases: CASES.filter((definition) => wantedCases.has(definition.id)),
    impls: IMPL_ORDER.filter((name) => wantedImpls.has(name)),
    out: values.out ?? DEFAULT_OUT,
  };
}

/** What one measurement gave: figures (possibly partial), notes, and an error when it failed. */
interface Measurement {
  readonly metrics: Readonly<Record<string, number>>;
  readonly notes: readonly string[];
  readonly error: string | undefined;
  /** Wall-clock time of the measurement process, s. */
  readonly seconds: number;
}

/** Reads a `RESULT` JSON, keeping only well-formed fields (the figures must be finite numbers). */
function parseResult(json: string): Pick<Measurement, 'metrics' | 'notes' | 'error'> {
  const value = JSON.parse(json) as { metrics?: unknown; notes?: unknown; error?: unknown };
  const metrics: Record<string, number> = {};
  if (typeof value.metrics === 'object' && value.metrics !== null) {
    for (const [key, figure] of Object.entries(value.metrics)) {
      if (typeof figure === 'number' && Number.isFinite(figure)) metrics[key] = figure;
    }
  }
  const notes = Array.isArray(value.notes) ? value.notes.filter((note): note is string => typeof note === 'string') : [];
  const error = typeof value.error === 'string' ? value.error : undefined;
  return { metrics, notes, error };
}

/**
 * One measurement in its own process. Lines on its stdout other than `RESULT` go to stderr.
 * Never rejects: a crash, a timeout or a missing `RESULT` line is an error of the measurement.
 */
function measure(definition: CaseDefinition, impl: ImplName): Promise<Measurement> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', CASE_FILE, '--case', definition.id, '--impl', impl], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let resultLine: string | undefined;
    let buffered = '';
    let timedOut = false;
    const onLine = (line: string): void => {
      if (line.startsWith(RESULT_PREFIX)) resultLine = line.slice(RESULT_PREFIX.length);
      else if (line !== '') process.stderr.write(`${line}\n`);
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const lines = (buffered + chunk).split('\n');
      buffered = lines.pop() ?? '';
      lines.forEach(onLine);
    });
    // The case's peers notice the kill (their IPC channel closes) and exit on their own.
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, definition.timeoutMs);
    const finish = (problem: string | undefined): void => {
      clearTimeout(timer);
      onLine(buffered);
      const seconds = (performance.now() - started) / 1000;
      let parsed: Pick<Measurement, 'metrics' | 'notes' | 'error'> = { metrics: {}, notes: [], error: undefined };
      if (resultLine !== undefined) {
        try {
          parsed = parseResult(resultLine);
        } catch (error) {
          parsed = { ...parsed, error: `unreadable RESULT line: ${String(error)}` };
        }
      }
      const error = timedOut
        ? `killed after ${definition.timeoutMs / 1000} s${parsed.error === undefined ? '' : ` (${parsed.error})`}`
        : (parsed.error ?? (resultLine === undefined ? (problem ?? 'no RESULT line') : undefined));
      resolve({ ...parsed, error, seconds });
    };
    child.once('error', (error) => finish(`could not start: ${error.message}`));
    child.once('close', (code, signal) => finish(`exited (code ${code}, signal ${signal}) without a RESULT line`));
  });
}

/** Figures of one measurement for the progress line, e.g. `2,180 conn/s`. */
function describeMeasurement(definition: CaseDefinition, measurement: Measurement): string {
  const figures = definition.metrics
    .filter((metric) => measurement.metrics[metric.key] !== undefined)
    .map((metric) => `${metric.label} ${formatNumber(measurement.metrics[metric.key] as number)} ${metric.unit}`);
  const parts = [figures.join(', ') || 'no figures'];
  if (measurement.error !== undefined) parts.push(`ERROR: ${measurement.error}`);
  return `${parts.join('; ')} (${measurement.seconds.toFixed(1)} s)`;
}

/** The systems that load, and a message for each one that does not. */
async function availableImpls(wanted: readonly ImplName[]): Promise<{ impls: ImplName[]; skipped: string[] }> {
  const impls: ImplName[] = [];
  const skipped: string[] = [];
  for (const name of wanted) {
    try {
      await loadImpl(name);
      impls.push(name);
    } catch (error) {
      if (!(error instanceof ImplUnavailable)) throw error;
      skipped.push(`${error.message}: skipped`);
    }
  }
  return { impls, skipped };
}

/** `[a, b, c]` rotated left by `by`: `[b, c, a]` for 1. */
function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** The command as typed, as far as it can be told from inside. */
function commandLine(argv: readonly string[]): string {
  const quote = (arg: string): string => (/^[\w.,/=:@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`);
  const args = argv.map(quote).join(' ');
  if (process.env.npm_lifecycle_event === 'bench') return `npm run bench${args === '' ? '' : ` -- ${args}`}`;
  return ['node', ...process.execArgv.map(quote), 'bench/run.ts', args].filter((part) => part !== '').join(' ');
}

/** CPU model, cores, memory and OS of this machine, one line. */
function machineLine(): string {
  const cpus = os.cpus();
  let distribution = '';
  try {
    const release = readFileSync('/etc/os-release', 'utf8');
    distribution = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(release)?.[1] ?? '';
  } catch {
    // Not Linux, or no os-release: the kernel line is enough.
  }
  const system = `${os.type()} ${os.release()}${distribution === '' ? '' : ` (${distribution})`}`;
  return `${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${cpus.length} cores, ${formatNumber(os.totalmem() / 2 ** 30)} GiB, ${system}`;
}

/** Everything the report needs. */
interface Report {
  readonly args: BenchArguments;
  readonly argv: readonly string[];
  readonly skipped: readonly string[];
  readonly table: string;
  readonly notes: readonly string[];
  readonly started: Date;
  readonly minutes: number;
}

function renderReport(report: Report): string {
  const { args } = report;
  const lines = [
    '# Benchmarks: peerwarden, js-libp2p 3, raw TCP',
    '',
    `- Date: ${report.started.toISOString()}`,
    `- Machine: ${machineLine()}`,
    `- Node: ${process.version}`,
    `- Command: \`${commandLine(report.argv)}\` (took ${report.minutes.toFixed(1)} min)`,
    `- Runs per case: ${args.runs} per system, each measurement in its own processes (node and peers); the systems take turns, the order rotating each run`,
    ...report.skipped.map((line) => `- ${line}`),
    '',
    'Cells: median (min–max) over the runs; `[k/n runs]` when only k runs produced the figure. ' +
      'peerwarden/js-libp2p: the ratio within each run (both measured moments apart), median (min–max). ' +
      'Targets are judged on the medians. The machine is shared and noisy: compare ratios, not absolute figures.',
    '',
    report.table,
    '',
    '## How each case is measured',
    '',
    ...args.cases.map((definition) => `- \`${definition.id}\`: ${definition.description}.`),
    '',
  ];
  if (report.notes.length > 0) lines.push('## Notes from the runs', '', ...report.notes.map((note) => `- ${note}`), '');
  return lines.join('\n');
}

/** Runs the benchmark named by `argv`. @returns the exit code (see the file's doc). */
export async function main(argv: readonly string[]): Promise<number> {
  let args: BenchArguments;
  try {
    args = parseBenchArguments(argv);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    console.error('usage: npm run bench [-- --runs N --cases a,b --impls x,y --out FILE]');
    return 2;
  }
  const started = new Date();
  const startedAt = performance.now();
  const { impls, skipped } = await availableImpls(args.impls);
  for (const line of skipped) console.error(line);
  if (impls.length === 0) {
    console.error('no system to measure');
    return 1;
  }

  // results[case][impl][run]
  const results = new Map<string, Map<ImplName, Measurement[]>>();
  const total = args.cases.length * args.runs * impls.length;
  let done = 0;
  for (const definition of args.cases) {
    const byImpl = new Map<ImplName, Measurement[]>(impls.map((impl) => [impl, []]));
    results.set(definition.id, byImpl);
    for (let run = 0; run < args.runs; run++) {
      for (const impl of rotate(impls, run)) {
        done++;
        console.error(`[${done}/${total}] ${definition.id}, run ${run + 1}/${args.runs}, ${impl}`);
        const measurement = await measure(definition, impl);
        byImpl.get(impl)?.push(measurement);
        console.error(`[${done}/${total}] ${definition.id}, run ${run + 1}/${args.runs}, ${impl}: ${describeMeasurement(definition, measurement)}`);
      }
    }
  }

  const rows: string[][] = [];
  const notes: string[] = [];
  let produced = 0;
  for (const definition of args.cases) {
    const byImpl = results.get(definition.id);
    for (const metric of definition.metrics) {
      const figures = (impl: ImplName): (number | undefined)[] => (byImpl?.get(impl) ?? []).map((measurement) => measurement.metrics[metric.key]);
      const samples: SamplesByImpl = { peerwarden: figures('peerwarden'), 'js-libp2p': figures('js-libp2p'), 'raw TCP': figures('raw TCP') };
      rows.push(tableRow({ caseId: definition.id, metric, samples }));
    }
    for (const impl of IMPL_ORDER) {
      const measurements = byImpl?.get(impl) ?? [];
      produced += measurements.filter((measurement) => Object.keys(measurement.metrics).length > 0).length;
      const perRun = measurements
        .map((measurement, run) => {
          const parts = [...measurement.notes, ...(measurement.error === undefined ? [] : [`error: ${measurement.error}`])];
          return parts.length === 0 ? '' : `run ${run + 1}: ${parts.join('; ')}`;
        })
        .filter((text) => text !== '');
      if (perRun.length > 0) notes.push(`\`${definition.id}\`, ${impl}: ${perRun.join(' — ')}`);
    }
  }
  const table = renderMarkdownTable(TABLE_HEADER, rows);
  const minutes = (performance.now() - startedAt) / 60_000;
  process.stdout.write(`${table}\n`);
  writeFileSync(args.out, renderReport({ args, argv, skipped, table, notes, started, minutes }));
  console.error(`report written to ${args.out} (${minutes.toFixed(1)} min)`);
  return produced > 0 ? 0 : 1;
}

// Run only as the entry point, so specs can import the argument parser.
const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  // exit() rather than exitCode: a loaded system may keep a handle open.
  process.exit(await main(process.argv.slice(2)));
}

/**
 * `npm run fuzz`: runs every fuzz target of `fuzz/targets.ts` and prints, per target, the cases
 * run, the time, cases per second, heap growth, the outcome and the mix of outcomes.
 *
 * ```
 * node --import tsx --expose-gc fuzz/run.ts [--runs N] [--target NAME[,NAME…]] [--seed=S --path P]
 *                                           [--watchdog MS] [--no-shrink] [--list]
 * ```
 * - `--runs N`: cases per target (default 100,000).
 * - `--target`: only these targets (names from `--list`).
 * - `--seed=S` / `--path P`: replay a finding exactly, as printed with it (use with one `--target`;
 *   write `--seed=S`, since a negative seed after a space would read as a flag).
 * - `--watchdog MS`: hang watchdog per case (default 5,000 ms).
 * - `--no-shrink`: report the first failing case without shrinking it.
 *
 * Exits 0 when no target found anything, 1 on any finding (after running the other targets),
 * 2 on a usage error.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { DEFAULT_WATCHDOG_MS, FUZZ_TARGETS, formatReport, fullGc, type RegisteredTarget } from './targets.js';

/** Default cases per target (issue 6: at least 100,000 per parser). */
export const DEFAULT_RUNS = 100_000;

/** The parsed command line of the fuzz runner. */
export interface FuzzArguments {
  /** Cases per target. */
  readonly runs: number;
  /** Targets to run, in registry order. */
  readonly targets: readonly RegisteredTarget[];
  readonly seed: number | undefined;
  readonly path: string | undefined;
  /** Hang watchdog per case, ms. */
  readonly watchdogMs: number;
  readonly shrink: boolean;
  /** Only list the targets. */
  readonly list: boolean;
}

function positiveInteger(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${flag} needs a positive integer, got ${text}`);
  return value;
}

/**
 * Parses the runner's arguments (without `node` and the script).
 * @throws RangeError (or node's parseArgs TypeError) on an unknown flag, a bad number, an unknown
 *   target, or `--path` without `--seed`.
 */
export function parseFuzzArguments(argv: readonly string[]): FuzzArguments {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      runs: { type: 'string' },
      target: { type: 'string' },
      seed: { type: 'string' },
      path: { type: 'string' },
      watchdog: { type: 'string' },
      'no-shrink': { type: 'boolean' },
      list: { type: 'boolean' },
    },
    strict: true,
  });
  let targets: readonly RegisteredTarget[] = FUZZ_TARGETS;
  if (values.target !== undefined) {
    const names = values.target.split(',').map((name) => name.trim()).filter((name) => name !== '');
    for (const name of names) {
      if (!FUZZ_TARGETS.some((target) => target.name === name)) {
        throw new RangeError(`unknown target ${name}; known: ${FUZZ_TARGETS.map((target) => target.name).join(', ')}`);
      }
    }
    targets = FUZZ_TARGETS.filter((target) => names.includes(target.name));
  }
  let seed: number | undefined;
  if (values.seed !== undefined) {
    seed = Number(values.seed);
    if (!Number.isInteger(seed)) throw new RangeError(`--seed needs an integer, got ${values.seed}`);
  }
  if (values.path !== undefined && seed === undefined) throw new RangeError('--path replays only together with --seed');
  return {
    runs: positiveInteger(values.runs, '--runs', DEFAULT_RUNS),
    targets,
    seed,
    path: values.path,
    watchdogMs: positiveInteger(values.watchdog, '--watchdog', DEFAULT_WATCHDOG_MS),
    shrink: values['no-shrink'] !== true,
    list: values.list === true,
  };
}

/**
 * Runs the targets named by `argv` and prints one report per target to stdout.
 * @returns the exit code: 0 clean, 1 a finding, 2 a usage error.
 */
export async function main(argv: readonly string[]): Promise<number> {
  let args: FuzzArguments;
  try {
    args = parseFuzzArguments(argv);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    return 2;
  }
  if (args.list) {
    for (const target of FUZZ_TARGETS) console.log(`${target.name.padEnd(18)} ${target.summary}`);
    return 0;
  }
  const gc = fullGc() === undefined ? 'no GC (heap not checked)' : 'heap checked after full GC';
  console.log(`fuzzing ${args.targets.length} target(s), ${args.runs} cases each, ${gc}`);
  let findings = 0;
  for (const target of args.targets) {
    const report = await target.check({
      numRuns: args.runs,
      watchdogMs: args.watchdogMs,
      endOnFailure: !args.shrink,
      ...(args.seed === undefined ? {} : { seed: args.seed }),
      ...(args.path === undefined ? {} : { path: args.path }),
    });
    console.log(formatReport(report));
    if (report.failed) findings++;
  }
  console.log(findings === 0 ? 'no findings' : `${findings} target(s) with findings`);
  return findings === 0 ? 0 : 1;
}

// Run only as the entry point, so specs can import the argument parser.
const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  process.exitCode = await main(process.argv.slice(2));
}

/**
 * One measurement of one benchmark case for one system, in a process of its own:
 *
 * ```
 * node --expose-gc --import tsx bench/case.ts --case <id> --impl <name>
 * ```
 *
 * It forks the peer processes the case needs (`bench/peers.ts`, at most 2,000 peers each), starts
 * the node(s) under measure in this process, measures, stops everything and prints one line
 * `RESULT {json}` ({@link CaseResult}) on stdout: exit 0 with the figures, exit 1 with `error` set
 * (plus whatever figures were taken before the failure), exit 2 on a usage error. `--expose-gc`
 * is needed by the hold cases: heap figures are taken after `global.gc()`.
 *
 * A case that cannot complete in full (dials failing, connections dropped) reports what it got
 * (connections held, failures in `notes`) rather than failing the whole run.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import type { BenchConnection, BenchImpl, BenchNode, ImplName, NodeOptions } from './impl.js';
import { loadImpl, parseImplName, startPeerProcesses, type PeerProcesses } from './peers.js';
import { median, percentile, type MetricSpec } from './stats.js';

/** Identifiers of the cases, in the order the table shows them. */
export type CaseId = 'conn-seq' | 'conn-32' | 'throughput' | 'ping' | 'hold-1000' | 'hold-10000';

/** What one measurement reports (the JSON of the `RESULT` line). */
export interface CaseResult {
  readonly case: CaseId;
  readonly impl: ImplName;
  /** Figures by {@link MetricSpec.key}, in the metric's unit. */
  readonly metrics: Record<string, number>;
  /** Failures and facts worth a line under the table (dial failures, dropped connections…). */
  readonly notes: string[];
  /** Why the measurement failed; absent when it completed. */
  error?: string;
}

/** Everything a case's measurement needs. */
interface CaseContext {
  readonly impl: BenchImpl;
  /** Addresses of the case's peers. */
  readonly addresses: readonly string[];
  /** Filled as figures are taken, so that a failure keeps what was measured before it. */
  readonly result: CaseResult;
  /** Starts a node; the case process stops every node it started. */
  startNode(options: NodeOptions): Promise<BenchNode>;
}

/** One case: its figures, how it is measured, and the measurement itself. */
export interface CaseDefinition {
  readonly id: CaseId;
  /** One line for BENCHMARKS.md: how the case is measured. */
  readonly description: string;
  /** The figures it reports, one table row each. */
  readonly metrics: readonly MetricSpec[];
  /** Peers it needs. */
  readonly peers: number;
  /** The runner kills a measurement after this long, ms (a hang, not a slow system). */
  readonly timeoutMs: number;
  readonly measure: (context: CaseContext) => Promise<void>;
}

/** Connect + close cycles before the counted window of the connection cases. */
const CONNECT_WARM_UP = 50;
/** Length of the counted window of the connection cases, ms. */
const CONNECT_WINDOW_MS = 3_000;
/** Dialing nodes of `conn-32`. */
const CONCURRENT_DIALERS = 32;
/** Bytes of the throughput case, and of its warm-up, and the chunk size. */
const BULK_BYTES = 256 * 1024 * 1024;
const BULK_WARM_UP_BYTES = 16 * 1024 * 1024;
const BULK_CHUNK_BYTES = 64 * 1024;
/**
 * Pings of the ping case: warm-up, then timed. V8 optimizes a round trip's code only after a few
 * thousand of them: with 200 warm-up pings, peerwarden's p99 was JIT compilation in both processes
 * (3.5 ms; 0.26 ms after 5,000, measured here). Every system gets the same warm-up.
 */
const PING_WARM_UP = 5_000;
const PING_COUNT = 2_000;
/** Dials in flight while the hold cases fill up. */
const DIALS_IN_FLIGHT = 64;
/**
 * The hold cases stop starting dials after this long, ms: a system that cannot fill up in two
 * minutes reports the connections it got (a full run must stay bounded on a loaded machine).
 */
const DIAL_PHASE_LIMIT_MS = 120_000;
/**
 * Idle window of the hold cases, ms: covers two ping rounds at the systems' 10 s interval. The
 * memory figures are taken at its end, i.e. after ~2.5 ping rounds with everything up.
 */
const IDLE_WINDOW_MS = 25_000;
/**
 * Wait between the forced full GC and the idle window, ms. The GC stops the process for about a
 * second at 10,000 connections; every timer due meanwhile (about 1,000 pings a second there, in
 * either system) runs right after it, and that backlog is the GC's doing, not the system's.
 */
const AFTER_GC_SETTLE_MS = 3_000;
/**
 * Sampling interval of the event-loop delay histogram, ms. Its timer costs ~0.5 % of a core here
 * (1 ms: ~2 %), charged alike to every system inside the idle-CPU window; a stall of S ms shows
 * as one sample of S to S + 10 ms, so the figure is the histogram's max minus this interval.
 */
const LOOP_DELAY_RESOLUTION_MS = 10;
/**
 * The liveness check after the idle window (a ping on every connection, {@link DIALS_IN_FLIGHT} at
 * a time): per-ping limit and phase limit, ms. Generous: a loaded machine slows pings down, and a
 * connection counts as dropped only when its ping fails or does not come back in 20 s.
 */
const LIVENESS_PING_TIMEOUT_MS = 20_000;
const LIVENESS_PHASE_LIMIT_MS = 60_000;
/** Connections whose socket `hold-10000` destroys to time the reaction, and the phase limit, ms. */
const REACTIONS = 200;
const REACTION_PHASE_LIMIT_MS = 30_000;
/** Per-operation limits (a hang must not stall the run), ms. */
const DIAL_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 10_000;
const PING_TIMEOUT_MS = 10_000;
const BULK_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 30_000;
/** A connection case gives up after this many failed cycles. */
const MAX_CYCLE_FAILURES = 100;

/** Rejects with `Error('<what> timed out after <ms> ms')` unless `promise` settles first. */
async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const processStarted = performance.now();

/** One progress line on stderr, with the seconds since this process started. */
function progress(text: string): void {
  process.stderr.write(`    [${((performance.now() - processStarted) / 1000).toFixed(1)} s] ${text}\n`);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Counts failures of one kind and keeps the first message, for one note. */
class FailureTally {
  count = 0;
  first: string | undefined;
  constructor(private readonly what: string) {}
  add(error: unknown): void {
    this.count++;
    this.first ??= messageOf(error);
  }
  /** Adds a note when there were failures. */
  report(notes: string[]): void {
    if (this.count > 0) notes.push(`${this.count} ${this.what} failed (first: ${this.first ?? '?'})`);
  }
}

/** One connect + close. */
async function cycle(node: BenchNode, address: string): Promise<void> {
  const connection = await withTimeout(node.connect(address), DIAL_TIMEOUT_MS, 'connect');
  await withTimeout(connection.close(), CLOSE_TIMEOUT_MS, 'close');
}

/**
 * Connect + close cycles on one node until `deadline` (performance.now(), ms) or `cycles`,
 * whichever comes first. @returns the completed cycles.
 * @throws Error after {@link MAX_CYCLE_FAILURES} failures in the tally.
 */
async function cycleLoop(node: BenchNode, address: string, deadline: number, cycles: number, failures: FailureTally): Promise<number> {
  let done = 0;
  while (done < cycles && performance.now() < deadline) {
    try {
      await cycle(node, address);
      done++;
    } catch (error) {
      failures.add(error);
      if (failures.count >= MAX_CYCLE_FAILURES) throw new Error(`${failures.count} connect + close cycles failed (first: ${failures.first})`);
    }
  }
  return done;
}

/** The only address of a one-peer case. */
function onlyAddress(context: CaseContext): string {
  const address = context.addresses[0];
  if (address === undefined) throw new Error('no peer address');
  return address;
}

/** `conn-seq` and `conn-32`: `dialers` nodes, each in its own loop against the same peer. */
async function measureConnections(context: CaseContext, dialers: number): Promise<void> {
  const address = onlyAddress(context);
  const nodes: BenchNode[] = [];
  for (let index = 0; index < dialers; index++) nodes.push(await context.startNode({ maxConnections: 64 }));
  const failures = new FailureTally('connect + close cycles');
  const perNodeWarmUp = Math.ceil(CONNECT_WARM_UP / dialers);
  await Promise.all(nodes.map((node) => cycleLoop(node, address, Infinity, perNodeWarmUp, failures)));
  const warmUpFailures = failures.count;
  const started = performance.now();
  const deadline = started + CONNECT_WINDOW_MS;
  const counts = await Promise.all(nodes.map((node) => cycleLoop(node, address, deadline, Infinity, failures)));
  // Cycles begun before the deadline finish after it: count them, and the time they took.
  const elapsed = performance.now() - started;
  const total = counts.reduce((sum, count) => sum + count, 0);
  context.result.metrics.connPerSec = (total / elapsed) * 1000;
  if (warmUpFailures > 0) context.result.notes.push(`${warmUpFailures} failures during the warm-up`);
  failures.report(context.result.notes);
}

/** `throughput`: one 256 MiB sink stream on a fresh connection, after a 16 MiB warm-up. */
async function measureThroughput(context: CaseContext): Promise<void> {
  const address = onlyAddress(context);
  const node = await context.startNode({ maxConnections: 16 });
  // Raw TCP's sink spends its socket, so the warm-up has a connection of its own (for all three).
  const warmUp = await withTimeout(node.connect(address), DIAL_TIMEOUT_MS, 'connect');
  await withTimeout(warmUp.sendBulk(BULK_WARM_UP_BYTES, BULK_CHUNK_BYTES), BULK_TIMEOUT_MS, 'warm-up sendBulk');
  await withTimeout(warmUp.close(), CLOSE_TIMEOUT_MS, 'close');
  const connection = await withTimeout(node.connect(address), DIAL_TIMEOUT_MS, 'connect');
  const started = performance.now();
  await withTimeout(connection.sendBulk(BULK_BYTES, BULK_CHUNK_BYTES), BULK_TIMEOUT_MS, 'sendBulk');
  const seconds = (performance.now() - started) / 1000;
  context.result.metrics.mbPerSec = BULK_BYTES / 1e6 / seconds;
  await withTimeout(connection.close(), CLOSE_TIMEOUT_MS, 'close');
}

/** `ping`: 2,000 sequential pings on one connection after 200 warm-up pings. */
async function measurePing(context: CaseContext): Promise<void> {
  const node = await context.startNode({ maxConnections: 16 });
  const connection = await withTimeout(node.connect(onlyAddress(context)), DIAL_TIMEOUT_MS, 'connect');
  for (let index = 0; index < PING_WARM_UP; index++) await withTimeout(connection.ping(), PING_TIMEOUT_MS, 'ping');
  const rtts: number[] = [];
  for (let index = 0; index < PING_COUNT; index++) {
    const started = performance.now();
    await withTimeout(connection.ping(), PING_TIMEOUT_MS, 'ping');
    rtts.push(performance.now() - started);
  }
  context.result.metrics.medianMs = median(rtts);
  context.result.metrics.p99Ms = percentile(rtts, 99);
  await withTimeout(connection.close(), CLOSE_TIMEOUT_MS, 'close');
}

/** A forced full collection (twice: weak references and finalizers free more on the second). */
function fullGc(): void {
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc !== 'function') throw new Error('run bench/case.ts with --expose-gc: heap figures are taken after a full GC');
  (gc as () => void)();
  (gc as () => void)();
}

/** Heap used and resident set size after a full GC, bytes. */
function memoryAfterGc(): { heapUsed: number; rss: number } {
  fullGc();
  const usage = process.memoryUsage();
  return { heapUsed: usage.heapUsed, rss: usage.rss };
}

/** Runs `work` over `items` with at most `limit` in flight, in order of the items. */
async function forEachBounded<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>, until = Infinity): Promise<number> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && performance.now() < until) {
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return next;
}

/**
 * `hold-1000` / `hold-10000`: the node dials every peer (64 in flight), then stays idle for 25 s
 * (idle CPU, worst event-loop delay), then memory per connection, then a ping on every
 * connection (connections held); `hold-10000` also times the reaction to 200 destroyed sockets.
 */
async function measureHold(context: CaseContext, count: number, reactions: number): Promise<void> {
  const { metrics, notes } = context.result;
  const addresses = context.addresses.slice(0, count);
  const node = await context.startNode({ maxConnections: count + 64 });
  const before = memoryAfterGc();

  const connections: BenchConnection[] = [];
  const dialFailures = new FailureTally('dials');
  const dialStarted = performance.now();
  const attempted = await forEachBounded(
    addresses,
    DIALS_IN_FLIGHT,
    async (address) => {
      try {
        connections.push(await withTimeout(node.connect(address), DIAL_TIMEOUT_MS, 'connect'));
      } catch (error) {
        dialFailures.add(error);
      }
    },
    dialStarted + DIAL_PHASE_LIMIT_MS,
  );
  const dialSeconds = (performance.now() - dialStarted) / 1000;
  progress(`${connections.length} of ${count} connections up in ${dialSeconds.toFixed(1)} s; idle window of ${IDLE_WINDOW_MS / 1000} s`);
  notes.push(`${connections.length} of ${count} connections up in ${dialSeconds.toFixed(1)} s`);
  dialFailures.report(notes);
  if (attempted < addresses.length) notes.push(`${addresses.length - attempted} dials not attempted: the dial phase hit its ${DIAL_PHASE_LIMIT_MS / 1000} s limit`);

  // Collect the dial phase's garbage now, not inside the idle window, and let the timers it held
  // up run before the window opens.
  fullGc();
  await sleep(AFTER_GC_SETTLE_MS);
  const histogram = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  const cpuBefore = process.cpuUsage();
  const windowStarted = performance.now();
  histogram.enable();
  await sleep(IDLE_WINDOW_MS);
  histogram.disable();
  const cpu = process.cpuUsage(cpuBefore);
  const windowMs = performance.now() - windowStarted;
  metrics.idleCpuPercent = ((cpu.user + cpu.system) / 1000 / windowMs) * 100;
  metrics.maxLoopDelayMs = Math.max(0, histogram.max / 1e6 - LOOP_DELAY_RESOLUTION_MS);

  const after = memoryAfterGc();

  progress('idle window over; pinging every connection');
  const alive: BenchConnection[] = [];
  const pingFailures = new FailureTally('pings after the idle window');
  const checkStarted = performance.now();
  const checked = await forEachBounded(
    connections,
    DIALS_IN_FLIGHT,
    async (connection) => {
      try {
        await withTimeout(connection.ping(), LIVENESS_PING_TIMEOUT_MS, 'ping');
        alive.push(connection);
      } catch (error) {
        pingFailures.add(error);
      }
    },
    checkStarted + LIVENESS_PHASE_LIMIT_MS,
  );
  metrics.held = alive.length;
  pingFailures.report(notes);
  if (checked < connections.length) notes.push(`${connections.length - checked} connections not pinged: the check hit its ${LIVENESS_PHASE_LIMIT_MS / 1000} s limit`);
  // Per connection up after dialing, not per connection held: a ping that times out on a loaded
  // machine must not inflate the figure, and a dropped connection's memory counts as its system's.
  if (connections.length > 0) {
    metrics.heapPerConnKiB = (after.heapUsed - before.heapUsed) / connections.length / 1024;
    metrics.rssPerConnKiB = (after.rss - before.rss) / connections.length / 1024;
  }

  if (reactions > 0) {
    const reactionMs: number[] = [];
    const reactionFailures = new FailureTally('reactions');
    const reactionDeadline = performance.now() + REACTION_PHASE_LIMIT_MS;
    for (const connection of alive.slice(0, reactions)) {
      if (performance.now() >= reactionDeadline) break;
      try {
        reactionMs.push(await withTimeout(connection.destroySocketAndTimeReaction(), PING_TIMEOUT_MS, 'reaction'));
      } catch (error) {
        reactionFailures.add(error);
      }
    }
    reactionFailures.report(notes);
    if (reactionMs.length > 0) {
      metrics.reactionP50Ms = percentile(reactionMs, 50);
      metrics.reactionP99Ms = percentile(reactionMs, 99);
    }
    if (reactionMs.length < reactions) notes.push(`${reactionMs.length} of ${reactions} reactions timed (phase limit ${REACTION_PHASE_LIMIT_MS / 1000} s)`);
  }
}

const CONNECTION_METRIC: MetricSpec = {
  key: 'connPerSec',
  label: 'connections',
  unit: 'conn/s',
  targets: [{ kind: 'ratio', op: '>=', factor: 5, versus: 'js-libp2p' }],
};

/** The figures of a hold case; the idle CPU and loop-delay targets are set at 1,000 only. */
function holdMetrics(count: number): MetricSpec[] {
  const atThousand = count === 1_000;
  const metrics: MetricSpec[] = [
    { key: 'held', label: 'connections held', unit: 'count', targets: [] },
    { key: 'heapPerConnKiB', label: 'heap per connection', unit: 'KiB', targets: [{ kind: 'ratio', op: '<=', factor: 1 / 3, versus: 'js-libp2p' }] },
    { key: 'rssPerConnKiB', label: 'RSS per connection', unit: 'KiB', targets: [] },
    {
      key: 'idleCpuPercent',
      label: 'idle CPU',
      unit: '% of a core',
      targets: atThousand ? [{ kind: 'ratio', op: '<=', factor: 1 / 5, versus: 'js-libp2p' }] : [],
    },
    { key: 'maxLoopDelayMs', label: 'worst event-loop delay', unit: 'ms', targets: atThousand ? [{ kind: 'limit', op: '<=', value: 20 }] : [] },
  ];
  if (!atThousand) {
    metrics.push(
      { key: 'reactionP50Ms', label: 'reaction p50', unit: 'ms', targets: [] },
      { key: 'reactionP99Ms', label: 'reaction p99', unit: 'ms', targets: [{ kind: 'limit', op: '<=', value: 1 }] },
    );
  }
  return metrics;
}

function holdDescription(count: number): string {
  const reaction =
    count === 1_000
      ? ''
      : `; then the reaction: ${REACTIONS} connections, one after another, get their socket destroyed, timed until the node reacts (peerwarden: Backoff; js-libp2p: connection:close; raw TCP: 'close'), p50 and p99 (nearest rank; at most ${REACTION_PHASE_LIMIT_MS / 1000} s in all)`;
  return (
    `${count.toLocaleString('en-US')} peers in ${Math.ceil(count / 2_000)} process(es); the node dials all (${DIALS_IN_FLIGHT} in flight, 30 s per dial, no new dial after ${DIAL_PHASE_LIMIT_MS / 1000} s), ` +
    `GCs, waits ${AFTER_GC_SETTLE_MS / 1000} s for the timers the GC held up, then stays idle ${IDLE_WINDOW_MS / 1000} s with pings on (every system pings every 10 s): CPU of the node's process in % of one core (process.cpuUsage) ` +
    `and worst event-loop delay (monitorEventLoopDelay at ${LOOP_DELAY_RESOLUTION_MS} ms, max minus the sampling interval); then heap used and RSS after a full GC, ` +
    `minus the same before dialing, per connection up after dialing; held = connections answering a ping (within ${LIVENESS_PING_TIMEOUT_MS / 1000} s, ${DIALS_IN_FLIGHT} at a time, for at most ${LIVENESS_PHASE_LIMIT_MS / 1000} s) after the window${reaction}`
  );
}

/** Every case, in table order. */
export const CASES: readonly CaseDefinition[] = [
  {
    id: 'conn-seq',
    description:
      `one node dials one peer (its own process), connect (TCP + handshake + mux) then graceful close, in a loop: ` +
      `${CONNECT_WARM_UP} warm-up cycles, then cycles completed in ${CONNECT_WINDOW_MS / 1000} s per second`,
    metrics: [CONNECTION_METRIC],
    peers: 1,
    timeoutMs: 120_000,
    measure: (context) => measureConnections(context, 1),
  },
  {
    id: 'conn-32',
    description:
      `${CONCURRENT_DIALERS} nodes in one process, each in its own connect + close loop against the same peer: ` +
      `${Math.ceil(CONNECT_WARM_UP / CONCURRENT_DIALERS)} warm-up cycles each, then all cycles completed in ${CONNECT_WINDOW_MS / 1000} s (until the last loop ends) per second`,
    metrics: [CONNECTION_METRIC],
    peers: 1,
    timeoutMs: 120_000,
    measure: (context) => measureConnections(context, CONCURRENT_DIALERS),
  },
  {
    id: 'throughput',
    description:
      `one sink stream: sendBulk of 16 MiB on a first connection (warm-up), then 256 MiB in 64 KiB chunks on a second one, ` +
      `timed until the peer's byte count came back; MB = 10^6 bytes`,
    metrics: [
      {
        key: 'mbPerSec',
        label: 'one-stream throughput',
        unit: 'MB/s',
        targets: [
          { kind: 'ratio', op: '>=', factor: 2, versus: 'js-libp2p' },
          { kind: 'ratio', op: '>=', factor: 0.45, versus: 'raw TCP' },
        ],
      },
    ],
    peers: 1,
    timeoutMs: 240_000,
    measure: measureThroughput,
  },
  {
    id: 'ping',
    description: `one connection, the system's own ping: ${PING_WARM_UP.toLocaleString('en-US')} warm-up pings, then ${PING_COUNT.toLocaleString('en-US')} sequential pings timed with performance.now(); median and p99 (nearest rank)`,
    metrics: [
      { key: 'medianMs', label: 'ping RTT median', unit: 'ms', targets: [] },
      { key: 'p99Ms', label: 'ping RTT p99', unit: 'ms', targets: [{ kind: 'limit', op: '<=', value: 1 }] },
    ],
    peers: 1,
    timeoutMs: 120_000,
    measure: measurePing,
  },
  {
    id: 'hold-1000',
    description: holdDescription(1_000),
    metrics: holdMetrics(1_000),
    peers: 1_000,
    timeoutMs: 420_000,
    measure: (context) => measureHold(context, 1_000, 0),
  },
  {
    id: 'hold-10000',
    description: holdDescription(10_000),
    metrics: holdMetrics(10_000),
    peers: 10_000,
    timeoutMs: 600_000,
    measure: (context) => measureHold(context, 10_000, REACTIONS),
  },
];

/** The case named `text`. @throws RangeError on an unknown id. */
export function findCase(text: string): CaseDefinition {
  const found = CASES.find((definition) => definition.id === text.trim());
  if (found === undefined) throw new RangeError(`unknown case ${JSON.stringify(text)}; known: ${CASES.map((definition) => definition.id).join(', ')}`);
  return found;
}

/** Marker of the result line on stdout. */
export const RESULT_PREFIX = 'RESULT ';

/** Stops `stoppable`, bounded; a failure becomes a note. */
async function stopQuietly(what: string, stop: () => Promise<void>, notes: string[]): Promise<void> {
  try {
    await withTimeout(stop(), STOP_TIMEOUT_MS, `stopping ${what}`);
  } catch (error) {
    notes.push(`stopping ${what} failed: ${messageOf(error)}`);
  }
}

/** Runs one measurement and prints its `RESULT` line. @returns the exit code. */
async function main(argv: readonly string[]): Promise<number> {
  let definition: CaseDefinition;
  let implName: ImplName;
  try {
    const { values } = parseArgs({ args: [...argv], options: { case: { type: 'string' }, impl: { type: 'string' } }, strict: true });
    if (values.case === undefined || values.impl === undefined) throw new RangeError('usage: bench/case.ts --case <id> --impl <name>');
    definition = findCase(values.case);
    implName = parseImplName(values.impl);
  } catch (error) {
    console.error(messageOf(error));
    process.stdout.write(`${RESULT_PREFIX}${JSON.stringify({ error: messageOf(error) })}\n`);
    return 2;
  }
  const result: CaseResult = { case: definition.id, impl: implName, metrics: {}, notes: [] };
  // A stray rejection or exception inside a system under stress is a finding, not a reason to lose
  // the figures: count it, keep measuring (every operation has a timeout).
  const stray = new FailureTally('uncaught errors in the node process (unhandled rejections/exceptions)');
  process.on('unhandledRejection', (reason) => stray.add(reason));
  process.on('uncaughtException', (error) => stray.add(error));

  const nodes: BenchNode[] = [];
  let peers: PeerProcesses | undefined;
  try {
    const impl = await loadImpl(implName);
    progress(`${definition.id} / ${implName}: starting ${definition.peers} peer(s)`);
    peers = await startPeerProcesses(implName, definition.peers);
    progress('peers ready; measuring');
    await definition.measure({
      impl,
      addresses: peers.addresses,
      result,
      startNode: async (options) => {
        const node = await impl.startNode(options);
        nodes.push(node);
        return node;
      },
    });
  } catch (error) {
    result.error = messageOf(error);
  }
  progress('stopping');
  await Promise.all(nodes.map((node, index) => stopQuietly(`node ${index + 1}`, () => node.stop(), result.notes)));
  if (peers !== undefined) await peers.stop();
  stray.report(result.notes);
  progress('done');
  await new Promise<void>((resolve) => process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`, () => resolve()));
  return result.error === undefined ? 0 : 1;
}

// Run only as the entry point, so bench/run.ts can import the case definitions.
const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  // tsx turns source maps on; an error's stack would then parse every .map file of every
  // system under test (measured: 0.2 ms per error on a lost socket), which no production run pays.
  process.setSourceMapsEnabled(false);
  // exit() rather than exitCode: a system may leave handles behind after stop().
  process.exit(await main(process.argv.slice(2)));
}

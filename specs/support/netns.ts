/**
 * Two hosts for fault specs (issue 6 item 6): a pair of network namespaces joined by a veth pair,
 * a partition made with iptables DROP inside them, and child-process supervisors running in them
 * (`specs/support/netns-node.ts`). Only the addresses inside these namespaces are ever a target
 * (TESTING.md, Network targets); the commands are those of TESTING.md, Faults. Needs root, `ip`
 * (iproute2) and `iptables`; {@link netnsAvailable} says whether this machine has them.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { NodeCommand, NodeReport, NodeTransition } from './netns-node.js';

/** Any command taking longer than this (ms) is treated as failed: `ip` and `iptables` answer in milliseconds. */
const COMMAND_TIMEOUT_MS = 10_000;

/** iptables front ends to try, in order: the distribution's choice first, then each backend by name. */
const IPTABLES_CANDIDATES = ['iptables', 'iptables-nft', 'iptables-legacy'] as const;

/** The outcome of {@link netnsAvailable}: ok, or why the namespace specs cannot run here. */
export type NetnsAvailability = { readonly ok: true } | { readonly ok: false; readonly why: string };

interface CommandResult {
  readonly ok: boolean;
  readonly output: string;
}

/** Runs `file args…`, never rejecting: failures come back as `ok: false` with stderr (or the error) as output. */
function run(file: string, args: readonly string[]): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) resolve({ ok: false, output: (stderr || error.message).trim() });
      else resolve({ ok: true, output: stdout.trim() });
    });
  });
}

/** Like {@link run}, but throws an Error naming the command and its output when it fails. */
async function must(file: string, args: readonly string[]): Promise<string> {
  const result = await run(file, args);
  if (!result.ok) throw new Error(`${file} ${args.join(' ')} failed: ${result.output}`);
  return result.output;
}

/** The iptables front end that works inside a namespace, found once by {@link netnsAvailable}. */
let iptablesCommand: string | undefined;
let availability: Promise<NetnsAvailability> | undefined;

/**
 * Whether this machine lets a spec create network namespaces and partition them: checks that `ip`
 * runs, creates a throwaway namespace, finds an iptables front end that can insert and delete a
 * DROP rule inside it, and deletes the namespace again. The result is computed once per process.
 * Never rejects: every failure is `{ ok: false, why }`, `why` saying what was missing.
 */
export function netnsAvailable(): Promise<NetnsAvailability> {
  availability ??= probe();
  return availability;
}

async function probe(): Promise<NetnsAvailability> {
  if (process.platform !== 'linux') return { ok: false, why: `network namespaces need Linux, not ${process.platform}` };
  const ip = await run('ip', ['-V']);
  if (!ip.ok) return { ok: false, why: `\`ip\` (iproute2) does not run: ${ip.output}` };
  const name = `pw-probe-${process.pid}-${randomBytes(3).toString('hex')}`;
  const added = await run('ip', ['netns', 'add', name]);
  if (!added.ok) return { ok: false, why: `cannot create a network namespace (root needed): ${added.output}` };
  try {
    const failures: string[] = [];
    for (const candidate of IPTABLES_CANDIDATES) {
      const rule = ['INPUT', '-s', '10.200.255.2', '-j', 'DROP'];
      const inserted = await run('ip', ['netns', 'exec', name, candidate, '-w', '-I', ...rule]);
      const deleted = inserted.ok ? await run('ip', ['netns', 'exec', name, candidate, '-w', '-D', ...rule]) : inserted;
      if (deleted.ok) {
        iptablesCommand = candidate;
        return { ok: true };
      }
      failures.push(`${candidate}: ${deleted.output}`);
    }
    return { ok: false, why: `no iptables works inside a namespace (apt-get install -y iptables): ${failures.join('; ')}` };
  } finally {
    await run('ip', ['netns', 'del', name]);
  }
}

/** Which of the two hosts. */
export type Side = 'a' | 'b';

/** Two namespaces joined by a veth pair; see {@link createNetnsPair}. */
export interface NetnsPair {
  /** Namespace names, unique per run (`pw-a-<pid>-<hex>`, `pw-b-<pid>-<hex>`). */
  readonly namespaces: Readonly<Record<Side, string>>;
  /** The address of each host, e.g. `10.200.X.1` for a and `10.200.X.2` for b (/24, on the veth). */
  readonly addresses: Readonly<Record<Side, string>>;
  /** Whether the partition is in force. */
  readonly isCut: boolean;
  /**
   * Partitions the hosts both ways: inside each namespace, DROP on INPUT from the other host and on
   * OUTPUT to it (TESTING.md, Faults). Nothing is refused or reset: packets vanish. Idempotent.
   * @throws Error naming the iptables command that failed.
   */
  cut(): Promise<void>;
  /** Deletes the rules of {@link NetnsPair.cut}. Idempotent. @throws Error naming the command that failed. */
  heal(): Promise<void>;
  /**
   * Deletes the veth pair and both namespaces, ignoring what is already gone; idempotent and never
   * rejects. Processes still inside keep their namespace alive until they exit: stop them first.
   */
  destroy(): Promise<void>;
}

/** Pairs not destroyed yet, torn down synchronously should the process exit first. */
const live = new Set<{ destroySync(): void }>();
const onExit = (): void => {
  for (const pair of [...live]) pair.destroySync();
};
const onSignal = (signal: NodeJS.Signals): void => {
  onExit();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  // Die of the same signal, as the default handler would have.
  process.kill(process.pid, signal);
};
function track(pair: { destroySync(): void }): void {
  if (live.size === 0) {
    process.on('exit', onExit);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  live.add(pair);
}
function untrack(pair: { destroySync(): void }): void {
  live.delete(pair);
  if (live.size === 0) {
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/**
 * Creates namespaces a and b, a veth pair between them with `10.200.X.1/24` in a and
 * `10.200.X.2/24` in b (X random per run: each namespace has its own stack, so X only keeps
 * traces readable), and brings the veth ends and both loopbacks up. On any failure everything
 * made so far is deleted before the error is thrown. Also deleted when the process exits.
 * @throws Error when {@link netnsAvailable} is not ok, or naming the `ip` command that failed.
 */
export async function createNetnsPair(): Promise<NetnsPair> {
  const available = await netnsAvailable();
  if (!available.ok) throw new Error(`network namespaces are not available: ${available.why}`);
  const iptables = iptablesCommand ?? 'iptables';
  await sweepStale();
  const suffix = randomBytes(3).toString('hex');
  const namespaces = { a: `pw-a-${process.pid}-${suffix}`, b: `pw-b-${process.pid}-${suffix}` } as const;
  // Interface names are at most 15 bytes (IFNAMSIZ - 1).
  const veth = { a: `pw${suffix}a`, b: `pw${suffix}b` } as const;
  const subnet = 1 + (randomBytes(1)[0] ?? 0) % 254;
  const addresses = { a: `10.200.${subnet}.1`, b: `10.200.${subnet}.2` } as const;
  const peerOf = { a: addresses.b, b: addresses.a } as const;
  const ruleArgs = (side: Side): string[][] => [
    ['INPUT', '-s', peerOf[side], '-j', 'DROP'],
    ['OUTPUT', '-d', peerOf[side], '-j', 'DROP'],
  ];
  let isCut = false;
  let destroyed = false;

  const destroySync = (): void => {
    if (destroyed) return;
    destroyed = true;
    untrack(handle);
    for (const args of [['-n', namespaces.a, 'link', 'del', veth.a], ['netns', 'del', namespaces.a], ['netns', 'del', namespaces.b]]) {
      try {
        execFileSync('ip', args, { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
      } catch {
        // Already gone (or never made): destroy is idempotent.
      }
    }
  };
  const handle = { destroySync };
  track(handle);

  const pair: NetnsPair = {
    namespaces,
    addresses,
    get isCut() {
      return isCut;
    },
    async cut() {
      if (isCut) return;
      // Marked first, so a half-applied cut is still healed (deleting a missing rule is ignored there).
      isCut = true;
      for (const side of ['a', 'b'] as const) {
        for (const rule of ruleArgs(side)) await must('ip', ['netns', 'exec', namespaces[side], iptables, '-w', '-I', ...rule]);
      }
    },
    async heal() {
      if (!isCut) return;
      const failures: string[] = [];
      for (const side of ['a', 'b'] as const) {
        for (const rule of ruleArgs(side)) {
          const result = await run('ip', ['netns', 'exec', namespaces[side], iptables, '-w', '-D', ...rule]);
          if (!result.ok && !/does a matching rule exist|bad rule|no chain\/target\/match/i.test(result.output)) {
            failures.push(result.output);
          }
        }
      }
      if (failures.length > 0) throw new Error(`healing the partition failed: ${failures.join('; ')}`);
      isCut = false;
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      untrack(handle);
      // Deleting one end of a veth pair deletes both.
      await run('ip', ['-n', namespaces.a, 'link', 'del', veth.a]);
      await run('ip', ['netns', 'del', namespaces.a]);
      await run('ip', ['netns', 'del', namespaces.b]);
    },
  };

  try {
    await must('ip', ['netns', 'add', namespaces.a]);
    await must('ip', ['netns', 'add', namespaces.b]);
    await must('ip', ['link', 'add', veth.a, 'type', 'veth', 'peer', 'name', veth.b]);
    for (const side of ['a', 'b'] as const) {
      // Until it moves, the b end (or a end) lives in the root namespace: move both at once.
      await must('ip', ['link', 'set', veth[side], 'netns', namespaces[side]]);
    }
    for (const side of ['a', 'b'] as const) {
      const ns = namespaces[side];
      await must('ip', ['-n', ns, 'addr', 'add', `${addresses[side]}/24`, 'dev', veth[side]]);
      await must('ip', ['-n', ns, 'link', 'set', veth[side], 'up']);
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
  } catch (error) {
    // A veth end that never left the root namespace is deleted here too.
    await run('ip', ['link', 'del', veth.a]);
    await pair.destroy();
    throw error;
  }
  return pair;
}

/** Names this module gives its namespaces; the number is the pid of the process that made them. */
const OWN_NAMESPACE = /^pw-[ab]-(\d+)-[0-9a-f]{6}$/;

/**
 * Deletes namespaces this module made in processes that are gone: a run killed with SIGKILL
 * cannot clean up (its children exit when their stdin closes, but the names stay mounted).
 * Namespaces of live processes are left alone.
 */
async function sweepStale(): Promise<void> {
  const listed = await run('ip', ['netns', 'list']);
  if (!listed.ok) return;
  for (const line of listed.output.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const pid = OWN_NAMESPACE.exec(name)?.[1];
    if (pid === undefined || Number(pid) === process.pid || isAlive(Number(pid))) continue;
    await run('ip', ['netns', 'del', name]);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but is not ours to signal.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Settings of one {@link startNetnsNode} child, passed as its command-line flags (all ms). */
export interface NetnsNodeOptions {
  /** `host:port` to listen on inside the namespace (port 0: the OS picks). */
  readonly listen: string;
  /** 32-byte X25519 private key, hex; fresh when absent. */
  readonly keyHex?: string;
  readonly pingIntervalMs?: number;
  readonly pingTimeoutMs?: number;
  readonly inactivityTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
  readonly gracefulShutdownTimeoutMs?: number;
  readonly backoffBaseMs?: number;
  readonly backoffCapMs?: number;
}

/** A transition reported by a child, with its index in {@link NetnsNode.transitions}. */
export interface IndexedTransition {
  readonly index: number;
  readonly transition: NodeTransition;
}

/** A supervisor running in a child process inside one namespace; see {@link startNetnsNode}. */
export interface NetnsNode {
  readonly peerId: string;
  /** The bound `host:port` inside the namespace. */
  readonly listenAddress: string;
  /** Every transition reported so far, in order. */
  readonly transitions: readonly NodeTransition[];
  /**
   * Resolves with the first transition at index ≥ `fromIndex` (already reported or still to come)
   * for which `matches` holds.
   * @throws Error (rejects) when the child exits first, or when none comes within `limitMs`
   *   (a guard against hanging, not a wait: the message lists the transitions seen).
   */
  waitFor(matches: (transition: NodeTransition) => boolean, fromIndex: number, limitMs: number): Promise<IndexedTransition>;
  /**
   * Asks the child to connect to `address` and resolves when it reports Connected.
   * @throws Error (rejects) with the child's message when the connect fails or the child exits.
   */
  connect(address: string, kind: 'persistent' | 'temporary'): Promise<void>;
  /** The child's clock now (`performance.now()` there, the clock of its transitions' `t`), ms. */
  now(): Promise<number>;
  /**
   * Stops the supervisor gracefully and waits for the child to exit; kills it (SIGKILL) if it has
   * not exited within `limitMs`. Idempotent; never rejects.
   */
  stop(limitMs?: number): Promise<void>;
  /** What the child wrote to stderr and any stdout line that was not a report (for failure messages). */
  readonly log: readonly string[];
}

const NODE_SCRIPT = fileURLToPath(new URL('./netns-node.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Starts `specs/support/netns-node.ts` inside the namespace of `side` (`ip netns exec`, so the
 * child is that process itself, no shell between) and resolves once it reports ready. Reports come
 * as JSON lines on its stdout, commands go as JSON lines on its stdin (no IPC channel is
 * needed: `ip netns exec` execs in place, so an IPC channel would survive too, but lines on
 * stdio need nothing from the environment). The child also stops when its stdin closes, so it does not
 * outlive this process.
 * @throws Error (rejects) when the child exits or fails before it is ready.
 */
export function startNetnsNode(pair: NetnsPair, side: Side, options: NetnsNodeOptions): Promise<NetnsNode> {
  const flags: string[] = ['--listen', options.listen];
  if (options.keyHex !== undefined) flags.push('--key', options.keyHex);
  const numeric: [keyof NetnsNodeOptions, string][] = [
    ['pingIntervalMs', '--ping-interval-ms'],
    ['pingTimeoutMs', '--ping-timeout-ms'],
    ['inactivityTimeoutMs', '--inactivity-timeout-ms'],
    ['connectTimeoutMs', '--connect-timeout-ms'],
    ['handshakeTimeoutMs', '--handshake-timeout-ms'],
    ['gracefulShutdownTimeoutMs', '--graceful-shutdown-timeout-ms'],
    ['backoffBaseMs', '--backoff-base-ms'],
    ['backoffCapMs', '--backoff-cap-ms'],
  ];
  for (const [key, flag] of numeric) {
    const value = options[key];
    if (value !== undefined) flags.push(flag, String(value));
  }
  const child: ChildProcessWithoutNullStreams = spawn(
    'ip',
    ['netns', 'exec', pair.namespaces[side], process.execPath, '--import', 'tsx', NODE_SCRIPT, ...flags],
    { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const transitions: NodeTransition[] = [];
  const log: string[] = [];
  const listeners = new Set<(report: NodeReport | { type: 'exit'; detail: string }) => void>();
  let exited: string | undefined;
  let nextRequest = 0;

  const deliver = (report: NodeReport | { type: 'exit'; detail: string }): void => {
    for (const listener of [...listeners]) listener(report);
  };
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    pending += chunk;
    for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      const report = parseReport(line);
      if (!report) {
        if (line.trim() !== '') log.push(`stdout: ${line}`);
        continue;
      }
      if (report.type === 'transition') transitions.push(report.transition);
      deliver(report);
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => log.push(`stderr: ${chunk.trimEnd()}`));
  // The child may be gone when we write; its exit is reported through 'exit'.
  child.stdin.on('error', () => undefined);
  // Settles once the child is gone: it exited, or it could not be started at all.
  const exitedPromise = new Promise<void>((resolve) => {
    const gone = (detail: string): void => {
      if (exited !== undefined) return;
      exited = detail;
      deliver({ type: 'exit', detail });
      resolve();
    };
    child.once('close', (code, signal) => gone(`exited (code ${code ?? 'none'}, signal ${signal ?? 'none'})`));
    child.once('error', (error) => gone(`failed to start: ${error.message}`));
  });

  const command = (message: NodeCommand): void => {
    if (exited === undefined && child.stdin.writable) child.stdin.write(`${JSON.stringify(message)}\n`);
  };
  const describe = (): string => [`${side}: ${exited ?? 'running'}`, ...log.slice(-20)].join('\n  ');

  /**
   * Resolves with the first report `pick` maps to a value; rejects when the child exits first, or
   * after `limit.ms` (when given) with `limit.overdue()` as the message.
   */
  const awaitReport = <T>(
    pick: (report: NodeReport) => T | undefined,
    what: string,
    limit?: { readonly ms: number; readonly overdue: () => string },
  ): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (exited !== undefined) return reject(new Error(`node ${describe()} before ${what}`));
      let timer: NodeJS.Timeout | undefined;
      const settle = (settleWith: () => void): void => {
        listeners.delete(listener);
        clearTimeout(timer);
        settleWith();
      };
      const listener = (report: NodeReport | { type: 'exit'; detail: string }): void => {
        if (report.type === 'exit') return settle(() => reject(new Error(`node ${describe()} before ${what}`)));
        const value = pick(report);
        if (value !== undefined) settle(() => resolve(value));
      };
      listeners.add(listener);
      if (limit) timer = setTimeout(() => settle(() => reject(new Error(limit.overdue()))), limit.ms);
    });

  let stopping: Promise<void> | undefined;
  const node = (ready: Extract<NodeReport, { type: 'ready' }>): NetnsNode => ({
    peerId: ready.peerId,
    listenAddress: ready.listenAddress,
    transitions,
    log,
    waitFor(matches, fromIndex, limitMs) {
      for (let index = fromIndex; index < transitions.length; index++) {
        const transition = transitions[index];
        if (transition !== undefined && matches(transition)) return Promise.resolve({ index, transition });
      }
      const overdue = (): string => {
        const seen = transitions.slice(fromIndex).map((t) => `${t.from ?? 'start'}→${t.to}${t.reason ? ` (${t.reason})` : ''}`);
        return `no matching transition within ${limitMs} ms; seen since: ${seen.join(', ') || 'none'}\n  ${describe()}`;
      };
      return awaitReport(
        (report) => {
          if (report.type !== 'transition' || !matches(report.transition)) return undefined;
          return { index: transitions.length - 1, transition: report.transition };
        },
        'the awaited transition',
        { ms: limitMs, overdue },
      );
    },
    connect(address, kind) {
      const id = ++nextRequest;
      const result = awaitReport(
        (report) => (report.type === 'connectResult' && report.id === id ? report : undefined),
        `connect ${address}`,
      );
      command({ cmd: 'connect', id, address, kind });
      return result.then((report) => {
        if (!report.ok) throw new Error(`connect ${address} failed in ${side}: ${report.error}`);
      });
    },
    now() {
      const id = ++nextRequest;
      const result = awaitReport((report) => (report.type === 'now' && report.id === id ? report.t : undefined), 'now');
      command({ cmd: 'now', id });
      return result;
    },
    stop(limitMs = 5_000) {
      stopping ??= (async () => {
        if (exited !== undefined) return;
        command({ cmd: 'stop' });
        child.stdin.end();
        let timer: NodeJS.Timeout | undefined;
        const killed = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, limitMs);
        });
        await Promise.race([exitedPromise, killed]);
        clearTimeout(timer);
        await exitedPromise;
      })();
      return stopping;
    },
  });

  const ready = awaitReport((report) => (report.type === 'ready' ? report : undefined), 'ready');
  return ready.then(
    (report) => node(report),
    async (error: unknown) => {
      child.kill('SIGKILL');
      await exitedPromise;
      throw error;
    },
  );
}

/** One stdout line as a report, or undefined when it is not one (tsx or Node may print warnings). */
function parseReport(line: string): NodeReport | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value === 'object' && value !== null && 'type' in value && typeof value.type === 'string') {
      return value as NodeReport;
    }
  } catch {
    // Not JSON: kept in the log by the caller.
  }
  return undefined;
}

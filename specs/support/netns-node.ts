/**
 * A supervisor in a child process for the namespace specs (issue 6 item 6), like `demo/node.ts`
 * but driven by its parent: started by `startNetnsNode` in `specs/support/netns.ts` as
 * `ip netns exec <ns> node --import tsx specs/support/netns-node.ts --listen 10.200.X.n:PORT …`.
 *
 * Reports ({@link NodeReport}) go to the parent as JSON lines on stdout, commands
 * ({@link NodeCommand}) come as JSON lines on stdin: stdio survives `ip netns exec` whatever it
 * does to the environment, and nothing else is written to stdout. Transition times `t` are this
 * process's supervisor clock (`performance.now()`, ms); the `now` command reads the same clock, so
 * the parent can time a fault on it. The node stops when told to, or when stdin closes (the parent
 * is gone), and then exits.
 *
 * Flags (times in ms): `--listen HOST:PORT` (required), `--key HEX` (32-byte X25519 private key),
 * `--ping-interval-ms`, `--ping-timeout-ms`, `--inactivity-timeout-ms`, `--connect-timeout-ms`,
 * `--handshake-timeout-ms`, `--graceful-shutdown-timeout-ms`, `--backoff-base-ms`,
 * `--backoff-cap-ms` (the timeout backoff doubles from base to cap).
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { createSupervisor } from '../../supervisor/create-supervisor.js';
import type { ConnectionTransition } from '../../supervisor/create-supervisor.js';

/** A lifecycle transition as reported to the parent (the supervisor's `events$`, `t` in ms of its clock). */
export type NodeTransition = Pick<
  ConnectionTransition,
  't' | 'connectionId' | 'peerId' | 'address' | 'direction' | 'kind' | 'from' | 'to' | 'reason' | 'attempt' | 'nextDelayMs'
>;

/** A command from the parent, one JSON object per stdin line. */
export type NodeCommand =
  | { readonly cmd: 'connect'; readonly id: number; readonly address: string; readonly kind: 'persistent' | 'temporary' }
  | { readonly cmd: 'now'; readonly id: number }
  | { readonly cmd: 'stop' };

/** A report to the parent, one JSON object per stdout line. */
export type NodeReport =
  | { readonly type: 'ready'; readonly peerId: string; readonly listenAddress: string }
  | { readonly type: 'transition'; readonly transition: NodeTransition }
  | { readonly type: 'connectResult'; readonly id: number; readonly ok: true }
  | { readonly type: 'connectResult'; readonly id: number; readonly ok: false; readonly error: string }
  | { readonly type: 'now'; readonly id: number; readonly t: number }
  | { readonly type: 'stopped' };

const report = (message: NodeReport): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};

/** Parses a non-negative ms flag; undefined when absent. @throws RangeError for anything else. */
function milliseconds(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`--${name} must be a non-negative number of ms, not ${value}`);
  return ms;
}

/** Whether a parsed stdin line is a command this node knows (anything else is ignored). */
function isCommand(value: unknown): value is NodeCommand {
  if (typeof value !== 'object' || value === null || !('cmd' in value)) return false;
  const command = value as Record<string, unknown>;
  switch (command.cmd) {
    case 'connect':
      return (
        typeof command.id === 'number' &&
        typeof command.address === 'string' &&
        (command.kind === 'persistent' || command.kind === 'temporary')
      );
    case 'now':
      return typeof command.id === 'number';
    case 'stop':
      return true;
    default:
      return false;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string' },
      key: { type: 'string' },
      'ping-interval-ms': { type: 'string' },
      'ping-timeout-ms': { type: 'string' },
      'inactivity-timeout-ms': { type: 'string' },
      'connect-timeout-ms': { type: 'string' },
      'handshake-timeout-ms': { type: 'string' },
      'graceful-shutdown-timeout-ms': { type: 'string' },
      'backoff-base-ms': { type: 'string' },
      'backoff-cap-ms': { type: 'string' },
    },
  });
  if (values.listen === undefined) throw new Error('--listen HOST:PORT is required');
  const ms = (name: keyof typeof values): number | undefined => {
    const value = values[name];
    return milliseconds(name, typeof value === 'string' ? value : undefined);
  };
  const defined = <T extends object>(record: T): Partial<T> =>
    Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined)) as Partial<T>;

  const inactivityTimeoutMs = ms('inactivity-timeout-ms');
  const supervisor = createSupervisor({
    listen: values.listen,
    ...(values.key !== undefined ? { staticPrivateKey: Buffer.from(values.key, 'hex') } : {}),
    timeouts: defined({
      connectTimeoutMs: ms('connect-timeout-ms'),
      handshakeTimeoutMs: ms('handshake-timeout-ms'),
      gracefulShutdownTimeoutMs: ms('graceful-shutdown-timeout-ms'),
    }),
    ping: defined({ intervalMs: ms('ping-interval-ms'), timeoutMs: ms('ping-timeout-ms') }),
    timeoutBackoff: defined({ baseMs: ms('backoff-base-ms'), capMs: ms('backoff-cap-ms'), factor: 2 }),
    ...(inactivityTimeoutMs !== undefined ? { inactivityTimeoutMs } : {}),
  });

  supervisor.events$.subscribe((event) => {
    report({
      type: 'transition',
      transition: {
        t: event.t,
        connectionId: event.connectionId,
        peerId: event.peerId,
        address: event.address,
        direction: event.direction,
        kind: event.kind,
        from: event.from,
        to: event.to,
        reason: event.reason,
        attempt: event.attempt,
        nextDelayMs: event.nextDelayMs,
      },
    });
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= supervisor.stop().then(() => {
      report({ type: 'stopped' });
      // Nothing is left to run once the supervisor is stopped and stdin is closed; exit anyway,
      // so a handle someone forgot cannot keep the namespace alive.
      process.stdout.write('', () => process.exit(0));
    });
    return stopping;
  };

  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return;
    }
    if (!isCommand(parsed)) return;
    switch (parsed.cmd) {
      case 'connect': {
        const { id, address, kind } = parsed;
        supervisor.connect(address, { kind }).then(
          () => report({ type: 'connectResult', id, ok: true }),
          (error: unknown) =>
            report({ type: 'connectResult', id, ok: false, error: error instanceof Error ? error.message : String(error) }),
        );
        return;
      }
      case 'now':
        report({ type: 'now', id: parsed.id, t: performance.now() });
        return;
      case 'stop':
        void stop();
        return;
    }
  });
  // The parent closed our stdin or died: do not outlive it.
  lines.on('close', () => void stop());

  await supervisor.start();
  report({ type: 'ready', peerId: supervisor.peerId, listenAddress: supervisor.listenAddress ?? values.listen });
}

main().catch((error: unknown) => {
  process.stderr.write(`netns-node: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});

/**
 * The systems under test and the processes that hold their listening peers.
 *
 * Two sides in one file, because they speak one small IPC protocol:
 * - the **child** (this file as a process entry, forked by `bench/case.ts`):
 *   `peers.ts <impl name> <count>` loads the system, starts `count` peers, sends
 *   `{ type: 'ready', addresses }` to its parent, and stops on a `'stop'` message or as soon as the
 *   parent disconnects (it never outlives the node's process); its listeners get explicit ports
 *   below the ephemeral range (see `listenBelowEphemeralRange`);
 * - the **parent** ({@link startPeerProcesses}): forks as many children as the fd limit needs.
 *
 * The systems are loaded by dynamic import of `./impls/<file>.js`, so a system whose file does
 * not exist yet is reported ({@link ImplUnavailable}) instead of breaking the whole benchmark.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type { BenchImpl, ImplName, PeerGroup } from './impl.js';
import { IMPL_ORDER } from './stats.js';

/**
 * Peers per process at most: the fd limit is 20,000 per process and root cannot raise it
 * (shared TESTING.md); a peer costs a listener and a connection, plus what its system opens.
 */
export const PEERS_PER_PROCESS = 2_000;

/** How long the children may take to start their peers, ms. */
const READY_TIMEOUT_MS = 180_000;
/** How long a child may take to stop after `'stop'` before it is killed, ms. */
const STOP_TIMEOUT_MS = 20_000;

/** Where each system lives: its file under `bench/impls/` (as imported, `.js`) and its export. */
export const IMPL_MODULES: Readonly<Record<ImplName, { readonly file: string; readonly exportName: string }>> = {
  peerwarden: { file: 'peerwarden.js', exportName: 'peerwardenImpl' },
  'js-libp2p': { file: 'libp2p.js', exportName: 'libp2pImpl' },
  'raw TCP': { file: 'tcp.js', exportName: 'tcpImpl' },
};

/** Short spellings accepted on the command line besides the names themselves. */
const ALIASES: Readonly<Record<string, ImplName>> = { pw: 'peerwarden', libp2p: 'js-libp2p', tcp: 'raw TCP', raw: 'raw TCP' };

/**
 * The system named `text` (its name, case-insensitive, or `pw`, `libp2p`, `tcp`, `raw`).
 * @throws RangeError on an unknown name.
 */
export function parseImplName(text: string): ImplName {
  const wanted = text.trim().toLowerCase();
  const found = IMPL_ORDER.find((name) => name.toLowerCase() === wanted) ?? ALIASES[wanted];
  if (found === undefined) throw new RangeError(`unknown system ${JSON.stringify(text)}; known: ${IMPL_ORDER.join(', ')}`);
  return found;
}

/** A system cannot be loaded: its file is missing, fails to load, or lacks its export. */
export class ImplUnavailable extends Error {
  constructor(
    readonly impl: ImplName,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ImplUnavailable';
  }
}

function isBenchImpl(value: unknown): value is BenchImpl {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<Record<keyof BenchImpl, unknown>>;
  return typeof candidate.name === 'string' && typeof candidate.startPeers === 'function' && typeof candidate.startNode === 'function';
}

/**
 * Loads one system by dynamic import of `bench/impls/<file>.js`.
 * @throws ImplUnavailable when the file is missing, throws while loading, or does not export a
 *   {@link BenchImpl} under the expected name.
 */
export async function loadImpl(name: ImplName): Promise<BenchImpl> {
  const { file, exportName } = IMPL_MODULES[name];
  const url = new URL(`./impls/${file}`, import.meta.url);
  const shown = `bench/impls/${file.replace(/\.js$/, '.ts')}`;
  let module: Record<string, unknown>;
  try {
    module = (await import(url.href)) as Record<string, unknown>;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const message = error instanceof Error ? error.message : String(error);
    if (code === 'ERR_MODULE_NOT_FOUND' && message.includes(fileURLToPath(url).replace(/\.js$/, ''))) {
      throw new ImplUnavailable(name, `${name}: ${shown} does not exist (yet)`, { cause: error });
    }
    throw new ImplUnavailable(name, `${name}: ${shown} failed to load: ${message}`, { cause: error });
  }
  const impl = module[exportName];
  if (!isBenchImpl(impl)) throw new ImplUnavailable(name, `${name}: ${shown} does not export a BenchImpl named ${exportName}`);
  return impl;
}

/** Messages from a child to its parent. */
type ChildMessage = { readonly type: 'ready'; readonly addresses: readonly string[] } | { readonly type: 'error'; readonly message: string };

function isChildMessage(value: unknown): value is ChildMessage {
  if (typeof value !== 'object' || value === null) return false;
  const message = value as { type?: unknown; addresses?: unknown; message?: unknown };
  return (message.type === 'ready' && Array.isArray(message.addresses)) || (message.type === 'error' && typeof message.message === 'string');
}

/** Peers of one system spread over child processes. */
export interface PeerProcesses {
  /** One address per peer, the processes' lists interleaved so that dials spread over them. */
  readonly addresses: readonly string[];
  /** Process IDs of the children. */
  readonly pids: readonly number[];
  /** Asks every child to stop, waits for it to exit and kills it after 20 s. Never rejects. */
  stop(): Promise<void>;
}

/** Resolves when `child` has exited; kills it with SIGKILL after `timeoutMs`. */
function exited(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function stopChildren(children: readonly ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map((child) => {
      if (child.connected) child.send('stop', () => undefined);
      return exited(child, STOP_TIMEOUT_MS);
    }),
  );
}

/** Forks one child and resolves with its addresses. @throws Error when it fails, exits or times out first. */
function startChild(impl: ImplName, count: number, child: ChildProcess): Promise<readonly string[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`peers of ${impl} not ready after ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    const onMessage = (message: unknown): void => {
      if (!isChildMessage(message)) return;
      if (message.type === 'error') finish(new Error(`peers of ${impl}: ${message.message}`));
      else if (message.addresses.length !== count) finish(new Error(`peers of ${impl}: ${message.addresses.length} addresses for ${count} peers`));
      else finish(undefined, message.addresses);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      finish(new Error(`peers of ${impl} exited before they were ready (code ${code}, signal ${signal})`));
    const finish = (error: Error | undefined, addresses?: readonly string[]): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error !== undefined) reject(error);
      else resolve(addresses ?? []);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.once('error', (error) => finish(error));
  });
}

/**
 * Starts `count` peers of `impl` in `ceil(count / 2000)` child processes (near-equal shares),
 * each forked with `--import tsx` plus the Node flags in the `BENCH_PEER_NODE_FLAGS` environment
 * variable, space-separated (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the peers,
 * which `NODE_OPTIONS` refuses); their stdout and stderr go to this process's stderr.
 * @throws Error when a child fails, exits or is not ready within 180 s (the others are stopped).
 */
export async function startPeerProcesses(impl: ImplName, count: number): Promise<PeerProcesses> {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`peer count must be a positive integer, got ${count}`);
  const processCount = Math.ceil(count / PEERS_PER_PROCESS);
  const file = fileURLToPath(import.meta.url);
  const children: ChildProcess[] = [];
  const starting: Promise<readonly string[]>[] = [];
  for (let index = 0; index < processCount; index++) {
    const share = Math.floor(count / processCount) + (index < count % processCount ? 1 : 0);
    const execArgv = ['--import', 'tsx', ...(process.env.BENCH_PEER_NODE_FLAGS ?? '').split(' ').filter(Boolean)];
    const child = fork(file, [impl, String(share)], { execArgv, stdio: ['ignore', 2, 2, 'ipc'] });
    children.push(child);
    starting.push(startChild(impl, share, child));
  }
  let lists: (readonly string[])[];
  try {
    lists = await Promise.all(starting);
  } catch (error) {
    await Promise.allSettled(starting);
    await stopChildren(children);
    throw error;
  }
  const addresses: string[] = [];
  for (let position = 0; addresses.length < count; position++) {
    for (const list of lists) {
      const address = list[position];
      if (address !== undefined) addresses.push(address);
    }
  }
  return {
    addresses,
    pids: children.map((child) => child.pid ?? -1),
    stop: () => stopChildren(children),
  };
}

/** Lowest and highest port {@link listenBelowEphemeralRange} hands out. */
const PEER_PORT_FLOOR = 10_000;
const PEER_PORT_CEILING = 32_767;
/** Busy ports tried for one listen before it falls back to port 0: about every port of the range. */
const MAX_BUSY_PORTS = PEER_PORT_CEILING - PEER_PORT_FLOOR;

/**
 * In a peers process only: every `listen({ host: '127.0.0.1', port: 0 })` (or `listen(0,
 * '127.0.0.1', …)`) of any system gets an explicit port in 10000–32767 instead: consecutive ports
 * from a random start, and a new random start whenever a port is in use (EADDRINUSE is retried,
 * not seen by the caller; after about as many tries as the range holds, port 0 after all).
 *
 * Why: the kernel's own choice for port 0 slows down sharply once a few thousand ports are bound
 * on one address (10,000 listeners: ~60 s with port 0, ~1 s on explicit ports, measured on this
 * machine), which made `hold-10000`'s peers take minutes to start. These ports lie below the
 * ephemeral range (32768–60999 here), so no dial and no TIME_WAIT socket holds them (shared
 * TESTING.md allows them). Every system's peers get the same treatment; nothing is measured here.
 * Set `BENCH_KERNEL_PORTS=1` to keep the kernel's choice.
 */
function listenBelowEphemeralRange(): void {
  type Listen = (this: net.Server, ...args: unknown[]) => net.Server;
  type Emit = (this: net.Server, event: string | symbol, ...args: unknown[]) => boolean;
  const original = Reflect.get(net.Server.prototype, 'listen') as Listen;
  const randomPort = (): number => PEER_PORT_FLOOR + Math.floor(Math.random() * (PEER_PORT_CEILING - PEER_PORT_FLOOR));
  let nextPort = randomPort();
  const takePort = (): number => {
    const port = nextPort;
    nextPort = port >= PEER_PORT_CEILING ? PEER_PORT_FLOOR : port + 1;
    return port;
  };
  /** The listen options of a loopback port-0 listen, or undefined for any other listen. */
  const loopbackAnyPort = (args: readonly unknown[]): net.ListenOptions | undefined => {
    const [first, second, third] = args;
    if (typeof first === 'object' && first !== null) {
      const options = first as net.ListenOptions & { fd?: unknown };
      const plain = options.path === undefined && options.fd === undefined;
      return plain && options.port === 0 && options.host === '127.0.0.1' ? options : undefined;
    }
    if (first === 0 && second === '127.0.0.1') return { port: 0, host: '127.0.0.1', ...(typeof third === 'number' ? { backlog: third } : {}) };
    return undefined;
  };
  const listenOnFreePort = (server: net.Server, options: net.ListenOptions, callback: (() => void) | undefined): net.Server => {
    if (callback !== undefined) server.once('listening', callback);
    // Node emits a bind error on the next tick through emit('error'); intercept EADDRINUSE and try
    // the next port (listen may be called again after an error), pass anything else on.
    const ownEmit = Object.prototype.hasOwnProperty.call(server, 'emit');
    const emit = Reflect.get(server, 'emit') as Emit;
    let busy = 0;
    const retryingEmit = (event: string | symbol, ...rest: unknown[]): boolean => {
      if (event === 'error' && (rest[0] as { code?: unknown } | undefined)?.code === 'EADDRINUSE' && busy <= MAX_BUSY_PORTS) {
        busy++;
        // Jump rather than scan on: the other peer processes fill runs of consecutive ports.
        nextPort = randomPort();
        // The range is full: the kernel's choice after all (slow, but it finds one).
        original.call(server, { ...options, port: busy > MAX_BUSY_PORTS ? 0 : takePort() });
        return true;
      }
      if (event === 'listening' || event === 'error') {
        if (ownEmit) Reflect.set(server, 'emit', emit);
        else Reflect.deleteProperty(server, 'emit');
      }
      return emit.call(server, event, ...rest);
    };
    Reflect.set(server, 'emit', retryingEmit);
    return original.call(server, { ...options, port: takePort() });
  };
  const listen: Listen = function (...args) {
    const options = loopbackAnyPort(args);
    if (options === undefined) return original.apply(this, args);
    return listenOnFreePort(
      this,
      options,
      args.find((arg): arg is () => void => typeof arg === 'function'),
    );
  };
  Reflect.set(net.Server.prototype, 'listen', listen);
}

/** The child: starts the peers, reports their addresses, stops on 'stop' or when orphaned. */
async function runChild(argv: readonly string[]): Promise<void> {
  const send = (message: ChildMessage): void => {
    if (process.connected) process.send?.(message, () => undefined);
  };
  let group: PeerGroup | undefined;
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    // Never hang here: the parent kills after 20 s anyway, exit a little earlier on our own.
    const deadline = setTimeout(() => process.exit(0), STOP_TIMEOUT_MS - 2_000);
    deadline.unref();
    try {
      await group?.stop();
    } catch (error) {
      console.error('peers: stop failed:', error);
    }
    process.exit(0);
  };
  process.on('disconnect', () => void stop());
  process.on('message', (message) => {
    if (message === 'stop') void stop();
  });
  if (!process.connected) {
    console.error('peers.ts runs only as a child of bench/case.ts (it needs an IPC channel)');
    process.exit(2);
  }
  try {
    const [name, countText] = argv;
    const count = Number(countText);
    if (name === undefined || !Number.isInteger(count) || count < 1) throw new RangeError('usage: peers.ts <impl name> <count>');
    if (process.env.BENCH_KERNEL_PORTS !== '1') listenBelowEphemeralRange();
    const impl = await loadImpl(parseImplName(name));
    group = await impl.startPeers({ count });
    if (stopping) {
      await group.stop();
      return;
    }
    send({ type: 'ready', addresses: [...group.addresses] });
  } catch (error) {
    send({ type: 'error', message: error instanceof Error ? error.message : String(error) });
    await stop();
  }
}

// Run only as the entry point, so bench/case.ts and bench/run.ts can import the parent side.
const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  // tsx turns source maps on; an error's stack would then parse every .map file of every
  // system under test (measured: 0.2 ms per error on a lost socket), which no production run pays.
  process.setSourceMapsEnabled(false);
  await runChild(process.argv.slice(2));
}

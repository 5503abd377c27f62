/**
 * The fault matrix over real sockets on 127.0.0.1 (peerwarden issue 6, item 2): each fault ends
 * in the reason and the strategy of DESIGN §2 within its timeout, and what follows is checked:
 * Backoff with a jittered `nextDelayMs` for persistent peers, Closed for inbound (and temporary)
 * connections, Banned once ProtocolViolations repeat.
 *
 * Faults come from the fault proxy (`support/fault-proxy.ts`), from raw misbehaving peers built
 * here out of the project's own Noise, secure-channel and yamux pieces, and from a peer process
 * killed with SIGKILL (`support/fault-peer.ts`).
 *
 * Timing: every duration is measured with the `t` of the transitions (the supervisor's clock,
 * `performance.now()`, the same clock as this process). A bound set by a timer is checked within
 * [timer − 50 ms, timer + 500 ms]: Node counts timers from the event loop's cached time (a timer
 * may fire a few ms "early" against `performance.now()`), and the machines are shared and noisy.
 * A fault that must end a connection before any timer is checked against the timer it must beat.
 *
 * The strategy is not on `events$`: it is read from the `connection.transition` reports through
 * the supervisor's `inspect` option. Nothing sleeps: every wait is on a transition, a socket
 * event or a promise. The whole file fails on any uncaught exception or unhandled rejection.
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Subscription } from 'rxjs';
import type { InspectionEvent } from 'xstate';
import { ConnectionFailed, createSupervisor } from '../index.js';
import type {
  BackoffOptions,
  ConnectionInfo,
  ConnectionReport,
  ConnectionTransition,
  ReconnectStrategy,
  Supervisor,
  SupervisorOptions,
} from '../index.js';
import { CONTROL_PROTOCOL } from '../transport/control-channel.js';
import type { DisconnectReason } from '../transport/disconnect-reason.js';
import { createNodeNonce, PROTOCOL_VERSION } from '../transport/handshake-payload.js';
import type { HandshakePayload } from '../transport/handshake-payload.js';
import { nobleCrypto } from '../transport/noise/crypto.js';
import type { KeyPair } from '../transport/noise/crypto.js';
import { handshakeInitiator, handshakeResponder } from '../transport/noise/handshake.js';
import { peerIdFromPublicKey } from '../transport/peer-id.js';
import { encodeProtocolHeader } from '../transport/protocol-select.js';
import { SecureChannel } from '../transport/secure-channel.js';
import { encodeHeader, FrameType, HEADER_LENGTH, MAX_UINT32, YAMUX_VERSION } from '../transport/yamux/frame.js';
import { YamuxSession } from '../transport/yamux/session.js';
import { startFaultProxy } from './support/fault-proxy.js';
import type { FaultPeerReady } from './support/fault-peer.js';
import { failOnUncaught } from './support/crashes.js';

const TIMEOUTS = { connectTimeoutMs: 1_000, handshakeTimeoutMs: 600, gracefulShutdownTimeoutMs: 300 };
const PING = { intervalMs: 100, timeoutMs: 500 };
const TIMEOUT_BACKOFF: BackoffOptions = { baseMs: 20, factor: 2, capMs: 200 };
const VIOLATION_BACKOFF: BackoffOptions = { baseMs: 40, factor: 2, capMs: 400 };
/** A timer may fire this much before its nominal time against `performance.now()`, ms. */
const EARLY_MS = 50;
/** ...and this much after it on a loaded machine, ms. */
const LATE_MS = 500;
/** Per test: a hang fails the test instead of the run. */
const TEST_TIMEOUT_MS = 15_000;

const fast: SupervisorOptions = {
  listen: '127.0.0.1:0',
  timeouts: TIMEOUTS,
  ping: PING,
  timeoutBackoff: TIMEOUT_BACKOFF,
  violationBackoff: VIOLATION_BACKOFF,
};

const PEER_SCRIPT = fileURLToPath(new URL('./support/fault-peer.ts', import.meta.url));

type TransitionReport = Extract<ConnectionReport, { type: 'connection.transition' }>;

/** A transition of `events$` with the strategy its report carried. */
type Recorded = ConnectionTransition & { readonly strategy: ReconnectStrategy | null };

/** Every transition of one supervisor, with its strategy, and waits on them. */
class TransitionLog {
  readonly seen: Recorded[] = [];
  /** Strategies of the reports the supervisor received, per connection, not yet on `events$`. */
  private readonly strategies = new Map<string, (ReconnectStrategy | null)[]>();
  private readonly waiters = new Set<{ matches: (event: Recorded) => boolean; resolve: (event: Recorded) => void }>();
  private subscription: Subscription | undefined;

  /** For `createSupervisor({ inspect })`: reports reach the supervisor before `events$` publishes them, in order. */
  readonly inspect = (inspection: InspectionEvent): void => {
    if (inspection.type !== '@xstate.event' || inspection.event.type !== 'connection.transition') return;
    const report = inspection.event as TransitionReport;
    const queue = this.strategies.get(report.connectionId) ?? [];
    queue.push(report.strategy);
    this.strategies.set(report.connectionId, queue);
  };

  attach(supervisor: Supervisor): void {
    this.subscription = supervisor.events$.subscribe((event) => {
      const recorded: Recorded = { ...event, strategy: this.strategies.get(event.connectionId)?.shift() ?? null };
      this.seen.push(recorded);
      for (const waiter of [...this.waiters]) {
        if (!waiter.matches(recorded)) continue;
        this.waiters.delete(waiter);
        waiter.resolve(recorded);
      }
    });
  }

  /** How many transitions so far: pass it to {@link when} to wait only for later ones. */
  get mark(): number {
    return this.seen.length;
  }

  /** The first transition at index `from` or later that matches (already seen, or the next to come). */
  when(matches: (event: Recorded) => boolean, from = 0): Promise<Recorded> {
    const found = this.seen.slice(from).find(matches);
    if (found) return Promise.resolve(found);
    return new Promise<Recorded>((resolve) => this.waiters.add({ matches, resolve }));
  }

  /** The transitions of one connection, in order. */
  of(connectionId: string): Recorded[] {
    return this.seen.filter((event) => event.connectionId === connectionId);
  }

  detach(): void {
    this.subscription?.unsubscribe();
  }
}

/** A started supervisor and its transition log. */
interface Node {
  readonly supervisor: Supervisor;
  readonly log: TransitionLog;
}

async function startNode(overrides: SupervisorOptions = {}): Promise<Node> {
  const log = new TransitionLog();
  const supervisor = createSupervisor({ ...fast, ...overrides, inspect: log.inspect });
  log.attach(supervisor);
  await supervisor.start();
  return { supervisor, log };
}

async function stopNodes(...nodes: Node[]): Promise<void> {
  await Promise.all(nodes.map((node) => node.supervisor.stop()));
  for (const node of nodes) node.log.detach();
}

/**
 * `connect()` of a persistent peer stays pending through Backoff and only settles at `stop()` or
 * Banned: keep its outcome from becoming an unhandled rejection, and let the spec await it.
 */
function dial(node: Node, address: string, kind: 'persistent' | 'temporary' = 'persistent'): Promise<ConnectionInfo | Error> {
  return node.supervisor.connect(address, { kind }).then(
    (info) => info,
    (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
  );
}

/** How a `dial()` ended, for assertion messages. */
function outcomeText(outcome: ConnectionInfo | Error): string {
  return outcome instanceof Error ? `${outcome.name}: ${outcome.message}` : `resolved with ${outcome.connectionId} (${outcome.state})`;
}

const isOutbound = (event: Recorded): boolean => event.direction === 'outbound';
const isInbound = (event: Recorded): boolean => event.direction === 'inbound';
const ended = (event: Recorded): boolean => event.to === 'backoff' || event.to === 'closed' || event.to === 'banned';

/** Asserts a Backoff: the reason, WithBackoff, and a full-jitter delay under the ceiling of its attempt. */
function assertBackoff(event: Recorded, reason: DisconnectReason, backoff: BackoffOptions): void {
  assert.equal(event.to, 'backoff');
  assert.equal(event.reason, reason);
  assert.equal(event.strategy, 'WithBackoff');
  // The report's attempt is already counted (countAttempt runs before Backoff is entered).
  const ceiling = Math.min(backoff.capMs, backoff.baseMs * backoff.factor ** (event.attempt - 1));
  assert.ok(
    event.nextDelayMs !== null && event.nextDelayMs >= 0 && event.nextDelayMs <= ceiling,
    `nextDelayMs ${event.nextDelayMs} within [0, ${ceiling}] for attempt ${event.attempt}`,
  );
}

/** Asserts an end for good: Closed (or Banned) with the reason and strategy Never. */
function assertEnd(event: Recorded, to: 'closed' | 'banned', reason: DisconnectReason): void {
  assert.equal(event.to, to);
  assert.equal(event.reason, reason);
  assert.equal(event.strategy, 'Never');
  assert.equal(event.nextDelayMs, null);
}

function assertElapsed(fromMs: number, toMs: number, minMs: number, maxMs: number, what: string): void {
  const elapsed = toMs - fromMs;
  assert.ok(elapsed >= minMs && elapsed <= maxMs, `${what}: ${elapsed.toFixed(1)} ms, expected within [${minMs}, ${maxMs}]`);
}

/** Asserts the redial waited its `nextDelayMs` (a timer: the early tolerance applies). */
function assertWaited(backoff: Recorded, redial: Recorded): void {
  assert.equal(redial.from, 'backoff');
  assert.equal(redial.to, 'connecting');
  assertElapsed(backoff.t, redial.t, (backoff.nextDelayMs ?? 0) - EARLY_MS, (backoff.nextDelayMs ?? 0) + LATE_MS, 'backoff wait');
}

/** A raw listener on 127.0.0.1 whose sockets `close()` destroys. */
interface RawServer {
  readonly address: string;
  close(): Promise<void>;
}

async function rawServer(onSocket: (socket: net.Socket) => void): Promise<RawServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
    onSocket(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...sockets].map(destroyed));
      await closed;
    },
  };
}

/** Destroys `socket` and resolves once it is closed. */
function destroyed(socket: net.Socket): Promise<void> {
  return new Promise<void>((resolve) => {
    if (socket.closed) return resolve();
    socket.once('close', () => resolve());
    socket.destroy();
  });
}

/** A raw TCP client to `address`, errors ignored (the supervisor under test resets it). */
async function rawClient(address: string): Promise<net.Socket> {
  const [host, port] = address.split(':');
  const socket = net.connect({ host: host as string, port: Number(port) });
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  return socket;
}

/**
 * A port on 127.0.0.1 that was free a moment ago, below 32768: outside the ephemeral range
 * (TESTING.md), so no outbound socket of this machine takes it while a spec needs it free or
 * wants to listen on it again.
 */
async function freeLowPort(): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const server = net.createServer();
    const listening = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!listening) continue;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }
  throw new Error('no free port found below 32768');
}

/** An address on 127.0.0.1 where nothing listens (listened on, then closed: TESTING.md's refusal). */
async function refusingAddress(): Promise<string> {
  return `127.0.0.1:${await freeLowPort()}`;
}

function handshakePayload(): HandshakePayload {
  return { protocolVersion: PROTOCOL_VERSION, featureFlags: 0, privacyFlags: 0, nodeNonce: createNodeNonce(), listenAddresses: [] };
}

/** A Data frame header announcing 2^32 − 1 bytes on stream 1 (the dialer's control stream). */
const ABSURD_LENGTH_FRAME = encodeHeader({ type: FrameType.Data, flags: 0, streamId: 1, length: MAX_UINT32 });

/** A frame header of type 7 (spec.md, Type Field: 0..3); `encodeHeader` refuses it, so it is written by hand. */
function unknownTypeFrame(): Buffer {
  const frame = Buffer.alloc(HEADER_LENGTH);
  frame.writeUInt8(YAMUX_VERSION, 0);
  frame.writeUInt8(7, 1);
  return frame;
}

/**
 * A misbehaving responder: a real Noise XX handshake and secure channel, then, once the dialer's
 * first yamux bytes (its control stream) arrive, `frame` inside the encrypted channel.
 */
function sendsAfterHandshake(keyPair: KeyPair, frame: Buffer): (socket: net.Socket) => void {
  return (socket) => {
    handshakeResponder(socket, { staticKeyPair: keyPair, payload: handshakePayload() }).then(
      (handshake) => {
        const channel = new SecureChannel(socket, handshake);
        channel.on('error', () => undefined);
        channel.once('data', () => channel.write(frame));
      },
      () => undefined,
    );
  };
}

/**
 * A misbehaving dialer: handshake, secure channel and a proper control stream (so the listener
 * reaches Connected), then `frame` written raw into the channel once `connected` resolves.
 * Resolves with the socket, to be destroyed by the caller.
 */
async function dialAndSendAfterConnected(address: string, connected: Promise<unknown>, frame: Buffer): Promise<net.Socket> {
  const socket = await rawClient(address);
  const handshake = await handshakeInitiator(socket, { staticKeyPair: nobleCrypto.generateKeyPair(), payload: handshakePayload() });
  const channel = new SecureChannel(socket, handshake);
  channel.on('error', () => undefined);
  const session = new YamuxSession(channel, { role: 'client' });
  session.on('error', () => undefined);
  const control = session.openStream();
  control.on('error', () => undefined);
  control.write(encodeProtocolHeader(CONTROL_PROTOCOL));
  await connected;
  // Whole frames only go into the channel, so this one lands between the session's frames.
  channel.write(frame);
  return socket;
}

/** A forked peer process (`support/fault-peer.ts`). */
interface PeerProcess {
  readonly child: ChildProcess;
  readonly ready: FaultPeerReady;
  readonly exited: Promise<void>;
}

function forkPeer(port: number, keyHex: string): Promise<PeerProcess> {
  const child = fork(PEER_SCRIPT, ['--port', String(port), '--key', keyHex], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  // 'close' comes after 'exit' once the IPC channel and stdio are closed too: nothing of the child is left.
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return new Promise<PeerProcess>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`fault peer exited (${signal ?? code}) before it was ready`)));
    child.once('message', (message) => resolve({ child, ready: message as FaultPeerReady, exited }));
  });
}

async function killPeer(peer: PeerProcess | undefined): Promise<void> {
  if (!peer) return;
  if (peer.child.exitCode === null && peer.child.signalCode === null) peer.child.kill('SIGKILL');
  await peer.exited;
}

describe('fault matrix over real sockets', () => {
  failOnUncaught();

  it('refused dial: Timeout at once, Backoff for a persistent peer, Closed for a temporary one', { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await startNode();
    const address = await refusingAddress();
    try {
      const persistent = dial(a, address);
      const first = await a.log.when((event) => ended(event) && event.address === address);
      const path = a.log.of(first.connectionId);
      assert.deepEqual(path.map((event) => event.to), ['connecting', 'backoff']);
      assertBackoff(first, 'Timeout', TIMEOUT_BACKOFF);
      assert.equal(first.attempt, 1);
      // The refusal ends the dial, not connectTimeout.
      assertElapsed((path[0] as Recorded).t, first.t, 0, TIMEOUTS.connectTimeoutMs - 1, 'refusal');

      const second = await a.log.when((event) => event.connectionId === first.connectionId && event.attempt === 2 && event.to === 'backoff');
      assertBackoff(second, 'Timeout', TIMEOUT_BACKOFF);
      assertWaited(first, a.log.of(first.connectionId)[2] as Recorded);

      // A temporary peer is not redialed: Closed, and connect() fails with the reason.
      const other = await refusingAddress();
      const failure = await dial(a, other, 'temporary');
      assert.ok(failure instanceof ConnectionFailed, `connect() fails: ${outcomeText(failure)}`);
      assert.equal(failure.reason, 'Timeout');
      const closed = await a.log.when((event) => ended(event) && event.address === other);
      assert.deepEqual(a.log.of(closed.connectionId).map((event) => event.to), ['connecting', 'closed']);
      assertEnd(closed, 'closed', 'Timeout');
      assert.ok((await Promise.race([persistent, Promise.resolve('pending')])) === 'pending', 'the persistent dial is still retrying');
    } finally {
      await stopNodes(a);
    }
  });

  it('reset during the handshake: Timeout before handshakeTimeout, Backoff, then Connected once the path heals', { timeout: TEST_TIMEOUT_MS }, async () => {
    const [a, b] = await Promise.all([startNode(), startNode()]);
    const proxy = await startFaultProxy(b.supervisor.listenAddress as string);
    try {
      // Message 1 passes; message 2 is cut 40 bytes in and both ends get an RST. A message cut
      // by the end of the stream is a cut, not bad bytes: Timeout, never a ProtocolViolation.
      proxy.cutAt(40, 'fromTarget');
      void dial(a, proxy.address);
      const lost = await a.log.when((event) => isOutbound(event) && ended(event));
      const handshaking = a.log.of(lost.connectionId).find((event) => event.to === 'handshaking') as Recorded;
      assert.equal(lost.from, 'handshaking');
      assertBackoff(lost, 'Timeout', TIMEOUT_BACKOFF);
      assertElapsed(handshaking.t, lost.t, 0, TIMEOUTS.handshakeTimeoutMs - 1, 'reset seen before handshakeTimeout');
      // The listener's side was reset too: an inbound connection ends for good.
      const inbound = await b.log.when((event) => isInbound(event) && ended(event));
      assert.equal(inbound.from, 'handshaking');
      assertEnd(inbound, 'closed', 'Timeout');

      const mark = a.log.mark;
      proxy.clear();
      const back = await a.log.when((event) => event.connectionId === lost.connectionId && event.to === 'connected', mark);
      assertWaited(lost, a.log.of(lost.connectionId)[a.log.of(lost.connectionId).indexOf(lost) + 1] as Recorded);
      assert.equal(back.peerId, b.supervisor.peerId);
    } finally {
      await stopNodes(a, b);
      await proxy.close();
    }
  });

  it('slowloris mid-handshake: Timeout at handshakeTimeout, Closed inbound, Backoff outbound', { timeout: TEST_TIMEOUT_MS }, async () => {
    const [a, b] = await Promise.all([startNode(), startNode()]);
    const proxy = await startFaultProxy(b.supervisor.listenAddress as string);
    const loris = await rawClient(b.supervisor.listenAddress as string);
    try {
      // Inbound: Noise message 1 announces 32 bytes, 10 come, then nothing (the socket stays open).
      loris.write(Buffer.concat([Buffer.from([0, 32]), randomBytes(10)]));
      const closed = await b.log.when((event) => isInbound(event) && ended(event));
      const started = b.log.of(closed.connectionId)[0] as Recorded;
      assert.equal(started.to, 'handshaking');
      assert.equal(closed.from, 'handshaking');
      assertEnd(closed, 'closed', 'Timeout');
      assertElapsed(started.t, closed.t, TIMEOUTS.handshakeTimeoutMs - EARLY_MS, TIMEOUTS.handshakeTimeoutMs + LATE_MS, 'inbound handshake timeout');

      // Outbound: the peer answers at 8 bytes/s, so its message 2 would take seconds.
      proxy.throttle(8);
      void dial(a, proxy.address);
      const lost = await a.log.when((event) => isOutbound(event) && ended(event));
      const handshaking = a.log.of(lost.connectionId).find((event) => event.to === 'handshaking') as Recorded;
      assert.equal(lost.from, 'handshaking');
      assertBackoff(lost, 'Timeout', TIMEOUT_BACKOFF);
      assertElapsed(handshaking.t, lost.t, TIMEOUTS.handshakeTimeoutMs - EARLY_MS, TIMEOUTS.handshakeTimeoutMs + LATE_MS, 'outbound handshake timeout');

      const mark = a.log.mark;
      proxy.clear();
      await a.log.when((event) => event.connectionId === lost.connectionId && event.to === 'connected', mark);
    } finally {
      await destroyed(loris);
      await stopNodes(a, b);
      await proxy.close();
    }
  });

  it('half-open after Connected: a lost ping ends it with Timeout, the goodbye is forced, Backoff, Connected once healed', { timeout: TEST_TIMEOUT_MS }, async () => {
    const [a, b] = await Promise.all([startNode(), startNode()]);
    const proxy = await startFaultProxy(b.supervisor.listenAddress as string);
    try {
      await a.supervisor.connect(proxy.address, { kind: 'persistent' });
      const mark = a.log.mark;
      const cutAtMs = performance.now();
      proxy.halfOpen();
      const disconnecting = await a.log.when((event) => isOutbound(event) && event.to === 'disconnecting', mark);
      assert.equal(disconnecting.from, 'connected');
      assert.equal(disconnecting.reason, 'Timeout');
      // A ping goes out within one interval and is lost after pingTimeout with nothing received.
      assertElapsed(cutAtMs, disconnecting.t, PING.timeoutMs - EARLY_MS, PING.intervalMs + PING.timeoutMs + LATE_MS, 'ping loss');
      const lost = await a.log.when((event) => event.connectionId === disconnecting.connectionId && ended(event), mark);
      assert.equal(lost.from, 'disconnecting');
      assertBackoff(lost, 'Timeout', TIMEOUT_BACKOFF);
      // The goodbye goes into the void: nothing acknowledges the close, gracefulShutdownTimeout forces it.
      assertElapsed(
        disconnecting.t,
        lost.t,
        TIMEOUTS.gracefulShutdownTimeoutMs - EARLY_MS,
        TIMEOUTS.gracefulShutdownTimeoutMs + LATE_MS,
        'forced close',
      );

      const healed = a.log.mark;
      proxy.clear();
      const back = await a.log.when((event) => event.connectionId === lost.connectionId && event.to === 'connected', healed);
      assert.equal(back.peerId, b.supervisor.peerId);
    } finally {
      await stopNodes(a, b);
      await proxy.close();
    }
  });

  it('corrupt ciphertext: ProtocolViolation at once, Backoff with the violation backoff, Banned when it repeats', { timeout: TEST_TIMEOUT_MS }, async () => {
    const [a, b] = await Promise.all([startNode(), startNode()]);
    const proxy = await startFaultProxy(b.supervisor.listenAddress as string);
    try {
      const info = await a.supervisor.connect(proxy.address, { kind: 'persistent' });
      const mark = a.log.mark;
      const corruptedAtMs = performance.now();
      // Every chunk from the listener: its pings and pongs first, then its handshake messages.
      proxy.corrupt(1, 'fromTarget');
      const first = await a.log.when((event) => event.connectionId === info.connectionId && ended(event), mark);
      assert.equal(first.from, 'connected');
      assertBackoff(first, 'ProtocolViolation', VIOLATION_BACKOFF);
      // The next ping or pong from the listener carries a bad tag.
      assertElapsed(corruptedAtMs, first.t, 0, PING.intervalMs + LATE_MS, 'decrypt failure');

      const second = await a.log.when((event) => event.connectionId === info.connectionId && ended(event) && event.attempt === 2);
      assert.equal(second.from, 'handshaking', 'message 2 of the redial fails to decrypt');
      assertBackoff(second, 'ProtocolViolation', VIOLATION_BACKOFF);
      const banned = await a.log.when((event) => event.connectionId === info.connectionId && event.to === 'banned');
      assert.equal(banned.from, 'handshaking');
      assertEnd(banned, 'banned', 'PeerBanned');
      assert.ok(
        a.supervisor.bans().some((entry) => entry.by === 'peerId' && entry.peerId === b.supervisor.peerId),
        'the peer ID is on the ban list',
      );
      const ends = a.log.of(info.connectionId).filter(ended);
      assert.deepEqual(
        ends.map((event) => event.reason),
        ['ProtocolViolation', 'ProtocolViolation', 'PeerBanned'],
      );
      assert.deepEqual(
        a.log.of(info.connectionId).slice(-3).map((event) => event.to),
        ['connecting', 'handshaking', 'banned'],
      );
    } finally {
      await stopNodes(a, b);
      await proxy.close();
    }
  });

  it('garbage instead of Noise: ProtocolViolation before handshakeTimeout; Closed inbound; Backoff then Banned outbound', { timeout: TEST_TIMEOUT_MS }, async () => {
    const [a, b] = await Promise.all([startNode(), startNode()]);
    // Answers the dialer's message 1 with 200 random bytes framed as message 2: undecryptable.
    const garbage = await rawServer((socket) => {
      socket.once('data', () => socket.write(Buffer.concat([Buffer.from([0, 200]), randomBytes(200)])));
    });
    const client = await rawClient(b.supervisor.listenAddress as string);
    try {
      // Inbound: a message 1 with a 68-byte payload where Noise XX allows none.
      client.write(Buffer.concat([Buffer.from([0, 100]), randomBytes(100)]));
      const closed = await b.log.when((event) => isInbound(event) && ended(event));
      const started = b.log.of(closed.connectionId)[0] as Recorded;
      assert.equal(closed.from, 'handshaking');
      assertEnd(closed, 'closed', 'ProtocolViolation');
      assertElapsed(started.t, closed.t, 0, TIMEOUTS.handshakeTimeoutMs - 1, 'inbound violation');

      // Outbound, persistent: two violations back off, the third bans (DESIGN §2: repeated → ban).
      const outcome = dial(a, garbage.address);
      const banned = await a.log.when((event) => isOutbound(event) && event.to === 'banned');
      const path = a.log.of(banned.connectionId);
      const ends = path.filter(ended);
      assert.equal(ends.length, 3);
      for (const [index, end] of ends.slice(0, 2).entries()) {
        assert.equal(end.from, 'handshaking');
        assertBackoff(end, 'ProtocolViolation', VIOLATION_BACKOFF);
        assertWaited(end, path[path.indexOf(end) + 1] as Recorded);
        assert.equal(end.attempt, index + 1);
        const handshaking = path[path.indexOf(end) - 1] as Recorded;
        assertElapsed(handshaking.t, end.t, 0, TIMEOUTS.handshakeTimeoutMs - 1, 'outbound violation');
      }
      assertEnd(banned, 'banned', 'PeerBanned');
      // The peer never authenticated: its IP is banned.
      assert.ok(a.supervisor.bans().some((entry) => entry.by === 'ip' && entry.ip === '127.0.0.1'));
      const failure = await outcome;
      assert.ok(failure instanceof ConnectionFailed && failure.reason === 'PeerBanned', `connect() fails: ${outcomeText(failure)}`);
    } finally {
      await destroyed(client);
      await stopNodes(a, b);
      await garbage.close();
    }
  });

  it('yamux frame with an absurd length inside the channel: ProtocolViolation from Connected, Backoff, Banned when it repeats', { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await startNode();
    const keyPair = nobleCrypto.generateKeyPair();
    const liar = await rawServer(sendsAfterHandshake(keyPair, ABSURD_LENGTH_FRAME));
    try {
      const outcome = dial(a, liar.address);
      const banned = await a.log.when((event) => isOutbound(event) && ended(event) && event.to !== 'backoff');
      const path = a.log.of(banned.connectionId);
      assert.deepEqual(
        path.map((event) => event.to),
        ['connecting', 'handshaking', 'connected', 'backoff', 'connecting', 'handshaking', 'connected', 'backoff', 'connecting', 'handshaking', 'connected', 'banned'],
      );
      for (const end of path.filter(ended)) {
        const connected = path[path.indexOf(end) - 1] as Recorded;
        assert.equal(end.from, 'connected');
        assert.equal(end.peerId, peerIdFromPublicKey(keyPair.publicKey));
        // Straight from Connected (a lost ping would pass through Disconnecting), as soon as the header arrives.
        assertElapsed(connected.t, end.t, 0, LATE_MS, 'violation after Connected');
        if (end.to === 'backoff') {
          assertBackoff(end, 'ProtocolViolation', VIOLATION_BACKOFF);
          assertWaited(end, path[path.indexOf(end) + 1] as Recorded);
        }
      }
      assertEnd(banned, 'banned', 'PeerBanned');
      assert.ok(a.supervisor.bans().some((entry) => entry.by === 'peerId' && entry.peerId === banned.peerId));
      // connect() resolved at the first Connected: the violations came after it.
      const first = await outcome;
      assert.ok(!(first instanceof Error), `connect() resolved: ${outcomeText(first)}`);
      assert.equal(first.peerId, banned.peerId);
    } finally {
      await stopNodes(a);
      await liar.close();
    }
  });

  it('unknown yamux frame type inside the channel: ProtocolViolation; Backoff outbound, Closed inbound', { timeout: TEST_TIMEOUT_MS }, async () => {
    const [a, b] = await Promise.all([startNode(), startNode()]);
    const liar = await rawServer(sendsAfterHandshake(nobleCrypto.generateKeyPair(), unknownTypeFrame()));
    let socket: net.Socket | undefined;
    try {
      void dial(a, liar.address);
      const lost = await a.log.when((event) => isOutbound(event) && ended(event));
      const connected = a.log.of(lost.connectionId).at(-2) as Recorded;
      assert.equal(connected.to, 'connected');
      assertBackoff(lost, 'ProtocolViolation', VIOLATION_BACKOFF);
      assertElapsed(connected.t, lost.t, 0, LATE_MS, 'outbound violation');

      // Inbound: a real dialer reaches Connected on B, then sends the frame.
      const up = b.log.when((event) => isInbound(event) && event.to === 'connected');
      socket = await dialAndSendAfterConnected(b.supervisor.listenAddress as string, up, unknownTypeFrame());
      const upEvent = await up;
      const closed = await b.log.when((event) => event.connectionId === upEvent.connectionId && ended(event));
      assert.equal(closed.from, 'connected');
      assertEnd(closed, 'closed', 'ProtocolViolation');
      assertElapsed(upEvent.t, closed.t, 0, LATE_MS, 'inbound violation');

      // Inbound, before any control stream: the frame right after the handshake is still a
      // ProtocolViolation on the listener (the session's error, not a plain "closed").
      const early = await rawClient(b.supervisor.listenAddress as string);
      const handshake = await handshakeInitiator(early, { staticKeyPair: nobleCrypto.generateKeyPair(), payload: handshakePayload() });
      const channel = new SecureChannel(early, handshake);
      channel.on('error', () => undefined);
      channel.write(unknownTypeFrame());
      const earlyEnd = await b.log.when((event) => isInbound(event) && ended(event) && event.connectionId !== upEvent.connectionId);
      assert.equal(earlyEnd.from, 'handshaking');
      assertEnd(earlyEnd, 'closed', 'ProtocolViolation');
      await destroyed(early);
    } finally {
      if (socket) await destroyed(socket);
      await stopNodes(a, b);
      await liar.close();
    }
  });

  it('remote goodbye: Normal; a persistent peer redials at once (AllowImmediate), a temporary one is Closed', { timeout: TEST_TIMEOUT_MS }, async () => {
    const [a, b, c] = await Promise.all([startNode(), startNode(), startNode()]);
    try {
      const info = await a.supervisor.connect(b.supervisor.listenAddress as string, { kind: 'persistent' });
      // B knows A's peer ID once it has read Noise message 3, which can be after A is Connected.
      await b.log.when((event) => event.peerId === a.supervisor.peerId && event.to === 'connected');
      const mark = a.log.mark;
      const saidAtMs = performance.now();
      await b.supervisor.disconnect(a.supervisor.peerId);
      const lost = await a.log.when((event) => event.connectionId === info.connectionId && ended(event), mark);
      assert.equal(lost.from, 'connected');
      assert.equal(lost.to, 'backoff');
      assert.equal(lost.reason, 'Normal');
      assert.equal(lost.strategy, 'AllowImmediate');
      assert.equal(lost.nextDelayMs, 0);
      assertElapsed(saidAtMs, lost.t, 0, LATE_MS, 'goodbye received');
      const redial = await a.log.when((event) => event.connectionId === info.connectionId && event.to === 'connecting', mark);
      assertWaited(lost, redial);
      await a.log.when((event) => event.connectionId === info.connectionId && event.to === 'connected', mark);
      // B's side closed with its own reason and does not redial an inbound peer.
      const onB = await b.log.when((event) => event.peerId === a.supervisor.peerId && ended(event));
      assertEnd(onB, 'closed', 'Normal');

      const temporary = await c.supervisor.connect(b.supervisor.listenAddress as string, { kind: 'temporary' });
      await b.log.when((event) => event.peerId === c.supervisor.peerId && event.to === 'connected');
      const cMark = c.log.mark;
      await b.supervisor.disconnect(c.supervisor.peerId);
      const closed = await c.log.when((event) => event.connectionId === temporary.connectionId && ended(event), cMark);
      assert.equal(closed.from, 'connected');
      assertEnd(closed, 'closed', 'Normal');
    } finally {
      await stopNodes(a, b, c);
    }
  });

  it('peer process killed: Timeout, Backoff while it is gone, Connected again when it restarts on the same port and key', { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await startNode();
    const key = randomBytes(32).toString('hex');
    const port = await freeLowPort();
    let peer: PeerProcess | undefined = await forkPeer(port, key);
    try {
      const address = peer.ready.listenAddress;
      const info = await a.supervisor.connect(address, { kind: 'persistent' });
      assert.equal(info.peerId, peer.ready.peerId);
      const mark = a.log.mark;
      const killedAtMs = performance.now();
      peer.child.kill('SIGKILL');
      await peer.exited;
      const lost = await a.log.when((event) => event.connectionId === info.connectionId && ended(event), mark);
      assert.equal(lost.from, 'connected');
      assertBackoff(lost, 'Timeout', TIMEOUT_BACKOFF);
      // The kernel closes the dead process's sockets: seen at once, straight from Connected (a lost
      // ping would pass through Disconnecting).
      assertElapsed(killedAtMs, lost.t, 0, LATE_MS, 'death seen');
      // While it is gone, redials are refused and back off again.
      const refused = await a.log.when((event) => event.connectionId === info.connectionId && ended(event) && event.from === 'connecting', mark);
      assertBackoff(refused, 'Timeout', TIMEOUT_BACKOFF);

      const restarted = a.log.mark;
      peer = await forkPeer(port, key);
      assert.equal(peer.ready.listenAddress, address);
      const back = await a.log.when((event) => event.connectionId === info.connectionId && event.to === 'connected', restarted);
      assert.equal(back.peerId, info.peerId, 'the same peer, by its key');
      assert.deepEqual(
        a.log.of(info.connectionId).slice(-3).map((event) => event.to),
        ['connecting', 'handshaking', 'connected'],
      );
    } finally {
      await stopNodes(a);
      await killPeer(peer);
    }
  });

  it('the fault proxy itself: delay, throttle, stall and resume, cut at an offset', { timeout: TEST_TIMEOUT_MS }, async () => {
    const echo = await rawServer((socket) => socket.pipe(socket));
    const proxy = await startFaultProxy(echo.address);
    const client = await rawClient(proxy.address);
    const received: Buffer[] = [];
    const waiters: (() => void)[] = [];
    client.on('data', (chunk: Buffer) => {
      received.push(chunk);
      for (const wake of waiters.splice(0)) wake();
    });
    const total = (): number => received.reduce((sum, chunk) => sum + chunk.length, 0);
    const until = async (bytes: number): Promise<void> => {
      while (total() < bytes) await new Promise<void>((resolve) => waiters.push(resolve));
    };
    try {
      proxy.delay(40);
      let startMs = performance.now();
      client.write('delayed');
      await until(7);
      assertElapsed(startMs, performance.now(), 80 - EARLY_MS, 80 + LATE_MS, 'delay both ways');

      proxy.clear();
      proxy.throttle(200); // 10-byte pieces every 50 ms
      startMs = performance.now();
      client.write(Buffer.alloc(20, 1));
      await until(27);
      assertElapsed(startMs, performance.now(), 100 - EARLY_MS, 100 + LATE_MS, '20 bytes at 200 B/s, both ways');

      proxy.clear();
      proxy.stall();
      client.write('held');
      client.write('!');
      proxy.resume();
      await until(32);
      assert.equal(Buffer.concat(received).subarray(27).toString(), 'held!');

      proxy.cutAt(35, 'fromTarget');
      const reset = once(client, 'close');
      client.write('0123456789');
      await reset;
      assert.equal(total(), 35, 'exactly the bytes up to the offset, then a reset');
      assert.equal(proxy.accepted, 1);
    } finally {
      await destroyed(client);
      await proxy.close();
      await echo.close();
    }
  });
});

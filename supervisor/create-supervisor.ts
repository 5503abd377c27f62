/**
 * The public entry: `createSupervisor(options)` builds a supervisor actor wired to real TCP, Noise
 * and yamux, with one injected clock for XState delays and RxJS schedulers (DESIGN §7).
 */
import type { Duplex } from 'node:stream';
import { BehaviorSubject, EMPTY, Observable, Subject, distinctUntilChanged, interval, map, merge, share, switchMap, takeUntil } from 'rxjs';
import type { Subscription } from 'rxjs';
import { createActor } from 'xstate';
import type { InspectionEvent, Observer } from 'xstate';
import { createLinkActor } from '../machines/link-actor.js';
import type { LinkRegistry } from '../machines/link-actor.js';
import { DEFAULT_BATCH_OPTIONS } from '../streams/batch.js';
import type { BatchOptions } from '../streams/batch.js';
import type { HealthOptions } from '../streams/health.js';
import { DEFAULT_HEALTH_SETTINGS } from '../streams/link-monitor.js';
import { LatencyWindow, RateMeter, sampleEvery } from '../streams/metrics.js';
import type { OutboxLimits } from '../streams/outbox.js';
import { renderPrometheus } from '../streams/prometheus.js';
import { LatestValue } from '../streams/latest-value.js';
import {
  DEFAULT_CONNECTION_POLICIES,
  DEFAULT_TIMEOUTS,
  DEFAULT_VIOLATION_BACKOFF,
  withConnectionPolicies,
} from '../machines/connection.js';
import type { ConnectionReport, ConnectionState, ConnectionTimeouts } from '../machines/connection.js';
import { clockScheduler, systemClock } from '../streams/clock.js';
import type { Clock } from '../streams/clock.js';
import { DEFAULT_BACKOFF, DEFAULT_VIOLATION_BAN, defaultReconnectPolicy } from '../streams/reconnect.js';
import type {
  BackoffOptions,
  ConnectionKind,
  Direction,
  DisconnectFacts,
  ReconnectStrategy,
  ViolationBanRule,
} from '../streams/reconnect.js';
import type { DisconnectReason } from '../transport/disconnect-reason.js';
import { ConnectionClosed, SelfConnection } from '../transport/errors.js';
import { createNodeNonce, PROTOCOL_VERSION } from '../transport/handshake-payload.js';
import type { LocalIdentity } from '../transport/link.js';
import type { NoiseCrypto } from '../transport/noise/crypto.js';
import { defaultCrypto } from '../transport/noise/node-crypto.js';
import { isPeerId, peerIdFromPublicKey } from '../transport/peer-id.js';
import type { PeerId } from '../transport/peer-id.js';
import { parseAddress, tcpTransport } from '../transport/tcp.js';
import type { RawConnection, Transport, TransportListener } from '../transport/transport.js';
import { DEFAULT_LIMITS } from './admission.js';
import type { AdmissionLimits } from './admission.js';
import { activeBans, ban as addBan, emptyBans, findBan, DEFAULT_BAN_DURATION_MS } from './bans.js';
import type { BanListing, BanTarget } from './bans.js';
import { ConnectionFailed, PeerAddressUnknown, SupervisorStopped, refusalError } from './errors.js';
import { DEFAULT_EVICTION_OPTIONS } from './eviction.js';
import type { EvictionOptions } from './eviction.js';
import { Messenger, MESSAGES_PROTOCOL } from './messaging.js';
import type { PeerMessage, PeerReach, UndeliveredMessages } from './messaging.js';
import { metricFamilies } from './metric-families.js';
import { peerScore } from './peer-score.js';
import { pickReplacement } from './replacement.js';
import { PeerStore } from './peer-store.js';
import type { PeerStoreProblem } from './peer-store.js';
import { DEFAULT_REAPER_INTERVAL_MS, DEFAULT_REAPER_SETTINGS } from './reaper.js';
import type { LinkUsage } from './reaper.js';
import { metricsOf, peerStatusOf, sameStatus, toInfo } from './status.js';
import type { ConnectionInfo, NodeMetrics, PeerStatus } from './status.js';
import { configureConnectionActors, connectionActorsOf } from './connection-actors.js';
import { withSupervisorClock } from './supervisor-machine.js';
import type { ConnectionRecord, SupervisorActor, SupervisorConfig, SupervisorEmitted } from './supervisor-machine.js';

export type { ConnectionInfo, NodeMetrics, PeerState, PeerStatus, SupervisorMetrics } from './status.js';
export type { PeerMessage, UndeliveredMessages } from './messaging.js';

/**
 * An event of the app's life that the supervisor acts on (issue 5 item 7, DESIGN §4):
 * - `offline`: pause dialing and backoff timers (failures meanwhile do not count);
 * - `online`: redial persistent peers at once;
 * - `background`: stretch the ping interval by `backgroundPingFactor` and close temporary connections;
 * - `foreground`: the normal ping interval again;
 * - `peerDiscovered`: dial `address` (temporary) while outbound connections are below `targetOutbound`.
 */
export type AppEvent =
  | { readonly type: 'online' }
  | { readonly type: 'offline' }
  | { readonly type: 'foreground' }
  | { readonly type: 'background' }
  | { readonly type: 'peerDiscovered'; readonly address: string };

/** A `connect()` call waiting for its connection: woken by that connection's transitions, or by `stop()`. */
interface DialWaiter {
  onTransition(transition: Extract<ConnectionReport, { type: 'connection.transition' }>): void;
  onStop(): void;
}

/** Options of {@link createSupervisor}. Every field is optional; defaults follow DESIGN §6. */
export interface SupervisorOptions {
  /** 32-byte X25519 private key; a fresh key pair is generated when absent. */
  readonly staticPrivateKey?: Uint8Array;
  /** Where to accept inbound connections (`host:port`, port 0 = OS picks); none when absent. */
  readonly listen?: string;
  /** Timeouts in ms: connect 10 000, handshake 10 000, graceful shutdown 2 000, stable period 60 000. */
  readonly timeouts?: Partial<ConnectionTimeouts>;
  /** Ping every `intervalMs` (10 000); a ping unanswered after `timeoutMs` (5 000) ends the connection with Timeout. */
  readonly ping?: { readonly intervalMs?: number; readonly timeoutMs?: number };
  /** Backoff after timeouts and lost links, ms: base 1 000, factor 2, cap 300 000 (full jitter). */
  readonly timeoutBackoff?: Partial<BackoffOptions>;
  /** Backoff after a ProtocolViolation, ms: base 5 000, factor 2, cap 300 000 (full jitter). */
  readonly violationBackoff?: Partial<BackoffOptions>;
  /** Repeated ProtocolViolations that ban a peer: 3 within 600 000 ms by default. */
  readonly violationBan?: ViolationBanRule;
  /** Nothing received for this many ms ends a connection with Timeout (DESIGN §6: 60 000). */
  readonly inactivityTimeoutMs?: number;
  /** Replaces the reason → strategy policy (DESIGN §2 table by default). */
  readonly reconnectPolicy?: (facts: DisconnectFacts) => ReconnectStrategy;
  /** Handshake payload flags (u32 bitfields) and the features a peer must have. */
  readonly featureFlags?: number;
  readonly privacyFlags?: number;
  readonly requiredFeatures?: number;
  /** Time source for every timer (XState delays and RxJS schedulers); `systemClock` by default. */
  readonly clock?: Clock;
  /** Uniform random source in [0, 1) for backoff jitter; `Math.random` by default. */
  readonly random?: () => number;
  /** Noise primitives; `defaultCrypto` (`node:crypto` where the runtime has X25519 and ChaCha20-Poly1305, else `@noble`). */
  readonly crypto?: NoiseCrypto;
  /** Passed to XState's `createActor` (e.g. `@statelyai/inspect`'s `inspector.inspect`). */
  readonly inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** How bytes move: `tcpTransport` by default; a `MemoryNetwork` transport in specs. */
  readonly transport?: Transport;
  /** Connection limits (DESIGN §6): maxOutbound 8, maxInbound 125, maxTotal 133, maxPending 32. */
  readonly limits?: Partial<AdmissionLimits>;
  /** Inbound eviction protections (after Bitcoin Core): 4 by netgroup, 8 by RTT, 8 by age. */
  readonly eviction?: Partial<EvictionOptions>;
  /** Reaper pass every this many ms (DESIGN §6: 10 000). */
  readonly reaperIntervalMs?: number;
  /** A temporary connection with no open stream and no use for this long is closed with Normal (300 000). */
  readonly idleTimeoutMs?: number;
  /** A released temporary connection stays pooled this long for reuse, ms (DESIGN §6: 300 000). */
  readonly poolTtlMs?: number;
  /** Length of a ban, ms (DESIGN §6: 24 h, after Bitcoin Core). */
  readonly banDurationMs?: number;
  /**
   * The peer store: addresses, last seen, disconnect history, score and ban per peer. In memory by
   * default; with `path`, loaded on `start()` and saved there (atomic replace) after changes, at
   * most once per reaper pass, and on `stop()`. Persistent peers in it are dialed on `start()`.
   */
  readonly peerStore?: { readonly path?: string; readonly maxPeers?: number };
  /** Wall-clock time in ms since the epoch, for what the peer store keeps across restarts; `Date.now` by default. */
  readonly wallClock?: () => number;
  /**
   * Health scoring (DESIGN §4): latency scale (50 / 1 000 ms), reliability window (10 pings),
   * bandwidth window (10 000 ms) and reference (1 MiB/s); `degradedAfter` k = 3 consecutive
   * samples for Connected ⇄ Degraded; a link Critical for `criticalLimitMs` (60 000) is replaced.
   */
  readonly health?: Partial<HealthOptions> & { readonly degradedAfter?: number; readonly criticalLimitMs?: number };
  /** Message batches (DESIGN §6): flush at `maxBatch` (128) messages or after `maxDelayMs` (50). */
  readonly batch?: Partial<BatchOptions>;
  /** Per-peer outbox while a persistent peer is away: 1 024 messages, 8 MiB. */
  readonly outbox?: Partial<OutboxLimits>;
  /** The app's event streams (see {@link AppEvent}); subscribed on `start()`, unsubscribed on `stop()`. */
  readonly appEvents?: Observable<AppEvent> | readonly Observable<AppEvent>[];
  /** In the background the ping interval is multiplied by this (default 6: 10 s → 60 s). */
  readonly backgroundPingFactor?: number;
  /** `peerDiscovered` dials while fewer outbound connections than this hold a slot (default `maxOutbound`). */
  readonly targetOutbound?: number;
  /** `metrics$` emits every this many ms (default 1 000); messages/s are over the last 10 s. */
  readonly metricsIntervalMs?: number;
  /** Heap and RSS in bytes for the metrics; `process.memoryUsage()` by default. */
  readonly memoryUsage?: () => { readonly heapUsed: number; readonly rss: number };
}

/** A lifecycle transition of one connection, as published on `events$` (times in ms of the injected clock). */
export interface ConnectionTransition {
  readonly t: number;
  readonly connectionId: string;
  readonly peerId: string | null;
  readonly address: string | null;
  readonly direction: Direction;
  readonly kind: ConnectionKind;
  readonly from: ConnectionState | null;
  readonly to: ConnectionState;
  readonly reason: DisconnectReason | null;
  readonly attempt: number;
  readonly nextDelayMs: number | null;
  readonly rttMs: number | null;
}

/** An RTT sample of one connection, ms. */
export interface RttSample {
  readonly t: number;
  readonly connectionId: string;
  readonly peerId: string | null;
  readonly rttMs: number;
}

/** Context handed to a protocol handler with each inbound stream. */
export interface StreamContext {
  readonly peerId: string;
  readonly connectionId: string;
  readonly protocol: string;
}

/** A running (or not yet started) supervisor. */
export interface Supervisor {
  /** Our peer ID (text form, see `peerIdFromPublicKey`). */
  readonly peerId: PeerId;
  /** The bound listen address after `start()`, e.g. `127.0.0.1:40123`; null without `listen`. */
  readonly listenAddress: string | null;
  /** The supervisor's XState actor (for inspection and advanced use). Created by `start()`. */
  readonly actor: SupervisorActor;
  /** Every lifecycle transition of every connection; completes on `stop()`. */
  readonly events$: Observable<ConnectionTransition>;
  /** Every RTT sample of every connection; completes on `stop()`. */
  readonly rtt$: Observable<RttSample>;
  /**
   * Binds the listener (if any), loads the peer store (if it has a path), starts the supervisor
   * actor and the reaper, then redials the persistent peers of the store. Resolves with a problem
   * report when the store file was corrupt (set aside) or unreadable; the node starts anyway.
   * @throws the listen error (e.g. EADDRINUSE).
   */
  start(): Promise<{ peerStoreProblem?: PeerStoreProblem }>;
  /**
   * Says goodbye (Normal) on every connection, waits up to `gracefulShutdownTimeout`, then stops
   * every actor, socket, timer and subscription, and saves the peer store. Idempotent.
   */
  stop(): Promise<void>;
  /**
   * Connects to `target`, a `host:port` address or a peer ID, unless a connection already serves
   * it (then that one is returned: concurrent calls share one dial), and resolves when it is
   * Connected. A peer ID is looked up in the connection table, then in the peer store. A
   * persistent connection keeps retrying through Backoff. `reuse: false` refuses a served target;
   * `protect` tags the connection (never evicted or reaped).
   * @throws PeerAddressUnknown for a peer ID with no connection and no known address;
   *   PeerBanned for a banned peer ID or IP; TooManyPendingConnections over `maxPending`;
   *   ConnectionLimitReached over `maxOutbound` or `maxTotal`; AlreadyConnected with `reuse: false`;
   *   ConnectionFailed when it ends for good before Connected; SelfConnection for an address that
   *   turned out to be this node; ProtocolViolation for a malformed address; SupervisorStopped.
   */
  connect(
    target: string,
    options?: { kind?: ConnectionKind; reuse?: boolean; protect?: boolean },
  ): Promise<ConnectionInfo>;
  /**
   * Closes every connection to `peerId` with reason Normal, for good, and stops treating it as
   * persistent; resolves when they are closed.
   * @throws PeerAddressUnknown when there is no connection to that peer.
   */
  disconnect(peerId: string): Promise<void>;
  /**
   * The app is done with its temporary connection to `peerId`: it stays pooled for `poolTtlMs`
   * and `connect()` to the peer within that time reuses it; then the reaper closes it (Normal).
   * Persistent connections are kept and not pooled. Unknown peers are ignored.
   */
  release(peerId: string): void;
  /** Tags (or untags) the connection to `peerId` protected: never evicted, never closed for idleness. */
  protect(peerId: string, isProtected?: boolean): void;
  /**
   * Bans a peer ID and/or an IP for `durationMs` (default `banDurationMs`, 24 h) and closes every
   * connection that matches with reason PeerBanned. Banned IPs are refused before any handshake.
   * @throws RangeError for an empty target, an IP that is not an IP address or a non-positive duration.
   */
  ban(target: BanTarget, options?: { durationMs?: number; reason?: string }): void;
  /** Lifts the ban on a peer ID and/or IP (any spelling of the IP). */
  unban(target: BanTarget): void;
  /** The bans in force now: peer IDs, then IPs, each by expiry (ms on the supervisor clock). */
  bans(): BanListing[];
  /**
   * Opens a stream for `protocol` on the live connection to `peerId`.
   * @throws PeerAddressUnknown when no live connection serves the peer.
   */
  openStream(peerId: string, protocol: string): Promise<Duplex>;
  /**
   * Pings `peerId` once on the control stream of its live connection and resolves with the
   * round-trip time in ms of the supervisor clock (`performance.now()` unless a clock is injected).
   * @throws PeerAddressUnknown when no live connection serves the peer; ConnectionClosed when the
   *   link ends before the pong.
   */
  ping(peerId: string): Promise<number>;
  /** Registers the handler of inbound streams for `protocol`; streams with no handler are reset. */
  handle(protocol: string, handler: (stream: Duplex, context: StreamContext) => void): void;
  /** The status of `peerId`: connecting, connected, degraded, disconnected or failed, with its connection. */
  getStatus(peerId: string): PeerStatus;
  /** Every running connection. */
  connections(): ConnectionInfo[];
  /** The status of `peerId` now, then on every change; completes on `stop()`. */
  status$(peerId: string): Observable<PeerStatus>;
  /**
   * Counts by state and direction, limits, dials, handshakes, ends by reason, refusals,
   * evictions, bans, messages per second in and out, RTT average and p99 (ms), heap and RSS (bytes).
   * @throws SupervisorStopped before `start()`.
   */
  getMetrics(): NodeMetrics;
  /** {@link Supervisor.getMetrics} every `metricsIntervalMs`, from `start()`; completes on `stop()`. */
  readonly metrics$: Observable<NodeMetrics>;
  /** The metrics in the Prometheus text exposition format 0.0.4 (serve with `PROMETHEUS_CONTENT_TYPE`). */
  prometheus(): string;
  /**
   * Queues `message` for `peerId`; it goes out in a batch (128 messages or 50 ms) on the peer's
   * message stream, in order. For a persistent peer that is away (Backoff, dialing), it waits in
   * a bounded outbox and goes out on reconnect.
   * @throws PeerAddressUnknown when the peer has no connection that is up or coming back;
   *   OutboxFull when its outbox (or its unsent stream bytes) is at its bound; RangeError over
   *   1 MiB; SupervisorStopped.
   */
  send(peerId: string, message: Uint8Array): void;
  /** Messages received, `{ peerId, message }`, in order per peer; completes on `stop()`. */
  readonly messages$: Observable<PeerMessage>;
  /** Messages `send` accepted that could not be delivered (the link went and the peer will not come back). */
  readonly undelivered$: Observable<UndeliveredMessages>;
  /** The peer store (in memory; saved to its path if one was given). */
  readonly peerStore: PeerStore;
}

/**
 * Creates a supervisor. Nothing touches the network until `start()`.
 * @throws RangeError when `staticPrivateKey` is not 32 bytes.
 */
export function createSupervisor(options: SupervisorOptions = {}): Supervisor {
  const crypto = options.crypto ?? defaultCrypto;
  const clock = options.clock ?? systemClock;
  const wallClock = options.wallClock ?? Date.now;
  const transport = options.transport ?? tcpTransport;
  const scheduler = clockScheduler(clock);
  const privateKey = options.staticPrivateKey ?? crypto.generateKeyPair().privateKey;
  const staticKeyPair = { privateKey, publicKey: crypto.publicKeyFromPrivateKey(privateKey) };
  const peerId = peerIdFromPublicKey(staticKeyPair.publicKey);
  const timeouts: ConnectionTimeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const pingIntervalMs = options.ping?.intervalMs ?? 10_000;
  const pingTimeoutMs = options.ping?.timeoutMs ?? 5_000;
  const config: SupervisorConfig = {
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    reaper: {
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_REAPER_SETTINGS.idleTimeoutMs,
      poolTtlMs: options.poolTtlMs ?? DEFAULT_REAPER_SETTINGS.poolTtlMs,
    },
    eviction: { ...DEFAULT_EVICTION_OPTIONS, ...options.eviction },
    banDurationMs: options.banDurationMs ?? DEFAULT_BAN_DURATION_MS,
    violationBan: options.violationBan ?? DEFAULT_VIOLATION_BAN,
  };
  const reaperIntervalMs = options.reaperIntervalMs ?? DEFAULT_REAPER_INTERVAL_MS;
  const metricsIntervalMs = options.metricsIntervalMs ?? 1_000;
  const storePath = options.peerStore?.path;
  const storeBounds = options.peerStore?.maxPeers === undefined ? {} : { maxPeers: options.peerStore.maxPeers };

  const healthSettings = {
    options: options.health ?? {},
    degradedAfter: options.health?.degradedAfter ?? DEFAULT_HEALTH_SETTINGS.degradedAfter,
    criticalLimitMs: options.health?.criticalLimitMs ?? DEFAULT_HEALTH_SETTINGS.criticalLimitMs,
  };
  const pingInterval = new LatestValue<number>(pingIntervalMs);
  const backgroundPingFactor = options.backgroundPingFactor ?? 6;
  const targetOutbound = options.targetOutbound ?? config.limits.maxOutbound;
  const memoryUsage = options.memoryUsage ?? (() => process.memoryUsage());
  const messagesIn = new RateMeter(10_000, () => clock.now());
  const messagesOut = new RateMeter(10_000, () => clock.now());
  const latencies = new LatencyWindow(1024);
  const stopped$ = new Subject<void>();
  let appSubscription: Subscription | undefined;

  const links: LinkRegistry = new Map();
  const parked = new Map<string, RawConnection>();
  /** Accepted connections not yet secured, oldest first (for the flood defence, see `reclaimable`). */
  const pendingInbound = new Map<string, RawConnection>();
  const openStreams = new Set<Duplex>();
  /** Addresses that turned out to be this node: never dialed again. */
  const selfAddresses = new Set<string>();
  // One listener for every tracked stream (`this` is the stream that closed), not a `once` wrapper
  // and closure per connection: those, and the 17-slot listener array a third 'close' listener
  // grows, were about 0.35 KiB per connection.
  const untrack = function (this: Duplex): void {
    openStreams.delete(this);
  };
  const trackConnection = (connection: RawConnection): void => {
    const stream = connection.stream;
    if (stream.destroyed && stream.closed) return;
    openStreams.add(stream);
    stream.on('close', untrack);
  };
  const handlers = new Map<string, (stream: Duplex, context: StreamContext) => void>();
  const events = new Subject<ConnectionTransition>();
  const rtts = new Subject<RttSample>();
  const changes = new BehaviorSubject<void>(undefined);
  /** Waiting `connect()` calls, by the connection ID they asked for: a refusal rejects them. */
  const refusalWaiters = new Map<string, (refusal: SupervisorEmitted) => void>();
  /**
   * Waiting `connect()` calls, by the connection they watch: only that connection's transitions
   * wake them, so a transition costs O(its waiters), not O(every pending connect) (10,000
   * concurrent connect() calls would otherwise make dialing quadratic).
   */
  const dialWaiters = new Map<string, Set<DialWaiter>>();
  const watchDial = (connectionId: string, waiter: DialWaiter): void => {
    let waiting = dialWaiters.get(connectionId);
    if (!waiting) dialWaiters.set(connectionId, (waiting = new Set()));
    waiting.add(waiter);
  };
  const unwatchDial = (connectionId: string, waiter: DialWaiter): void => {
    const waiting = dialWaiters.get(connectionId);
    if (!waiting?.delete(waiter) || waiting.size > 0) return;
    dialWaiters.delete(connectionId);
  };
  let store = new PeerStore(storeBounds);
  let storeDirty = false;
  let saving: Promise<void> = Promise.resolve();
  let listener: TransportListener | undefined;
  let listenAddress: string | null = null;
  let actor: SupervisorActor | undefined;
  let reaper: Subscription | undefined;
  let running = false;
  let nextId = 0;
  const nodeNonce = createNodeNonce();

  // Reports are queued during a supervisor transition and published once its snapshot is
  // committed, so subscribers of events$ read the state the event describes.
  const queuedReports: ConnectionReport[] = [];
  const flushReports = (): void => {
    for (const report of queuedReports.splice(0)) publish(report);
  };
  const publish = (report: ConnectionReport): void => {
    if (report.type === 'connection.transition') {
      if (report.from === 'handshaking') pendingInbound.delete(report.connectionId);
      recordInStore(report);
      if (report.to === 'connected' && report.peerId !== null) messenger.linkUp(report.peerId);
      if (report.to === 'disconnecting' && report.replaced && report.kind !== 'persistent') dialReplacement(report.peerId);
      events.next({
        t: clock.now(),
        connectionId: report.connectionId,
        peerId: report.peerId,
        address: report.address,
        direction: report.direction,
        kind: report.kind,
        from: report.from,
        to: report.to,
        reason: report.reason,
        attempt: report.attempt,
        nextDelayMs: report.nextDelayMs,
        rttMs: report.rttMs,
      });
      const waiting = dialWaiters.get(report.connectionId);
      if (waiting) for (const waiter of [...waiting]) waiter.onTransition(report);
    }
  };

  /** Keeps the peer store up to date from the lifecycle (issue 4 item 8). */
  const recordInStore = (report: Extract<ConnectionReport, { type: 'connection.transition' }>): void => {
    if (report.peerId === null) return;
    const now = wallClock();
    if (report.to === 'connected') {
      const record = actor?.getSnapshot().context.connections[report.connectionId];
      const addresses = [report.address, ...(record?.listenAddresses ?? [])].filter((a): a is string => a !== null);
      store.upsert(report.peerId, {
        lastSeenMs: now,
        addresses,
        ...(report.kind === 'persistent' ? { kind: 'persistent' as const } : {}),
      });
      storeDirty = true;
    }
    const linkEnded = report.from !== 'backoff' && ['backoff', 'closed', 'banned'].includes(report.to);
    if (linkEnded && report.reason !== null) {
      const record = store.recordDisconnect(report.peerId, report.reason, now);
      store.upsert(report.peerId, { score: peerScore(record.history) });
      storeDirty = true;
    }
    if (report.to === 'banned') {
      store.upsert(report.peerId, { bannedUntilMs: now + config.banDurationMs });
      storeDirty = true;
    }
  };

  const requireActor = (): SupervisorActor => {
    if (!actor || !running) throw new SupervisorStopped();
    return actor;
  };
  const records = (): Record<string, ConnectionRecord> => actor?.getSnapshot().context.connections ?? {};
  const recordFor = (peer: string): ConnectionRecord | undefined => {
    const id = actor?.getSnapshot().context.byPeer[peer];
    return id === undefined ? undefined : records()[id];
  };
  const statusOf = (peer: string): PeerStatus => {
    const context = actor?.getSnapshot().context;
    const history = store.get(peer)?.history;
    const lastEnd = history && history.length > 0 ? (history[history.length - 1]?.reason ?? null) : null;
    const banned = context ? findBan(context.bans, { peerId: peer }, clock.now()) !== undefined : false;
    return peerStatusOf(peer, recordFor(peer), lastEnd, banned);
  };

  const saveStore = (): Promise<void> => {
    if (storePath === undefined || !storeDirty) return saving;
    storeDirty = false;
    const path = storePath;
    // Saves run one after another, each with the latest snapshot; a failed save marks the store dirty again.
    saving = saving.then(() =>
      store.saveToFile(path).catch(() => {
        storeDirty = true;
      }),
    );
    return saving;
  };

  /**
   * Application use of the live links for a reaper pass. A link with no stream open and none ever
   * opened is left out: to the reaper it reads exactly like a missing entry (no use since it came
   * up), and at 10,000 connections that only ping, the pass then carries nothing.
   */
  const linkUsage = (): Record<string, LinkUsage> => {
    const usage: Record<string, LinkUsage> = {};
    for (const [id, link] of links) {
      if (link.closed) continue;
      const use = link.usage;
      if (use.openStreams > 0 || use.events > 0) usage[id] = use;
    }
    return usage;
  };

  /** Where a peer stands for sending: a live link, away but coming back (persistent), or neither. */
  const reach = (peer: string): PeerReach => {
    const record = recordFor(peer);
    if (!record) return { kind: 'none' };
    const link = links.get(record.connectionId);
    if ((record.state === 'connected' || record.state === 'degraded') && link && !link.closed) {
      return { kind: 'live', connectionId: record.connectionId, link };
    }
    const comesBack = record.kind === 'persistent' && ['backoff', 'connecting', 'handshaking', 'disconnecting'].includes(record.state);
    return comesBack ? { kind: 'waiting' } : { kind: 'none' };
  };
  const messenger = new Messenger({
    scheduler,
    batch: { ...DEFAULT_BATCH_OPTIONS, ...options.batch },
    outbox: options.outbox ?? {},
    flushTimeoutMs: timeouts.gracefulShutdownTimeoutMs,
    reach,
  });
  const received = messenger.messages$.pipe(share());
  received.subscribe(() => messagesIn.mark());

  /** A temporary connection replaced for Critical health: another known peer takes its place (issue 5 item 2). */
  const dialReplacement = (replacedPeer: string | null): void => {
    const context = actor?.getSnapshot().context;
    if (!context || !running) return;
    const address = pickReplacement(store.list(), (candidate, candidateAddress) => {
      if (candidate === replacedPeer || candidate === peerId) return true;
      if (context.byPeer[candidate] !== undefined || context.byAddress[candidateAddress] !== undefined) return true;
      return findBan(context.bans, { peerId: candidate }, clock.now()) !== undefined;
    });
    if (address !== undefined) supervisor.connect(address, { kind: 'temporary' }).catch(() => undefined);
  };

  const nodeMetrics = (): NodeMetrics => {
    const context = actor?.getSnapshot().context;
    if (!context) throw new SupervisorStopped();
    const memory = memoryUsage();
    return {
      ...metricsOf(context, clock.now()),
      messagesInPerSecond: messagesIn.perSecond(),
      messagesOutPerSecond: messagesOut.perSecond(),
      latencyAvgMs: latencies.average(),
      latencyP99Ms: latencies.p99(),
      heapUsedBytes: memory.heapUsed,
      rssBytes: memory.rss,
    };
  };

  /** Acts on one app event (see {@link AppEvent}). */
  const onAppEvent = (event: AppEvent): void => {
    const current = actor;
    if (!current || !running) return;
    switch (event.type) {
      case 'offline':
      case 'online':
        current.send({ type: `network.${event.type}` });
        return;
      case 'background':
        pingInterval.set(pingIntervalMs * backgroundPingFactor);
        current.send({ type: 'closeTemporary', reason: 'Normal' });
        return;
      case 'foreground':
        pingInterval.set(pingIntervalMs);
        return;
      case 'peerDiscovered':
        if (current.getSnapshot().context.offline) return;
        if (metricsOf(current.getSnapshot().context, clock.now()).slots.outbound >= targetOutbound) return;
        supervisor.connect(event.address, { kind: 'temporary' }).catch(() => undefined);
        return;
    }
  };

  const supervisor: Supervisor = {
    peerId,
    get listenAddress() {
      return listenAddress;
    },
    get actor() {
      if (!actor) throw new SupervisorStopped();
      return actor;
    },
    get peerStore() {
      return store;
    },
    events$: events.asObservable(),
    rtt$: rtts.asObservable(),
    messages$: received,
    undelivered$: messenger.undelivered$,
    metrics$: new Observable<NodeMetrics>((subscriber) =>
      changes
        .pipe(
          // One sampler per subscriber, from start() (changes replays once the actor runs) to stop().
          map(() => running),
          distinctUntilChanged(),
          switchMap((isRunning) => (isRunning ? sampleEvery(metricsIntervalMs, nodeMetrics, scheduler) : EMPTY)),
          takeUntil(stopped$),
        )
        .subscribe(subscriber),
    ),

    async start() {
      if (running) return {};
      let peerStoreProblem: PeerStoreProblem | undefined;
      if (storePath !== undefined) {
        const loaded = await PeerStore.loadFromFile(storePath, { ...storeBounds, nowMs: wallClock() });
        store = loaded.store;
        peerStoreProblem = loaded.problem;
      }
      if (options.listen !== undefined) {
        listener = await transport.listen(options.listen, acceptConnection);
        listenAddress = listener.address;
      }
      const identity: LocalIdentity = {
        staticKeyPair,
        peerId,
        payload: {
          protocolVersion: PROTOCOL_VERSION,
          featureFlags: options.featureFlags ?? 0,
          privacyFlags: options.privacyFlags ?? 0,
          nodeNonce,
          listenAddresses: listenAddress === null ? [] : [listenAddress],
        },
        requiredFeatures: options.requiredFeatures ?? 0,
        crypto,
      };
      const link = createLinkActor({
        identity,
        transport,
        scheduler,
        clock,
        pingIntervalMs: pingInterval.changes,
        pingTimeoutMs,
        health: healthSettings,
        inactivityTimeoutMs: options.inactivityTimeoutMs ?? 60_000,
        links,
        trackConnection,
        onSelfConnection: (address) => selfAddresses.add(address),
        takeInbound: (id) => {
          const connection = parked.get(id);
          parked.delete(id);
          return connection;
        },
        onStream: (connectionId, remotePeer, protocol, stream) => {
          const handler = handlers.get(protocol);
          if (!handler) {
            stream.destroy();
            return;
          }
          handler(stream, { peerId: remotePeer, connectionId, protocol });
        },
      });
      const connection = withConnectionPolicies({
        timeouts,
        timeoutBackoff: { ...DEFAULT_BACKOFF, ...options.timeoutBackoff },
        violationBackoff: { ...DEFAULT_VIOLATION_BACKOFF, ...options.violationBackoff },
        violationBan: options.violationBan ?? DEFAULT_VIOLATION_BAN,
        now: () => clock.now(),
        reconnectPolicy: options.reconnectPolicy ?? defaultReconnectPolicy,
        random: options.random ?? DEFAULT_CONNECTION_POLICIES.random,
      }).provide({ actors: { link } });
      const machine = withSupervisorClock(() => clock.now()).provide({
        actors: { connection },
        actions: { publish: (_, report: ConnectionReport) => void queuedReports.push(report) },
      });
      actor = createActor(machine, {
        systemId: 'supervisor',
        input: { localPeerId: peerId, config },
        clock,
        ...(options.inspect ? { inspect: options.inspect } : {}),
      });
      configureConnectionActors(actor, {
        ...(options.inspect ? { inspect: options.inspect } : {}),
        // RTTs are published as they arrive; the supervisor's tables get them in batches.
        onSample: (sample) => {
          if (sample.rttMs === null) return;
          latencies.add(sample.rttMs);
          rtts.next({ t: clock.now(), connectionId: sample.connectionId, peerId: sample.peerId, rttMs: sample.rttMs });
        },
      });
      actor.on('refused', (refusal) => refusalWaiters.get(refusal.connectionId)?.(refusal));
      actor.subscribe(() => {
        flushReports();
        changes.next();
      });
      running = true;
      actor.start();
      handlers.set(MESSAGES_PROTOCOL, (stream, context) => messenger.receive(context.peerId, stream));
      if (options.appEvents !== undefined) {
        const given = options.appEvents;
        const sources: readonly Observable<AppEvent>[] = isObservableList(given) ? given : [given];
        appSubscription = merge(...sources).subscribe({ next: onAppEvent, error: () => undefined });
      }
      reaper = interval(reaperIntervalMs, scheduler).subscribe(() => {
        actor?.send({ type: 'reaper.tick', usage: linkUsage() });
        void saveStore();
      });
      // Bans and persistent peers survive a restart through the store (times there are wall-clock ms).
      const wallNow = wallClock();
      for (const record of store.list()) {
        if (record.bannedUntilMs !== null && record.bannedUntilMs > wallNow) {
          actor.send({
            type: 'ban',
            target: { peerId: record.peerId },
            durationMs: record.bannedUntilMs - wallNow,
            reason: 'banned before restart',
          });
        }
      }
      for (const record of store.persistentPeers()) {
        const address = record.addresses[0];
        if (address === undefined || (record.bannedUntilMs ?? 0) > wallNow) continue;
        supervisor.connect(address, { kind: 'persistent' }).catch(() => undefined);
      }
      return peerStoreProblem ? { peerStoreProblem } : {};
    },

    async stop() {
      if (!running || !actor) return;
      running = false;
      const current = actor;
      reaper?.unsubscribe();
      reaper = undefined;
      appSubscription?.unsubscribe();
      appSubscription = undefined;
      // A graceful close flushes first: pending batches go out before the goodbyes.
      await messenger.flushAll();
      // Stop accepting now; the listener is closed for good once its connections are gone (a TCP
      // server's close waits for them, so awaiting it here would wait for peers that never hang up).
      const listenerClosed = listener?.close();
      listener = undefined;
      for (const connection of parked.values()) connection.stream.destroy();
      parked.clear();
      current.send({ type: 'disconnectAll', reason: 'Normal' });
      await waitUntil(
        // One actor per record (the model spec checks it): an O(1) test on every change.
        () => connectionActorsOf(current).size === 0,
        timeouts.gracefulShutdownTimeoutMs + 100,
      );
      // Connection actors are not snapshot children (see connection-actors.ts): stop what is left.
      current.send({ type: 'stopAll' });
      current.stop();
      for (const link of links.values()) link.destroy();
      links.clear();
      // Destroyed streams release their handles asynchronously: wait for every 'close'.
      await Promise.all(
        [...openStreams].map(
          (stream) =>
            new Promise<void>((resolve) => {
              if (stream.closed) return resolve();
              stream.once('close', () => resolve());
              stream.destroy();
            }),
        ),
      );
      await listenerClosed;
      storeDirty = storeDirty || storePath !== undefined;
      await saveStore();
      messenger.close();
      stopped$.next();
      stopped$.complete();
      pingInterval.complete();
      events.complete();
      rtts.complete();
      for (const waiting of [...dialWaiters.values()]) for (const waiter of [...waiting]) waiter.onStop();
      changes.complete();
      // libuv releases a closed handle one or two loop turns after its 'close' event: once these
      // pass, process.getActiveResourcesInfo() shows nothing of this supervisor.
      for (let turn = 0; turn < 2; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
    },

    connect(target, connectOptions = {}) {
      let current: SupervisorActor;
      let address: string;
      let targetPeer: string | undefined;
      try {
        current = requireActor();
        // A peer ID never holds a colon; checking that first spares isPeerId's throw on every address dial.
        if (!target.includes(':') && isPeerId(target)) {
          targetPeer = target;
          const served = recordFor(target);
          if (served && served.address === null && (served.state === 'connected' || served.state === 'degraded')) {
            // An inbound connection we cannot dial back: it is the connection to the peer.
            return Promise.resolve(toInfo(served));
          }
          const known = served?.address ?? store.get(target)?.addresses[0];
          if (known === undefined) throw new PeerAddressUnknown(target);
          address = known;
        } else {
          address = target;
        }
        parseAddress(address);
        if (selfAddresses.has(address)) throw new SelfConnection(`${address} is this node; it is not dialed again`);
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      const connectionId = `c${++nextId}`;
      return new Promise<ConnectionInfo>((resolve, reject) => {
        // The connection we wait for: the one spawned for us, or the one that already serves the target.
        let watchedId = connectionId;
        let watchedPeer: string | null = targetPeer ?? null;
        let lastFailure: ConnectionFailed | undefined;
        let finished = false;
        const finish = (settleWith: () => void): void => {
          if (finished) return;
          finished = true;
          refusalWaiters.delete(connectionId);
          unwatchDial(watchedId, waiter);
          settleWith();
        };
        const watch = (id: string): void => {
          unwatchDial(watchedId, waiter);
          watchedId = id;
          watchDial(id, waiter);
        };
        const settle = (): void => {
          const context = current.getSnapshot().context;
          const record = context.connections[watchedId];
          if (record) {
            watchedPeer = record.peerId ?? watchedPeer;
            if (record.state === 'connected' || record.state === 'degraded') finish(() => resolve(toInfo(record)));
            return;
          }
          // A duplicate that closed hands over to the survivor for its peer.
          const survivorId = watchedPeer === null ? undefined : context.byPeer[watchedPeer];
          if (survivorId !== undefined && survivorId !== watchedId && context.connections[survivorId]) {
            watch(survivorId);
            settle();
            return;
          }
          finish(() => reject(lastFailure ?? new ConnectionFailed(address, null, 'the connection ended')));
        };
        const waiter: DialWaiter = {
          onTransition: (transition) => {
            if (transition.to === 'closed' || transition.to === 'banned') {
              lastFailure = new ConnectionFailed(address, transition.reason, null);
            }
            settle();
          },
          onStop: () => finish(() => reject(new SupervisorStopped())),
        };
        // Watching before the send: a connection that ends during it leaves its reason here.
        watchDial(connectionId, waiter);
        refusalWaiters.set(connectionId, (refusal) =>
          finish(() => reject(refusalError(refusal.refusal, refusal.detail))),
        );
        current.send({
          type: 'connect',
          connectionId,
          address,
          kind: connectOptions.kind ?? 'persistent',
          ...(targetPeer !== undefined ? { peerId: targetPeer } : {}),
          ...(connectOptions.reuse !== undefined ? { reuse: connectOptions.reuse } : {}),
          ...(connectOptions.protect !== undefined ? { protect: connectOptions.protect } : {}),
        });
        if (finished) return;
        const context = current.getSnapshot().context;
        if (!context.connections[connectionId]) {
          // Not spawned: an existing connection serves the address or the peer.
          const served = context.byAddress[address] ?? (targetPeer === undefined ? undefined : context.byPeer[targetPeer]);
          if (served !== undefined) watch(served);
        }
        settle();
      });
    },

    disconnect(remotePeer) {
      let current: SupervisorActor;
      try {
        current = requireActor();
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      // The peer's index entry, not a scan: O(1) at 10,000 connections. Other records of the peer
      // (the loser of a duplicate, a banned arrival) are closing for good already.
      if (recordFor(remotePeer) === undefined) {
        return Promise.reject(new PeerAddressUnknown(remotePeer));
      }
      if (store.get(remotePeer)?.kind === 'persistent') {
        store.upsert(remotePeer, { kind: 'temporary' });
        storeDirty = true;
      }
      return messenger.flush(remotePeer).then(() => {
        current.send({ type: 'disconnect', peerId: remotePeer, reason: 'Normal' });
        return waitUntil(
          () => recordFor(remotePeer) === undefined,
          timeouts.gracefulShutdownTimeoutMs + 100,
        );
      });
    },

    send(remotePeer, message) {
      requireActor();
      messenger.send(remotePeer, message);
      messagesOut.mark();
    },

    release(remotePeer) {
      actor?.send({ type: 'release', peerId: remotePeer });
    },

    protect(remotePeer, isProtected = true) {
      actor?.send({ type: 'protect', peerId: remotePeer, protected: isProtected });
    },

    ban(target, banOptions = {}) {
      const durationMs = banOptions.durationMs ?? config.banDurationMs;
      // Validate here so a bad target throws to the caller instead of reaching the actor.
      addBan(emptyBans(), target, 0, durationMs);
      const current = requireActor();
      current.send({
        type: 'ban',
        target,
        durationMs,
        ...(banOptions.reason !== undefined ? { reason: banOptions.reason } : {}),
      });
      if (target.peerId !== undefined) {
        store.upsert(target.peerId, { bannedUntilMs: wallClock() + durationMs });
        storeDirty = true;
      }
    },

    unban(target) {
      actor?.send({ type: 'unban', target });
      if (target.peerId !== undefined && store.get(target.peerId)) {
        store.upsert(target.peerId, { bannedUntilMs: null });
        storeDirty = true;
      }
    },

    bans() {
      const context = actor?.getSnapshot().context;
      return activeBans(context?.bans ?? emptyBans(), clock.now());
    },

    openStream(remotePeer, protocol) {
      const record = recordFor(remotePeer);
      const link = record ? links.get(record.connectionId) : undefined;
      if (!link || link.closed) return Promise.reject(new PeerAddressUnknown(remotePeer));
      try {
        return Promise.resolve(link.openStream(protocol));
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new ConnectionClosed());
      }
    },

    async ping(remotePeer) {
      const record = recordFor(remotePeer);
      const link = record ? links.get(record.connectionId) : undefined;
      if (!link || link.closed) throw new PeerAddressUnknown(remotePeer);
      const sentAt = clock.now();
      await link.ping();
      return clock.now() - sentAt;
    },

    handle(protocol, handler) {
      handlers.set(protocol, handler);
    },

    getStatus(remotePeer) {
      return statusOf(remotePeer);
    },

    connections() {
      return Object.values(records()).map(toInfo);
    },

    status$(remotePeer) {
      return changes.pipe(
        map(() => statusOf(remotePeer)),
        distinctUntilChanged(sameStatus),
      );
    },

    getMetrics() {
      return nodeMetrics();
    },

    prometheus() {
      return renderPrometheus(metricFamilies(nodeMetrics()));
    },
  };

  /**
   * Pending inbound connections that have not sent a whole first handshake message (2-byte
   * length + 32-byte ephemeral key), fewest bytes first, then oldest: the ones a flood of silent
   * or slowloris sockets is made of.
   */
  function reclaimable(): string[] {
    const candidates: { id: string; bytes: number; order: number }[] = [];
    let order = 0;
    for (const [id, connection] of pendingInbound) {
      const bytes = connection.bytesRead();
      if (bytes < FIRST_HANDSHAKE_MESSAGE_BYTES) candidates.push({ id, bytes, order: order++ });
    }
    return candidates.sort((a, b) => a.bytes - b.bytes || a.order - b.order).map((c) => c.id);
  }

  function acceptConnection(connection: RawConnection): void {
    if (!running || !actor) {
      connection.stream.destroy();
      return;
    }
    const connectionId = `i${++nextId}`;
    trackConnection(connection);
    parked.set(connectionId, connection);
    // Until the link takes it, a stream error must not crash the process.
    connection.stream.on('error', () => undefined);
    connection.stream.once('close', () => {
      parked.delete(connectionId);
      pendingInbound.delete(connectionId);
    });
    pendingInbound.set(connectionId, connection);
    actor.send({ type: 'inbound', connectionId, remoteAddress: connection.remoteAddress, reclaimable: reclaimable() });
    // Refused (banned IP, over a limit): closed before any handshake work.
    if (!actor.getSnapshot().context.connections[connectionId]) {
      parked.delete(connectionId);
      pendingInbound.delete(connectionId);
      connection.stream.destroy();
    }
  }

  /** Resolves once `done()` holds, re-checking on every supervisor change; gives up after `limitMs` of the clock. */
  function waitUntil(done: () => boolean, limitMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (done()) return resolve();
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        clock.clearTimeout(timer);
        subscription?.unsubscribe();
        resolve();
      };
      const timer = clock.setTimeout(finish, limitMs);
      const subscription: { unsubscribe(): void } | undefined = changes.subscribe({
        next: () => {
          if (done()) finish();
        },
        complete: finish,
      });
      if (finished) subscription.unsubscribe();
    });
  }

  return supervisor;
}

function isObservableList(value: Observable<AppEvent> | readonly Observable<AppEvent>[]): value is readonly Observable<AppEvent>[] {
  return Array.isArray(value);
}

/** Bytes of a whole first Noise XX message on the wire: 2-byte length + 32-byte ephemeral key. */
const FIRST_HANDSHAKE_MESSAGE_BYTES = 34;

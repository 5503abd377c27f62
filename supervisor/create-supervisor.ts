/**
 * The public entry: `createSupervisor(options)` builds a supervisor actor wired to real TCP, Noise
 * and yamux, with one injected clock for XState delays and RxJS schedulers (DESIGN §7).
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { BehaviorSubject, Observable, Subject, filter, map } from 'rxjs';
import { createActor } from 'xstate';
import type { InspectionEvent, Observer } from 'xstate';
import { createLinkActor } from '../machines/link-actor.js';
import type { LinkRegistry } from '../machines/link-actor.js';
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
import { nobleCrypto } from '../transport/noise/crypto.js';
import type { NoiseCrypto } from '../transport/noise/crypto.js';
import { peerIdFromPublicKey } from '../transport/peer-id.js';
import type { PeerId } from '../transport/peer-id.js';
import { formatAddress, listenTcp, parseAddress } from '../transport/tcp.js';
import type { TcpListener } from '../transport/tcp.js';
import { ConnectionFailed, PeerAddressUnknown, SupervisorStopped } from './errors.js';
import { supervisorMachine } from './supervisor-machine.js';
import type { ConnectionRecord, SupervisorActor } from './supervisor-machine.js';

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
  /** Noise primitives; `nobleCrypto` by default. */
  readonly crypto?: NoiseCrypto;
  /** Passed to XState's `createActor` (e.g. `@statelyai/inspect`'s `inspector.inspect`). */
  readonly inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
}

/** A public snapshot of one connection. */
export interface ConnectionInfo {
  readonly connectionId: string;
  readonly peerId: string | null;
  /** Dial address, or null for an inbound connection we cannot dial back. */
  readonly address: string | null;
  readonly remoteAddress: string | null;
  readonly direction: Direction;
  readonly kind: ConnectionKind;
  readonly state: ConnectionState;
  readonly reason: DisconnectReason | null;
  /** Failed attempts since the last success. */
  readonly attempt: number;
  /** Latest ping RTT, ms. */
  readonly rttMs: number | null;
  /** Times it came back to Connected after losing its link. */
  readonly reconnects: number;
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
   * Binds the listener (if any) and starts the supervisor actor.
   * @throws the listen error (e.g. EADDRINUSE).
   */
  start(): Promise<void>;
  /**
   * Says goodbye (Normal) on every connection, waits up to `gracefulShutdownTimeout`, then stops
   * every actor, socket, timer and subscription. Idempotent.
   */
  stop(): Promise<void>;
  /**
   * Connects to `address` (`host:port`) unless a connection already serves that address, and
   * resolves when it is Connected. A persistent connection keeps retrying through Backoff.
   * @throws ConnectionFailed when it ends for good before Connected; SelfConnection for an address
   *   that turned out to be this node; ProtocolViolation for a malformed address; SupervisorStopped.
   */
  connect(address: string, options?: { kind?: ConnectionKind }): Promise<ConnectionInfo>;
  /**
   * Closes every connection to `peerId` with reason Normal, for good; resolves when they are closed.
   * @throws PeerAddressUnknown when there is no connection to that peer.
   */
  disconnect(peerId: string): Promise<void>;
  /**
   * Opens a stream for `protocol` on the live connection to `peerId`.
   * @throws PeerAddressUnknown when no live connection serves the peer.
   */
  openStream(peerId: string, protocol: string): Promise<Duplex>;
  /** Registers the handler of inbound streams for `protocol`; streams with no handler are reset. */
  handle(protocol: string, handler: (stream: Duplex, context: StreamContext) => void): void;
  /** The connection that serves `peerId`, or undefined. */
  getStatus(peerId: string): ConnectionInfo | undefined;
  /** Every running connection. */
  connections(): ConnectionInfo[];
  /** The status of `peerId` now and on every change; completes on `stop()`. */
  status$(peerId: string): Observable<ConnectionInfo | undefined>;
}

/**
 * Creates a supervisor. Nothing touches the network until `start()`.
 * @throws RangeError when `staticPrivateKey` is not 32 bytes.
 */
export function createSupervisor(options: SupervisorOptions = {}): Supervisor {
  const crypto = options.crypto ?? nobleCrypto;
  const clock = options.clock ?? systemClock;
  const scheduler = clockScheduler(clock);
  const privateKey = options.staticPrivateKey ?? crypto.generateKeyPair().privateKey;
  const staticKeyPair = { privateKey, publicKey: crypto.publicKeyFromPrivateKey(privateKey) };
  const peerId = peerIdFromPublicKey(staticKeyPair.publicKey);
  const timeouts: ConnectionTimeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const pingIntervalMs = options.ping?.intervalMs ?? 10_000;
  const pingTimeoutMs = options.ping?.timeoutMs ?? 5_000;

  const links: LinkRegistry = new Map();
  const parkedSockets = new Map<string, Socket>();
  const openSockets = new Set<Socket>();
  /** Addresses that turned out to be this node: never dialed again. */
  const selfAddresses = new Set<string>();
  const trackSocket = (socket: Socket): void => {
    if (socket.destroyed) return;
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
  };
  const handlers = new Map<string, (stream: Duplex, context: StreamContext) => void>();
  const events = new Subject<ConnectionTransition>();
  const rtts = new Subject<RttSample>();
  const changes = new BehaviorSubject<void>(undefined);
  let listener: TcpListener | undefined;
  let listenAddress: string | null = null;
  let actor: SupervisorActor | undefined;
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
    } else if (report.type === 'connection.rtt') {
      rtts.next({ t: clock.now(), connectionId: report.connectionId, peerId: report.peerId, rttMs: report.rttMs });
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

  const supervisor: Supervisor = {
    peerId,
    get listenAddress() {
      return listenAddress;
    },
    get actor() {
      if (!actor) throw new SupervisorStopped();
      return actor;
    },
    events$: events.asObservable(),
    rtt$: rtts.asObservable(),

    async start() {
      if (running) return;
      if (options.listen !== undefined) {
        listener = await listenTcp(parseAddress(options.listen, { listen: true }), acceptSocket);
        listenAddress = formatAddress(listener.address);
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
        scheduler,
        pingIntervalMs,
        pingTimeoutMs,
        inactivityTimeoutMs: options.inactivityTimeoutMs ?? 60_000,
        links,
        trackSocket,
        onSelfConnection: (address) => selfAddresses.add(address),
        takeInboundSocket: (id) => {
          const socket = parkedSockets.get(id);
          parkedSockets.delete(id);
          return socket;
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
      const machine = supervisorMachine.provide({
        actors: { connection },
        actions: { publish: (_, report: ConnectionReport) => void queuedReports.push(report) },
      });
      actor = createActor(machine, {
        systemId: 'supervisor',
        input: { localPeerId: peerId },
        clock,
        ...(options.inspect ? { inspect: options.inspect } : {}),
      });
      actor.subscribe(() => {
        flushReports();
        changes.next();
      });
      running = true;
      actor.start();
    },

    async stop() {
      if (!running || !actor) return;
      running = false;
      const current = actor;
      await listener?.close();
      listener = undefined;
      for (const socket of parkedSockets.values()) socket.destroy();
      parkedSockets.clear();
      current.send({ type: 'disconnectAll', reason: 'Normal' });
      await waitUntil(
        () => Object.keys(current.getSnapshot().context.connections).length === 0,
        timeouts.gracefulShutdownTimeoutMs + 100,
      );
      current.stop();
      for (const link of links.values()) link.destroy();
      links.clear();
      // Destroyed sockets release their handles asynchronously: wait for every 'close'.
      await Promise.all(
        [...openSockets].map(
          (socket) =>
            new Promise<void>((resolve) => {
              if (socket.closed) return resolve();
              socket.once('close', () => resolve());
              socket.destroy();
            }),
        ),
      );
      events.complete();
      rtts.complete();
      changes.complete();
    },

    connect(address, connectOptions = {}) {
      let current: SupervisorActor;
      try {
        current = requireActor();
        parseAddress(address);
        if (selfAddresses.has(address)) throw new SelfConnection(`${address} is this node; it is not dialed again`);
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      current.send({
        type: 'connect',
        connectionId: `c${++nextId}`,
        address,
        kind: connectOptions.kind ?? 'persistent',
      });
      // The connection we wait for; a duplicate that closes hands over to the survivor for its peer.
      let watchedId = current.getSnapshot().context.byAddress[address];
      let watchedPeer: string | null = null;
      return new Promise<ConnectionInfo>((resolve, reject) => {
        let lastFailure: ConnectionFailed | undefined;
        const settle = (): boolean => {
          const context = current.getSnapshot().context;
          const record = watchedId === undefined ? undefined : context.connections[watchedId];
          if (record) {
            watchedPeer = record.peerId ?? watchedPeer;
            if (record.state !== 'connected' && record.state !== 'degraded') return false;
            resolve(toInfo(record));
            return true;
          }
          const survivorId = watchedPeer === null ? undefined : context.byPeer[watchedPeer];
          if (survivorId !== undefined && context.connections[survivorId]) {
            watchedId = survivorId;
            return settle();
          }
          reject(lastFailure ?? new ConnectionFailed(address, null, 'the connection ended'));
          return true;
        };
        if (settle()) return;
        const subscription = events.subscribe({
          next: (transition) => {
            if (transition.connectionId !== watchedId) return;
            watchedPeer = transition.peerId ?? watchedPeer;
            if (transition.to === 'closed' || transition.to === 'banned') {
              lastFailure = new ConnectionFailed(address, transition.reason, null);
            }
            if (settle()) subscription.unsubscribe();
          },
          complete: () => reject(new SupervisorStopped()),
        });
      });
    },

    disconnect(remotePeer) {
      let current: SupervisorActor;
      try {
        current = requireActor();
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      if (!Object.values(records()).some((record) => record.peerId === remotePeer)) {
        return Promise.reject(new PeerAddressUnknown(remotePeer));
      }
      current.send({ type: 'disconnect', peerId: remotePeer, reason: 'Normal' });
      return waitUntil(
        () => !Object.values(records()).some((record) => record.peerId === remotePeer),
        timeouts.gracefulShutdownTimeoutMs + 100,
      );
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

    handle(protocol, handler) {
      handlers.set(protocol, handler);
    },

    getStatus(remotePeer) {
      const record = recordFor(remotePeer);
      return record ? toInfo(record) : undefined;
    },

    connections() {
      return Object.values(records()).map(toInfo);
    },

    status$(remotePeer) {
      return new Observable<ConnectionInfo | undefined>((subscriber) =>
        changes
          .pipe(
            map(() => supervisor.getStatus(remotePeer)),
            filter(distinctInfo()),
          )
          .subscribe(subscriber),
      );
    },
  };

  function acceptSocket(socket: Socket): void {
    if (!running || !actor) {
      socket.destroy();
      return;
    }
    const connectionId = `i${++nextId}`;
    trackSocket(socket);
    parkedSockets.set(connectionId, socket);
    // Until the link takes it, a socket error must not crash the process.
    const onError = (): void => undefined;
    socket.on('error', onError);
    socket.once('close', () => parkedSockets.delete(connectionId));
    actor.send({
      type: 'inbound',
      connectionId,
      remoteAddress: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`,
    });
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

function toInfo(record: ConnectionRecord): ConnectionInfo {
  return {
    connectionId: record.connectionId,
    peerId: record.peerId,
    address: record.address,
    remoteAddress: record.remoteAddress,
    direction: record.direction,
    kind: record.kind,
    state: record.state,
    reason: record.reason,
    attempt: record.attempt,
    rttMs: record.rttMs,
    reconnects: record.reconnects,
  };
}

function distinctInfo(): (info: ConnectionInfo | undefined) => boolean {
  let last: string | undefined;
  return (info) => {
    const key = JSON.stringify(info ?? null);
    if (key === last) return false;
    last = key;
    return true;
  };
}

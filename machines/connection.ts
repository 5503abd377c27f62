/**
 * The per-connection lifecycle (DESIGN §2) as an XState v5 machine: pure data plus named
 * implementations. The `link` actor, the delays, the reconnect policy and the randomness are
 * injected with `connectionMachine.provide()`; the supervisor provides the real link (TCP + Noise +
 * yamux), specs provide scripted ones.
 *
 * ```
 * live                invokes `link`, which owns socket + secure channel + mux
 * ├── connecting      TCP dial             (after connectTimeout → Timeout)
 * ├── handshaking     Noise XX + payload   (after handshakeTimeout → Timeout)
 * ├── connected ⇄ degraded
 * └── disconnecting   goodbye with reason  (after gracefulShutdownTimeout → force)
 * backoff             waits per the reconnect strategy, then → live.connecting
 * closed (final)      banned (final)
 * ```
 * Leaving `live` stops the link actor, which releases every resource it holds.
 */
import { assign, enqueueActions, fromCallback, sendTo, setup } from 'xstate';
import type { DisconnectReason } from '../transport/disconnect-reason.js';
import type { HealthCategory } from '../streams/health.js';
import {
  DEFAULT_BACKOFF,
  DEFAULT_VIOLATION_BAN,
  defaultReconnectPolicy,
  fullJitterBackoffMs,
  HISTORY_LENGTH,
  recordViolation,
} from '../streams/reconnect.js';
import type {
  BackoffOptions,
  ConnectionKind,
  Direction,
  DisconnectFacts,
  DisconnectRecord,
  ReconnectStrategy,
  ViolationBanRule,
} from '../streams/reconnect.js';

/** The lifecycle states a connection reports, in the vocabulary of DESIGN §2. */
export type ConnectionState =
  | 'connecting'
  | 'handshaking'
  | 'connected'
  | 'degraded'
  | 'disconnecting'
  | 'backoff'
  | 'closed'
  | 'banned';

/** The current link's latest measurements (DESIGN §4); each null until its first sample. */
export interface LinkHealth {
  /** Latest ping RTT, ms. */
  readonly rttMs: number | null;
  /** Latest health score in [0, 1]. */
  readonly score: number | null;
  /** Category of that score. */
  readonly category: HealthCategory | null;
}

/** `T` with its fields writable (for the one record this module writes in place, see `recordSample`). */
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** What a connection remembers of its earlier links, for the reconnect policy and the ban rule. */
export interface ConnectionMemory {
  /** Earlier disconnects, oldest first (bounded), as the reconnect policy sees them. */
  readonly disconnects: readonly DisconnectRecord[];
  /** Times (ms) of recent ProtocolViolations, for the ban rule. */
  readonly violations: readonly number[];
}

/**
 * The memory of a connection that has none yet, shared by every new connection: it is never
 * written (updates build a new memory), and one object and two arrays fewer per connection
 * spared about 0.1 KiB each.
 */
const NO_MEMORY: ConnectionMemory = Object.freeze({ disconnects: Object.freeze([]), violations: Object.freeze([]) });

/**
 * Most top-level fields a {@link ConnectionContext} may have. XState copies the context with
 * `Object.assign({}, context, update)` on every `assign`; V8 (Node 20) turns such a copy with 20
 * or more properties into a slow dictionary-mode object, which made every transition several
 * times dearer (measured: ~40 µs instead of ~2 µs per copy). Group new fields instead.
 */
export const MAX_CONTEXT_FIELDS = 19;

/**
 * Plain, serialisable context of a connection actor (what the inspector shows). Kept under
 * {@link MAX_CONTEXT_FIELDS} top-level fields.
 */
export interface ConnectionContext {
  /** Supervisor-assigned ID of this connection actor, e.g. `c7`. */
  readonly connectionId: string;
  /** Authenticated peer ID (text form), known once the handshake is done. */
  peerId: string | null;
  /** Address we dial (`host:port`); null for an inbound connection we cannot dial back. */
  address: string | null;
  /** The socket's remote `host:port` of the current link. */
  remoteAddress: string | null;
  /** Which side dialed the current link. */
  direction: Direction;
  kind: ConnectionKind;
  /** Current lifecycle state (null before the first state is entered). */
  state: ConnectionState | null;
  /** Why the last link ended (or is ending). */
  reason: DisconnectReason | null;
  /** Message of the error behind `reason`, if any. */
  error: string | null;
  /** The strategy chosen when the last link ended. */
  strategy: ReconnectStrategy | null;
  /** Failed attempts since the last successful connection (drives the backoff exponent). */
  attempt: number;
  /** Delay of the current backoff, ms. */
  nextDelayMs: number | null;
  /** Latest RTT and health sample of the link (DESIGN §4); the one field written in place (see `recordSample`). */
  health: LinkHealth;
  /** The close is final: the app asked for it, or this connection was a duplicate. */
  final: boolean;
  /** This connection is being closed as a duplicate of another one to the same peer. */
  duplicate: boolean;
  /** Earlier disconnects and violations. */
  memory: ConnectionMemory;
  /** The app said the network is down: no dialing, no backoff timer, failures not counted. */
  offline: boolean;
  /** The link is being replaced because its health stayed Critical too long. */
  replaced: boolean;
}

/** Input of a connection actor. */
export interface ConnectionInput {
  readonly connectionId: string;
  readonly direction: Direction;
  readonly kind: ConnectionKind;
  /** Outbound: the address to dial. Inbound: null (the supervisor hands the socket to the link). */
  readonly address: string | null;
  readonly remoteAddress?: string | null;
  /** The network is down at spawn time: an outbound connection waits in Backoff until `network.online`. */
  readonly offline?: boolean;
}

/** Events the link actor sends to its connection. */
export type LinkEvent =
  | { type: 'link.tcpConnected'; remoteAddress: string }
  | { type: 'link.secured'; peerId: string; listenAddresses: string[] }
  | { type: 'link.ready' }
  /**
   * One ping outcome (DESIGN §4), sent once per ping: its RTT in ms (`null` when the ping was
   * lost) and the health it leaves, overall score in [0, 1] and its category (null until known).
   * One event carries both so a ping costs one step of the machine, not two.
   */
  | { type: 'link.sample'; rttMs: number | null; score: number | null; category: HealthCategory | null }
  /**
   * A ping went unanswered for `pingTimeout` and nothing at all was received since it went out:
   * the path is dead (ends with Timeout). A lost ping while other bytes arrive only lowers the
   * reliability score.
   */
  | { type: 'link.pingLost' }
  /** Nothing was received for `inactivityTimeout` (a half-open connection looks exactly like this). */
  | { type: 'link.inactive' }
  | { type: 'link.remoteGoodbye'; reason: DisconnectReason; duplicate: boolean }
  /** `final`: never dial this address again (e.g. it turned out to be ourselves). */
  | { type: 'link.failed'; reason: DisconnectReason; error: string; final?: boolean }
  | { type: 'link.closed' };

/** Commands the supervisor or the app send to a connection. */
export type ConnectionCommand =
  /** Close the connection. `final`: do not reconnect. `duplicate`: another connection to this peer survives. */
  | { type: 'disconnect'; reason: DisconnectReason; final: boolean; duplicate?: boolean }
  /** Make this connection persistent, dialable at `address` (e.g. it survived a simultaneous open). */
  | { type: 'promote'; kind: ConnectionKind; address: string }
  /** Health verdicts (from the health pipeline). */
  | { type: 'health.poor' }
  | { type: 'health.good' }
  /** A slot is free again (for AfterResourcesAvailable). */
  | { type: 'resources.available' }
  /** In Backoff: no slot is free for the redial; wait for `resources.available` instead of the timer. */
  | { type: 'resources.wait' }
  /** The peer reached us on another connection while we wait in Backoff: dial now. */
  | { type: 'peer.returned' }
  /** Health stayed Critical past the limit: replace the link (Disconnecting with NetworkRestructure). */
  | { type: 'health.critical' }
  /** The app's network went down: pause dialing and the backoff timer; failures meanwhile do not count. */
  | { type: 'network.offline' }
  /** The network is back: redial at once. */
  | { type: 'network.online' };

/** Every event a connection actor accepts. */
export type ConnectionEvent = LinkEvent | ConnectionCommand;

/** Events the link actor accepts from its connection. */
export type LinkCommand = { type: 'link.goodbye'; reason: DisconnectReason; duplicate: boolean };

/** What the link actor receives as input. */
export interface LinkInput {
  readonly connectionId: string;
  readonly direction: Direction;
  readonly address: string | null;
}

/**
 * A report for the supervisor, emitted (`actor.on(type, handler)`) on every state change, when the
 * peer is identified, and with each RTT and health sample. The supervisor's connection table
 * (`supervisor/connection-actors.ts`) forwards them to the supervisor actor.
 */
export type ConnectionReport =
  | {
      type: 'connection.transition';
      connectionId: string;
      peerId: string | null;
      address: string | null;
      remoteAddress: string | null;
      direction: Direction;
      kind: ConnectionKind;
      from: ConnectionState | null;
      to: ConnectionState;
      reason: DisconnectReason | null;
      /** The strategy chosen when the last link ended. */
      strategy: ReconnectStrategy | null;
      attempt: number;
      nextDelayMs: number | null;
      rttMs: number | null;
      /** The link was replaced for Critical health (a temporary peer gets a substitute). */
      replaced: boolean;
    }
  | {
      type: 'connection.identified';
      connectionId: string;
      peerId: string;
      direction: Direction;
      listenAddresses: string[];
    }
  | {
      /** One ping outcome: its RTT, ms (`null` when the ping was lost), and the health it leaves. */
      type: 'connection.sample';
      connectionId: string;
      peerId: string | null;
      rttMs: number | null;
      score: number | null;
      category: HealthCategory | null;
    };

/** Timing settings of the lifecycle, all in ms (DESIGN §6). */
export interface ConnectionTimeouts {
  readonly connectTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly gracefulShutdownTimeoutMs: number;
  /** Connected this long without a failure resets the backoff exponent (`attempt` back to 0). */
  readonly stablePeriodMs: number;
}

/** DESIGN §6 defaults: 10 s connect, 10 s handshake, 2 s graceful shutdown; ours: 60 s stable period. */
export const DEFAULT_TIMEOUTS: ConnectionTimeouts = {
  connectTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  gracefulShutdownTimeoutMs: 2_000,
  stablePeriodMs: 60_000,
};

/** Backoff after ProtocolViolations: slower than after timeouts (5 s base, ×2, 5 min cap). */
export const DEFAULT_VIOLATION_BACKOFF: BackoffOptions = { baseMs: 5_000, factor: 2, capMs: 300_000 };

/** Everything `provide()` can replace besides the link: timing, policy and randomness. */
export interface ConnectionPolicies {
  readonly timeouts: ConnectionTimeouts;
  /** Backoff after every reason but ProtocolViolation (DESIGN §6: 1 s base, ×2, 5 min cap). */
  readonly timeoutBackoff: BackoffOptions;
  /** Backoff after a ProtocolViolation. */
  readonly violationBackoff: BackoffOptions;
  /** Repeated ProtocolViolations within a window end the connection in Banned. */
  readonly violationBan: ViolationBanRule;
  /** Decides what follows a disconnect; see {@link defaultReconnectPolicy}. */
  readonly reconnectPolicy: (facts: DisconnectFacts) => ReconnectStrategy;
  /** Uniform random source in [0, 1) for backoff jitter. */
  readonly random: () => number;
  /** Current time in ms on the injected clock (for the history and the ban window). */
  readonly now: () => number;
}

/**
 * What follows the end of a link: the reason (a repeated ProtocolViolation becomes PeerBanned),
 * the strategy from the policy, and the backoff delay.
 */
function decide(context: ConnectionContext, policies: ConnectionPolicies): Partial<ConnectionContext> {
  const now = policies.now();
  let reason = context.reason ?? 'Timeout';
  let error = context.error;
  let violations = context.memory.violations;
  if (reason === 'ProtocolViolation') {
    const verdict = recordViolation(violations, now, policies.violationBan);
    violations = verdict.times;
    if (verdict.ban) {
      reason = 'PeerBanned';
      error = `${verdict.times.length} protocol violations within ${policies.violationBan.windowMs} ms`;
    }
  }
  const strategy = policies.reconnectPolicy({
    reason,
    history: context.memory.disconnects,
    kind: context.kind,
    dialable: context.address !== null,
    final: context.final,
    attempt: context.attempt,
  });
  const backoff = reason === 'ProtocolViolation' ? policies.violationBackoff : policies.timeoutBackoff;
  const nextDelayMs =
    strategy === 'WithBackoff'
      ? fullJitterBackoffMs(context.attempt, backoff, policies.random)
      : strategy === 'AllowImmediate'
        ? 0
        : null;
  const disconnects = [...context.memory.disconnects, { reason, atMs: now }].slice(-HISTORY_LENGTH);
  return { reason, error, strategy, nextDelayMs, memory: { disconnects, violations } };
}

/** DESIGN §6 timeouts and backoff, the DESIGN §2 policy, `Math.random` jitter, `performance.now()`. */
export const DEFAULT_CONNECTION_POLICIES: ConnectionPolicies = {
  timeouts: DEFAULT_TIMEOUTS,
  timeoutBackoff: DEFAULT_BACKOFF,
  violationBackoff: DEFAULT_VIOLATION_BACKOFF,
  violationBan: DEFAULT_VIOLATION_BAN,
  reconnectPolicy: defaultReconnectPolicy,
  random: Math.random,
  now: () => performance.now(),
};

/**
 * The connection machine. Provide `actors.link` (see `createLinkActor`) and, optionally, the
 * implementations of {@link connectionImplementations}. Its default link fails at once, so an
 * unprovided machine never touches the network.
 */
export const connectionMachine = setup({
  types: {
    context: {} as ConnectionContext,
    events: {} as ConnectionEvent,
    input: {} as ConnectionInput,
    emitted: {} as ConnectionReport,
  },
  actors: {
    link: fromCallback<LinkCommand, LinkInput>(({ sendBack }) => {
      sendBack({ type: 'link.failed', reason: 'ResourceConstraint', error: 'no link actor provided' });
    }),
  },
  delays: {
    connectTimeout: DEFAULT_TIMEOUTS.connectTimeoutMs,
    handshakeTimeout: DEFAULT_TIMEOUTS.handshakeTimeoutMs,
    gracefulShutdownTimeout: DEFAULT_TIMEOUTS.gracefulShutdownTimeoutMs,
    stablePeriod: DEFAULT_TIMEOUTS.stablePeriodMs,
    backoffDelay: ({ context }) => context.nextDelayMs ?? 0,
  },
  guards: {
    isInbound: ({ context }) => context.direction === 'inbound',
    isBannedReason: ({ context }) => context.reason === 'PeerBanned',
    shouldRedial: ({ context }) =>
      context.strategy === 'AllowImmediate' || context.strategy === 'WithBackoff',
    waitsForResources: ({ context }) => context.strategy === 'AfterResourcesAvailable',
    isOffline: ({ context }) => context.offline,
    outboundWhileOffline: ({ context }) => context.offline && context.direction === 'outbound',
  },
  actions: {
    decideStrategy: assign(({ context }) => decide(context, DEFAULT_CONNECTION_POLICIES)),
    /** A failed link counts towards the backoff exponent, unless the network is known to be down. */
    countAttempt: assign(({ context }) => ({ attempt: context.offline ? context.attempt : context.attempt + 1 })),
    markReplaced: assign({
      reason: 'NetworkRestructure' as const,
      error: 'health stayed Critical past the limit',
      replaced: true,
      final: false,
    }),
    enter: enqueueActions(({ context, enqueue }, params: { state: ConnectionState }) => {
      const from = context.state;
      enqueue.assign({ state: params.state });
      enqueue.emit(({ context: updated }: { context: ConnectionContext }): ConnectionReport => ({
        type: 'connection.transition',
        connectionId: updated.connectionId,
        peerId: updated.peerId,
        address: updated.address,
        remoteAddress: updated.remoteAddress,
        direction: updated.direction,
        kind: updated.kind,
        from,
        to: params.state,
        reason: updated.reason,
        strategy: updated.strategy,
        attempt: updated.attempt,
        nextDelayMs: updated.nextDelayMs,
        rttMs: updated.health.rttMs,
        replaced: updated.replaced,
      }));
    }),
    /** On `link.secured`: tells the supervisor who the peer is and where it listens (the addresses are not kept here). */
    reportIdentified: enqueueActions(({ context, event, enqueue }) => {
      if (context.peerId === null || event.type !== 'link.secured') return;
      const report: ConnectionReport = {
        type: 'connection.identified',
        connectionId: context.connectionId,
        peerId: context.peerId,
        direction: context.direction,
        listenAddresses: event.listenAddresses,
      };
      enqueue.emit(report);
    }),
    /**
     * On `link.sample`: keeps the latest RTT (a lost ping keeps the previous one) and health, and
     * reports the sample. `health` is written in place, not assigned: an assign made a new context
     * and snapshot per ping per connection, each living until the next ping (10 s), so at 10,000
     * connections they were promoted to the old generation at about 5 MB/s. With nothing assigned
     * XState keeps the snapshot; the context still shows the latest sample when read.
     */
    recordSample: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'link.sample') return;
      const { rttMs, score, category } = event;
      const health = context.health as Mutable<LinkHealth>;
      if (rttMs !== null) health.rttMs = rttMs;
      health.score = score;
      health.category = category;
      const report: ConnectionReport = {
        type: 'connection.sample',
        connectionId: context.connectionId,
        peerId: context.peerId,
        rttMs,
        score,
        category,
      };
      enqueue.emit(report);
    }),
    sendGoodbye: sendTo('link', ({ context }): LinkCommand => ({
      type: 'link.goodbye',
      reason: context.reason ?? 'Normal',
      duplicate: context.duplicate,
    })),
  },
}).createMachine({
  id: 'connection',
  context: ({ input }) => ({
    connectionId: input.connectionId,
    peerId: null,
    address: input.address,
    remoteAddress: input.remoteAddress ?? null,
    direction: input.direction,
    kind: input.kind,
    state: null,
    reason: null,
    error: null,
    strategy: null,
    attempt: 0,
    nextDelayMs: null,
    health: { rttMs: null, score: null, category: null },
    final: false,
    duplicate: false,
    memory: NO_MEMORY,
    offline: input.offline ?? false,
    replaced: false,
  }),
  initial: 'live',
  on: {
    promote: {
      actions: assign(({ event }) => ({ kind: event.kind, address: event.address })),
    },
    'network.offline': { actions: assign({ offline: true }) },
    'network.online': { actions: assign({ offline: false }) },
  },
  states: {
    live: {
      invoke: {
        id: 'link',
        src: 'link',
        input: ({ context }) => ({
          connectionId: context.connectionId,
          direction: context.direction,
          address: context.address,
        }),
      },
      initial: 'route',
      on: {
        'link.sample': { actions: 'recordSample' },
        'link.pingLost': {
          target: '.disconnecting',
          actions: assign({ reason: 'Timeout', error: 'ping timeout' }),
        },
        'link.inactive': {
          target: '.disconnecting',
          actions: assign({ reason: 'Timeout', error: 'inactivity timeout' }),
        },
        'link.failed': {
          target: 'ending',
          actions: assign(({ event, context }) => ({
            reason: event.reason,
            error: event.error,
            final: context.final || (event.final ?? false),
          })),
        },
        'link.remoteGoodbye': {
          target: 'ending',
          actions: assign(({ event }) => ({
            reason: event.reason,
            duplicate: event.duplicate,
            final: event.duplicate,
            error: null,
          })),
        },
        disconnect: {
          target: '.disconnecting',
          actions: assign(({ event }) => ({
            reason: event.reason,
            final: event.final,
            duplicate: event.duplicate ?? false,
            error: null,
          })),
        },
      },
      states: {
        route: {
          always: [
            { guard: 'outboundWhileOffline', target: '#connection.backoff.paused' },
            { guard: 'isInbound', target: 'handshaking' },
            { target: 'connecting' },
          ],
        },
        connecting: {
          entry: { type: 'enter', params: { state: 'connecting' } },
          on: {
            // Offline: stop dialing; the dial is not a failure (no attempt counted).
            'network.offline': { target: '#connection.backoff.paused', actions: assign({ offline: true }) },
            'link.tcpConnected': {
              target: 'handshaking',
              actions: assign(({ event }) => ({ remoteAddress: event.remoteAddress })),
            },
          },
          after: {
            connectTimeout: {
              target: '#connection.ending',
              actions: assign({ reason: 'Timeout', error: 'connect timeout' }),
            },
          },
        },
        handshaking: {
          entry: { type: 'enter', params: { state: 'handshaking' } },
          on: {
            'link.secured': {
              actions: [
                assign(({ event }) => ({ peerId: event.peerId })),
                'reportIdentified',
              ],
            },
            'link.ready': { target: 'connected' },
          },
          after: {
            handshakeTimeout: {
              target: '#connection.ending',
              actions: assign({ reason: 'Timeout', error: 'handshake timeout' }),
            },
          },
        },
        connected: {
          entry: [assign({ reason: null, error: null, replaced: false }), { type: 'enter', params: { state: 'connected' } }],
          on: {
            'health.poor': { target: 'degraded' },
            'health.critical': { target: 'disconnecting', actions: 'markReplaced' },
          },
          after: {
            // Only a connection that stayed up resets the backoff exponent (no flapping at base delay).
            stablePeriod: { actions: assign({ attempt: 0 }) },
          },
        },
        degraded: {
          entry: { type: 'enter', params: { state: 'degraded' } },
          on: {
            'health.good': { target: 'connected' },
            'health.critical': { target: 'disconnecting', actions: 'markReplaced' },
          },
        },
        disconnecting: {
          entry: [{ type: 'enter', params: { state: 'disconnecting' } }, 'sendGoodbye'],
          on: {
            'link.closed': { target: '#connection.ending' },
            'link.failed': { target: '#connection.ending' },
            'link.remoteGoodbye': { target: '#connection.ending' },
            disconnect: {},
          },
          after: {
            gracefulShutdownTimeout: { target: '#connection.ending' },
          },
        },
      },
    },
    ending: {
      entry: 'decideStrategy',
      always: [
        { guard: 'isBannedReason', target: 'banned' },
        { guard: 'shouldRedial', target: 'backoff', actions: 'countAttempt' },
        { guard: 'waitsForResources', target: 'backoff', actions: 'countAttempt' },
        { target: 'closed' },
      ],
    },
    backoff: {
      entry: [assign({ direction: 'outbound' as const }), { type: 'enter', params: { state: 'backoff' } }],
      initial: 'arriving',
      on: {
        'link.sample': {},
        disconnect: {
          target: 'closed',
          actions: assign(({ event }) => ({ reason: event.reason, final: true })),
        },
        'resources.available': { guard: 'waitsForResources', target: 'live' },
        // No slot for the redial: give the slot up and wait until one frees (DESIGN §3 admission).
        'resources.wait': { actions: assign({ strategy: 'AfterResourcesAvailable' as const, nextDelayMs: null }) },
        'peer.returned': { guard: 'shouldRedial', target: 'live' },
        // The network is back: redial now rather than when the timer says (issue 5, app events).
        'network.online': { guard: 'shouldRedial', target: 'live', actions: assign({ offline: false }) },
      },
      states: {
        arriving: {
          always: [{ guard: 'isOffline', target: 'paused' }, { target: 'waiting' }],
        },
        waiting: {
          on: {
            'network.offline': { target: 'paused', actions: assign({ offline: true }) },
          },
          after: {
            backoffDelay: { guard: 'shouldRedial', target: '#connection.live' },
          },
        },
        /** Offline: no timer runs; `network.online` redials (or leaves it waiting for resources). */
        paused: {
          on: {
            'network.online': [
              { guard: 'shouldRedial', target: '#connection.live', actions: assign({ offline: false }) },
              { target: 'waiting', actions: assign({ offline: false }) },
            ],
          },
        },
      },
    },
    closed: {
      type: 'final',
      entry: { type: 'enter', params: { state: 'closed' } },
    },
    banned: {
      type: 'final',
      entry: { type: 'enter', params: { state: 'banned' } },
    },
  },
});

/** The machine's type, for typing actor references and `provide()` results. */
export type ConnectionMachine = typeof connectionMachine;

/**
 * The connection machine with `policies` in place of the defaults: the named delays
 * (`connectTimeout`, `handshakeTimeout`, `gracefulShutdownTimeout`) and the `decideStrategy` action
 * (reconnect policy, backoff, jitter). Provide `actors.link` on the result as well.
 */
export function withConnectionPolicies(policies: ConnectionPolicies): ConnectionMachine {
  return connectionMachine.provide({
    delays: {
      connectTimeout: policies.timeouts.connectTimeoutMs,
      handshakeTimeout: policies.timeouts.handshakeTimeoutMs,
      gracefulShutdownTimeout: policies.timeouts.gracefulShutdownTimeoutMs,
      stablePeriod: policies.timeouts.stablePeriodMs,
    },
    actions: {
      decideStrategy: assign(({ context }) => decide(context, policies)),
    },
  });
}

/**
 * The status API's shapes (issue 4 item 9, DESIGN §7): a connection's public snapshot, a peer's
 * status, and the supervisor's metrics. Pure functions of the supervisor's plain tables.
 */
import type { ConnectionState } from '../machines/connection.js';
import type { HealthCategory } from '../streams/health.js';
import type { TrafficMetrics } from '../streams/metrics.js';
import type { ConnectionKind, Direction } from '../streams/reconnect.js';
import type { DisconnectReason } from '../transport/disconnect-reason.js';
import type { AdmissionLimits } from './admission.js';
import type { ConnectionRecord, Refusal, SupervisorContext } from './tables.js';

/** A public snapshot of one connection. Times are ms on the supervisor clock. */
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
  /** Latest health score in [0, 1] and its category (Excellent … Critical); null until measured. */
  readonly healthScore: number | null;
  readonly healthCategory: HealthCategory | null;
  /** Times it came back to Connected after losing its link. */
  readonly reconnects: number;
  /** When it last reached Connected; null before. */
  readonly connectedAtMs: number | null;
  /** Last use (connected, reused, or an application stream opened or closed, as of the last reaper pass). */
  readonly lastActiveMs: number;
  /** Released by the app and pooled since then; null when not pooled. */
  readonly releasedAtMs: number | null;
  /** Never evicted, never closed for idleness. */
  readonly protected: boolean;
}

/** The public snapshot of a record. */
export function toInfo(record: ConnectionRecord): ConnectionInfo {
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
    healthScore: record.healthScore,
    healthCategory: record.healthCategory,
    reconnects: record.reconnects,
    connectedAtMs: record.connectedAtMs,
    lastActiveMs: record.lastActiveMs,
    releasedAtMs: record.releasedAtMs,
    protected: record.protected,
  };
}

/**
 * A peer's status (issue 4 item 9):
 * - `connecting`: dialing or handshaking;
 * - `connected` / `degraded`: up, healthy or not (DESIGN §2);
 * - `disconnected`: leaving, in Backoff, closed normally, or never connected;
 * - `failed`: its last connection ended for good for another reason than Normal, or it is banned.
 */
export type PeerState = 'connecting' | 'connected' | 'degraded' | 'disconnected' | 'failed';

/** What `getStatus(peerId)` and `status$(peerId)` give. */
export interface PeerStatus {
  readonly peerId: string;
  readonly status: PeerState;
  /** The connection that serves the peer, if any. */
  readonly connection: ConnectionInfo | null;
  /** Why its last link ended (a DESIGN §2 reason; null when none ended, or it is up again). */
  readonly reason: string | null;
}

/**
 * The status of `peerId` from its connection record (if any), the reason its last link ended
 * (from the peer store's history) and whether it is banned now.
 */
export function peerStatusOf(
  peerId: string,
  record: ConnectionRecord | undefined,
  lastEnd: string | null,
  banned: boolean,
): PeerStatus {
  if (record) {
    const status: PeerState =
      record.state === 'connecting' || record.state === 'handshaking'
        ? 'connecting'
        : record.state === 'connected' || record.state === 'degraded'
          ? record.state
          : record.state === 'disconnecting' || record.state === 'backoff'
            ? 'disconnected'
            : 'failed';
    return { peerId, status, connection: toInfo(record), reason: record.reason };
  }
  const failed = banned || (lastEnd !== null && lastEnd !== 'Normal');
  return { peerId, status: failed ? 'failed' : 'disconnected', connection: null, reason: banned ? 'PeerBanned' : lastEnd };
}

/** Whether two statuses say the same (for `status$`: emit on change only). */
export function sameStatus(a: PeerStatus, b: PeerStatus): boolean {
  const x = a.connection;
  const y = b.connection;
  if (a.status !== b.status || a.reason !== b.reason) return false;
  if (x === null || y === null) return x === y;
  return (
    x.connectionId === y.connectionId &&
    x.state === y.state &&
    x.kind === y.kind &&
    x.rttMs === y.rttMs &&
    x.healthCategory === y.healthCategory &&
    x.attempt === y.attempt &&
    x.reason === y.reason &&
    x.releasedAtMs === y.releasedAtMs &&
    x.protected === y.protected
  );
}

/** The supervisor's metrics (issue 4 item 9; issue 5 adds rates, latency and memory). */
export interface SupervisorMetrics {
  /** Clock time of the snapshot, ms. */
  readonly atMs: number;
  /** Connections by lifecycle state. */
  readonly connectionsByState: Readonly<Record<ConnectionState, number>>;
  /** Connections holding a slot, by direction, and pending (dialing, handshaking, redial scheduled). */
  readonly slots: { readonly outbound: number; readonly inbound: number; readonly pending: number };
  readonly limits: AdmissionLimits;
  /** Connections waiting in Backoff for a free slot. */
  readonly waitingForSlot: number;
  readonly dials: number;
  readonly handshakes: number;
  /** Links that ended, by disconnect reason. */
  readonly endsByReason: Readonly<Partial<Record<DisconnectReason, number>>>;
  readonly refusals: Readonly<Partial<Record<Refusal, number>>>;
  readonly evictions: number;
  /** Connections the reaper closed (idle or pool TTL passed). */
  readonly reaped: number;
  readonly autoBans: number;
  /** Silent pending inbound connections closed to give their slot to a newcomer (flood defence). */
  readonly pendingReclaimed: number;
  /** Bans in force by peer ID and by IP. */
  readonly activeBans: { readonly peerIds: number; readonly ips: number };
}

/** Everything `getMetrics()` gives: the supervisor's counts plus traffic, latency and memory (DESIGN §4). */
export type NodeMetrics = SupervisorMetrics & TrafficMetrics;

const STATES: readonly ConnectionState[] = [
  'connecting',
  'handshaking',
  'connected',
  'degraded',
  'disconnecting',
  'backoff',
  'closed',
  'banned',
];

/** Metrics from the supervisor's context at `nowMs`. */
export function metricsOf(context: SupervisorContext, nowMs: number): SupervisorMetrics {
  const byState = Object.fromEntries(STATES.map((s) => [s, 0])) as Record<ConnectionState, number>;
  let waiting = 0;
  for (const record of Object.values(context.connections)) {
    byState[record.state]++;
    if (record.waitTicket !== null) waiting++;
  }
  const active = (entries: Readonly<Record<string, { readonly until: number }>>): number =>
    Object.values(entries).filter((e) => nowMs < e.until).length;
  const { counters } = context;
  return {
    atMs: nowMs,
    connectionsByState: byState,
    slots: context.slots,
    limits: context.config.limits,
    waitingForSlot: waiting,
    dials: counters.dials,
    handshakes: counters.handshakes,
    endsByReason: { ...counters.endsByReason },
    refusals: { ...counters.refusals },
    evictions: counters.evictions,
    reaped: counters.reaped,
    autoBans: counters.autoBans,
    pendingReclaimed: counters.pendingReclaimed,
    activeBans: { peerIds: active(context.bans.byPeerId), ips: active(context.bans.byIp) },
  };
}

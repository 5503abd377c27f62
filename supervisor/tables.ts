/**
 * The supervisor's plain tables (DESIGN §3): one record per connection actor, indexes by peer ID
 * and by address, the ban list, counters. Everything here is plain, serialisable data, what the
 * inspector shows; sockets and links live in the connection actors.
 */
import type { ConnectionState } from '../machines/connection.js';
import type { HealthCategory } from '../streams/health.js';
import type { ConnectionKind, Direction, ViolationBanRule } from '../streams/reconnect.js';
import type { DisconnectReason } from '../transport/disconnect-reason.js';
import { countConnections, countOf } from './admission.js';
import type { AdmissionLimits, ConnectionCounts } from './admission.js';
import type { BanList } from './bans.js';
import type { EvictionOptions } from './eviction.js';
import type { ReaperSettings } from './reaper.js';

/** The supervisor's view of one connection actor (plain data). Times are ms on the supervisor clock. */
export interface ConnectionRecord {
  readonly connectionId: string;
  peerId: string | null;
  /** Address we dial (null for an inbound connection of a peer we cannot dial). */
  address: string | null;
  remoteAddress: string | null;
  direction: Direction;
  kind: ConnectionKind;
  state: ConnectionState;
  reason: DisconnectReason | null;
  attempt: number;
  nextDelayMs: number | null;
  rttMs: number | null;
  /** Latest health score in [0, 1] and category (DESIGN §4); null until the first sample. */
  healthScore: number | null;
  healthCategory: HealthCategory | null;
  listenAddresses: string[];
  /** Times this connection came back to Connected after losing its link. */
  reconnects: number;
  /** It reached Connected at least once. */
  everConnected: boolean;
  /** Queue position while it waits in Backoff for a free slot (AfterResourcesAvailable); lower goes first. */
  waitTicket: number | null;
  /** When the supervisor spawned it. */
  openedAtMs: number;
  /** When it last reached Connected (from anything but Degraded); null before. */
  connectedAtMs: number | null;
  /** Last use: connected, reused by `connect()`, or an application stream opened, open or closed. */
  lastActiveMs: number;
  /** The link's stream-event counter at the reaper's last look (see `LinkUsage`). */
  usageEvents: number;
  /** When the app released it into the pool; null when it is not pooled. */
  releasedAtMs: number | null;
  /** Tagged by the app: never evicted, never closed for idleness. */
  protected: boolean;
}

/** Why the supervisor refused a dial or an accepted socket (the name of the typed error the API raises). */
export type Refusal = 'TooManyPendingConnections' | 'ConnectionLimitReached' | 'PeerBanned' | 'AlreadyConnected';

/** Supervisor settings (plain data; DESIGN §6 defaults in `create-supervisor.ts`). */
export interface SupervisorConfig {
  readonly limits: AdmissionLimits;
  readonly reaper: ReaperSettings;
  readonly eviction: EvictionOptions;
  /** Length of a ban, ms (default 24 h). */
  readonly banDurationMs: number;
  /** ProtocolViolations from one IP within the window that ban it (and its peer). */
  readonly violationBan: ViolationBanRule;
}

/** Running totals since start, for `getMetrics()`. */
export interface SupervisorCounters {
  /** Dials started (first dials and redials). */
  dials: number;
  /** Handshakes that reached Connected. */
  handshakes: number;
  /** Links that ended, by reason (Normal included). */
  endsByReason: Partial<Record<DisconnectReason, number>>;
  /** Dials and accepted sockets refused, by refusal. */
  refusals: Partial<Record<Refusal, number>>;
  /** Inbound connections evicted to make room. */
  evictions: number;
  /** Connections the reaper closed: idle, or pooled past the pool TTL. */
  reaped: number;
  /** Bans the supervisor applied by itself (repeated ProtocolViolations). */
  autoBans: number;
  /** Silent pending inbound connections closed to give their slot to a newcomer. */
  pendingReclaimed: number;
}

/**
 * Context of the supervisor actor. The tables (`connections`, the indexes, `waiting`,
 * `persistentPeers`, `violationsByIp`) are updated in place, so an event costs O(1) at 10,000
 * connections instead of a copy of every table; each record is replaced on change, never mutated,
 * so a record read from a snapshot stays as it was.
 */
export interface SupervisorContext {
  readonly localPeerId: string;
  readonly config: SupervisorConfig;
  /** Clock time of the event being handled, ms (set by the `stamp` action). */
  nowMs: number;
  /** Every running connection actor, by connection ID. */
  connections: Record<string, ConnectionRecord>;
  /** The connection that represents each identified peer. */
  byPeer: Record<string, string>;
  /** The connection that serves each dialable address (dialed ones and announced listen addresses). */
  byAddress: Record<string, string>;
  /** Dial address of every identified persistent peer: whichever connection serves it is kept persistent. */
  persistentPeers: Record<string, string>;
  /** Counts against the limits, kept equal to `countsOf(connections)` on every record change. */
  slots: ConnectionCounts;
  /** Ticket of each connection waiting in Backoff for a free slot (AfterResourcesAvailable), by connection ID. */
  waiting: Record<string, number>;
  /**
   * The waiting connections in ticket order, oldest first, so a freed slot finds the oldest in
   * O(1) instead of a scan. Entries whose ticket `waiting` no longer holds are stale: skipped when
   * reached, and swept by the reaper.
   */
  waitQueue: { readonly connectionId: string; readonly ticket: number }[];
  /** Next ticket for connections waiting on AfterResourcesAvailable. */
  nextWaitTicket: number;
  /** Records removed since the reaper last swept the indexes (see {@link STALE_SWEEP_REMOVALS}). */
  removedSinceSweep: number;
  /** Banned peer IDs and IPs (see `bans.ts`). */
  bans: BanList;
  /** Recent ProtocolViolation times (ms) by normalised IP, for the automatic ban. */
  violationsByIp: Record<string, number[]>;
  counters: SupervisorCounters;
  /** The app said the network is down (`network.offline`): new dials wait in Backoff. */
  offline: boolean;
}

/** A new record, as spawned at `nowMs`. */
export function newRecord(
  connectionId: string,
  direction: Direction,
  kind: ConnectionKind,
  address: string | null,
  remoteAddress: string | null,
  nowMs: number,
): ConnectionRecord {
  return {
    connectionId,
    peerId: null,
    address,
    remoteAddress,
    direction,
    kind,
    state: direction === 'inbound' ? 'handshaking' : 'connecting',
    reason: null,
    attempt: 0,
    nextDelayMs: null,
    rttMs: null,
    healthScore: null,
    healthCategory: null,
    listenAddresses: [],
    reconnects: 0,
    everConnected: false,
    waitTicket: null,
    openedAtMs: nowMs,
    connectedAtMs: null,
    lastActiveMs: nowMs,
    usageEvents: 0,
    releasedAtMs: null,
    protected: false,
  };
}

/** Fresh counters. */
export function zeroCounters(): SupervisorCounters {
  return { dials: 0, handshakes: 0, endsByReason: {}, refusals: {}, evictions: 0, reaped: 0, autoBans: 0, pendingReclaimed: 0 };
}

const ENDED: readonly ConnectionState[] = ['closed', 'banned'];

/** Whether the record reached a final state. */
export function hasEnded(record: ConnectionRecord): boolean {
  return ENDED.includes(record.state);
}

/** A link that is up or coming up (not leaving, not ended, not in Backoff). */
export function isLive(record: ConnectionRecord): boolean {
  return !hasEnded(record) && record.state !== 'disconnecting' && record.state !== 'backoff';
}

/** What one record adds to the counts against the limits (see `countOf`). */
export function slotsOf(record: ConnectionRecord): ConnectionCounts {
  return countOf({ direction: record.direction, state: record.state, waitsForSlot: record.waitTicket !== null });
}

/** Counts of the records against the limits, recomputed from scratch (O(n); the context keeps `slots`). */
export function countsOf(connections: Record<string, ConnectionRecord>, except?: string): ConnectionCounts {
  const counted: ConnectionRecord[] = [];
  for (const record of Object.values(connections)) {
    if (record.connectionId !== except) counted.push(record);
  }
  return countConnections(counted.map((r) => ({ direction: r.direction, state: r.state, waitsForSlot: r.waitTicket !== null })));
}

/**
 * Deletes, in place, the index entries under the record's own keys (its peer ID, its address,
 * its listen addresses) that point at it. O(listen addresses). An entry left under a key the
 * record no longer carries is stale, harmless (lookups check the record exists) and swept by
 * {@link sweepStaleIndexes}.
 */
export function dropIndexEntries(context: Pick<SupervisorContext, 'byPeer' | 'byAddress'>, record: ConnectionRecord): void {
  const id = record.connectionId;
  if (record.peerId !== null && context.byPeer[record.peerId] === id) delete context.byPeer[record.peerId];
  for (const address of [record.address, ...record.listenAddresses]) {
    if (address !== null && context.byAddress[address] === id) delete context.byAddress[address];
  }
}

/**
 * Removals after which the reaper sweeps the indexes. An entry can only go stale when its record
 * is removed (under a key the record no longer carried), so the sweep, O(index entries), costs
 * O(1) per removal amortized, and nothing while connections stay up: at 10,000 connections a
 * sweep on every reaper tick stalled the event loop for 50 ms every 10 s.
 */
export const STALE_SWEEP_REMOVALS = 1_000;

/**
 * Deletes, in place, every index entry that points at no record. O(index entries), without
 * building an array of them; the reaper runs it once enough records were removed (see
 * {@link STALE_SWEEP_REMOVALS}).
 */
export function sweepStaleIndexes(context: Pick<SupervisorContext, 'connections' | 'byPeer' | 'byAddress'>): void {
  for (const index of [context.byPeer, context.byAddress]) {
    for (const key in index) {
      if (!context.connections[index[key] as string]) delete index[key];
    }
  }
}

/**
 * Admission (DESIGN §3, issue 4): whether a new connection fits the limits. Pure: the supervisor
 * counts, this decides. Defaults from DESIGN §6 (after Bitcoin Core, via Obscura): 8 outbound,
 * 125 inbound, 133 in total, 32 pending (dialing or handshaking).
 */

/** Connection limits. */
export interface AdmissionLimits {
  readonly maxOutbound: number;
  readonly maxInbound: number;
  readonly maxTotal: number;
  /** Connections in Connecting or Handshaking, both directions. */
  readonly maxPending: number;
}

/** DESIGN §6 defaults. */
export const DEFAULT_LIMITS: AdmissionLimits = { maxOutbound: 8, maxInbound: 125, maxTotal: 133, maxPending: 32 };

/** What the supervisor holds now. Each connection counts once, in its direction; pending ones count in `pending` too. */
export interface ConnectionCounts {
  readonly outbound: number;
  readonly inbound: number;
  readonly pending: number;
}

/**
 * The verdict: admit; refuse with the typed error to raise (`TooManyPendingConnections`,
 * `ConnectionLimitReached`); or, for inbound only, admit after evicting one inbound connection
 * (the caller picks it with `selectInboundToEvict`, and refuses if none may go).
 */
export type AdmissionVerdict =
  | { readonly admit: true }
  | { readonly admit: false; readonly refusal: 'TooManyPendingConnections' | 'ConnectionLimitReached'; readonly detail: string }
  | { readonly admit: 'afterEviction' };

/** Whether a new outbound dial fits: pending first (a dial is pending until its handshake ends), then outbound and total. */
export function admitOutbound(counts: ConnectionCounts, limits: AdmissionLimits = DEFAULT_LIMITS): AdmissionVerdict {
  if (counts.pending >= limits.maxPending) {
    return { admit: false, refusal: 'TooManyPendingConnections', detail: `${counts.pending} pending ≥ maxPending ${limits.maxPending}` };
  }
  if (counts.outbound >= limits.maxOutbound) {
    return { admit: false, refusal: 'ConnectionLimitReached', detail: `${counts.outbound} outbound ≥ maxOutbound ${limits.maxOutbound}` };
  }
  if (counts.outbound + counts.inbound >= limits.maxTotal) {
    return { admit: false, refusal: 'ConnectionLimitReached', detail: `${counts.outbound + counts.inbound} connections ≥ maxTotal ${limits.maxTotal}` };
  }
  return { admit: true };
}

/**
 * Whether an accepted socket may proceed to the handshake. Pending is a hard limit (a flood of
 * silent sockets must not take every slot); a full inbound or total table admits only by evicting.
 */
export function admitInbound(counts: ConnectionCounts, limits: AdmissionLimits = DEFAULT_LIMITS): AdmissionVerdict {
  if (counts.pending >= limits.maxPending) {
    return { admit: false, refusal: 'TooManyPendingConnections', detail: `${counts.pending} pending ≥ maxPending ${limits.maxPending}` };
  }
  if (counts.inbound >= limits.maxInbound || counts.outbound + counts.inbound >= limits.maxTotal) {
    return counts.inbound > 0
      ? { admit: 'afterEviction' }
      : { admit: false, refusal: 'ConnectionLimitReached', detail: 'no inbound connection to evict' };
  }
  return { admit: true };
}

/** What counting looks at of one connection. */
export interface CountedConnection {
  readonly direction: 'inbound' | 'outbound';
  readonly state: string;
  /** In Backoff without a timer, waiting for a free slot (AfterResourcesAvailable). */
  readonly waitsForSlot?: boolean;
}

/** States that hold a slot: everything but Disconnecting (leaving) and the final states. */
const HOLDS_SLOT = new Set(['connecting', 'handshaking', 'connected', 'degraded', 'backoff']);
/** A redial scheduled in Backoff is a dial in waiting: it counts as pending. */
const PENDING = new Set(['connecting', 'handshaking', 'backoff']);

/**
 * What one connection adds to the counts: 1 in its direction while it holds a slot, and 1 in
 * `pending` while it is dialing, handshaking or waiting in Backoff for its redial timer. A
 * connection in Backoff with a redial timer keeps its slot, so its redial can never take the node
 * past a limit; one waiting for resources (`waitsForSlot`) or in Disconnecting has given it up.
 */
export function countOf(connection: CountedConnection): ConnectionCounts {
  if (!HOLDS_SLOT.has(connection.state) || connection.waitsForSlot === true) return NO_CONNECTIONS;
  const pending = PENDING.has(connection.state) ? 1 : 0;
  return connection.direction === 'inbound' ? { outbound: 0, inbound: 1, pending } : { outbound: 1, inbound: 0, pending };
}

/** Counts of nothing. */
export const NO_CONNECTIONS: ConnectionCounts = { outbound: 0, inbound: 0, pending: 0 };

/** `counts` plus `sign` (1 or -1) times `delta`. */
export function addCounts(counts: ConnectionCounts, delta: ConnectionCounts, sign: 1 | -1 = 1): ConnectionCounts {
  return {
    outbound: counts.outbound + sign * delta.outbound,
    inbound: counts.inbound + sign * delta.inbound,
    pending: counts.pending + sign * delta.pending,
  };
}

/** Counts connections against the limits: the sum of {@link countOf} over them. O(n). */
export function countConnections(connections: Iterable<CountedConnection>): ConnectionCounts {
  let counts = NO_CONNECTIONS;
  for (const c of connections) counts = addCounts(counts, countOf(c));
  return counts;
}

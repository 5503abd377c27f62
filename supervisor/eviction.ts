/**
 * Inbound eviction (DESIGN §3 "Eviction", issue 4 item 4): when inbound slots are full and a new
 * peer arrives, pick the one inbound connection that makes room, or none. Pure: plain data in, a
 * candidate (or `undefined`) out; the supervisor closes the chosen connection with
 * {@link EVICTION_DISCONNECT_REASON} (`NetworkRestructure`, DESIGN §2) and admits the newcomer.
 *
 * The idea is Bitcoin Core's `SelectNodeToEvict` (src/node/eviction.cpp): an attacker who opens many
 * connections should not be able to push out the peers a node values, so several kinds of peers are
 * protected (each kind is something an attacker finds hard to fake all at once: being in many
 * network groups, being close, having been connected for long), and the victim comes from the
 * most crowded network group, youngest first. Differences from Core, and why:
 * - Netgroup protection prefers the rarest netgroups, not Core's secretly keyed hash of netgroups:
 *   a pure policy has no secret, and rarest-first serves diversity directly.
 * - The most crowded netgroup is counted over every candidate (protected ones too), not only the
 *   unprotected ones: evicting a peer whose netgroup a protected peer still holds loses no
 *   diversity, and this is what guarantees that no eviction drops a netgroup needlessly.
 * - Age protects a fixed count (`protectByAge`), where Core protects half of what remains.
 * - Core's transaction/block-relay protections do not apply: peerwarden does not see app traffic.
 *
 * Deterministic: every sort ends in `connectionId` (compared by UTF-16 code units), so the result
 * does not depend on input order as long as connection IDs are unique (they are the supervisor's keys).
 */
import type { DisconnectReason } from '../transport/disconnect-reason.js';
import { netgroupOfRemoteAddress } from './netgroup.js';

/** One inbound connection, as eviction sees it. */
export interface EvictionCandidate {
  /** The supervisor's unique key of the connection; the final tie-breaker. */
  readonly connectionId: string;
  /** The authenticated peer ID, or `null` while the handshake is still running. */
  readonly peerId: string | null;
  /** The socket's remote address, `host:port` or `[v6]:port`; its netgroup comes from the host. */
  readonly remoteAddress: string;
  /** When the connection was accepted, in ms on the supervisor's clock (older = smaller). */
  readonly connectedAtMs: number;
  /** Best (lowest) round-trip time measured, in ms; `null` if none yet. */
  readonly rttMs: number | null;
  /** A persistent peer (trusted, seed): never evicted. */
  readonly persistent: boolean;
  /** Tagged protected by the app: never evicted. */
  readonly protected: boolean;
}

/**
 * How many candidates each protection step shields (counts of connections; a negative or NaN
 * count means 0, a fractional one is rounded down, `Infinity` protects everyone left).
 */
export interface EvictionOptions {
  /** One connection from each of this many netgroups, rarest netgroups first. Core: 4. */
  readonly protectByNetgroup: number;
  /** This many connections with the lowest measured RTT. Core: 8. */
  readonly protectByRtt: number;
  /** This many longest-connected connections. Core protects a share (half) of those left; here a count. */
  readonly protectByAge: number;
}

/** Defaults after Bitcoin Core's `SelectNodeToEvict`: 4 by netgroup, 8 by RTT, 8 by age. */
export const DEFAULT_EVICTION_OPTIONS: EvictionOptions = { protectByNetgroup: 4, protectByRtt: 8, protectByAge: 8 };

/** The reason an evicted connection ends with (DESIGN §2: replaced — evicted). */
export const EVICTION_DISCONNECT_REASON: DisconnectReason = 'NetworkRestructure';

/**
 * The candidates left after every protection step, i.e. those eviction may choose from, sorted by
 * `connectionId`. Empty when every candidate is protected, by tag or by rule. Steps, in Core's order:
 * 1. `persistent` and `protected` candidates are never evicted (Core: `noban` and non-inbound peers).
 * 2. Netgroup diversity: among netgroups not already held by a step-1 candidate, rarest first
 *    (fewest candidates in total, then netgroup name), the longest-connected candidate of each of
 *    the first `protectByNetgroup` netgroups (Core: 4 by keyed netgroup).
 * 3. Latency: the `protectByRtt` candidates with the lowest measured RTT; unmeasured ones are not
 *    eligible (Core: 8 by minimum ping time).
 * 4. Age: the `protectByAge` longest-connected candidates (Core: half of those left, by uptime).
 *
 * Pure; never throws.
 */
export function inboundEvictionPool(
  candidates: readonly EvictionCandidate[],
  options: Partial<EvictionOptions> = {},
): EvictionCandidate[] {
  const { protectByNetgroup, protectByRtt, protectByAge } = { ...DEFAULT_EVICTION_OPTIONS, ...options };
  const groups = groupSizes(candidates);

  // Step 1.
  const tagged = candidates.filter((c) => c.persistent || c.protected);
  let pool = candidates.filter((c) => !c.persistent && !c.protected);

  // Step 2: one per netgroup, so an attacker crowding one netgroup gains at most one slot here.
  const heldNetgroups = new Set(tagged.map((c) => groups.of(c)));
  const byNetgroup = new Map<string, EvictionCandidate[]>();
  for (const c of [...pool].sort(olderFirst)) {
    const g = groups.of(c);
    if (heldNetgroups.has(g)) continue;
    const members = byNetgroup.get(g);
    if (members === undefined) byNetgroup.set(g, [c]);
    else members.push(c);
  }
  const rarest = [...byNetgroup.entries()]
    .sort(([ga], [gb]) => groups.size(ga) - groups.size(gb) || compareStrings(ga, gb))
    .slice(0, count(protectByNetgroup));
  const diverse = new Set(rarest.map(([, members]) => members[0]));
  pool = pool.filter((c) => !diverse.has(c));

  // Step 3: closeness is costly to fake for a remote attacker.
  const fastest = new Set(
    pool
      .filter((c) => measuredRtt(c) !== undefined)
      .sort((a, b) => (measuredRtt(a) ?? 0) - (measuredRtt(b) ?? 0) || compareStrings(a.connectionId, b.connectionId))
      .slice(0, count(protectByRtt)),
  );
  pool = pool.filter((c) => !fastest.has(c));

  // Step 4: an attacker cannot make old connections appear at will.
  const oldest = new Set([...pool].sort(olderFirst).slice(0, count(protectByAge)));
  pool = pool.filter((c) => !oldest.has(c));

  return pool.sort((a, b) => compareStrings(a.connectionId, b.connectionId));
}

/**
 * The inbound connection to evict so a new inbound peer fits, or `undefined` when every candidate
 * is protected (then the newcomer is refused: `ConnectionLimitReached`). After the protection
 * steps of {@link inboundEvictionPool}, the victim is the youngest unprotected connection of the
 * largest netgroup, counting every candidate in each netgroup (Core: the netgroup with the most
 * connections, ties to the one with the youngest member, then its youngest). Remaining ties go to
 * the smallest `connectionId`. The result is one of `candidates` (the same object).
 *
 * Guarantees (specs/eviction.spec.ts): never a `persistent` or `protected` candidate; if some
 * evictable candidate shares its netgroup with another candidate, the one chosen does too (no
 * netgroup is lost when one need not be); independent of input order. Pure; never throws.
 * The caller closes the chosen connection with {@link EVICTION_DISCONNECT_REASON}.
 */
export function selectInboundToEvict(
  candidates: readonly EvictionCandidate[],
  options?: Partial<EvictionOptions>,
): EvictionCandidate | undefined {
  const pool = inboundEvictionPool(candidates, options);
  const groups = groupSizes(candidates);
  let victim: EvictionCandidate | undefined;
  for (const c of pool) {
    if (victim === undefined) {
      victim = c;
      continue;
    }
    const order =
      groups.size(groups.of(c)) - groups.size(groups.of(victim)) ||
      connectedAt(c) - connectedAt(victim) ||
      compareStrings(victim.connectionId, c.connectionId);
    if (order > 0) victim = c;
  }
  return victim;
}

/** Netgroup of each candidate and the number of candidates per netgroup. */
function groupSizes(candidates: readonly EvictionCandidate[]): {
  of: (c: EvictionCandidate) => string;
  size: (netgroup: string) => number;
} {
  const netgroupOf = new Map<EvictionCandidate, string>();
  const sizes = new Map<string, number>();
  for (const c of candidates) {
    const g = netgroupOfRemoteAddress(c.remoteAddress);
    netgroupOf.set(c, g);
    sizes.set(g, (sizes.get(g) ?? 0) + 1);
  }
  return {
    of: (c) => netgroupOf.get(c) ?? netgroupOfRemoteAddress(c.remoteAddress),
    size: (g) => sizes.get(g) ?? 0,
  };
}

/** Longest-connected first, then by connection ID. */
function olderFirst(a: EvictionCandidate, b: EvictionCandidate): number {
  return connectedAt(a) - connectedAt(b) || compareStrings(a.connectionId, b.connectionId);
}

/** Connect time in ms; an unknown (NaN) time counts as the youngest, so it earns no age protection. */
function connectedAt(c: EvictionCandidate): number {
  return Number.isNaN(c.connectedAtMs) ? Number.POSITIVE_INFINITY : c.connectedAtMs;
}

/** The RTT in ms if one was measured and is a sane number, else `undefined`. */
function measuredRtt(c: EvictionCandidate): number | undefined {
  return c.rttMs !== null && Number.isFinite(c.rttMs) && c.rttMs >= 0 ? c.rttMs : undefined;
}

function count(n: number): number {
  return Number.isNaN(n) ? 0 : Math.max(0, Math.floor(n));
}

/** Locale-independent string order (UTF-16 code units), so results are the same on every machine. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

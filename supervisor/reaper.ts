/**
 * The reaper (DESIGN §3, §6 after NomadFS and QuDAG): every `reaperIntervalMs` (10 s) it refreshes
 * each connection's `lastActive` from the use its link saw, closes connections nobody uses, and
 * sweeps records that already ended. Pure: the supervisor gathers the facts and acts on the verdict.
 */
import type { ConnectionKind } from '../streams/reconnect.js';
import type { ConnectionState } from '../machines/connection.js';

/** Reaper settings, ms (DESIGN §6). */
export interface ReaperSettings {
  /** A temporary connection with no open stream and no use for this long is closed (default 5 min). */
  readonly idleTimeoutMs: number;
  /** A connection the app released stays pooled this long for reuse, then is closed (default 300 s). */
  readonly poolTtlMs: number;
}

/** DESIGN §6: idle timeout 5 min (NomadFS), pool TTL 300 s (QuDAG). */
export const DEFAULT_REAPER_SETTINGS: ReaperSettings = { idleTimeoutMs: 5 * 60_000, poolTtlMs: 300_000 };

/** How often the reaper runs, ms (DESIGN §6: 10 s, NomadFS). */
export const DEFAULT_REAPER_INTERVAL_MS = 10_000;

/** Application use of one live link, as counted by the link (`Link.usage`). */
export interface LinkUsage {
  /** Application streams open now. */
  readonly openStreams: number;
  /** Application streams opened or closed so far on this link; a change means use. */
  readonly events: number;
}

/** What the reaper looks at of one connection record. */
export interface ReaperCandidate {
  readonly connectionId: string;
  readonly state: ConnectionState;
  readonly kind: ConnectionKind;
  /** Who dialed it: only connections we dialed are closed for idleness. */
  readonly direction: 'inbound' | 'outbound';
  /** Tagged protected by the app: never closed for idleness. */
  readonly protected: boolean;
  /** Last use, ms on the supervisor clock. */
  readonly lastActiveMs: number;
  /** `LinkUsage.events` at the last look. */
  readonly usageEvents: number;
  /** When the app released it into the pool, ms; null when it is not pooled. */
  readonly releasedAtMs: number | null;
}

/** Why the reaper closes a connection. */
export type ReapCause = 'idle' | 'poolExpired';

/** What the reaper decided. */
export interface ReaperVerdict {
  /** New `lastActiveMs` / `usageEvents` for connections whose link was used since the last look. */
  readonly used: Readonly<Record<string, { readonly lastActiveMs: number; readonly usageEvents: number }>>;
  /** Connections to close with reason Normal, for good. */
  readonly close: readonly { readonly connectionId: string; readonly cause: ReapCause }[];
  /** Records in a final state still in the tables: drop them. */
  readonly sweep: readonly string[];
}

const ENDED: readonly ConnectionState[] = ['closed', 'banned'];
const UP: readonly ConnectionState[] = ['connected', 'degraded'];

/**
 * One reaper pass at `nowMs`.
 * - Use: a link with an open application stream, or whose stream count changed since the last
 *   look, was used now (`lastActive` = `nowMs`).
 * - Pool: a released connection is closed (`poolExpired`) once `poolTtlMs` passed since its
 *   release and since its last use, with no stream open.
 * - Idle: an up (Connected or Degraded), outbound, temporary, unprotected, unreleased connection
 *   with no stream open and no use for `idleTimeoutMs` is closed (`idle`). Persistent connections
 *   are never closed for idleness: the app asked to keep them. Inbound ones are the remote's to
 *   keep (closing them would make a persistent remote redial at once, every `idleTimeoutMs`);
 *   when inbound slots run short, eviction frees them.
 * - Sweep: a record in Closed or Banned is dropped.
 * Pings and goodbyes are control traffic, not use. Pure; never throws.
 */
export function reap(
  candidates: readonly ReaperCandidate[],
  usage: Readonly<Record<string, LinkUsage>>,
  nowMs: number,
  settings: ReaperSettings,
): ReaperVerdict {
  const used: Record<string, { lastActiveMs: number; usageEvents: number }> = {};
  const close: { connectionId: string; cause: ReapCause }[] = [];
  const sweep: string[] = [];
  for (const candidate of candidates) {
    if (ENDED.includes(candidate.state)) {
      sweep.push(candidate.connectionId);
      continue;
    }
    const link = usage[candidate.connectionId];
    let lastActiveMs = candidate.lastActiveMs;
    if (link && (link.openStreams > 0 || link.events !== candidate.usageEvents)) {
      lastActiveMs = nowMs;
      used[candidate.connectionId] = { lastActiveMs, usageEvents: link.events };
    }
    if (!UP.includes(candidate.state) || (link?.openStreams ?? 0) > 0) continue;
    if (candidate.releasedAtMs !== null) {
      if (nowMs - Math.max(candidate.releasedAtMs, lastActiveMs) >= settings.poolTtlMs) {
        close.push({ connectionId: candidate.connectionId, cause: 'poolExpired' });
      }
      continue;
    }
    if (candidate.kind === 'persistent' || candidate.protected || candidate.direction === 'inbound') continue;
    if (nowMs - lastActiveMs >= settings.idleTimeoutMs) close.push({ connectionId: candidate.connectionId, cause: 'idle' });
  }
  return { used, close, sweep };
}

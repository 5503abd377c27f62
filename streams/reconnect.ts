/**
 * Reconnect policy (DESIGN §2): which strategy follows a disconnect reason, and how long the
 * backoff waits. Pure functions of plain data, so users can replace them and specs can test them
 * alone.
 */
import type { DisconnectReason } from '../transport/disconnect-reason.js';

/**
 * What to do after a connection ended (DESIGN §2):
 * - `AllowImmediate`: dial again at once.
 * - `WithBackoff`: dial again after an exponential, jittered delay.
 * - `AfterResourcesAvailable`: wait for the supervisor's signal that a slot is free.
 * - `Never`: do not dial again.
 */
export type ReconnectStrategy = 'AllowImmediate' | 'WithBackoff' | 'AfterResourcesAvailable' | 'Never';

/** `persistent`: trusted and seed peers, always reconnected. `temporary`: closed once its purpose is done. */
export type ConnectionKind = 'persistent' | 'temporary';

/** Which side dialed. */
export type Direction = 'inbound' | 'outbound';

/** The default strategy per reason, the table of DESIGN §2. */
export const DEFAULT_STRATEGIES: Readonly<Record<DisconnectReason, ReconnectStrategy>> = {
  Normal: 'AllowImmediate',
  Timeout: 'WithBackoff',
  ProtocolViolation: 'WithBackoff',
  ResourceConstraint: 'AfterResourcesAvailable',
  PeerBanned: 'Never',
  NetworkRestructure: 'AllowImmediate',
};

/** One past disconnect of a connection: why, and when (ms of the injected clock). */
export interface DisconnectRecord {
  readonly reason: DisconnectReason;
  readonly atMs: number;
}

/** What the policy sees of a connection that just ended. */
export interface DisconnectFacts {
  readonly reason: DisconnectReason;
  /** Earlier disconnects of this connection, oldest first (at most {@link HISTORY_LENGTH}). */
  readonly history: readonly DisconnectRecord[];
  readonly kind: ConnectionKind;
  /** Whether we can dial the peer: outbound connections, and inbound ones of persistent peers whose address we know. */
  readonly dialable: boolean;
  /** The app asked for the close (`disconnect()`), or this was a duplicate of a surviving connection. */
  readonly final: boolean;
  /**
   * Failed attempts since the connection last stayed up for the stable period (0 when it did).
   * Optional for policies written before it existed; treated as 0 when absent.
   */
  readonly attempt?: number;
}

/**
 * The default policy: the DESIGN §2 table, then the connection kind. Persistent peers come back
 * unless the strategy is Never; temporary connections, undialable (inbound) ones and
 * app-requested closes end for good. AllowImmediate is granted once per stable period: a peer
 * that closes again before the connection stayed up for it (`attempt > 0`) is redialed with
 * backoff, so a peer that says goodbye at every connect cannot cause a dial storm.
 */
export function defaultReconnectPolicy(facts: DisconnectFacts): ReconnectStrategy {
  const strategy = DEFAULT_STRATEGIES[facts.reason];
  if (strategy === 'Never' || facts.final || !facts.dialable || facts.kind !== 'persistent') return 'Never';
  if (strategy === 'AllowImmediate' && (facts.attempt ?? 0) > 0) return 'WithBackoff';
  return strategy;
}

/** Exponential backoff settings, all in ms except `factor`. DESIGN §6: 1 s base, ×2, 5 min cap. */
export interface BackoffOptions {
  readonly baseMs: number;
  readonly factor: number;
  readonly capMs: number;
}

/** DESIGN §6 defaults: 1 000 ms base, factor 2, 300 000 ms cap. */
export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, factor: 2, capMs: 300_000 };

/**
 * Full-jitter exponential backoff (AWS Architecture Blog, "Exponential Backoff and Jitter"):
 * `random() × min(cap, base × factor^attempt)`, in ms.
 * @param attempt 0 for the first retry after a success; grows by one per failed attempt.
 * @param random a uniform source in [0, 1); inject a seeded one in specs.
 * @returns a delay in [0, capMs].
 */
export function fullJitterBackoffMs(attempt: number, options: BackoffOptions, random: () => number): number {
  const ceiling = Math.min(options.capMs, options.baseMs * Math.pow(options.factor, Math.max(0, attempt)));
  return Math.floor(random() * ceiling);
}

/** How many past disconnects a connection remembers for the policy. */
export const HISTORY_LENGTH = 16;

/**
 * When repeated ProtocolViolations ban a peer (DESIGN §2: "repeated → ban"): `count` violations
 * within `windowMs` ms.
 */
export interface ViolationBanRule {
  readonly count: number;
  readonly windowMs: number;
}

/** 3 ProtocolViolations within 10 minutes ban the peer. */
export const DEFAULT_VIOLATION_BAN: ViolationBanRule = { count: 3, windowMs: 600_000 };

/**
 * Records a ProtocolViolation at `nowMs` and tells whether the peer is now to be banned.
 * @param previous times (ms) of earlier violations; those outside the window are dropped.
 * @returns the violation times to keep (within the window, this one included) and the verdict.
 */
export function recordViolation(
  previous: readonly number[],
  nowMs: number,
  rule: ViolationBanRule,
): { times: number[]; ban: boolean } {
  const times = previous.filter((at) => nowMs - at < rule.windowMs).concat(nowMs);
  return { times, ban: times.length >= rule.count };
}

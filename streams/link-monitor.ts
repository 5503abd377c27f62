/**
 * The monitoring of one live link (DESIGN §4, §6): pings, health scoring, the Connected ⇄ Degraded
 * hysteresis, the Critical limit, lost-ping and inactivity detection, as one Observable.
 *
 * Why one Observable and not a chain of operators per link: the chain (`switchMap` over the
 * interval, `healthSamples`, `share`, two `map`s, `degradedVerdicts`, `criticalFor`, four
 * subscribers, `inactivity`) held 13 RxJS subscribers per link, about 11 KiB of heap per
 * connection: a third of all a connection cost at 1,000 connections, and garbage on every ping.
 * Here the same rules (the pure policies of `health.ts`, `hysteresis.ts`, `ping.ts` and
 * `inactivity.ts`, spec'd on their own) run as plain state under one subscriber.
 */
import { Observable } from 'rxjs';
import type { SchedulerLike } from 'rxjs';
import { HealthScorer } from './health.js';
import type { HealthOptions, HealthSample } from './health.js';
import { CriticalWatch, DegradedHysteresis } from './hysteresis.js';
import type { DegradedVerdict } from './hysteresis.js';
import { watchInactivity } from './inactivity.js';
import { schedulePings } from './ping.js';
import type { PingSample } from './ping.js';

/** How a link judges its health (issue 5 items 1–2). */
export interface HealthSettings {
  /** Score options (see {@link HealthOptions}); `lostPingRttMs` defaults to the ping timeout. */
  readonly options: Partial<HealthOptions>;
  /** Consecutive Poor-or-worse samples that make Connected → Degraded, and Good-or-better back (k). */
  readonly degradedAfter: number;
  /** A link Critical for this many ms is replaced. */
  readonly criticalLimitMs: number;
}

/** Defaults: k = 3 samples (30 s at the default ping interval), replaced after 60 s Critical (peerwarden's choice). */
export const DEFAULT_HEALTH_SETTINGS: HealthSettings = { options: {}, degradedAfter: 3, criticalLimitMs: 60_000 };

/** What the monitor reads from a live link. */
export interface MonitoredLink {
  /** Sends one ping; resolves when its pong arrives, rejects when the connection is gone. */
  ping(): Promise<void>;
  /** Bytes received so far, monotone: inactivity and lost-ping evidence. */
  readonly bytesRead: number;
  /** Application bytes sent + received so far, monotone: the bandwidth score (pings left out). */
  readonly appBytes: number;
}

/** Settings shared by the monitors of one supervisor's links. */
export interface LinkMonitorOptions {
  /**
   * Ping every this many ms: the latest value (it changes e.g. when the app goes to the
   * background; each change restarts the ping schedule, keeping the health state).
   */
  readonly pingIntervalMs: Observable<number>;
  /** A ping unanswered for this many ms is lost (DESIGN §6: 5,000). */
  readonly pingTimeoutMs: number;
  /** Health scoring, the Degraded streak k and the Critical limit. */
  readonly health: HealthSettings;
  /** Nothing received for this many ms is inactivity (DESIGN §6: 60,000). */
  readonly inactivityTimeoutMs: number;
  /** Runs every timer and measures RTT. */
  readonly scheduler: SchedulerLike;
}

/**
 * What a monitored link reports, in this order for one ping outcome: `sample`, then `verdict` when
 * the sample completes a streak, then `pingLost` when the ping was lost and nothing at all was
 * received since it went out (the path is dead; with other bytes arriving a loss only costs
 * reliability). `critical` and `inactive` come from their timers.
 */
export type LinkMonitorEvent =
  | { readonly type: 'sample'; readonly sample: HealthSample }
  | { readonly type: 'verdict'; readonly verdict: DegradedVerdict }
  | { readonly type: 'pingLost' }
  | { readonly type: 'critical' }
  | { readonly type: 'inactive' };

const PING_LOST: LinkMonitorEvent = Object.freeze({ type: 'pingLost' });
const CRITICAL: LinkMonitorEvent = Object.freeze({ type: 'critical' });
const INACTIVE: LinkMonitorEvent = Object.freeze({ type: 'inactive' });

/**
 * Builds the monitor of the links of one supervisor. Each subscription to `monitor(link)`:
 * - pings on the schedule of `pingSamples` (first ping on the scheduler's next turn, phase kept,
 *   no overlap), restarting it whenever `pingIntervalMs` emits;
 * - scores every outcome with a `HealthScorer` (a lost ping counts as an RTT of `pingTimeoutMs`
 *   unless `health.options.lostPingRttMs` says otherwise) and emits `sample`;
 * - feeds the category to `DegradedHysteresis(k)` (emits `verdict`) and `CriticalWatch` (emits
 *   `critical`), then checks for `pingLost` (see {@link LinkMonitorEvent});
 * - watches `bytesRead` for inactivity (emits `inactive` once).
 * It errors with the error of a failed ping (the connection closed) and with `RangeError` for a
 * sample the scorer rejects; unsubscribing stops every timer.
 * @throws RangeError at call time for invalid settings: a ping timeout that is negative or NaN, an
 *   inactivity timeout that is not finite and > 0, an invalid k, Critical limit or score option.
 *   An invalid ping interval makes the subscription error with RangeError.
 */
export function createLinkMonitor(options: LinkMonitorOptions): (link: MonitoredLink) => Observable<LinkMonitorEvent> {
  const { pingIntervalMs, pingTimeoutMs, health, inactivityTimeoutMs, scheduler } = options;
  if (!(pingTimeoutMs >= 0)) throw new RangeError(`ping timeout must be >= 0 ms, got ${pingTimeoutMs}`);
  if (!Number.isFinite(inactivityTimeoutMs) || inactivityTimeoutMs <= 0) {
    throw new RangeError(`inactivity timeout must be finite and > 0 ms, got ${inactivityTimeoutMs}`);
  }
  // One options object for every link, so the scorer resolves it once (see HealthScorer).
  const scoreOptions: Partial<HealthOptions> = { lostPingRttMs: pingTimeoutMs, ...health.options };
  // Validate everything now rather than at the first link.
  new HealthScorer(() => 0, scheduler, scoreOptions);
  new DegradedHysteresis(health.degradedAfter);
  new CriticalWatch(health.criticalLimitMs, scheduler, () => undefined);

  return (link) =>
    new Observable<LinkMonitorEvent>((subscriber) => {
      const scorer = new HealthScorer(() => link.appBytes, scheduler, scoreOptions);
      const hysteresis = new DegradedHysteresis(health.degradedAfter);
      const critical = new CriticalWatch(health.criticalLimitMs, scheduler, () => subscriber.next(CRITICAL));
      // Bytes received when the latest ping went out.
      let receivedAtPing = link.bytesRead;
      const ping = (): Promise<void> => {
        receivedAtPing = link.bytesRead;
        return link.ping();
      };
      const fail = (error: unknown): void => subscriber.error(error);
      const onOutcome = (outcome: PingSample): void => {
        let sample: HealthSample;
        try {
          sample = scorer.score(outcome);
        } catch (error) {
          fail(error);
          return;
        }
        subscriber.next({ type: 'sample', sample });
        const verdict = hysteresis.next(sample.category);
        if (verdict !== undefined) subscriber.next({ type: 'verdict', verdict });
        critical.next(sample.category);
        if (sample.rttMs === null && link.bytesRead === receivedAtPing) subscriber.next(PING_LOST);
      };

      let stopPings: (() => void) | undefined;
      const intervals = pingIntervalMs.subscribe({
        next: (intervalMs) => {
          stopPings?.();
          stopPings = undefined;
          try {
            stopPings = schedulePings(ping, { intervalMs, timeoutMs: pingTimeoutMs, scheduler }, onOutcome, fail);
          } catch (error) {
            fail(error);
          }
        },
        error: fail,
      });
      const stopWatch = watchInactivity(() => link.bytesRead, { timeoutMs: inactivityTimeoutMs, scheduler }, () =>
        subscriber.next(INACTIVE),
      );
      return () => {
        intervals.unsubscribe();
        stopPings?.();
        stopWatch();
        critical.stop();
      };
    });
}

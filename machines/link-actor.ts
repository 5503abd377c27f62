/**
 * The real link actor of the connection machine: dials (outbound) or takes the accepted socket
 * (inbound), runs the upgrade, pings, and reports to its connection as {@link LinkEvent}s.
 * Everything it opens lives inside the actor: stopping it (leaving `live`) destroys the socket,
 * the session and the ping subscription.
 */
import type { Duplex } from 'node:stream';
import { map, share, switchMap } from 'rxjs';
import type { Observable, SchedulerLike } from 'rxjs';
import { fromCallback } from 'xstate';
import type { Clock } from '../streams/clock.js';
import { healthSamples } from '../streams/health.js';
import type { HealthOptions } from '../streams/health.js';
import { criticalFor, degradedVerdicts } from '../streams/hysteresis.js';
import { inactivity } from '../streams/inactivity.js';
import { pingSamples } from '../streams/ping.js';
import type { DisconnectReason } from '../transport/disconnect-reason.js';
import {
  ConnectionClosed,
  DialFailed,
  IncompatiblePeer,
  PeerIdMismatch,
  ProtocolViolation,
  SelfConnection,
} from '../transport/errors.js';
import { establishLink } from '../transport/link.js';
import type { Link, LocalIdentity } from '../transport/link.js';
import type { RawConnection, Transport } from '../transport/transport.js';
import type { ConnectionCommand, LinkCommand, LinkEvent, LinkInput } from './connection.js';

/** How the link judges its health (issue 5 items 1–2). */
export interface HealthSettings {
  readonly options: Partial<HealthOptions>;
  /** Consecutive Poor-or-worse samples that make Connected → Degraded, and Good-or-better back (k). */
  readonly degradedAfter: number;
  /** A link Critical for this many ms is replaced. */
  readonly criticalLimitMs: number;
}

/** Defaults: k = 3 samples (30 s at the default ping interval), replaced after 60 s Critical (peerwarden's choice). */
export const DEFAULT_HEALTH_SETTINGS: HealthSettings = { options: {}, degradedAfter: 3, criticalLimitMs: 60_000 };

/** Live links by connection ID, so the supervisor can open streams on them. */
export type LinkRegistry = Map<string, Link>;

/** What the link actor needs from its supervisor. */
export interface LinkActorDependencies {
  readonly identity: LocalIdentity;
  /** Drives the ping interval and timeout and measures RTT. */
  readonly scheduler: SchedulerLike;
  /** The injected clock, for the transport's own timers (the yamux violation linger). */
  readonly clock: Clock;
  /**
   * Ping every `pingIntervalMs` ms (the latest value; it changes e.g. when the app goes to the
   * background, and each change restarts the schedule); a ping unanswered for `pingTimeoutMs` ms is lost.
   */
  readonly pingIntervalMs: Observable<number>;
  readonly pingTimeoutMs: number;
  /** Health scoring (DESIGN §4): score options, the streak length k of the Degraded hysteresis, and how long Critical may last. */
  readonly health: HealthSettings;
  /** Nothing received for this many ms ends the connection (`link.inactive`). */
  readonly inactivityTimeoutMs: number;
  /** Dials outbound connections (TCP in production, the memory network in specs). */
  readonly transport: Transport;
  /** Hands over the accepted raw connection of an inbound connection (once). */
  takeInbound(connectionId: string): RawConnection | undefined;
  /** Live links are registered here while they are up. */
  readonly links: LinkRegistry;
  /** Every connection the link dials is shown here first, so the owner can wait for it to close on shutdown. */
  trackConnection(connection: RawConnection): void;
  /** A dial reached this node itself: the address must never be dialed again (DESIGN §2). */
  onSelfConnection(address: string): void;
  /** An inbound application stream arrived on a connection. */
  onStream(connectionId: string, peerId: string, protocol: string, stream: Duplex): void;
}

/**
 * Maps a link failure to a disconnect reason (DESIGN §2): bad bytes, incompatible or impostor
 * peers are ProtocolViolation; a failed dial, reset or hang-up is Timeout (the network path
 * failed); a self-connection is Normal and final.
 */
export function reasonForError(error: unknown): { reason: DisconnectReason; final: boolean } {
  if (error instanceof SelfConnection) return { reason: 'Normal', final: true };
  if (error instanceof ProtocolViolation || error instanceof IncompatiblePeer || error instanceof PeerIdMismatch) {
    return { reason: 'ProtocolViolation', final: false };
  }
  // DialFailed, ConnectionClosed (reset or EOF without goodbye) and anything unexpected: the path failed.
  return { reason: 'Timeout', final: false };
}

/** Creates the link actor logic to provide as `actors.link` of the connection machine. */
export function createLinkActor(deps: LinkActorDependencies) {
  return fromCallback<LinkCommand, LinkInput>(({ input, sendBack, receive }) => {
    const abort = new AbortController();
    let raw: RawConnection | undefined;
    let link: Link | undefined;
    let stopped = false;
    let closing = false;
    let pings: { unsubscribe(): void } | undefined;
    let silence: { unsubscribe(): void } | undefined;
    let health: { unsubscribe(): void }[] = [];
    let monitoringStart: { unsubscribe(): void } | undefined;
    const send = (event: LinkEvent | ConnectionCommand): void => {
      if (!stopped) sendBack(event);
    };
    const fail = (error: unknown): void => {
      if (stopped) return;
      if (error instanceof SelfConnection && input.address !== null) deps.onSelfConnection(input.address);
      const { reason, final } = reasonForError(error);
      const message = error instanceof Error ? error.message : String(error);
      send({ type: 'link.failed', reason, error: message, final });
      stopped = true;
    };

    const run = async (): Promise<void> => {
      if (input.direction === 'outbound') {
        if (input.address === null) throw new DialFailed('(none)', { cause: new Error('no address to dial') });
        raw = await deps.transport.dial(input.address, abort.signal);
        deps.trackConnection(raw);
        if (stopped) {
          raw.stream.destroy();
          return;
        }
        send({ type: 'link.tcpConnected', remoteAddress: raw.remoteAddress });
      } else {
        raw = deps.takeInbound(input.connectionId);
        if (!raw) throw new ConnectionClosed('inbound connection is gone');
      }
      // No abort signal for the upgrade: stopping the actor destroys `raw`, which fails the
      // handshake or the wait for the control stream just as well, without an abort listener to
      // add and remove (EventTarget listeners cost about 1 % of a connect-and-close cycle).
      const established = await establishLink(raw, {
        identity: deps.identity,
        role: input.direction === 'outbound' ? 'initiator' : 'responder',
        timers: deps.clock,
        onStream: (protocol, stream, from) => deps.onStream(input.connectionId, from.remotePeerId, protocol, stream),
      });
      if (stopped) {
        established.destroy();
        return;
      }
      link = established;
      deps.links.set(input.connectionId, established);
      established.on('goodbye', (goodbye) =>
        send({ type: 'link.remoteGoodbye', reason: goodbye.reason, duplicate: goodbye.duplicate }),
      );
      established.on('closed', (error) => {
        if (closing || error === undefined) send({ type: 'link.closed' });
        else fail(error);
      });
      send({
        type: 'link.secured',
        peerId: established.remotePeerId,
        listenAddresses: [...established.remotePayload.listenAddresses],
      });
      send({ type: 'link.ready' });
      // Pings, health scoring and the inactivity watch start on the clock's next turn rather than
      // inside the upgrade: a connection closed at once never builds those pipelines (about 2 % of
      // the CPU of a connect-and-close cycle), and the first ping still goes out at once.
      if (stopped || closing) return; // the sends above may have ended it already
      monitoringStart = deps.scheduler.schedule(() => {
        monitoringStart = undefined;
        if (!stopped && !closing) startMonitoring(established);
      });
    };

    /** Starts the pings, the health pipeline and the inactivity watch of a live link. */
    const startMonitoring = (established: Link): void => {
      silence = inactivity(() => established.bytesRead, {
        timeoutMs: deps.inactivityTimeoutMs,
        scheduler: deps.scheduler,
      }).subscribe(() => send({ type: 'link.inactive' }));
      // Bytes received when the latest ping went out: a lost ping with nothing received since
      // means the path is dead; with other bytes still arriving, it only costs reliability.
      let receivedAtPing = established.bytesRead;
      const ping = (): Promise<void> => {
        receivedAtPing = established.bytesRead;
        return established.ping();
      };
      const samples = deps.pingIntervalMs.pipe(
        switchMap((intervalMs) =>
          pingSamples(ping, {
            intervalMs,
            timeoutMs: deps.pingTimeoutMs,
            scheduler: deps.scheduler,
          }),
        ),
      );
      const scored = healthSamples(samples, () => established.appBytes, deps.scheduler, {
        lostPingRttMs: deps.pingTimeoutMs,
        ...deps.health.options,
      }).pipe(share());
      const categories = scored.pipe(map((sample) => sample.category));
      // One event per ping carries its RTT and the health it leaves; the verdicts follow it, and
      // a loss that ends the link comes last, so each is judged on the sample before it.
      pings = scored.subscribe({
        next: (sample) => send({ type: 'link.sample', rttMs: sample.rttMs, score: sample.score, category: sample.category }),
        error: (error: unknown) => {
          if (!closing) fail(error);
        },
      });
      health = [
        categories.pipe(degradedVerdicts(deps.health.degradedAfter)).subscribe({
          next: (verdict) => send({ type: verdict === 'poor' ? 'health.poor' : 'health.good' }),
          error: () => undefined,
        }),
        categories.pipe(criticalFor(deps.health.criticalLimitMs, deps.scheduler)).subscribe({
          next: () => send({ type: 'health.critical' }),
          error: () => undefined,
        }),
        scored.subscribe({
          next: (sample) => {
            if (sample.rttMs === null && established.bytesRead === receivedAtPing) send({ type: 'link.pingLost' });
          },
          error: () => undefined,
        }),
      ];
    };
    run().catch(fail);

    receive((command) => {
      if (command.type !== 'link.goodbye' || closing) return;
      closing = true;
      monitoringStart?.unsubscribe();
      pings?.unsubscribe();
      silence?.unsubscribe();
      for (const subscription of health.splice(0)) subscription.unsubscribe();
      if (!link) {
        send({ type: 'link.closed' });
        return;
      }
      link.close(command.reason, command.duplicate).then(
        () => send({ type: 'link.closed' }),
        () => send({ type: 'link.closed' }),
      );
    });

    return () => {
      stopped = true;
      monitoringStart?.unsubscribe();
      // Only a dial still in flight listens; later phases need no reason built.
      if (!raw) abort.abort(new ConnectionClosed('link stopped'));
      pings?.unsubscribe();
      silence?.unsubscribe();
      for (const subscription of health.splice(0)) subscription.unsubscribe();
      deps.links.delete(input.connectionId);
      link?.destroy();
      raw?.stream.destroy();
    };
  });
}

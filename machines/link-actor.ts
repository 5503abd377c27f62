/**
 * The real link actor of the connection machine: dials (outbound) or takes the accepted socket
 * (inbound), runs the upgrade, pings, and reports to its connection as {@link LinkEvent}s.
 * Everything it opens lives inside the actor: stopping it (leaving `live`) destroys the socket,
 * the session and the ping subscription.
 */
import type { Duplex } from 'node:stream';
import type { Observable, SchedulerLike } from 'rxjs';
import { fromCallback } from 'xstate';
import type { Clock } from '../streams/clock.js';
import { createLinkMonitor } from '../streams/link-monitor.js';
import type { HealthSettings, LinkMonitorEvent } from '../streams/link-monitor.js';
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

/**
 * Creates the link actor logic to provide as `actors.link` of the connection machine.
 * @throws RangeError for invalid ping, health or inactivity settings (see `createLinkMonitor`).
 */
export function createLinkActor(deps: LinkActorDependencies) {
  const monitor = createLinkMonitor({
    pingIntervalMs: deps.pingIntervalMs,
    pingTimeoutMs: deps.pingTimeoutMs,
    health: deps.health,
    inactivityTimeoutMs: deps.inactivityTimeoutMs,
    scheduler: deps.scheduler,
  });
  return fromCallback<LinkCommand, LinkInput>(({ input, sendBack, receive }) => {
    // Only a dial in flight listens for the stop; the controller is dropped once the dial settles.
    let abort: AbortController | undefined;
    let raw: RawConnection | undefined;
    let link: Link | undefined;
    let stopped = false;
    let closing = false;
    let monitoring: { unsubscribe(): void } | undefined;
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
        abort = new AbortController();
        try {
          raw = await deps.transport.dial(input.address, abort.signal);
        } finally {
          abort = undefined;
        }
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

    /** Starts the pings, the health pipeline and the inactivity watch of a live link (one subscription). */
    const startMonitoring = (established: Link): void => {
      monitoring = monitor(established).subscribe({
        next: (event) => send(linkEventOf(event)),
        error: (error: unknown) => {
          if (!closing) fail(error);
        },
      });
    };
    run().catch(fail);

    receive((command) => {
      if (command.type !== 'link.goodbye' || closing) return;
      closing = true;
      monitoringStart?.unsubscribe();
      monitoring?.unsubscribe();
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
      abort?.abort(new ConnectionClosed('link stopped'));
      monitoring?.unsubscribe();
      deps.links.delete(input.connectionId);
      link?.destroy();
      raw?.stream.destroy();
    };
  });
}

/** The connection machine's event for what the monitor reported. */
function linkEventOf(event: LinkMonitorEvent): LinkEvent | ConnectionCommand {
  switch (event.type) {
    case 'sample': {
      const { rttMs, score, category } = event.sample;
      return { type: 'link.sample', rttMs, score, category };
    }
    case 'verdict':
      return { type: event.verdict === 'poor' ? 'health.poor' : 'health.good' };
    case 'critical':
      return { type: 'health.critical' };
    case 'pingLost':
      return { type: 'link.pingLost' };
    case 'inactive':
      return { type: 'link.inactive' };
  }
}

/**
 * Typed errors of the supervisor's public API.
 */
import { PeerwardenError } from '../transport/errors.js';

/** `openStream()`/`disconnect()` named a peer with no connection, or `connect()` a peer ID with no known address. */
export class PeerAddressUnknown extends PeerwardenError {
  constructor(peerId: string) {
    super('PEER_ADDRESS_UNKNOWN', `no connection or known address for peer ${peerId}`);
  }
}

/** The supervisor is not running (before `start()` or after `stop()`). */
export class SupervisorStopped extends PeerwardenError {
  constructor() {
    super('SUPERVISOR_STOPPED', 'the supervisor is not running');
  }
}

/**
 * The connection ended before it reached Connected and will not come back (strategy Never, a
 * temporary or inbound connection, a self-connection, a ban). `reason` is the disconnect reason.
 */
export class ConnectionFailed extends PeerwardenError {
  constructor(
    readonly address: string,
    readonly reason: string | null,
    detail: string | null,
  ) {
    super('CONNECTION_FAILED', `connection to ${address} ended (${reason ?? 'unknown'})${detail ? `: ${detail}` : ''}`);
  }
}

/**
 * `connect()` was refused because `maxPending` connections are already dialing, handshaking or
 * scheduled to redial (DESIGN §3 admission). Retry later; nothing was dialed.
 */
export class TooManyPendingConnections extends PeerwardenError {
  constructor(detail: string) {
    super('TOO_MANY_PENDING_CONNECTIONS', `too many pending connections: ${detail}`);
  }
}

/**
 * `connect()` was refused because `maxOutbound` or `maxTotal` is reached (an accepted socket over
 * a limit with nobody to evict is refused the same way, before any handshake). Nothing was dialed.
 */
export class ConnectionLimitReached extends PeerwardenError {
  constructor(detail: string) {
    super('CONNECTION_LIMIT_REACHED', `connection limit reached: ${detail}`);
  }
}

/** `connect(target, { reuse: false })` found a connection that already serves the address or peer. */
export class AlreadyConnected extends PeerwardenError {
  constructor(detail: string) {
    super('ALREADY_CONNECTED', `already connected: ${detail}`);
  }
}

/**
 * The peer ID or the IP of the address is banned (`ban()`, or automatically after repeated
 * ProtocolViolations): `connect()` refuses to dial it. A connected peer that gets banned is closed
 * with reason PeerBanned.
 */
export class PeerBanned extends PeerwardenError {
  constructor(detail: string) {
    super('PEER_BANNED', `peer banned: ${detail}`);
  }
}

/** The typed error for a supervisor refusal. */
export function refusalError(
  refusal: 'TooManyPendingConnections' | 'ConnectionLimitReached' | 'PeerBanned' | 'AlreadyConnected',
  detail: string,
): PeerwardenError {
  switch (refusal) {
    case 'TooManyPendingConnections':
      return new TooManyPendingConnections(detail);
    case 'ConnectionLimitReached':
      return new ConnectionLimitReached(detail);
    case 'PeerBanned':
      return new PeerBanned(detail);
    case 'AlreadyConnected':
      return new AlreadyConnected(detail);
  }
}

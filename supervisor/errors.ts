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

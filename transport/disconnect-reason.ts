/**
 * Why a connection ended, as both ends agree on it (DESIGN §2). The reason travels in the goodbye
 * message, so a peer that receives a goodbye records the remote's reason as its own.
 */

/**
 * The six disconnect reasons of DESIGN §2:
 * - `Normal`: graceful goodbye, local or remote (an app's `disconnect()`, idle close).
 * - `Timeout`: the network path failed: dial refused or timed out, handshake, ping or inactivity
 *   timeout, or the socket reset or ended without a goodbye.
 * - `ProtocolViolation`: bad frame, failed decrypt, handshake mismatch.
 * - `ResourceConstraint`: a local limit.
 * - `PeerBanned`: the peer is on the ban list.
 * - `NetworkRestructure`: replaced: a duplicate of another connection, degraded, evicted, rotated.
 */
export type DisconnectReason =
  | 'Normal'
  | 'Timeout'
  | 'ProtocolViolation'
  | 'ResourceConstraint'
  | 'PeerBanned'
  | 'NetworkRestructure';

/** Every reason, in wire-code order (index = code carried by the goodbye message). */
export const DISCONNECT_REASONS: readonly DisconnectReason[] = [
  'Normal',
  'Timeout',
  'ProtocolViolation',
  'ResourceConstraint',
  'PeerBanned',
  'NetworkRestructure',
];

/** The one-byte wire code of a reason (its index in {@link DISCONNECT_REASONS}). */
export function reasonCode(reason: DisconnectReason): number {
  return DISCONNECT_REASONS.indexOf(reason);
}

/** The reason for a wire code, or `undefined` for a code this version does not know. */
export function reasonFromCode(code: number): DisconnectReason | undefined {
  return DISCONNECT_REASONS[code];
}

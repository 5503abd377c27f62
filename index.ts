/**
 * peerwarden: supervises the connections of a peer-to-peer node.
 *
 * Start with {@link createSupervisor}. The machines, policies and transport layers are exported
 * too, so they can be inspected, replaced and tested on their own.
 */
export { createSupervisor } from './supervisor/create-supervisor.js';
export type {
  ConnectionInfo,
  ConnectionTransition,
  RttSample,
  StreamContext,
  Supervisor,
  SupervisorOptions,
} from './supervisor/create-supervisor.js';
export { supervisorMachine } from './supervisor/supervisor-machine.js';
export type { ConnectionRecord, SupervisorActor, SupervisorContext, SupervisorEvent } from './supervisor/supervisor-machine.js';
export { chooseSurvivor } from './supervisor/simultaneous-open.js';
export { ConnectionFailed, PeerAddressUnknown, SupervisorStopped } from './supervisor/errors.js';

export {
  connectionMachine,
  withConnectionPolicies,
  DEFAULT_CONNECTION_POLICIES,
  DEFAULT_TIMEOUTS,
} from './machines/connection.js';
export type {
  ConnectionContext,
  ConnectionEvent,
  ConnectionInput,
  ConnectionMachine,
  ConnectionPolicies,
  ConnectionReport,
  ConnectionState,
  ConnectionTimeouts,
  LinkCommand,
  LinkEvent,
  LinkInput,
} from './machines/connection.js';
export { createLinkActor, reasonForError } from './machines/link-actor.js';

export { clockScheduler, systemClock, VirtualClock } from './streams/clock.js';
export type { Clock, TimerHandle } from './streams/clock.js';
export { pingSamples } from './streams/ping.js';
export type { PingOptions, PingSample } from './streams/ping.js';
export {
  DEFAULT_BACKOFF,
  DEFAULT_STRATEGIES,
  defaultReconnectPolicy,
  fullJitterBackoffMs,
} from './streams/reconnect.js';
export type {
  BackoffOptions,
  ConnectionKind,
  Direction,
  DisconnectFacts,
  ReconnectStrategy,
} from './streams/reconnect.js';

export type { DisconnectReason } from './transport/disconnect-reason.js';
export {
  ConnectionClosed,
  DialFailed,
  HandshakeTimeout,
  IncompatiblePeer,
  PeerIdMismatch,
  PeerwardenError,
  ProtocolViolation,
  SelfConnection,
} from './transport/errors.js';
export { isPeerId, parsePeerId, peerIdFromPublicKey, publicKeyFromPeerId } from './transport/peer-id.js';
export type { PeerId } from './transport/peer-id.js';
export { nobleCrypto } from './transport/noise/crypto.js';
export type { KeyPair, NoiseCrypto } from './transport/noise/crypto.js';
export type { HandshakePayload } from './transport/handshake-payload.js';

/**
 * peerwarden: supervises the connections of a peer-to-peer node.
 *
 * Start with {@link createSupervisor}. The machines, policies and transport layers are exported
 * too, so they can be inspected, replaced and tested on their own.
 */
export { createSupervisor } from './supervisor/create-supervisor.js';
export type {
  AppEvent,
  ConnectionInfo,
  ConnectionTransition,
  NodeMetrics,
  PeerMessage,
  PeerState,
  PeerStatus,
  UndeliveredMessages,
  RttSample,
  StreamContext,
  Supervisor,
  SupervisorMetrics,
  SupervisorOptions,
} from './supervisor/create-supervisor.js';
export { DEFAULT_SUPERVISOR_CONFIG, supervisorMachine, withSupervisorClock } from './supervisor/supervisor-machine.js';
export type {
  ConnectionRecord,
  Refusal,
  SupervisorActor,
  SupervisorCommand,
  SupervisorConfig,
  SupervisorContext,
  SupervisorEmitted,
  SupervisorEvent,
} from './supervisor/supervisor-machine.js';
export { chooseSurvivor } from './supervisor/simultaneous-open.js';
export {
  AlreadyConnected,
  ConnectionFailed,
  ConnectionLimitReached,
  PeerAddressUnknown,
  PeerBanned,
  SupervisorStopped,
  TooManyPendingConnections,
} from './supervisor/errors.js';
export { admitInbound, admitOutbound, countConnections, DEFAULT_LIMITS } from './supervisor/admission.js';
export type { AdmissionLimits, AdmissionVerdict, ConnectionCounts } from './supervisor/admission.js';
export { DEFAULT_EVICTION_OPTIONS, inboundEvictionPool, selectInboundToEvict } from './supervisor/eviction.js';
export type { EvictionCandidate, EvictionOptions } from './supervisor/eviction.js';
export { netgroupOf } from './supervisor/netgroup.js';
export { activeBans, ban, DEFAULT_BAN_DURATION_MS, emptyBans, isBanned, unban } from './supervisor/bans.js';
export type { BanEntry, BanList, BanListing, BanTarget } from './supervisor/bans.js';
export { DEFAULT_REAPER_INTERVAL_MS, DEFAULT_REAPER_SETTINGS, reap } from './supervisor/reaper.js';
export type { LinkUsage, ReaperSettings, ReaperVerdict } from './supervisor/reaper.js';
export { PeerStore } from './supervisor/peer-store.js';
export { peerScore } from './supervisor/peer-score.js';
export { pickReplacement } from './supervisor/replacement.js';
export { MESSAGES_PROTOCOL } from './supervisor/messaging.js';
export { metricFamilies } from './supervisor/metric-families.js';
export { createLinkMonitor, DEFAULT_HEALTH_SETTINGS } from './streams/link-monitor.js';
export type { HealthSettings, LinkMonitorEvent, LinkMonitorOptions, MonitoredLink } from './streams/link-monitor.js';
export type { PeerRecord, PeerStoreProblem } from './supervisor/peer-store.js';

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
  ConnectionMemory,
  ConnectionPolicies,
  ConnectionReport,
  ConnectionState,
  ConnectionTimeouts,
  LinkCommand,
  LinkEvent,
  LinkHealth,
  LinkInput,
} from './machines/connection.js';
export { createLinkActor, reasonForError } from './machines/link-actor.js';

export { clockScheduler, systemClock, VirtualClock } from './streams/clock.js';
export { DEFAULT_TIMER_SLICE_MS, TimerQueue } from './streams/timer-queue.js';
export type { TimerHost, TimerQueueOptions } from './streams/timer-queue.js';
export type { Clock, TimerHandle } from './streams/clock.js';
export { pingSamples } from './streams/ping.js';
export {
  bandwidthScore,
  categorize,
  DEFAULT_HEALTH_OPTIONS,
  healthSamples,
  latencyScore,
  overallScore,
  reliabilityScore,
} from './streams/health.js';
export type { HealthCategory, HealthOptions, HealthSample, LatencyScale } from './streams/health.js';
export { criticalFor, degradedVerdicts } from './streams/hysteresis.js';
export type { DegradedVerdict } from './streams/hysteresis.js';
export { batch, DEFAULT_BATCH_OPTIONS } from './streams/batch.js';
export type { BatchOptions } from './streams/batch.js';
export { DEFAULT_OUTBOX_LIMITS, Outbox, OutboxFull } from './streams/outbox.js';
export type { OutboxLimits } from './streams/outbox.js';
export { LatencyWindow, RateMeter, sampleEvery } from './streams/metrics.js';
export type { TrafficMetrics } from './streams/metrics.js';
export { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from './streams/prometheus.js';
export type { MetricFamily } from './streams/prometheus.js';
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
export { defaultCrypto, nodeCrypto, nodeCryptoAvailable } from './transport/noise/node-crypto.js';
export type { KeyPair, NoiseCrypto } from './transport/noise/crypto.js';
export type { HandshakePayload } from './transport/handshake-payload.js';
export { tcpTransport } from './transport/tcp.js';
export { MemoryNetwork } from './transport/memory.js';
export type { MemoryConnection, MemoryFault, MemoryNetworkOptions } from './transport/memory.js';
export type { RawConnection, Transport, TransportListener } from './transport/transport.js';

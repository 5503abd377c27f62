/**
 * The node's metrics as Prometheus metric families (issue 5 item 4). Pure; `renderPrometheus`
 * turns them into the text exposition format. Names follow Prometheus conventions: a
 * `peerwarden_` prefix, base units in the name, counters ending in `_total`.
 */
import type { MetricFamily } from '../streams/prometheus.js';
import type { NodeMetrics } from './status.js';

/** The families of one metrics snapshot. A latency not yet measured is left out. */
export function metricFamilies(m: NodeMetrics): MetricFamily[] {
  const gauge = (name: string, help: string, samples: MetricFamily['samples']): MetricFamily => ({ name, help, type: 'gauge', samples });
  const counter = (name: string, help: string, samples: MetricFamily['samples']): MetricFamily => ({ name, help, type: 'counter', samples });
  const latency = [
    ...(m.latencyAvgMs === null ? [] : [{ labels: { stat: 'avg' }, value: m.latencyAvgMs }]),
    ...(m.latencyP99Ms === null ? [] : [{ labels: { stat: 'p99' }, value: m.latencyP99Ms }]),
  ];
  return [
    gauge(
      'peerwarden_connections',
      'Connections by lifecycle state.',
      Object.entries(m.connectionsByState).map(([state, value]) => ({ labels: { state }, value })),
    ),
    gauge('peerwarden_slots', 'Connections holding a slot, by direction; pending are dialing, handshaking or scheduled to redial.', [
      { labels: { kind: 'outbound' }, value: m.slots.outbound },
      { labels: { kind: 'inbound' }, value: m.slots.inbound },
      { labels: { kind: 'pending' }, value: m.slots.pending },
    ]),
    gauge('peerwarden_limit', 'Configured connection limits.', [
      { labels: { kind: 'outbound' }, value: m.limits.maxOutbound },
      { labels: { kind: 'inbound' }, value: m.limits.maxInbound },
      { labels: { kind: 'total' }, value: m.limits.maxTotal },
      { labels: { kind: 'pending' }, value: m.limits.maxPending },
    ]),
    gauge('peerwarden_waiting_for_slot', 'Connections waiting in Backoff for a free slot.', [{ value: m.waitingForSlot }]),
    counter('peerwarden_dials_total', 'Dials started, first dials and redials.', [{ value: m.dials }]),
    counter('peerwarden_handshakes_total', 'Handshakes that reached Connected.', [{ value: m.handshakes }]),
    counter(
      'peerwarden_link_ends_total',
      'Links that ended, by disconnect reason.',
      Object.entries(m.endsByReason).map(([reason, value]) => ({ labels: { reason }, value: value ?? 0 })),
    ),
    counter(
      'peerwarden_refusals_total',
      'Dials and accepted sockets refused, by refusal.',
      Object.entries(m.refusals).map(([refusal, value]) => ({ labels: { refusal }, value: value ?? 0 })),
    ),
    counter('peerwarden_evictions_total', 'Inbound connections evicted to make room.', [{ value: m.evictions }]),
    counter('peerwarden_reaped_total', 'Connections the reaper closed (idle, or pooled past the TTL).', [{ value: m.reaped }]),
    counter('peerwarden_auto_bans_total', 'Bans applied after repeated protocol violations.', [{ value: m.autoBans }]),
    counter('peerwarden_pending_reclaimed_total', 'Silent pending inbound connections closed to admit a newcomer.', [
      { value: m.pendingReclaimed },
    ]),
    gauge('peerwarden_bans', 'Bans in force.', [
      { labels: { by: 'peer_id' }, value: m.activeBans.peerIds },
      { labels: { by: 'ip' }, value: m.activeBans.ips },
    ]),
    gauge('peerwarden_messages_per_second', 'Application messages per second over the last 10 s.', [
      { labels: { direction: 'in' }, value: m.messagesInPerSecond },
      { labels: { direction: 'out' }, value: m.messagesOutPerSecond },
    ]),
    gauge('peerwarden_rtt_milliseconds', 'Ping round-trip time over the last 1,024 samples.', latency),
    gauge('peerwarden_heap_used_bytes', 'V8 heap in use.', [{ value: m.heapUsedBytes }]),
    gauge('peerwarden_resident_memory_bytes', 'Resident set size of the process.', [{ value: m.rssBytes }]),
  ];
}

/**
 * Every state and every transition of the connection machine is reached, by paths that
 * `xstate/graph` computes from the machine itself. The list of transitions is read from the
 * machine, so a transition added later without an event here fails this spec.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ActorLogic, AnyStateNode } from 'xstate';
import { getAdjacencyMap, getShortestPaths } from 'xstate/graph';
import type { AdjacencyMap, AdjacencyValue } from 'xstate/graph';
import { connectionMachine } from '../machines/connection.js';
import type { ConnectionEvent, ConnectionInput } from '../machines/connection.js';
import { DISCONNECT_REASONS } from '../transport/disconnect-reason.js';

/** Representative events per event type; delayed (`xstate.after.*`) events are added from the machine. */
const EXAMPLES: Record<string, ConnectionEvent[]> = {
  'link.tcpConnected': [{ type: 'link.tcpConnected', remoteAddress: '127.0.0.1:1' }],
  'link.secured': [{ type: 'link.secured', peerId: 'pwx', listenAddresses: [] }],
  'link.ready': [{ type: 'link.ready' }],
  'link.sample': [
    { type: 'link.sample', rttMs: 1, score: 0.9, category: 'Excellent' },
    { type: 'link.sample', rttMs: null, score: 0.3, category: 'Poor' },
  ],
  'link.pingLost': [{ type: 'link.pingLost' }],
  'link.inactive': [{ type: 'link.inactive' }],
  'link.closed': [{ type: 'link.closed' }],
  'link.failed': DISCONNECT_REASONS.map((reason) => ({ type: 'link.failed', reason, error: reason })),
  'link.remoteGoodbye': DISCONNECT_REASONS.flatMap((reason) => [
    { type: 'link.remoteGoodbye' as const, reason, duplicate: false },
    { type: 'link.remoteGoodbye' as const, reason, duplicate: true },
  ]),
  disconnect: [
    { type: 'disconnect', reason: 'Normal', final: true },
    { type: 'disconnect', reason: 'NetworkRestructure', final: false },
  ],
  promote: [{ type: 'promote', kind: 'persistent', address: '127.0.0.1:2' }],
  'health.poor': [{ type: 'health.poor' }],
  'health.good': [{ type: 'health.good' }],
  'resources.available': [{ type: 'resources.available' }],
  'resources.wait': [{ type: 'resources.wait' }],
  'health.critical': [{ type: 'health.critical' }],
  'network.offline': [{ type: 'network.offline' }],
  'network.online': [{ type: 'network.online' }],
  'peer.returned': [{ type: 'peer.returned' }],
};

function nodes(node: AnyStateNode = connectionMachine.root): AnyStateNode[] {
  return [node, ...Object.values(node.states).flatMap((child) => nodes(child))];
}

/** Transitions that do something: a target or actions (an empty one only swallows an event). */
function edges(): Array<{ node: string; eventType: string }> {
  const out: Array<{ node: string; eventType: string }> = [];
  for (const node of nodes()) {
    for (const [eventType, transitions] of node.transitions) {
      if (transitions.some((t) => t.target !== undefined || t.actions.length > 0)) out.push({ node: node.id, eventType });
    }
  }
  return out;
}

/** Active state node IDs, deepest first, for a state value. */
function activeNodes(value: unknown, prefix = 'connection'): string[] {
  if (typeof value === 'string') return [`${prefix}.${value}`, prefix];
  const [key, child] = Object.entries(value as Record<string, unknown>)[0] as [string, unknown];
  return [...activeNodes(child, `${prefix}.${key}`), prefix];
}

type Snapshot = ReturnType<typeof connectionMachine.getInitialSnapshot>;

const inputs: ConnectionInput[] = [
  { connectionId: 'c1', direction: 'outbound', kind: 'persistent', address: '127.0.0.1:1' },
  { connectionId: 'c2', direction: 'outbound', kind: 'temporary', address: '127.0.0.1:1' },
  { connectionId: 'i1', direction: 'inbound', kind: 'temporary', address: null },
];

describe('connection machine paths (xstate/graph)', () => {
  it('reaches every state and takes every transition', () => {
    const eventTypes = new Set(edges().map((edge) => edge.eventType));
    const events: ConnectionEvent[] = [];
    for (const type of eventTypes) {
      if (type.startsWith('xstate.after.')) events.push({ type } as unknown as ConnectionEvent);
      else {
        const examples = EXAMPLES[type];
        assert.ok(examples, `the spec has example events for ${type}`);
        events.push(...examples);
      }
    }

    const reachedStates = new Set<string>();
    const takenEdges = new Set<string>();
    for (const input of inputs) {
      const options = {
        input,
        events,
        // What guards and the lifecycle depend on; counters (attempt, history) are left out so the
        // state space is finite.
        serializeState: (snapshot: Snapshot) =>
          JSON.stringify({
            value: snapshot.value,
            reason: snapshot.context.reason,
            strategy: snapshot.context.strategy,
            direction: snapshot.context.direction,
            kind: snapshot.context.kind,
            dialable: snapshot.context.address !== null,
            final: snapshot.context.final,
            reset: snapshot.context.attempt === 0,
            rtt: snapshot.context.health.rttMs !== null,
            identified: snapshot.context.peerId !== null,
            offline: snapshot.context.offline,
            health: snapshot.context.health.category,
          }),
      };
      // States: each one has a shortest path to it from the initial state.
      for (const path of getShortestPaths(connectionMachine, options)) {
        for (const id of activeNodes(path.state.value)) reachedStates.add(id);
      }
      // Transitions: from every reachable state, every event that changes it is a transition taken.
      // getAdjacencyMap's logic type has no slot for emitted events; the machine emits ConnectionReports.
      const logic = connectionMachine as unknown as ActorLogic<Snapshot, ConnectionEvent, ConnectionInput>;
      const adjacency: AdjacencyMap<Snapshot, ConnectionEvent> = getAdjacencyMap(logic, options);
      // Keys are serialized snapshots (a branded string type): read them as plain strings.
      const entries = Object.entries(adjacency as unknown as Record<string, AdjacencyValue<Snapshot, ConnectionEvent>>);
      for (const [from, { state, transitions }] of entries) {
        const steps = Object.values(transitions as Record<string, { event: ConnectionEvent; state: Snapshot }>);
        for (const { event, state: next } of steps) {
          if (options.serializeState(next) === from) continue;
          const handler = activeNodes(state.value).find((id) =>
            connectionMachine.getStateNodeById(id).transitions.has(event.type),
          );
          if (handler) takenEdges.add(`${handler} ${event.type}`);
        }
      }
    }

    const transient = new Set(['connection.live.route', 'connection.ending', 'connection.backoff.arriving']); // eventless: passed through, never rested in
    for (const node of nodes()) {
      if (node.type === 'atomic' || node.type === 'final') {
        if (!transient.has(node.id)) assert.ok(reachedStates.has(node.id), `state ${node.id} is reached`);
      }
    }
    const missing = edges()
      .map((edge) => `${edge.node} ${edge.eventType}`)
      .filter((key) => !takenEdges.has(key));
    assert.deepEqual(missing, [], 'every transition is taken on some path');
  });
});

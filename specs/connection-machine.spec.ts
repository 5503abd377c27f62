/**
 * The connection machine in virtual time with a scripted link: every state and the transitions
 * of DESIGN §2, timeouts from DESIGN §6, the reconnect policy, and resource release on leaving
 * `live` and on stop.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { connectionMachine, DEFAULT_TIMEOUTS, MAX_CONTEXT_FIELDS } from '../machines/connection.js';
import { DEFAULT_BACKOFF } from '../streams/reconnect.js';
import type { ConnectionInput, ConnectionState, LinkEvent } from '../machines/connection.js';
import { connectCurrent, startScripted } from './support/scripted-link.js';

const outbound: ConnectionInput = { connectionId: 'c1', direction: 'outbound', kind: 'persistent', address: '127.0.0.1:4001' };
const inbound: ConnectionInput = { connectionId: 'i1', direction: 'inbound', kind: 'temporary', address: null };

describe('connection machine', () => {
  it('dials, handshakes and connects; the context is plain data', () => {
    const h = startScripted(outbound);
    assert.equal(h.actor.getSnapshot().context.state, 'connecting');
    connectCurrent(h, 'pwabc');
    const snapshot = h.actor.getSnapshot();
    assert.deepEqual(h.states, ['connecting', 'handshaking', 'connected']);
    assert.equal(snapshot.context.peerId, 'pwabc');
    assert.deepEqual(JSON.parse(JSON.stringify(snapshot.context)), snapshot.context);
    h.actor.stop();
  });

  it('ends a dial with Timeout after connectTimeout and backs off within [0, base]', () => {
    const h = startScripted(outbound);
    h.clock.advance(DEFAULT_TIMEOUTS.connectTimeoutMs - 1);
    assert.equal(h.actor.getSnapshot().context.state, 'connecting');
    h.clock.advance(1);
    const context = h.actor.getSnapshot().context;
    assert.equal(context.state, 'backoff');
    assert.equal(context.reason, 'Timeout');
    assert.equal(context.strategy, 'WithBackoff');
    assert.ok(context.nextDelayMs !== null && context.nextDelayMs >= 0 && context.nextDelayMs <= 1_000);
    assert.equal(h.links[0]?.stopped, true, 'leaving live stops the link');
    h.clock.advance(context.nextDelayMs);
    assert.equal(h.actor.getSnapshot().context.state, 'connecting');
    assert.equal(h.links.length, 2, 'a new link dials again');
    h.actor.stop();
  });

  it('ends a handshake with Timeout after handshakeTimeout', () => {
    const h = startScripted(outbound);
    h.current().send({ type: 'link.tcpConnected', remoteAddress: '127.0.0.1:4001' });
    h.clock.advance(DEFAULT_TIMEOUTS.handshakeTimeoutMs);
    assert.equal(h.actor.getSnapshot().context.state, 'backoff');
    assert.equal(h.actor.getSnapshot().context.error, 'handshake timeout');
    h.actor.stop();
  });

  it('grows the backoff exponent on every failure and resets it only after a stable period', () => {
    const h = startScripted(outbound, { random: () => 0.999 });
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      h.current().send({ type: 'link.failed', reason: 'Timeout', error: 'refused' });
      const delay = h.actor.getSnapshot().context.nextDelayMs ?? -1;
      delays.push(delay);
      h.clock.advance(delay);
    }
    for (let i = 1; i < delays.length; i++) assert.ok((delays[i] ?? 0) > (delays[i - 1] ?? 0), `delays grow: ${delays.join(',')}`);
    // Connected, but dropped before the stable period: the exponent keeps growing (no flapping at base).
    connectCurrent(h);
    h.clock.advance(DEFAULT_TIMEOUTS.stablePeriodMs - 1);
    h.current().send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
    assert.equal(h.actor.getSnapshot().context.attempt, 7);
    assert.ok((h.actor.getSnapshot().context.nextDelayMs ?? 0) > (delays.at(-1) ?? Infinity));
    h.clock.advance(h.actor.getSnapshot().context.nextDelayMs ?? 0);
    // Connected for the stable period: the next failure starts again at the base delay.
    connectCurrent(h);
    h.clock.advance(DEFAULT_TIMEOUTS.stablePeriodMs);
    assert.equal(h.actor.getSnapshot().context.attempt, 0);
    h.current().send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
    assert.ok((h.actor.getSnapshot().context.nextDelayMs ?? Infinity) < 1_000);
    h.actor.stop();
  });

  it('backs off longer after a ProtocolViolation and bans after repeated ones within the window', () => {
    const h = startScripted(outbound, {
      random: () => 0.999,
      timeoutBackoff: { baseMs: 100, factor: 2, capMs: 10_000 },
      violationBackoff: { baseMs: 5_000, factor: 2, capMs: 60_000 },
      violationBan: { count: 3, windowMs: 200_000 },
    });
    connectCurrent(h);
    h.current().send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
    assert.ok((h.actor.getSnapshot().context.nextDelayMs ?? Infinity) < 100);
    h.clock.advance(100);
    connectCurrent(h);
    h.current().send({ type: 'link.failed', reason: 'ProtocolViolation', error: 'bad frame' });
    assert.ok((h.actor.getSnapshot().context.nextDelayMs ?? 0) >= 5_000, 'violation backoff');
    // Violations spread wider than the window never ban.
    for (let i = 0; i < 4; i++) {
      h.clock.advance(201_000);
      connectCurrent(h);
      h.current().send({ type: 'link.failed', reason: 'ProtocolViolation', error: 'bad frame' });
      assert.equal(h.actor.getSnapshot().context.state, 'backoff');
    }
    // Three within the window ban.
    for (let i = 0; i < 2; i++) {
      h.clock.advance(h.actor.getSnapshot().context.nextDelayMs ?? 0);
      connectCurrent(h);
      h.current().send({ type: 'link.failed', reason: 'ProtocolViolation', error: 'bad frame' });
    }
    const context = h.actor.getSnapshot().context;
    assert.equal(context.state, 'banned');
    assert.equal(context.reason, 'PeerBanned');
    assert.match(context.error ?? '', /protocol violations/);
  });

  it('hands the disconnect history to a replaceable policy', () => {
    const seen: Array<{ reason: string; history: string[] }> = [];
    const h = startScripted(outbound, {
      reconnectPolicy: (facts) => {
        seen.push({ reason: facts.reason, history: facts.history.map((record) => record.reason) });
        return facts.history.length >= 2 ? 'Never' : 'AllowImmediate';
      },
    });
    for (const reason of ['Timeout', 'Normal', 'NetworkRestructure'] as const) {
      connectCurrent(h);
      h.current().send({ type: 'link.failed', reason, error: reason });
      h.clock.advance(0);
    }
    assert.deepEqual(seen, [
      { reason: 'Timeout', history: [] },
      { reason: 'Normal', history: ['Timeout'] },
      { reason: 'NetworkRestructure', history: ['Timeout', 'Normal'] },
    ]);
    assert.equal(h.actor.getSnapshot().context.state, 'closed');
  });

  it('ends with Timeout when the link reports inactivity', () => {
    const h = startScripted(outbound);
    connectCurrent(h);
    h.current().send({ type: 'link.inactive' });
    assert.equal(h.actor.getSnapshot().context.state, 'disconnecting');
    assert.equal(h.actor.getSnapshot().context.error, 'inactivity timeout');
    h.actor.stop();
  });

  it('says goodbye with the reason on disconnect and closes once the link is closed', () => {
    const h = startScripted(outbound);
    connectCurrent(h);
    h.actor.send({ type: 'disconnect', reason: 'Normal', final: true });
    assert.equal(h.actor.getSnapshot().context.state, 'disconnecting');
    assert.deepEqual(h.current().commands, [{ type: 'link.goodbye', reason: 'Normal', duplicate: false }]);
    h.current().send({ type: 'link.closed' });
    assert.equal(h.actor.getSnapshot().status, 'done');
    assert.equal(h.actor.getSnapshot().context.state, 'closed');
    assert.equal(h.current().stopped, true);
  });

  it('forces the close after gracefulShutdownTimeout', () => {
    const h = startScripted(outbound);
    connectCurrent(h);
    h.actor.send({ type: 'disconnect', reason: 'Normal', final: true });
    h.clock.advance(DEFAULT_TIMEOUTS.gracefulShutdownTimeoutMs);
    assert.equal(h.actor.getSnapshot().context.state, 'closed');
    assert.equal(h.current().stopped, true);
  });

  it('records the remote goodbye reason; PeerBanned ends in Banned', () => {
    const h = startScripted(outbound);
    connectCurrent(h);
    h.current().send({ type: 'link.remoteGoodbye', reason: 'PeerBanned', duplicate: false });
    assert.equal(h.actor.getSnapshot().context.state, 'banned');
    assert.equal(h.actor.getSnapshot().context.reason, 'PeerBanned');
    assert.equal(h.actor.getSnapshot().status, 'done');
  });

  it('moves between Connected and Degraded on health verdicts', () => {
    const h = startScripted(outbound);
    connectCurrent(h);
    h.actor.send({ type: 'health.poor' });
    assert.equal(h.actor.getSnapshot().context.state, 'degraded');
    h.actor.send({ type: 'health.good' });
    assert.equal(h.actor.getSnapshot().context.state, 'connected');
    h.actor.stop();
  });

  it('ends with Timeout when a ping is lost', () => {
    const h = startScripted(outbound);
    connectCurrent(h);
    h.current().send({ type: 'link.pingLost' });
    assert.equal(h.actor.getSnapshot().context.state, 'disconnecting');
    assert.equal(h.actor.getSnapshot().context.reason, 'Timeout');
    h.actor.stop();
  });

  it('starts inbound connections at Handshaking and does not redial them', () => {
    const h = startScripted(inbound);
    assert.equal(h.actor.getSnapshot().context.state, 'handshaking');
    connectCurrent(h);
    h.current().send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
    assert.equal(h.actor.getSnapshot().context.state, 'closed');
    assert.equal(h.links.length, 1);
  });

  it('redials a promoted inbound connection as outbound', () => {
    const h = startScripted(inbound);
    connectCurrent(h);
    h.actor.send({ type: 'promote', kind: 'persistent', address: '127.0.0.1:4009' });
    h.current().send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
    assert.equal(h.actor.getSnapshot().context.state, 'backoff');
    h.actor.send({ type: 'peer.returned' });
    assert.equal(h.actor.getSnapshot().context.state, 'connecting');
    assert.deepEqual(h.current().input, { connectionId: 'i1', direction: 'outbound', address: '127.0.0.1:4009' });
    h.actor.stop();
  });

  it('closes a temporary connection for good and a duplicate without redial', () => {
    const temporary = startScripted({ ...outbound, kind: 'temporary' });
    connectCurrent(temporary);
    temporary.current().send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
    assert.equal(temporary.actor.getSnapshot().context.state, 'closed');

    const duplicate = startScripted(outbound);
    connectCurrent(duplicate);
    duplicate.current().send({ type: 'link.remoteGoodbye', reason: 'NetworkRestructure', duplicate: true });
    assert.equal(duplicate.actor.getSnapshot().context.state, 'closed');
  });

  it('never dials again after a self-connection', () => {
    const h = startScripted(outbound);
    h.current().send({ type: 'link.failed', reason: 'Normal', error: 'self', final: true });
    assert.equal(h.actor.getSnapshot().context.state, 'closed');
    h.clock.advance(3_600_000);
    assert.equal(h.links.length, 1);
  });

  it('reaches every state of the statechart', () => {
    const reached = new Set<string>();
    const walks: Array<(h: ReturnType<typeof startScripted>) => void> = [
      (h) => {
        connectCurrent(h);
        h.actor.send({ type: 'health.poor' });
        h.actor.send({ type: 'disconnect', reason: 'Normal', final: false });
        h.current().send({ type: 'link.closed' });
        h.clock.advance(0);
      },
      (h) => h.current().send({ type: 'link.failed', reason: 'PeerBanned', error: 'banned' }),
      (h) => {
        h.actor.send({ type: 'disconnect', reason: 'Normal', final: true });
        h.current().send({ type: 'link.closed' });
      },
    ];
    for (const walk of walks) {
      const h = startScripted(outbound);
      walk(h);
      for (const state of h.states) reached.add(state);
      h.actor.stop();
    }
    const declared = new Set<string>(['connecting', 'handshaking', 'connected', 'degraded', 'disconnecting', 'backoff', 'closed', 'banned']);
    assert.deepEqual([...reached].sort(), [...declared].sort());
    const machineStates = Object.keys(connectionMachine.root.states).concat(
      Object.keys(connectionMachine.root.states.live?.states ?? {}),
    );
    for (const state of declared) assert.ok(machineStates.includes(state), `${state} is a state of the machine`);
  });
});

const KNOWN: readonly (ConnectionState | null)[] = [
  'connecting',
  'handshaking',
  'connected',
  'degraded',
  'disconnecting',
  'backoff',
  'closed',
  'banned',
];

type Step =
  | { kind: 'link'; event: LinkEvent }
  | { kind: 'command'; command: 'disconnect' | 'poor' | 'good' | 'returned' }
  | { kind: 'advance'; ms: number };

const reasons = fc.constantFrom(
  'Normal' as const,
  'Timeout' as const,
  'ProtocolViolation' as const,
  'ResourceConstraint' as const,
  'PeerBanned' as const,
  'NetworkRestructure' as const,
);
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.constantFrom<Step>(
    { kind: 'link', event: { type: 'link.tcpConnected', remoteAddress: '127.0.0.1:1' } },
    { kind: 'link', event: { type: 'link.secured', peerId: 'pwx', listenAddresses: [] } },
    { kind: 'link', event: { type: 'link.ready' } },
    { kind: 'link', event: { type: 'link.pingLost' } },
    { kind: 'link', event: { type: 'link.inactive' } },
    { kind: 'link', event: { type: 'link.closed' } },
    { kind: 'link', event: { type: 'link.sample', rttMs: 1, score: 0.5, category: 'Fair' } },
    { kind: 'link', event: { type: 'link.sample', rttMs: null, score: 0.2, category: 'Poor' } },
    { kind: 'command', command: 'disconnect' },
    { kind: 'command', command: 'poor' },
    { kind: 'command', command: 'good' },
    { kind: 'command', command: 'returned' },
  ),
  reasons.map<Step>((reason) => ({ kind: 'link', event: { type: 'link.failed', reason, error: 'x' } })),
  fc.tuple(reasons, fc.boolean()).map<Step>(([reason, duplicate]) => ({
    kind: 'link',
    event: { type: 'link.remoteGoodbye', reason, duplicate },
  })),
  fc.integer({ min: 0, max: 400_000 }).map<Step>((ms) => ({ kind: 'advance', ms })),
);

describe('connection machine properties', () => {
  it('stays in a known state, dials nothing after a final state, and leaves no timer after stop', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(outbound, inbound, { ...outbound, kind: 'temporary' as const }),
        fc.array(step, { maxLength: 60 }),
        (input, steps) => {
          const h = startScripted(input, { random: Math.random });
          let linksAtFinal: number | undefined;
          for (const s of steps) {
            if (s.kind === 'link') h.links[h.links.length - 1]?.send(s.event);
            else if (s.kind === 'advance') h.clock.advance(s.ms);
            else if (s.command === 'disconnect') h.actor.send({ type: 'disconnect', reason: 'Normal', final: true });
            else if (s.command === 'poor') h.actor.send({ type: 'health.poor' });
            else if (s.command === 'good') h.actor.send({ type: 'health.good' });
            else h.actor.send({ type: 'peer.returned' });
            const snapshot = h.actor.getSnapshot();
            assert.ok(KNOWN.includes(snapshot.context.state), `unknown state ${String(snapshot.context.state)}`);
            // Past MAX_CONTEXT_FIELDS every XState copy of the context is a slow dictionary object.
            const fields = Object.keys(snapshot.context).length;
            assert.ok(fields <= MAX_CONTEXT_FIELDS, `${fields} context fields`);
            // Each state owns at most one timer (its timeout, the backoff delay or the stable
            // period); a timer that outlived its state would show up here as a second one.
            assert.ok(h.clock.pendingTimers <= 1, `${h.clock.pendingTimers} timers in ${String(snapshot.context.state)}`);
            if (snapshot.status === 'done') assert.equal(h.clock.pendingTimers, 0, 'a final state has no timer');
            const delay = snapshot.context.nextDelayMs;
            if (delay !== null) assert.ok(delay >= 0 && delay <= 300_000);
            if (snapshot.status === 'done') {
              linksAtFinal ??= h.links.length;
              assert.ok(h.links.every((link) => link.stopped), 'a final state holds no link');
            }
          }
          if (linksAtFinal !== undefined) {
            h.clock.advance(24 * 3_600_000);
            assert.equal(h.links.length, linksAtFinal, 'nothing dials after a final state');
          }
          h.actor.stop();
          assert.equal(h.clock.pendingTimers, 0, 'no timer outlives the actor');
          assert.ok(h.links.every((link) => link.stopped), 'no link outlives the actor');
        },
      ),
      { numRuns: 300 },
    );
  });

  it('grows the backoff exponent by one per failure and resets it only after a stable period (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }), (stableBeforeFailure) => {
        const h = startScripted(outbound, { random: Math.random });
        let expected = 0;
        for (const stable of stableBeforeFailure) {
          connectCurrent(h);
          h.clock.advance(stable ? DEFAULT_TIMEOUTS.stablePeriodMs : DEFAULT_TIMEOUTS.stablePeriodMs - 1);
          if (stable) expected = 0;
          h.current().send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
          const { attempt, nextDelayMs } = h.actor.getSnapshot().context;
          const ceiling = Math.min(DEFAULT_BACKOFF.capMs, DEFAULT_BACKOFF.baseMs * 2 ** expected);
          assert.ok(nextDelayMs !== null && nextDelayMs >= 0 && nextDelayMs <= ceiling, `delay ${nextDelayMs} within [0, ${ceiling}]`);
          expected += 1;
          assert.equal(attempt, expected);
          h.clock.advance(nextDelayMs);
        }
        h.actor.stop();
      }),
      { numRuns: 100 },
    );
  });

  it('runs an hour of virtual reconnect churn without waiting for it', () => {
    const h = startScripted(outbound, { random: Math.random });
    let elapsed = 0;
    while (elapsed < 3_600_000) {
      connectCurrent(h);
      h.current().send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
      const delay = h.actor.getSnapshot().context.nextDelayMs ?? 0;
      h.clock.advance(delay + 1_000);
      elapsed += delay + 1_000;
    }
    h.actor.stop();
    assert.ok(h.links.length > 10);
    assert.equal(h.clock.now() >= 3_600_000, true);
    assert.equal(h.clock.pendingTimers, 0);
  });
});

/**
 * The supervisor's policies composed in its actor (issue 4), in virtual time with scripted links:
 * admission and typed refusals, bans, eviction, the reaper, the pool, slots for redials.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createActor } from 'xstate';
import { DEFAULT_CONNECTION_POLICIES, withConnectionPolicies } from '../machines/connection.js';
import { VirtualClock } from '../streams/clock.js';
import { DEFAULT_SUPERVISOR_CONFIG, withSupervisorClock } from '../supervisor/supervisor-machine.js';
import type { SupervisorConfig, SupervisorEmitted } from '../supervisor/supervisor-machine.js';
import { metricsOf, peerStatusOf } from '../supervisor/status.js';
import { scriptedLinkLogic } from './support/scripted-link.js';
import type { ScriptedLink } from './support/scripted-link.js';

type ConfigOverrides = { [K in keyof SupervisorConfig]?: Partial<SupervisorConfig[K]> };

function startSupervisor(overrides: ConfigOverrides = {}, localPeerId = 'pwm') {
  const clock = new VirtualClock();
  const links: ScriptedLink[] = [];
  const connection = withConnectionPolicies({
    ...DEFAULT_CONNECTION_POLICIES,
    random: () => 0.5,
    now: () => clock.now(),
  }).provide({ actors: { link: scriptedLinkLogic(links) } });
  const config: SupervisorConfig = {
    limits: { ...DEFAULT_SUPERVISOR_CONFIG.limits, ...overrides.limits },
    reaper: { ...DEFAULT_SUPERVISOR_CONFIG.reaper, ...overrides.reaper },
    eviction: { ...DEFAULT_SUPERVISOR_CONFIG.eviction, ...overrides.eviction },
    banDurationMs: DEFAULT_SUPERVISOR_CONFIG.banDurationMs,
    violationBan: { ...DEFAULT_SUPERVISOR_CONFIG.violationBan, ...overrides.violationBan },
  };
  const actor = createActor(withSupervisorClock(() => clock.now()).provide({ actors: { connection } }), {
    systemId: 'supervisor',
    input: { localPeerId, config },
    clock,
  });
  const refusals: SupervisorEmitted[] = [];
  actor.on('refused', (event) => refusals.push(event));
  actor.start();
  const linkOf = (connectionId: string): ScriptedLink => {
    const link = links.filter((candidate) => candidate.input.connectionId === connectionId).at(-1);
    if (!link) throw new Error(`no link for ${connectionId}`);
    return link;
  };
  const up = (connectionId: string, peerId: string, listenAddresses: string[] = []): void => {
    const link = linkOf(connectionId);
    if (link.input.direction === 'outbound') link.send({ type: 'link.tcpConnected', remoteAddress: '10.0.0.1:1' });
    link.send({ type: 'link.secured', peerId, listenAddresses });
    link.send({ type: 'link.ready' });
  };
  const dial = (connectionId: string, address: string, kind: 'persistent' | 'temporary' = 'temporary') =>
    actor.send({ type: 'connect', connectionId, address, kind });
  const accept = (connectionId: string, remoteAddress: string) =>
    actor.send({ type: 'inbound', connectionId, remoteAddress });
  const context = () => actor.getSnapshot().context;
  const record = (connectionId: string) => context().connections[connectionId];
  const closeLink = (connectionId: string) => linkOf(connectionId).send({ type: 'link.closed' });
  return { actor, clock, links, linkOf, up, dial, accept, context, record, refusals, closeLink };
}

describe('admission', () => {
  it('refuses dials over maxOutbound and maxPending with the typed refusal, and dials nothing', () => {
    const s = startSupervisor({ limits: { maxOutbound: 2, maxPending: 1 } });
    s.dial('c1', '10.0.0.1:1');
    s.dial('c2', '10.0.0.2:1');
    assert.deepEqual(
      s.refusals.map((r) => [r.connectionId, r.refusal]),
      [['c2', 'TooManyPendingConnections']],
    );
    s.up('c1', 'pwa');
    s.dial('c3', '10.0.0.3:1');
    s.up('c3', 'pwb');
    s.dial('c4', '10.0.0.4:1');
    assert.deepEqual(s.refusals.at(-1), {
      type: 'refused',
      connectionId: 'c4',
      refusal: 'ConnectionLimitReached',
      detail: '2 outbound ≥ maxOutbound 2',
    });
    assert.equal(s.links.length, 2, 'refused dials never reach the network');
    assert.deepEqual(metricsOf(s.context(), s.clock.now()).refusals, {
      TooManyPendingConnections: 1,
      ConnectionLimitReached: 1,
    });
    s.actor.stop();
  });

  it('refuses a served address with AlreadyConnected only when reuse is false', () => {
    const s = startSupervisor();
    s.dial('c1', '10.0.0.1:1');
    s.up('c1', 'pwa');
    s.actor.send({ type: 'connect', connectionId: 'c2', address: '10.0.0.1:1', kind: 'temporary', reuse: false });
    assert.equal(s.refusals[0]?.refusal, 'AlreadyConnected');
    s.actor.send({ type: 'connect', connectionId: 'c3', address: '10.0.0.9:9', kind: 'temporary', peerId: 'pwa' });
    assert.equal(s.links.length, 1, 'lookup by peer ID finds the connection: nothing dialed');
    s.actor.stop();
  });

  it('a redial that would pass a limit waits for a freed slot instead of its timer', () => {
    const s = startSupervisor({ limits: { maxOutbound: 1 } });
    s.accept('i1', '10.0.0.1:50000');
    s.up('i1', 'pwa', ['10.0.0.1:4000']);
    // Made persistent and dialable: when it drops it redials as outbound.
    s.dial('c1', '10.0.0.1:4000', 'persistent');
    assert.equal(s.record('i1')?.kind, 'persistent');
    s.dial('c2', '10.0.0.2:4000', 'persistent');
    s.up('c2', 'pwb');
    s.linkOf('i1').send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
    assert.equal(s.record('i1')?.state, 'backoff');
    assert.notEqual(s.record('i1')?.waitTicket, null, 'no outbound slot: it waits');
    s.clock.advance(3_600_000);
    assert.equal(s.record('i1')?.state, 'backoff', 'its timer does not redial it');
    s.actor.send({ type: 'disconnect', peerId: 'pwb', reason: 'Normal' });
    assert.equal(s.record('i1')?.state, 'connecting', 'the freed slot resumes it');
    s.actor.stop();
  });
});

describe('bans', () => {
  it('refuses a banned IP before any link work, for dials and accepted sockets, until unbanned or expired', () => {
    const s = startSupervisor();
    s.actor.send({ type: 'ban', target: { ip: '10.0.0.7' }, durationMs: 60_000 });
    s.accept('i1', '10.0.0.7:5000');
    s.dial('c1', '10.0.0.7:4000');
    assert.deepEqual(
      s.refusals.map((r) => r.refusal),
      ['PeerBanned', 'PeerBanned'],
    );
    assert.equal(s.links.length, 0);
    s.actor.send({ type: 'unban', target: { ip: '10.0.0.7' } });
    s.dial('c2', '10.0.0.7:4000');
    assert.equal(s.links.length, 1);
    s.actor.send({ type: 'ban', target: { ip: '10.0.0.8' }, durationMs: 60_000 });
    s.clock.advance(60_000);
    s.accept('i2', '10.0.0.8:5000');
    assert.equal(s.links.length, 2, 'the ban expired');
    s.actor.stop();
  });

  it('disconnects a banned peer at once with PeerBanned, and refuses it when it comes back', () => {
    const s = startSupervisor();
    s.dial('c1', '10.0.0.1:4000', 'persistent');
    s.up('c1', 'pwa');
    s.actor.send({ type: 'ban', target: { peerId: 'pwa' } });
    assert.deepEqual(s.linkOf('c1').commands, [{ type: 'link.goodbye', reason: 'PeerBanned', duplicate: false }]);
    s.closeLink('c1');
    assert.equal(s.record('c1'), undefined);
    s.accept('i1', '10.0.0.2:5000');
    s.up('i1', 'pwa');
    assert.deepEqual(s.linkOf('i1').commands, [{ type: 'link.goodbye', reason: 'PeerBanned', duplicate: false }]);
    s.actor.stop();
  });

  it('bans an IP after repeated ProtocolViolations across connections', () => {
    const s = startSupervisor({ violationBan: { count: 3, windowMs: 600_000 } });
    for (const id of ['i1', 'i2', 'i3']) {
      s.accept(id, '10.0.0.66:5000');
      s.linkOf(id).send({ type: 'link.failed', reason: 'ProtocolViolation', error: 'bad bytes' });
      s.clock.advance(1_000);
    }
    s.accept('i4', '10.0.0.66:5001');
    assert.equal(s.refusals.at(-1)?.refusal, 'PeerBanned');
    assert.equal(s.context().counters.autoBans, 1);
    assert.ok(s.context().bans.byIp['10.0.0.66']);
    s.actor.stop();
  });
});

describe('eviction', () => {
  it('evicts the youngest of the largest netgroup with NetworkRestructure when inbound is full', () => {
    const s = startSupervisor({ limits: { maxInbound: 3 }, eviction: { protectByNetgroup: 0, protectByRtt: 0, protectByAge: 0 } });
    const peers: [string, string][] = [
      ['i1', '10.1.0.1:1'],
      ['i2', '10.1.0.2:1'],
      ['i3', '10.2.0.1:1'],
    ];
    for (const [id, address] of peers) {
      s.accept(id, address);
      s.up(id, `pw${id}`);
      s.clock.advance(1_000);
    }
    s.accept('i4', '10.3.0.1:1');
    assert.deepEqual(s.linkOf('i2').commands, [{ type: 'link.goodbye', reason: 'NetworkRestructure', duplicate: false }]);
    assert.ok(s.record('i4'), 'the newcomer is admitted');
    assert.equal(s.context().counters.evictions, 1);
    s.actor.stop();
  });

  it('never evicts a protected or persistent peer: the newcomer is refused instead', () => {
    const s = startSupervisor({ limits: { maxInbound: 2 } });
    s.accept('i1', '10.1.0.1:1');
    s.up('i1', 'pwa');
    s.accept('i2', '10.1.0.2:1');
    s.up('i2', 'pwb');
    s.actor.send({ type: 'protect', peerId: 'pwa', protected: true });
    s.actor.send({ type: 'protect', peerId: 'pwb', protected: true });
    s.accept('i3', '10.1.0.3:1');
    assert.equal(s.refusals.at(-1)?.refusal, 'ConnectionLimitReached');
    assert.deepEqual(s.linkOf('i1').commands, []);
    assert.deepEqual(s.linkOf('i2').commands, []);
    s.actor.stop();
  });
});

describe('reaper and pool', () => {
  it('closes an idle temporary connection with Normal after idleTimeout, and use refreshes lastActive', () => {
    const s = startSupervisor({ reaper: { idleTimeoutMs: 300_000 } });
    s.dial('c1', '10.0.0.1:1');
    s.up('c1', 'pwa');
    s.dial('c2', '10.0.0.2:1', 'persistent');
    s.up('c2', 'pwb');
    s.accept('i1', '10.0.0.3:5000');
    s.up('i1', 'pwc');
    const tick = (events: number, openStreams = 0) =>
      s.actor.send({ type: 'reaper.tick', usage: { c1: { openStreams, events }, c2: { openStreams: 0, events: 0 } } });
    s.clock.advance(200_000);
    tick(2); // a stream opened and closed since the last look
    assert.equal(s.record('c1')?.lastActiveMs, 200_000);
    s.clock.advance(200_000);
    tick(3, 1); // a stream is open: in use
    s.clock.advance(290_000);
    tick(4); // closed again
    s.clock.advance(299_999);
    tick(4);
    assert.deepEqual(s.linkOf('c1').commands, [], 'not idle for the whole idleTimeout yet');
    s.clock.advance(1);
    tick(4);
    assert.deepEqual(s.linkOf('c1').commands, [{ type: 'link.goodbye', reason: 'Normal', duplicate: false }]);
    assert.deepEqual(s.linkOf('c2').commands, [], 'persistent connections are kept');
    assert.deepEqual(s.linkOf('i1').commands, [], 'inbound connections are left to the remote');
    s.closeLink('c1');
    assert.equal(s.record('c1'), undefined);
    s.actor.stop();
  });

  it('keeps a released connection pooled for the pool TTL and reuses it when asked again', () => {
    const s = startSupervisor({ reaper: { poolTtlMs: 300_000, idleTimeoutMs: 10_000_000 } });
    s.dial('c1', '10.0.0.1:1');
    s.up('c1', 'pwa');
    s.actor.send({ type: 'release', peerId: 'pwa' });
    s.clock.advance(200_000);
    s.actor.send({ type: 'reaper.tick', usage: {} });
    s.dial('c2', '10.0.0.1:1');
    assert.equal(s.links.length, 1, 'reused from the pool');
    assert.equal(s.record('c1')?.releasedAtMs, null);
    s.actor.send({ type: 'release', peerId: 'pwa' });
    s.clock.advance(300_000);
    s.actor.send({ type: 'reaper.tick', usage: {} });
    assert.deepEqual(s.linkOf('c1').commands, [{ type: 'link.goodbye', reason: 'Normal', duplicate: false }]);
    s.actor.stop();
  });
});

describe('peer status', () => {
  it('maps connection states and the last end to connecting, connected, degraded, disconnected, failed', () => {
    const s = startSupervisor();
    s.dial('c1', '10.0.0.1:1');
    const status = () => peerStatusOf('pwa', s.context().connections[s.context().byPeer.pwa ?? 'c1'], null, false).status;
    assert.equal(status(), 'connecting');
    s.up('c1', 'pwa');
    assert.equal(status(), 'connected');
    s.actor.send({ type: 'connect', connectionId: 'cx', address: '10.0.0.1:1', kind: 'persistent' });
    s.linkOf('c1').send({ type: 'link.failed', reason: 'Timeout', error: 'reset' });
    assert.equal(status(), 'disconnected');
    assert.equal(peerStatusOf('pwa', undefined, 'Timeout', false).status, 'failed');
    assert.equal(peerStatusOf('pwa', undefined, 'Normal', false).status, 'disconnected');
    assert.equal(peerStatusOf('pwa', undefined, null, true).status, 'failed');
    s.actor.stop();
  });
});

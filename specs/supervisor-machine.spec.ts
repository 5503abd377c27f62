/**
 * The supervisor machine in virtual time with scripted links: lookup before dial, one connection
 * per peer on simultaneous open, AfterResourcesAvailable resumed oldest first, plain context.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createActor } from 'xstate';
import { DEFAULT_CONNECTION_POLICIES, withConnectionPolicies } from '../machines/connection.js';
import { VirtualClock } from '../streams/clock.js';
import { configureConnectionActors, DEFAULT_SAMPLE_FLUSH_MS } from '../supervisor/connection-actors.js';
import type { ConnectionSample } from '../supervisor/connection-actors.js';
import { supervisorMachine } from '../supervisor/supervisor-machine.js';
import { STALE_SWEEP_REMOVALS } from '../supervisor/tables.js';
import { scriptedLinkLogic } from './support/scripted-link.js';
import type { ScriptedLink } from './support/scripted-link.js';

function startSupervisor(localPeerId = 'pwm') {
  const clock = new VirtualClock();
  const links: ScriptedLink[] = [];
  const connection = withConnectionPolicies({ ...DEFAULT_CONNECTION_POLICIES, random: () => 0.5, now: () => clock.now() }).provide({
    actors: { link: scriptedLinkLogic(links) },
  });
  const actor = createActor(supervisorMachine.provide({ actors: { connection } }), {
    systemId: 'supervisor',
    input: { localPeerId },
    clock,
  }).start();
  const linkOf = (connectionId: string): ScriptedLink => {
    const link = links.filter((candidate) => candidate.input.connectionId === connectionId).at(-1);
    if (!link) throw new Error(`no link for ${connectionId}`);
    return link;
  };
  const up = (connectionId: string, peerId: string): void => {
    const link = linkOf(connectionId);
    if (link.input.direction === 'outbound') link.send({ type: 'link.tcpConnected', remoteAddress: '10.0.0.1:1' });
    link.send({ type: 'link.secured', peerId, listenAddresses: [] });
    link.send({ type: 'link.ready' });
  };
  const record = (connectionId: string) => actor.getSnapshot().context.connections[connectionId];
  return { actor, clock, links, linkOf, up, record };
}

describe('supervisor machine', () => {
  it('dials an address once however often it is asked, and keeps its context plain', () => {
    const s = startSupervisor();
    s.actor.send({ type: 'connect', connectionId: 'c1', address: '127.0.0.1:4001', kind: 'persistent' });
    s.actor.send({ type: 'connect', connectionId: 'c2', address: '127.0.0.1:4001', kind: 'persistent' });
    assert.equal(s.links.length, 1);
    assert.deepEqual(Object.keys(s.actor.getSnapshot().context.connections), ['c1']);
    s.up('c1', 'pwx');
    assert.equal(s.record('c1')?.state, 'connected');
    assert.equal(s.actor.getSnapshot().context.byPeer.pwx, 'c1');
    const context = s.actor.getSnapshot().context;
    assert.deepEqual(JSON.parse(JSON.stringify(context)), context);
    s.actor.stop();
  });

  it('keeps one connection per peer on simultaneous open, by the lower peer ID rule', () => {
    for (const [local, remote, kept] of [
      ['pwa', 'pwz', 'outbound'],
      ['pwz', 'pwa', 'inbound'],
    ] as const) {
      const s = startSupervisor(local);
      s.actor.send({ type: 'connect', connectionId: 'c1', address: '127.0.0.1:4001', kind: 'persistent' });
      s.actor.send({ type: 'inbound', connectionId: 'i1', remoteAddress: '127.0.0.1:50000' });
      s.up('c1', remote);
      s.up('i1', remote);
      const loser = kept === 'outbound' ? 'i1' : 'c1';
      const survivor = kept === 'outbound' ? 'c1' : 'i1';
      assert.deepEqual(s.linkOf(loser).commands, [{ type: 'link.goodbye', reason: 'NetworkRestructure', duplicate: true }]);
      assert.deepEqual(s.linkOf(survivor).commands, []);
      assert.equal(s.actor.getSnapshot().context.byPeer[remote], survivor);
      assert.equal(s.record(survivor)?.kind, 'persistent', 'the survivor inherits persistence');
      s.linkOf(loser).send({ type: 'link.closed' });
      assert.equal(s.record(loser), undefined, 'the duplicate is gone');
      s.actor.stop();
    }
  });

  it('resumes connections waiting on AfterResourcesAvailable, oldest first, as slots free', () => {
    const s = startSupervisor();
    for (const [id, port] of [['c1', 1], ['c2', 2], ['c3', 3], ['c4', 4]] as const) {
      s.actor.send({ type: 'connect', connectionId: id, address: `127.0.0.1:${4000 + port}`, kind: 'persistent' });
      s.up(id, `pw${id}`);
    }
    for (const id of ['c2', 'c1']) {
      s.linkOf(id).send({ type: 'link.failed', reason: 'ResourceConstraint', error: 'limit' });
      assert.equal(s.record(id)?.state, 'backoff');
    }
    s.clock.advance(3_600_000);
    assert.equal(s.record('c1')?.state, 'backoff', 'no timer resumes them');
    assert.equal(s.record('c2')?.state, 'backoff');

    s.actor.send({ type: 'disconnect', peerId: 'pwc3', reason: 'Normal' });
    s.linkOf('c3').send({ type: 'link.closed' });
    assert.equal(s.record('c2')?.state, 'connecting', 'c2 waited longest');
    assert.equal(s.record('c1')?.state, 'backoff');

    s.actor.send({ type: 'disconnect', peerId: 'pwc4', reason: 'Normal' });
    s.linkOf('c4').send({ type: 'link.closed' });
    assert.equal(s.record('c1')?.state, 'connecting');
    s.actor.stop();
  });

  it('batches ping samples into the tables once per flush, the latest per connection, and leaves no timer', () => {
    const s = startSupervisor();
    const seen: ConnectionSample[] = [];
    configureConnectionActors(s.actor, { onSample: (sample) => seen.push(sample) });
    for (const [id, port] of [['c1', 1], ['c2', 2]] as const) {
      s.actor.send({ type: 'connect', connectionId: id, address: `127.0.0.1:${4000 + port}`, kind: 'persistent' });
      s.up(id, `pw${id}`);
    }
    const snapshots: unknown[] = [];
    s.actor.subscribe((snapshot) => snapshots.push(snapshot));
    s.linkOf('c1').send({ type: 'link.sample', rttMs: 3, score: 0.9, category: 'Excellent' });
    s.linkOf('c1').send({ type: 'link.sample', rttMs: null, score: 0.4, category: 'Poor' });
    s.linkOf('c2').send({ type: 'link.sample', rttMs: 7, score: 0.8, category: 'Good' });
    assert.equal(seen.length, 3, 'onSample sees every sample at once');
    assert.equal(snapshots.length, 0, 'the supervisor takes no step per sample');
    assert.equal(s.record('c1')?.rttMs, null);
    s.clock.advance(DEFAULT_SAMPLE_FLUSH_MS - 1);
    assert.equal(s.record('c2')?.rttMs, null, 'not before the flush');
    s.clock.advance(1);
    assert.equal(snapshots.length, 1, 'one step for the whole batch');
    assert.deepEqual(
      [s.record('c1'), s.record('c2')].map((r) => [r?.rttMs, r?.healthScore, r?.healthCategory]),
      [
        [3, 0.4, 'Poor'], // a lost ping keeps the last RTT
        [7, 0.8, 'Good'],
      ],
    );
    // A sample of a connection that ends before the flush is dropped with it.
    s.linkOf('c2').send({ type: 'link.sample', rttMs: 9, score: 0.8, category: 'Good' });
    s.actor.send({ type: 'stopAll' });
    assert.equal(s.clock.pendingTimers, 0, 'the last connection gone, no flush is pending');
    s.actor.stop();
  });

  it('sweeps stale index entries once enough records were removed, not on every reaper tick', () => {
    const s = startSupervisor();
    const context = () => s.actor.getSnapshot().context;
    // An entry left under a key its record no longer carries (as a survivor handover can leave).
    context().byAddress['10.9.9.9:1'] = 'gone';
    const cycle = (index: number): void => {
      const id = `c${index}`;
      s.actor.send({ type: 'connect', connectionId: id, address: `127.0.0.1:${10_000 + index}`, kind: 'temporary' });
      s.up(id, `pw${index}`);
      s.actor.send({ type: 'disconnect', peerId: `pw${index}`, reason: 'Normal' });
      s.linkOf(id).send({ type: 'link.closed' });
    };
    for (let index = 0; index < STALE_SWEEP_REMOVALS - 1; index++) cycle(index);
    s.actor.send({ type: 'reaper.tick', usage: {} });
    assert.equal(context().removedSinceSweep, STALE_SWEEP_REMOVALS - 1);
    assert.equal(context().byAddress['10.9.9.9:1'], 'gone', 'no sweep before the threshold');
    assert.equal(Object.keys(context().byPeer).length, 0, 'a removed record takes its own entries along');
    cycle(STALE_SWEEP_REMOVALS);
    s.actor.send({ type: 'reaper.tick', usage: {} });
    assert.equal(context().byAddress['10.9.9.9:1'], undefined, 'swept');
    assert.equal(context().removedSinceSweep, 0);
    assert.deepEqual(context().byAddress, {});
    s.actor.stop();
  });
});

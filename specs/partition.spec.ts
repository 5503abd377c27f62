/**
 * A network partition between two hosts (issue 6 item 6): nodes A and B run in child processes in
 * two network namespaces this spec creates, joined by a veth pair; A holds a persistent connection
 * to B. The path is then cut both ways with iptables DROP, so no FIN or RST ever arrives and only
 * the ping can tell: A must find the connection dead with reason Timeout within
 * pingInterval + pingTimeout (DESIGN §4, ping pipeline), go to Backoff, keep failing its redials
 * while the cut lasts, and come back through Connecting → Handshaking → Connected once it heals.
 *
 * Times are the child's own supervisor clock: its transitions carry `t`, and the cut is bracketed
 * by asking the child for its clock just before. Where the machine does not allow namespaces
 * (not root, no `ip` or `iptables`), the suite is reported as skipped with the reason, never passed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { createNetnsPair, netnsAvailable, startNetnsNode } from './support/netns.js';
import type { NetnsNode, NetnsNodeOptions, NetnsPair } from './support/netns.js';
import type { NodeTransition } from './support/netns-node.js';

const PING_INTERVAL_MS = 1_000;
const PING_TIMEOUT_MS = 1_000;
/**
 * Slack on the detection bound, ms: the iptables commands of the cut run after the clock is read
 * (tens of ms), and timers on a shared 2-core machine fire late (TESTING.md).
 */
const TOLERANCE_MS = 500;
/** Guards against a hang, not waits: each wait ends as soon as its transition is reported. */
const GUARD_MS = 10_000;

const settings: Omit<NetnsNodeOptions, 'listen'> = {
  pingIntervalMs: PING_INTERVAL_MS,
  pingTimeoutMs: PING_TIMEOUT_MS,
  // Far beyond the ping bound, so that the ping is what finds the dead path.
  inactivityTimeoutMs: 60_000,
  // A dial into the cut hangs (its SYNs vanish): give up on it quickly.
  connectTimeoutMs: 1_000,
  handshakeTimeoutMs: 2_000,
  // The goodbye cannot cross the cut either.
  gracefulShutdownTimeoutMs: 500,
  backoffBaseMs: 250,
  backoffCapMs: 1_000,
};

const availability = await netnsAvailable();
/** Each test is skipped, with the reason, where namespaces are not available: a skip is counted and shown, never a pass. */
const skip = availability.ok ? false : `network namespaces are not available here: ${availability.why}`;

const isLive = (transition: NodeTransition): boolean => transition.to === 'connected' || transition.to === 'degraded';

describe('a partition between two hosts in network namespaces', () => {
  let pair: NetnsPair | undefined;
  let a: NetnsNode | undefined;
  let b: NetnsNode | undefined;
  /** Index in A's transitions where the cut began. */
  let cutIndex = 0;

  const nodes = (): { a: NetnsNode; b: NetnsNode; pair: NetnsPair } => {
    assert.ok(pair && a && b, 'the namespaces and both nodes are up');
    return { a, b, pair };
  };
  /** A's transitions of its connection to B. */
  const toB = (transition: NodeTransition): boolean => transition.peerId === nodes().b.peerId;

  before(async () => {
    if (!availability.ok) return;
    pair = await createNetnsPair();
    const created = pair;
    const [startedA, startedB] = await Promise.allSettled([
      startNetnsNode(created, 'a', { ...settings, listen: `${created.addresses.a}:0` }),
      startNetnsNode(created, 'b', { ...settings, listen: `${created.addresses.b}:0` }),
    ]);
    // Kept even when the other failed, so that `after` stops it.
    if (startedA.status === 'fulfilled') a = startedA.value;
    if (startedB.status === 'fulfilled') b = startedB.value;
    for (const started of [startedA, startedB]) if (started.status === 'rejected') throw started.reason;
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    const names = pair ? Object.values(pair.namespaces) : [];
    await pair?.destroy();
    if (names.length > 0) {
      const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
      for (const name of names) assert.ok(!left.includes(name), `namespace ${name} is deleted`);
    }
  });

  it('connects A to B as a persistent peer across the veth pair', { skip }, async () => {
    const { a, b, pair } = nodes();
    assert.ok(b.listenAddress.startsWith(`${pair.addresses.b}:`), `B listens inside its namespace (${b.listenAddress})`);
    const connecting = a.connect(b.listenAddress, 'persistent');
    // Awaited first: it fails with the transitions seen should the connect hang.
    const connected = await a.waitFor((t) => toB(t) && t.to === 'connected', 0, GUARD_MS);
    await connecting;
    assert.equal(connected.transition.kind, 'persistent');
    assert.equal(connected.transition.direction, 'outbound');
    const inbound = await b.waitFor((t) => t.peerId === a.peerId && t.to === 'connected', 0, GUARD_MS);
    assert.equal(inbound.transition.direction, 'inbound');
  });

  it(`finds the cut connection dead with Timeout within pingInterval + pingTimeout (+${TOLERANCE_MS} ms), then goes to Backoff`, { skip }, async (context) => {
    const { a, pair } = nodes();
    cutIndex = a.transitions.length;
    const cutAt = await a.now();
    await pair.cut();
    const dead = await a.waitFor(
      (t) => toB(t) && (t.from === 'connected' || t.from === 'degraded') && !isLive(t),
      cutIndex,
      GUARD_MS,
    );
    assert.ok(dead.transition.to === 'disconnecting' || dead.transition.to === 'backoff', `left for ${dead.transition.to}`);
    assert.equal(dead.transition.reason, 'Timeout');
    const elapsedMs = dead.transition.t - cutAt;
    context.diagnostic(`found dead ${elapsedMs.toFixed(0)} ms after the cut (bound ${PING_INTERVAL_MS + PING_TIMEOUT_MS} ms)`);
    assert.ok(
      elapsedMs <= PING_INTERVAL_MS + PING_TIMEOUT_MS + TOLERANCE_MS,
      `dead after ${elapsedMs.toFixed(0)} ms, bound ${PING_INTERVAL_MS + PING_TIMEOUT_MS} + ${TOLERANCE_MS} ms`,
    );
    // Only an unanswered ping can reveal a silent cut: nothing can end it before a ping timed out.
    assert.ok(elapsedMs >= PING_TIMEOUT_MS - TOLERANCE_MS, `dead after ${elapsedMs.toFixed(0)} ms: too soon for a ping timeout`);

    const backoff = await a.waitFor((t) => toB(t) && t.to === 'backoff', dead.index, GUARD_MS);
    assert.equal(backoff.transition.reason, 'Timeout');
    assert.equal(backoff.transition.kind, 'persistent');
    assert.equal(backoff.transition.connectionId, dead.transition.connectionId);
  });

  it('keeps failing its redials while the cut lasts', { skip }, async () => {
    const { a } = nodes();
    // Two redials that ended in Backoff again, each after a dial into the cut (a few seconds).
    const redialed = (t: NodeTransition): boolean => toB(t) && t.from === 'connecting' && t.to === 'backoff';
    const first = await a.waitFor(redialed, cutIndex, GUARD_MS);
    const second = await a.waitFor(redialed, first.index + 1, GUARD_MS);
    assert.equal(first.transition.reason, 'Timeout');
    assert.equal(second.transition.reason, 'Timeout');
    assert.ok(second.transition.attempt > first.transition.attempt, 'each failed redial counts an attempt');
    const sinceCut = a.transitions.slice(cutIndex, second.index + 1).filter(toB);
    assert.ok(
      sinceCut.every((t) => t.to !== 'handshaking' && !isLive(t)),
      `no redial got through the cut: ${sinceCut.map((t) => t.to).join(', ')}`,
    );
  });

  it('reconnects through Connecting → Handshaking → Connected when the cut heals', { skip }, async () => {
    const { a, b, pair } = nodes();
    const healIndex = a.transitions.length;
    const bHealIndex = b.transitions.length;
    await pair.heal();
    const connected = await a.waitFor((t) => toB(t) && t.to === 'connected', healIndex, GUARD_MS);
    assert.equal(connected.transition.from, 'handshaking');
    assert.equal(connected.transition.kind, 'persistent');
    const path = a.transitions.slice(healIndex, connected.index + 1).filter(toB);
    const handshaking = path.findLastIndex((t) => t.to === 'handshaking');
    assert.ok(handshaking >= 0, `reached Handshaking: ${path.map((t) => t.to).join(', ')}`);
    assert.equal(path[handshaking]?.from, 'connecting');
    const inbound = await b.waitFor((t) => t.peerId === a.peerId && t.to === 'connected', bHealIndex, GUARD_MS);
    assert.equal(inbound.transition.direction, 'inbound');
  });
});

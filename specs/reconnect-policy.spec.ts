/**
 * The reconnect policy (DESIGN §2 table and connection kinds) and full-jitter backoff bounds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_BACKOFF, DEFAULT_STRATEGIES, defaultReconnectPolicy, fullJitterBackoffMs } from '../streams/reconnect.js';
import type { DisconnectReason } from '../transport/disconnect-reason.js';

const reasons: DisconnectReason[] = ['Normal', 'Timeout', 'ProtocolViolation', 'ResourceConstraint', 'PeerBanned', 'NetworkRestructure'];

describe('defaultReconnectPolicy', () => {
  it('follows the DESIGN §2 table for dialable persistent peers', () => {
    assert.deepEqual(
      Object.fromEntries(reasons.map((reason) => [reason, defaultReconnectPolicy({ reason, history: [], kind: 'persistent', dialable: true, final: false })])),
      {
        Normal: 'AllowImmediate',
        Timeout: 'WithBackoff',
        ProtocolViolation: 'WithBackoff',
        ResourceConstraint: 'AfterResourcesAvailable',
        PeerBanned: 'Never',
        NetworkRestructure: 'AllowImmediate',
      },
    );
    assert.deepEqual(DEFAULT_STRATEGIES.PeerBanned, 'Never');
  });

  it('never redials temporary, undialable (inbound) or final connections', () => {
    for (const reason of reasons) {
      assert.equal(defaultReconnectPolicy({ reason, history: [], kind: 'temporary', dialable: true, final: false }), 'Never');
      assert.equal(defaultReconnectPolicy({ reason, history: [], kind: 'persistent', dialable: false, final: false }), 'Never');
      assert.equal(defaultReconnectPolicy({ reason, history: [], kind: 'persistent', dialable: true, final: true }), 'Never');
    }
  });
});

describe('no dial storm from immediate redials', () => {
  it('grants AllowImmediate only while the connection has been stable (attempt 0), then backs off', () => {
    for (const reason of ['Normal', 'NetworkRestructure'] as const) {
      const facts = { reason, history: [], kind: 'persistent' as const, dialable: true, final: false };
      assert.equal(defaultReconnectPolicy({ ...facts, attempt: 0 }), 'AllowImmediate');
      assert.equal(defaultReconnectPolicy(facts), 'AllowImmediate', 'policies built without attempt see 0');
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 1_000 }), (attempt) => {
          assert.equal(defaultReconnectPolicy({ ...facts, attempt }), 'WithBackoff');
        }),
      );
    }
  });
});

describe('fullJitterBackoffMs', () => {
  it('lies in [0, min(cap, base·factor^attempt)] (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200 }), fc.double({ min: 0, max: 0.999999, noNaN: true }), (attempt, r) => {
        const delay = fullJitterBackoffMs(attempt, DEFAULT_BACKOFF, () => r);
        const ceiling = Math.min(DEFAULT_BACKOFF.capMs, DEFAULT_BACKOFF.baseMs * 2 ** attempt);
        assert.ok(delay >= 0 && delay <= ceiling && delay <= DEFAULT_BACKOFF.capMs);
      }),
    );
  });

  it('grows its ceiling exponentially until the cap', () => {
    const top = (attempt: number): number => fullJitterBackoffMs(attempt, DEFAULT_BACKOFF, () => 0.999999);
    assert.equal(top(0), 999);
    assert.equal(top(1), 1_999);
    assert.equal(top(3), 7_999);
    assert.equal(top(30), 299_999);
  });
});

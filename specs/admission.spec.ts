/**
 * Admission limits (pure): a connection admitted by the policy never takes the counts past a limit.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { admitInbound, admitOutbound, DEFAULT_LIMITS } from '../supervisor/admission.js';
import type { AdmissionLimits, ConnectionCounts } from '../supervisor/admission.js';

const limitsArb: fc.Arbitrary<AdmissionLimits> = fc
  .record({ maxOutbound: fc.nat(20), maxInbound: fc.nat(200), extra: fc.nat(50), maxPending: fc.nat(40) })
  .map(({ maxOutbound, maxInbound, extra, maxPending }) => ({
    maxOutbound,
    maxInbound,
    maxTotal: Math.max(0, maxOutbound + maxInbound - extra),
    maxPending,
  }));
const countsArb: fc.Arbitrary<ConnectionCounts> = fc.record({ outbound: fc.nat(30), inbound: fc.nat(250), pending: fc.nat(60) });

describe('admission', () => {
  it('uses the DESIGN §6 defaults', () => {
    assert.deepEqual(DEFAULT_LIMITS, { maxOutbound: 8, maxInbound: 125, maxTotal: 133, maxPending: 32 });
  });

  it('refuses with the typed error that names the limit', () => {
    assert.deepEqual(admitOutbound({ outbound: 0, inbound: 0, pending: 0 }), { admit: true });
    assert.equal((admitOutbound({ outbound: 0, inbound: 0, pending: 32 }) as { refusal: string }).refusal, 'TooManyPendingConnections');
    assert.equal((admitOutbound({ outbound: 8, inbound: 0, pending: 0 }) as { refusal: string }).refusal, 'ConnectionLimitReached');
    assert.equal((admitOutbound({ outbound: 7, inbound: 126, pending: 0 }) as { refusal: string }).refusal, 'ConnectionLimitReached');
    assert.deepEqual(admitInbound({ outbound: 8, inbound: 125, pending: 0 }), { admit: 'afterEviction' });
    assert.equal((admitInbound({ outbound: 0, inbound: 0, pending: 32 }) as { refusal: string }).refusal, 'TooManyPendingConnections');
  });

  it('never admits past a limit (property)', () => {
    fc.assert(
      fc.property(countsArb, limitsArb, (counts, limits) => {
        if (admitOutbound(counts, limits).admit === true) {
          assert.ok(counts.pending + 1 <= limits.maxPending);
          assert.ok(counts.outbound + 1 <= limits.maxOutbound);
          assert.ok(counts.outbound + counts.inbound + 1 <= limits.maxTotal);
        }
        const inbound = admitInbound(counts, limits).admit;
        if (inbound === true) {
          assert.ok(counts.pending + 1 <= limits.maxPending);
          assert.ok(counts.inbound + 1 <= limits.maxInbound);
          assert.ok(counts.outbound + counts.inbound + 1 <= limits.maxTotal);
        }
        if (inbound === 'afterEviction') assert.ok(counts.inbound > 0, 'eviction needs an inbound connection to evict');
      }),
    );
  });
});

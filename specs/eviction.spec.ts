/**
 * Inbound eviction (pure, issue 4 item 4, after Bitcoin Core's SelectNodeToEvict): netgroups, each
 * protection step, the choice of the youngest of the largest netgroup, and properties: protected
 * peers never chosen, no netgroup lost needlessly, order-independent, result from the inputs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  DEFAULT_EVICTION_OPTIONS,
  EVICTION_DISCONNECT_REASON,
  inboundEvictionPool,
  selectInboundToEvict,
} from '../supervisor/eviction.js';
import type { EvictionCandidate, EvictionOptions } from '../supervisor/eviction.js';
import {
  hostOfRemoteAddress,
  LOOPBACK_NETGROUP,
  netgroupOf,
  netgroupOfRemoteAddress,
  UNPARSABLE_NETGROUP,
} from '../supervisor/netgroup.js';

/** No protection by rule: only the persistent/protected tags shield a candidate. */
const NO_RULES: EvictionOptions = { protectByNetgroup: 0, protectByRtt: 0, protectByAge: 0 };

function candidate(connectionId: string, remoteAddress: string, connectedAtMs: number, extra: Partial<EvictionCandidate> = {}): EvictionCandidate {
  return { connectionId, peerId: null, remoteAddress, connectedAtMs, rttMs: null, persistent: false, protected: false, ...extra };
}

describe('netgroupOf', () => {
  it('groups IPv4 by /16', () => {
    assert.equal(netgroupOf('10.1.2.3'), '10.1.0.0/16');
    assert.equal(netgroupOf('10.1.255.7'), '10.1.0.0/16');
    assert.equal(netgroupOf('10.2.2.3'), '10.2.0.0/16');
    assert.equal(netgroupOf('0.0.0.0'), '0.0.0.0/16');
  });

  it('groups IPv6 by /32, case and compression insensitive, zone ignored', () => {
    assert.equal(netgroupOf('2001:db8:1::5'), '2001:db8::/32');
    assert.equal(netgroupOf('2001:DB8:ffff:0:0:0:0:1'), '2001:db8::/32');
    assert.equal(netgroupOf('2001:0db8::'), '2001:db8::/32');
    assert.equal(netgroupOf('2001:db9::1'), '2001:db9::/32');
    assert.equal(netgroupOf('2001::1'), '2001::/32');
    assert.equal(netgroupOf('::2'), '::/32');
    assert.equal(netgroupOf('0:5::1'), '0:5::/32');
    assert.equal(netgroupOf('fe80::1%eth0'), 'fe80::/32');
  });

  it('groups IPv4-mapped IPv6 as the IPv4 address', () => {
    assert.equal(netgroupOf('::ffff:10.1.2.3'), '10.1.0.0/16');
    assert.equal(netgroupOf('::FFFF:0a01:0203'), '10.1.0.0/16');
    assert.equal(netgroupOf('0:0:0:0:0:ffff:10.1.9.9'), '10.1.0.0/16');
  });

  it('puts every loopback address in one group of its own', () => {
    for (const ip of ['127.0.0.1', '127.255.1.2', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) {
      assert.equal(netgroupOf(ip), LOOPBACK_NETGROUP, ip);
    }
  });

  it('puts every unparsable input in one group of its own, without throwing', () => {
    for (const bad of ['', 'example.com', '1.2.3', '01.2.3.4', '1.2.3.4%eth0', '256.1.1.1', ' 1.2.3.4', '1:2:3:4:5:6:7:8:9', '[::1]']) {
      assert.equal(netgroupOf(bad), UNPARSABLE_NETGROUP, JSON.stringify(bad));
    }
  });

  it('takes the host from host:port and [v6]:port', () => {
    assert.equal(hostOfRemoteAddress('10.1.2.3:4001'), '10.1.2.3');
    assert.equal(hostOfRemoteAddress('[2001:db8::1]:4001'), '2001:db8::1');
    assert.equal(hostOfRemoteAddress('2001:db8::1'), '2001:db8::1');
    assert.equal(hostOfRemoteAddress('10.1.2.3'), '10.1.2.3');
    assert.equal(netgroupOfRemoteAddress('[::ffff:10.1.2.3]:9'), '10.1.0.0/16');
    assert.equal(netgroupOfRemoteAddress('[2001:db8::1'), UNPARSABLE_NETGROUP);
  });

  it('never throws and always names a group (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.ipV4(), fc.ipV6(), fc.ipV4Extended()), (s) => {
        const g = netgroupOf(s);
        assert.ok(g.length > 0);
        assert.equal(netgroupOf(s), g);
      }),
    );
  });

  it('agrees with the /16 and /32 prefix of generated addresses (property)', () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        const [a, b] = ip.split('.');
        assert.equal(netgroupOf(ip), a === '127' ? LOOPBACK_NETGROUP : `${a}.${b}.0.0/16`);
        assert.equal(netgroupOf(`::ffff:${ip}`), netgroupOf(ip));
      }),
    );
  });
});

describe('selectInboundToEvict: steps', () => {
  it('uses the Core defaults and ends the evicted connection with NetworkRestructure', () => {
    assert.deepEqual(DEFAULT_EVICTION_OPTIONS, { protectByNetgroup: 4, protectByRtt: 8, protectByAge: 8 });
    assert.equal(EVICTION_DISCONNECT_REASON, 'NetworkRestructure');
  });

  it('returns undefined for no candidates or when all are tagged', () => {
    assert.equal(selectInboundToEvict([]), undefined);
    const tagged = [
      candidate('a', '10.1.0.1:1', 1, { persistent: true }),
      candidate('b', '10.1.0.2:1', 2, { protected: true }),
      candidate('c', '10.1.0.3:1', 3, { persistent: true, protected: true }),
    ];
    assert.equal(selectInboundToEvict(tagged, NO_RULES), undefined);
  });

  it('step 1: never picks a persistent or protected peer', () => {
    const cs = [
      candidate('old', '10.1.0.1:1', 1),
      candidate('young-persistent', '10.1.0.2:1', 9, { persistent: true }),
      candidate('young-protected', '10.1.0.3:1', 8, { protected: true }),
    ];
    assert.equal(selectInboundToEvict(cs, NO_RULES)?.connectionId, 'old');
  });

  it('step 2: protects one peer of each of the rarest netgroups, skipping netgroups a tagged peer holds', () => {
    const cs = [
      candidate('a', '10.1.0.1:1', 30),
      candidate('b', '10.2.0.1:1', 20),
      candidate('c', '10.3.0.1:1', 10),
    ];
    assert.equal(selectInboundToEvict(cs, NO_RULES)?.connectionId, 'a');
    // All three are equally rare; the name breaks the tie, so 10.1.0.0/16's peer is shielded.
    assert.equal(selectInboundToEvict(cs, { ...NO_RULES, protectByNetgroup: 1 })?.connectionId, 'b');
    assert.equal(selectInboundToEvict(cs, { ...NO_RULES, protectByNetgroup: 3 }), undefined);
    // A rarer netgroup goes first: 10.3 has one peer, 10.1 now has two.
    const crowded = [...cs, candidate('d', '10.1.0.2:1', 5)];
    assert.deepEqual(
      inboundEvictionPool(crowded, { ...NO_RULES, protectByNetgroup: 2 }).map((c) => c.connectionId),
      ['a', 'd'],
    );
    // Within a netgroup the longest-connected is the one shielded.
    assert.deepEqual(
      inboundEvictionPool(crowded, { ...NO_RULES, protectByNetgroup: 3 }).map((c) => c.connectionId),
      ['a'],
    );
    // 10.1.0.0/16 already has a persistent peer: its diversity is safe, so 10.2 is shielded instead.
    const held = [...cs, candidate('p', '10.1.0.9:1', 1, { persistent: true })];
    assert.deepEqual(
      inboundEvictionPool(held, { ...NO_RULES, protectByNetgroup: 1 }).map((c) => c.connectionId),
      ['a', 'c'],
    );
  });

  it('step 3: protects the lowest RTTs; an unmeasured RTT earns nothing', () => {
    const cs = [
      candidate('a', '10.1.0.1:1', 10, { rttMs: 50 }),
      candidate('b', '10.1.0.2:1', 20, { rttMs: 5 }),
      candidate('c', '10.1.0.3:1', 30, { rttMs: 7 }),
      candidate('d', '10.1.0.4:1', 40, { rttMs: null }),
    ];
    assert.equal(selectInboundToEvict(cs, NO_RULES)?.connectionId, 'd');
    assert.deepEqual(
      inboundEvictionPool(cs, { ...NO_RULES, protectByRtt: 2 }).map((c) => c.connectionId),
      ['a', 'd'],
    );
    assert.deepEqual(
      inboundEvictionPool(cs, { ...NO_RULES, protectByRtt: 10 }).map((c) => c.connectionId),
      ['d'],
    );
    // Equal RTTs: the connection ID decides.
    const tied = [candidate('y', '10.1.0.1:1', 1, { rttMs: 5 }), candidate('x', '10.1.0.2:1', 2, { rttMs: 5 })];
    assert.deepEqual(inboundEvictionPool(tied, { ...NO_RULES, protectByRtt: 1 }).map((c) => c.connectionId), ['y']);
  });

  it('step 4: protects the longest-connected', () => {
    const cs = [
      candidate('a', '10.1.0.1:1', 10),
      candidate('b', '10.1.0.2:1', 20),
      candidate('c', '10.1.0.3:1', 30),
    ];
    assert.deepEqual(inboundEvictionPool(cs, { ...NO_RULES, protectByAge: 2 }).map((c) => c.connectionId), ['c']);
    assert.equal(selectInboundToEvict(cs, { ...NO_RULES, protectByAge: 3 }), undefined);
  });

  it('treats negative, NaN and fractional counts as whole non-negative counts', () => {
    const cs = [candidate('a', '10.1.0.1:1', 10), candidate('b', '10.1.0.2:1', 20)];
    assert.equal(inboundEvictionPool(cs, { protectByNetgroup: -3, protectByRtt: Number.NaN, protectByAge: 1.9 }).length, 1);
    assert.equal(inboundEvictionPool(cs, { ...NO_RULES, protectByAge: Number.POSITIVE_INFINITY }).length, 0);
  });

  it('with the defaults, 20 candidates are all protected and a 21st makes one evictable', () => {
    const cs = Array.from({ length: 21 }, (_, i) => candidate(`c${String(i).padStart(2, '0')}`, `10.${i}.0.1:1`, i, { rttMs: 100 - i }));
    assert.equal(selectInboundToEvict(cs.slice(0, 20)), undefined);
    assert.equal(inboundEvictionPool(cs).length, 1);
    assert.ok(selectInboundToEvict(cs) !== undefined);
  });

  it('evicts the youngest of the largest netgroup, even when a smaller one is younger', () => {
    const cs = [
      candidate('a1', '10.1.0.1:1', 1),
      candidate('a2', '10.1.0.2:1', 5),
      candidate('a3', '10.1.0.3:1', 3),
      candidate('b1', '10.2.0.1:1', 90),
      candidate('b2', '10.2.0.2:1', 99),
      candidate('v6', '[2001:db8::1]:1', 100),
    ];
    assert.equal(selectInboundToEvict(cs, NO_RULES)?.connectionId, 'a2');
  });

  it('between equally large netgroups, picks the one with the youngest member; same time → smallest ID', () => {
    const cs = [
      candidate('a1', '10.1.0.1:1', 1),
      candidate('a2', '10.1.0.2:1', 50),
      candidate('b1', '[2001:db8::1]:1', 2),
      candidate('b2', '[2001:db8:7::2]:1', 60),
    ];
    assert.equal(selectInboundToEvict(cs, NO_RULES)?.connectionId, 'b2');
    const sameTime = [
      candidate('z', '10.1.0.1:1', 7),
      candidate('y', '10.1.0.2:1', 7),
      candidate('x', '[::ffff:10.2.0.1]:1', 7),
      candidate('w', '10.2.0.2:1', 7),
    ];
    assert.equal(selectInboundToEvict(sameTime, NO_RULES)?.connectionId, 'w');
  });

  it('counts protected peers in a netgroup\'s size, so it never drops a netgroup needlessly', () => {
    // 10.1 has three peers, two of them protected; 10.2 has two unprotected peers.
    const cs = [
      candidate('p1', '10.1.0.1:1', 1, { protected: true }),
      candidate('p2', '10.1.0.2:1', 2, { persistent: true }),
      candidate('a', '10.1.0.3:1', 3),
      candidate('b1', '10.2.0.1:1', 40),
      candidate('b2', '10.2.0.2:1', 50),
    ];
    assert.equal(selectInboundToEvict(cs, NO_RULES)?.connectionId, 'a');
    // The lone unprotected peer of a netgroup a protected peer shares is evicted before a lone one.
    const lone = [
      candidate('p', '10.1.0.1:1', 1, { protected: true }),
      candidate('shares', '10.1.0.2:1', 2),
      candidate('alone', '10.2.0.1:1', 99),
    ];
    assert.equal(selectInboundToEvict(lone, NO_RULES)?.connectionId, 'shares');
  });

  it('handles mixed address forms: mapped IPv6 shares the IPv4 netgroup, loopback and garbage group together', () => {
    const cs = [
      candidate('v4', '10.1.0.1:1', 1),
      candidate('mapped', '[::ffff:10.1.0.2]:1', 2),
      candidate('lo1', '127.0.0.1:1', 3),
      candidate('lo2', '[::1]:1', 4),
      candidate('lo3', '127.0.0.2:1', 5),
      candidate('junk', 'not an address', 100),
    ];
    assert.equal(selectInboundToEvict(cs, NO_RULES)?.connectionId, 'lo3');
    assert.equal(selectInboundToEvict(cs.slice(0, 2).concat(cs.slice(5)), NO_RULES)?.connectionId, 'mapped');
  });
});

// --- properties ---------------------------------------------------------------------------------

const port = fc.integer({ min: 1, max: 65535 });
/** Few netgroups, so that collisions, ties and crowded groups are common. */
const remoteAddressArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.nat(255), port).map(([b, c, p]) => `10.${b}.${c}.1:${p}`) },
  { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.nat(0xffff), port).map(([h, x, p]) => `[2001:db${h}::${x.toString(16)}]:${p}`) },
  { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.nat(255), port).map(([b, c, p]) => `[::ffff:10.${b}.${c}.9]:${p}`) },
  { weight: 1, arbitrary: fc.constantFrom('127.0.0.1:5', '[::1]:6', 'garbage', '[fe80::1%eth0]:7') },
);

const candidateArb: fc.Arbitrary<EvictionCandidate> = fc.record({
  connectionId: fc.string({ minLength: 1, maxLength: 4 }),
  peerId: fc.option(fc.string({ minLength: 4, maxLength: 4 }), { nil: null }),
  remoteAddress: remoteAddressArb,
  connectedAtMs: fc.nat(50),
  rttMs: fc.option(fc.nat(20), { nil: null }),
  persistent: fc.nat(4).map((n) => n === 0),
  protected: fc.nat(4).map((n) => n === 0),
});

const candidatesArb = fc.uniqueArray(candidateArb, { maxLength: 40, selector: (c) => c.connectionId });

const optionsArb: fc.Arbitrary<Partial<EvictionOptions>> = fc.oneof(
  fc.constant({}),
  fc.constant(NO_RULES),
  fc.record({ protectByNetgroup: fc.nat(6), protectByRtt: fc.nat(10), protectByAge: fc.nat(10) }, { requiredKeys: [] }),
);

describe('selectInboundToEvict: properties', () => {
  it('(1) never chooses a persistent or protected candidate', () => {
    fc.assert(
      fc.property(candidatesArb, optionsArb, (cs, options) => {
        const chosen = selectInboundToEvict(cs, options);
        if (chosen !== undefined) assert.ok(!chosen.persistent && !chosen.protected);
      }),
    );
  });

  it('(2) never loses a netgroup when another evictable choice would not, and picks from the largest', () => {
    fc.assert(
      fc.property(candidatesArb, optionsArb, (cs, options) => {
        const chosen = selectInboundToEvict(cs, options);
        const pool = inboundEvictionPool(cs, options);
        const size = (c: EvictionCandidate): number =>
          cs.filter((o) => netgroupOfRemoteAddress(o.remoteAddress) === netgroupOfRemoteAddress(c.remoteAddress)).length;
        if (chosen === undefined) return;
        if (pool.some((c) => size(c) > 1)) assert.ok(size(chosen) > 1, `${chosen.connectionId} is alone in its netgroup`);
        for (const c of pool) assert.ok(size(chosen) >= size(c));
        // Youngest of its netgroup among the evictable.
        for (const c of pool) {
          if (netgroupOfRemoteAddress(c.remoteAddress) === netgroupOfRemoteAddress(chosen.remoteAddress)) {
            assert.ok(chosen.connectedAtMs >= c.connectedAtMs);
          }
        }
      }),
    );
  });

  it('(2, tags only) with no rule protections, never loses a netgroup when an untagged choice would not', () => {
    fc.assert(
      fc.property(candidatesArb, (cs) => {
        const chosen = selectInboundToEvict(cs, NO_RULES);
        const untagged = cs.filter((c) => !c.persistent && !c.protected);
        const shares = (c: EvictionCandidate): boolean =>
          cs.some((o) => o !== c && netgroupOfRemoteAddress(o.remoteAddress) === netgroupOfRemoteAddress(c.remoteAddress));
        assert.equal(chosen === undefined, untagged.length === 0);
        if (chosen !== undefined && untagged.some(shares)) assert.ok(shares(chosen));
      }),
    );
  });

  it('(3) is deterministic and independent of input order', () => {
    fc.assert(
      fc.property(
        candidatesArb.chain((cs) => fc.tuple(fc.constant(cs), fc.shuffledSubarray(cs, { minLength: cs.length, maxLength: cs.length }))),
        optionsArb,
        ([cs, shuffled], options) => {
          const chosen = selectInboundToEvict(cs, options);
          assert.equal(selectInboundToEvict(cs, options), chosen);
          assert.equal(selectInboundToEvict(shuffled, options), chosen);
          assert.equal(selectInboundToEvict([...cs].reverse(), options), chosen);
          // Copies of the same data give the same connection.
          assert.equal(selectInboundToEvict(cs.map((c) => ({ ...c })), options)?.connectionId, chosen?.connectionId);
          assert.deepEqual(inboundEvictionPool(shuffled, options), inboundEvictionPool(cs, options));
        },
      ),
    );
  });

  it('(4) returns one of the inputs, or undefined only when every candidate is protected by tag or rule', () => {
    fc.assert(
      fc.property(candidatesArb, optionsArb, (cs, options) => {
        const chosen = selectInboundToEvict(cs, options);
        const pool = inboundEvictionPool(cs, options);
        assert.equal(chosen === undefined, pool.length === 0);
        if (chosen !== undefined) {
          assert.ok(cs.includes(chosen));
          assert.ok(pool.includes(chosen));
        }
        // The pool is a subset of the inputs, and protections shield at most what the options allow.
        for (const c of pool) assert.ok(cs.includes(c));
        const o = { ...DEFAULT_EVICTION_OPTIONS, ...options };
        const untagged = cs.filter((c) => !c.persistent && !c.protected).length;
        assert.ok(pool.length >= untagged - o.protectByNetgroup - o.protectByRtt - o.protectByAge);
      }),
    );
  });
});

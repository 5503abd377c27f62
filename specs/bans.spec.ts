/**
 * Ban list (DESIGN §3, issue 4 item 3): a ban holds from `ban()` until exactly `until`, `unban()`
 * lifts it, the listing shows only active bans, every spelling of an IP is one entry, and the
 * list survives a JSON round trip. Pure functions, times passed in: no clock, no sleeps.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  activeBans,
  ban,
  BanListFormatError,
  DEFAULT_BAN_DURATION_MS,
  emptyBans,
  findBan,
  isBanned,
  normalizeIp,
  parseBanList,
  pruneExpired,
  unban,
} from '../supervisor/bans.js';
import type { BanList, BanTarget } from '../supervisor/bans.js';

const HOUR = 60 * 60 * 1000;
const timeArb = fc.integer({ min: 0, max: 2 ** 40 });
const durationArb = fc.integer({ min: 1, max: 2 ** 32 });
const peerIdArb = fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'toString'));
const ipArb = fc.oneof(fc.ipV4(), fc.ipV6());
const targetArb: fc.Arbitrary<BanTarget> = fc.oneof(
  fc.record({ peerId: peerIdArb }),
  fc.record({ ip: ipArb }),
  fc.record({ peerId: peerIdArb, ip: ipArb }),
);
const banOpArb = fc.record({ target: targetArb, nowMs: timeArb, durationMs: durationArb, reason: fc.string({ maxLength: 8 }) });

/** A list built from a sequence of bans. */
function build(ops: readonly { target: BanTarget; nowMs: number; durationMs: number; reason: string }[]): BanList {
  return ops.reduce((list, op) => ban(list, op.target, op.nowMs, op.durationMs, op.reason), emptyBans());
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

describe('bans', () => {
  it('bans for 24 h by default (DESIGN §6) and by peer ID and IP at once', () => {
    const list = ban(emptyBans(), { peerId: 'QmA', ip: '10.0.0.1' }, 1000);
    assert.deepEqual(list, {
      byPeerId: { QmA: { until: 1000 + DEFAULT_BAN_DURATION_MS, reason: 'manual' } },
      byIp: { '10.0.0.1': { until: 1000 + DEFAULT_BAN_DURATION_MS, reason: 'manual' } },
    });
    assert.equal(DEFAULT_BAN_DURATION_MS, 24 * HOUR);
    assert.equal(isBanned(list, { peerId: 'QmA' }, 1000), true);
    assert.equal(isBanned(list, { ip: '10.0.0.1' }, 1000), true);
    assert.equal(isBanned(list, { peerId: 'QmB', ip: '10.0.0.2' }, 1000), false);
    // Either key is enough: a banned IP refuses a new peer ID, a banned peer ID any address.
    assert.equal(isBanned(list, { peerId: 'QmB', ip: '10.0.0.1' }, 1000), true);
    assert.equal(isBanned(list, { peerId: 'QmA', ip: '10.0.0.9' }, 1000), true);
    assert.deepEqual(findBan(list, { ip: '10.0.0.1' }, 5), { until: 1000 + DEFAULT_BAN_DURATION_MS, reason: 'manual' });
  });

  it('a ban holds until just before `until` and ends exactly at it (property)', () => {
    fc.assert(
      fc.property(targetArb, timeArb, durationArb, (target, nowMs, durationMs) => {
        const list = ban(emptyBans(), target, nowMs, durationMs, 'r');
        const until = nowMs + durationMs;
        assert.equal(isBanned(list, target, nowMs), true);
        assert.equal(isBanned(list, target, until - 1), true);
        assert.equal(isBanned(list, target, until), false);
        assert.equal(isBanned(list, target, until + 1), false);
      }),
    );
  });

  it('unban lifts the ban, whatever else is in the list (property)', () => {
    fc.assert(
      fc.property(fc.array(banOpArb, { maxLength: 20 }), targetArb, timeArb, (ops, target, nowMs) => {
        const list = ban(build(ops), target, nowMs, HOUR, 'x');
        const lifted = unban(list, target);
        assert.equal(isBanned(lifted, target, nowMs), false);
        if (target.peerId !== undefined) assert.equal(Object.hasOwn(lifted.byPeerId, target.peerId), false);
        if (target.ip !== undefined) assert.equal(Object.hasOwn(lifted.byIp, normalizeIp(target.ip) ?? ''), false);
      }),
    );
  });

  it('unban of an unknown target leaves the very same list', () => {
    const list = ban(emptyBans(), { peerId: 'QmA' }, 0, HOUR);
    assert.equal(unban(list, { peerId: 'QmB', ip: '1.1.1.1' }), list);
    assert.equal(unban(list, { ip: 'not an ip' }), list);
  });

  it('lists exactly the active bans, sorted (property)', () => {
    fc.assert(
      fc.property(fc.array(banOpArb, { maxLength: 30 }), timeArb, (ops, nowMs) => {
        const list = build(ops);
        const listing = activeBans(list, nowMs);
        const expectedPeers = Object.entries(list.byPeerId).filter(([, e]) => nowMs < e.until);
        const expectedIps = Object.entries(list.byIp).filter(([, e]) => nowMs < e.until);
        assert.equal(listing.length, expectedPeers.length + expectedIps.length);
        for (const line of listing) {
          assert.ok(nowMs < line.until);
          const target = line.by === 'peerId' ? { peerId: line.peerId } : { ip: line.ip };
          assert.equal(isBanned(list, target, nowMs), true);
        }
        for (let i = 1; i < listing.length; i++) {
          const [a, b] = [listing[i - 1], listing[i]];
          assert.ok(a !== undefined && b !== undefined);
          if (a.by === b.by) assert.ok(a.until <= b.until);
          else assert.ok(a.by === 'peerId' && b.by === 'ip');
        }
      }),
    );
  });

  it('a later ban keeps the later expiry: a short automatic ban never shortens a long one', () => {
    const long = ban(emptyBans(), { peerId: 'QmA' }, 0, 10 * HOUR, 'manual');
    assert.equal(ban(long, { peerId: 'QmA' }, HOUR, HOUR, 'auto'), long);
    const extended = ban(long, { peerId: 'QmA' }, HOUR, 20 * HOUR, 'auto');
    assert.deepEqual(extended.byPeerId, { QmA: { until: 21 * HOUR, reason: 'auto' } });
  });

  it('never mutates its input (property)', () => {
    fc.assert(
      fc.property(fc.array(banOpArb, { maxLength: 10 }), banOpArb, timeArb, (ops, op, nowMs) => {
        const list = deepFreeze(build(ops));
        const copy = structuredClone(list);
        // Frozen input: any write would throw in strict mode.
        ban(list, op.target, op.nowMs, op.durationMs, op.reason);
        unban(list, op.target);
        pruneExpired(list, nowMs);
        activeBans(list, nowMs);
        assert.deepEqual(list, copy);
      }),
    );
  });

  it('pruneExpired drops only expired entries and changes no answer (property)', () => {
    fc.assert(
      fc.property(fc.array(banOpArb, { maxLength: 30 }), timeArb, targetArb, fc.nat(2 ** 33), (ops, nowMs, probe, later) => {
        const list = build(ops);
        const pruned = pruneExpired(list, nowMs);
        assert.deepEqual(activeBans(pruned, nowMs), activeBans(list, nowMs));
        assert.equal(Object.keys(pruned.byPeerId).length + Object.keys(pruned.byIp).length, activeBans(list, nowMs).length);
        assert.equal(isBanned(pruned, probe, nowMs + later), isBanned(list, probe, nowMs + later));
        assert.equal(pruneExpired(pruned, nowMs), pruned);
      }),
    );
  });

  it('survives a JSON round trip, and parseBanList accepts it back (property)', () => {
    fc.assert(
      fc.property(fc.array(banOpArb, { maxLength: 20 }), (ops) => {
        const list = build(ops);
        const parsed: unknown = JSON.parse(JSON.stringify(list));
        assert.deepEqual(parsed, list);
        assert.deepEqual(parseBanList(parsed), list);
      }),
    );
  });

  it('parseBanList refuses bad data with a typed error naming the field', () => {
    const good = { byPeerId: { QmA: { until: 5, reason: 'x' } }, byIp: {} };
    assert.deepEqual(parseBanList(good), good);
    const bad: [unknown, RegExp][] = [
      [null, /expected an object/],
      [[], /expected an object/],
      [{ byPeerId: {} }, /missing field byIp/],
      [{ ...good, extra: 1 }, /unknown field extra/],
      [{ byPeerId: { QmA: { until: '5', reason: 'x' } }, byIp: {} }, /until: expected a finite number/],
      [{ byPeerId: { QmA: { until: null, reason: 'x' } }, byIp: {} }, /until: expected a finite number/],
      [{ byPeerId: { QmA: { until: 5 } }, byIp: {} }, /missing field reason/],
      [{ byPeerId: { '': { until: 5, reason: 'x' } }, byIp: {} }, /empty peer ID/],
      [{ byPeerId: {}, byIp: { 'not-an-ip': { until: 5, reason: 'x' } } }, /not an IP address/],
      [{ byPeerId: [], byIp: {} }, /byPeerId: expected an object/],
    ];
    for (const [value, message] of bad) {
      assert.throws(() => parseBanList(value), (e: unknown) => e instanceof BanListFormatError && e.code === 'BAN_LIST_FORMAT' && message.test(e.message));
    }
    // Stored IP keys are brought to canonical form.
    assert.deepEqual(parseBanList({ byPeerId: {}, byIp: { '::FFFF:10.0.0.1': { until: 5, reason: 'x' } } }).byIp, {
      '10.0.0.1': { until: 5, reason: 'x' },
    });
  });

  it('keys like __proto__ are ordinary peer IDs', () => {
    const list = ban(emptyBans(), { peerId: '__proto__' }, 0, HOUR);
    assert.equal(Object.getPrototypeOf(list.byPeerId), Object.prototype);
    assert.equal(isBanned(list, { peerId: '__proto__' }, 0), true);
    assert.equal(isBanned(emptyBans(), { peerId: 'constructor' }, 0), false);
    assert.equal(isBanned(unban(list, { peerId: '__proto__' }), { peerId: '__proto__' }, 0), false);
    assert.deepEqual(parseBanList(JSON.parse(JSON.stringify(list))), list);
  });

  it('refuses meaningless bans with RangeError', () => {
    assert.throws(() => ban(emptyBans(), {}, 0), RangeError);
    assert.throws(() => ban(emptyBans(), { peerId: '' }, 0), RangeError);
    assert.throws(() => ban(emptyBans(), { ip: '999.1.1.1' }, 0), RangeError);
    assert.throws(() => ban(emptyBans(), { peerId: 'QmA' }, 0, 0), RangeError);
    assert.throws(() => ban(emptyBans(), { peerId: 'QmA' }, 0, -5), RangeError);
    assert.throws(() => ban(emptyBans(), { peerId: 'QmA' }, 0, Number.NaN), RangeError);
    assert.throws(() => ban(emptyBans(), { peerId: 'QmA' }, 0, Number.POSITIVE_INFINITY), RangeError);
  });
});

describe('IP normalisation', () => {
  it('maps IPv4-mapped IPv6 to IPv4 and writes IPv6 in RFC 5952 form', () => {
    const cases: [string, string | null][] = [
      ['10.1.2.3', '10.1.2.3'],
      ['::ffff:10.1.2.3', '10.1.2.3'],
      ['::FFFF:10.1.2.3', '10.1.2.3'],
      ['::ffff:0a01:0203', '10.1.2.3'],
      ['0:0:0:0:0:ffff:a01:203', '10.1.2.3'],
      ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['::', '::'],
      ['::1', '::1'],
      ['fe80::1%eth0', 'fe80::1'],
      ['::10.1.2.3', '::a01:203'],
      ['1:2:3:4:5:6:10.1.2.3', '1:2:3:4:5:6:a01:203'],
      ['010.1.2.3', null],
      ['256.1.1.1', null],
      ['example.com', null],
      ['', null],
      ['1::2::3', null],
    ];
    for (const [input, expected] of cases) assert.equal(normalizeIp(input), expected, input);
  });

  it('agrees with the WHATWG URL serialiser on IPv6 and is idempotent (property)', () => {
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        const normal = normalizeIp(ip);
        assert.ok(normal !== null);
        assert.equal(normalizeIp(normal), normal);
        const viaUrl = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
        if (viaUrl.startsWith('::ffff:') && viaUrl.split(':').length === 5) {
          const [hi = 0, lo = 0] = viaUrl.slice(7).split(':').map((g) => Number.parseInt(g, 16));
          assert.equal(normal, `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`);
        } else {
          assert.equal(normal, viaUrl);
        }
      }),
    );
  });

  it('a ban on one spelling of an address holds for every spelling', () => {
    fc.assert(
      fc.property(fc.ipV4(), timeArb, (ip, nowMs) => {
        const list = ban(emptyBans(), { ip: `::ffff:${ip}` }, nowMs, HOUR);
        assert.equal(isBanned(list, { ip }, nowMs), true);
        assert.equal(isBanned(list, { ip: `::FFFF:${ip}` }, nowMs), true);
        assert.equal(isBanned(unban(list, { ip }), { ip: `::ffff:${ip}` }, nowMs), false);
      }),
    );
  });
});

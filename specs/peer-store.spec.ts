/**
 * Peer store (DESIGN §3, issue 4 item 8): per-peer addresses, last seen, bounded disconnect
 * history, score and ban; bounded size (least recently seen temporary peer evicted first,
 * persistent peers kept); JSON round trip; atomic save and load in a temporary directory, where a
 * corrupt file is set aside and reported and a crash mid-save never damages the real file.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_PEER_STORE_OPTIONS, PeerStore, PeerStoreFormatError } from '../supervisor/peer-store.js';
import type { PeerKind, PeerRecord } from '../supervisor/peer-store.js';
import { peerScore } from '../supervisor/peer-score.js';

const timeArb = fc.integer({ min: 0, max: 2 ** 40 });
const peerIdArb = fc.oneof(fc.string({ minLength: 1, maxLength: 10 }), fc.constantFrom('__proto__', 'constructor'));
const kindArb: fc.Arbitrary<PeerKind> = fc.constantFrom('persistent', 'temporary');
// JSON has no -0: normalise it so a round trip compares equal.
const finiteArb = fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => x + 0);
const recordArb: fc.Arbitrary<PeerRecord> = fc.record({
  peerId: peerIdArb,
  addresses: fc.uniqueArray(fc.string({ maxLength: 20 }), { maxLength: 4 }),
  lastSeenMs: fc.option(timeArb, { nil: null }),
  kind: kindArb,
  history: fc.array(fc.record({ reason: fc.string({ maxLength: 12 }), atMs: timeArb }), { maxLength: 5 }),
  score: finiteArb,
  bannedUntilMs: fc.option(timeArb, { nil: null }),
})
  // fast-check builds records without a prototype; the store's records are plain objects.
  .map((r) => ({ ...r, history: r.history.map((h) => ({ ...h })) }));
const recordsArb = fc.uniqueArray(recordArb, { maxLength: 15, selector: (r) => r.peerId });

/** A store holding exactly `records`, built through the public API only. */
function storeOf(records: readonly PeerRecord[]): PeerStore {
  const store = new PeerStore();
  for (const r of records) {
    store.upsert(r.peerId, { addresses: r.addresses, lastSeenMs: r.lastSeenMs, kind: r.kind, score: r.score, bannedUntilMs: r.bannedUntilMs });
    for (const h of r.history) store.recordDisconnect(r.peerId, h.reason, h.atMs);
  }
  return store;
}

function sortedById(records: readonly PeerRecord[]): PeerRecord[] {
  return [...records].sort((a, b) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0));
}

describe('peer store in memory', () => {
  it('creates a record on first use with the defaults', () => {
    const store = new PeerStore();
    assert.equal(store.get('QmA'), undefined);
    assert.deepEqual(store.upsert('QmA'), {
      peerId: 'QmA',
      addresses: [],
      lastSeenMs: null,
      kind: 'temporary',
      history: [],
      score: 0,
      bannedUntilMs: null,
    });
    assert.equal(store.size, 1);
    assert.deepEqual(DEFAULT_PEER_STORE_OPTIONS, { maxPeers: 10_000, maxHistory: 32, maxAddresses: 16 });
  });

  it('merges addresses, most recent first, without duplicates and bounded', () => {
    const store = new PeerStore({ maxAddresses: 3 });
    store.upsert('QmA', { addresses: ['/ip4/10.0.0.1/tcp/1', '/ip4/10.0.0.2/tcp/1'] });
    assert.deepEqual(store.upsert('QmA', { addresses: ['/ip4/10.0.0.2/tcp/1'] }).addresses, ['/ip4/10.0.0.2/tcp/1', '/ip4/10.0.0.1/tcp/1']);
    assert.deepEqual(store.recordSeen('QmA', 50, '/ip4/10.0.0.3/tcp/1').addresses, [
      '/ip4/10.0.0.3/tcp/1',
      '/ip4/10.0.0.2/tcp/1',
      '/ip4/10.0.0.1/tcp/1',
    ]);
    assert.deepEqual(store.upsert('QmA', { addresses: ['/ip4/10.0.0.4/tcp/1'] }).addresses, [
      '/ip4/10.0.0.4/tcp/1',
      '/ip4/10.0.0.3/tcp/1',
      '/ip4/10.0.0.2/tcp/1',
    ]);
  });

  it('updates only the fields given', () => {
    const store = new PeerStore();
    store.upsert('QmA', { kind: 'persistent', score: 0.75, bannedUntilMs: 900 });
    store.recordSeen('QmA', 100);
    const record = store.upsert('QmA', { score: 0.5 });
    assert.deepEqual(record, {
      peerId: 'QmA',
      addresses: [],
      lastSeenMs: 100,
      kind: 'persistent',
      history: [],
      score: 0.5,
      bannedUntilMs: 900,
    });
    assert.equal(store.upsert('QmA', { bannedUntilMs: null }).bannedUntilMs, null);
  });

  it('keeps the newest `maxHistory` disconnects, oldest first (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.constantFrom('Normal', 'Timeout', 'ProtocolViolation'), { maxLength: 80 }), (maxHistory, reasons) => {
        const store = new PeerStore({ maxHistory });
        reasons.forEach((reason, atMs) => store.recordDisconnect('QmA', reason, atMs));
        const history = store.get('QmA')?.history ?? [];
        const expected = reasons.map((reason, atMs) => ({ reason, atMs })).slice(-maxHistory);
        assert.deepEqual(history, expected);
      }),
    );
    const store = new PeerStore();
    for (let i = 0; i < 100; i++) store.recordDisconnect('QmA', 'Timeout', i);
    assert.equal(store.get('QmA')?.history.length, 32);
    assert.equal(store.get('QmA')?.history[0]?.atMs, 68);
  });

  it('hands out frozen records, so no caller can change the store behind its back', () => {
    const store = new PeerStore();
    store.recordDisconnect('QmA', 'Normal', 1);
    const record = store.get('QmA');
    assert.ok(record !== undefined);
    assert.ok(Object.isFrozen(record) && Object.isFrozen(record.addresses) && Object.isFrozen(record.history));
    assert.throws(() => (record.history as { reason: string; atMs: number }[]).push({ reason: 'x', atMs: 2 }), TypeError);
  });

  it('lists every peer and the persistent ones, sorted by peer ID', () => {
    const store = new PeerStore();
    store.upsert('QmC', { kind: 'persistent' });
    store.upsert('QmA');
    store.upsert('QmB', { kind: 'persistent' });
    assert.deepEqual(store.list().map((r) => r.peerId), ['QmA', 'QmB', 'QmC']);
    assert.deepEqual(store.persistentPeers().map((r) => r.peerId), ['QmB', 'QmC']);
    assert.equal(store.remove('QmB'), true);
    assert.equal(store.remove('QmB'), false);
    assert.deepEqual(store.persistentPeers().map((r) => r.peerId), ['QmC']);
  });

  it('refuses bad input with RangeError', () => {
    const store = new PeerStore();
    assert.throws(() => store.upsert(''), RangeError);
    assert.throws(() => store.upsert('QmA', { score: Number.NaN }), RangeError);
    assert.throws(() => store.upsert('QmA', { lastSeenMs: Number.POSITIVE_INFINITY }), RangeError);
    assert.throws(() => store.recordDisconnect('QmA', 'Normal', Number.NaN), RangeError);
    assert.throws(() => new PeerStore({ maxPeers: 0 }), RangeError);
    assert.throws(() => new PeerStore({ maxHistory: 1.5 }), RangeError);
    assert.equal(store.size, 0);
  });
});

describe('peer store size bound', () => {
  it('evicts the least recently seen temporary peer beyond the cap', () => {
    const store = new PeerStore({ maxPeers: 3 });
    store.recordSeen('QmOld', 10);
    store.recordSeen('QmMid', 20);
    store.upsert('QmSeed', { kind: 'persistent' }); // never seen, but persistent: kept
    store.recordSeen('QmNew', 30);
    assert.deepEqual(store.list().map((r) => r.peerId), ['QmMid', 'QmNew', 'QmSeed']);
    // A never-seen temporary peer counts as the oldest: a newcomer may be the one to go.
    store.upsert('QmUnseen');
    assert.deepEqual(store.list().map((r) => r.peerId), ['QmMid', 'QmNew', 'QmSeed']);
  });

  it('never exceeds the cap unless persistent peers alone exceed it, and never evicts a persistent peer (property)', () => {
    const opArb = fc.oneof(
      fc.record({ op: fc.constant('seen' as const), peer: fc.nat(30), atMs: timeArb }),
      fc.record({ op: fc.constant('kind' as const), peer: fc.nat(30), kind: kindArb }),
      fc.record({ op: fc.constant('disconnect' as const), peer: fc.nat(30), atMs: timeArb }),
      fc.record({ op: fc.constant('remove' as const), peer: fc.nat(30) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), fc.array(opArb, { maxLength: 120 }), (maxPeers, ops) => {
        const store = new PeerStore({ maxPeers });
        const persistent = new Set<string>();
        for (const step of ops) {
          const peerId = `Qm${step.peer}`;
          const before = new Map(store.list().map((r) => [r.peerId, r]));
          if (step.op === 'seen') store.recordSeen(peerId, step.atMs);
          else if (step.op === 'disconnect') store.recordDisconnect(peerId, 'Timeout', step.atMs);
          else if (step.op === 'remove') store.remove(peerId);
          else store.upsert(peerId, { kind: step.kind });
          if (step.op === 'remove') persistent.delete(peerId);
          else if (step.op === 'kind' && step.kind === 'persistent') persistent.add(peerId);
          else if (step.op === 'kind') persistent.delete(peerId);
          for (const p of persistent) assert.ok(store.get(p) !== undefined, `persistent ${p} evicted`);
          assert.ok(store.size <= Math.max(maxPeers, persistent.size));
          // Whoever went was a temporary peer seen no later than every temporary peer that stayed.
          const gone = [...before.values()].filter((r) => r.peerId !== peerId && store.get(r.peerId) === undefined);
          assert.ok(gone.length <= 1);
          for (const g of gone) {
            assert.equal(g.kind, 'temporary');
            for (const r of store.list()) {
              if (r.kind === 'temporary' && r.peerId !== peerId) assert.ok((g.lastSeenMs ?? -Infinity) <= (r.lastSeenMs ?? -Infinity));
            }
          }
        }
      }),
    );
  });

  it('holds 10,000 peers by default and no more', () => {
    const store = new PeerStore();
    for (let i = 0; i < 10_050; i++) store.recordSeen(`Qm${i}`, i);
    assert.equal(store.size, 10_000);
    assert.equal(store.get('Qm49'), undefined);
    assert.ok(store.get('Qm50') !== undefined);
  });
});

describe('peer store JSON', () => {
  it('round-trips through JSON (property)', () => {
    fc.assert(
      fc.property(recordsArb, (records) => {
        const store = storeOf(records);
        assert.deepEqual(store.list(), sortedById(records));
        const data: unknown = JSON.parse(JSON.stringify(store));
        assert.deepEqual(data, { version: 1, peers: sortedById(records) });
        assert.deepEqual(PeerStore.fromJSON(data).list(), store.list());
      }),
    );
  });

  it('checks the schema strictly, naming the bad field', () => {
    const record = { peerId: 'QmA', addresses: [], lastSeenMs: null, kind: 'temporary', history: [], score: 0, bannedUntilMs: null };
    const file = (r: unknown) => ({ version: 1, peers: [r] });
    const bad: [unknown, RegExp][] = [
      [null, /expected an object/],
      [[], /expected an object/],
      [{ version: 2, peers: [] }, /version: expected 1/],
      [{ version: 1 }, /missing field peers/],
      [{ version: 1, peers: {} }, /peers: expected an array/],
      [{ version: 1, peers: [], more: true }, /unknown field more/],
      [file(5), /peers\[0\]: expected an object/],
      [file({ ...record, peerId: '' }), /peerId: expected a non-empty string/],
      [file({ ...record, peerId: 7 }), /peerId: expected a non-empty string/],
      [file({ ...record, addresses: ['a', 3] }), /addresses\[1\]: expected a string/],
      [file({ ...record, lastSeenMs: '5' }), /lastSeenMs: expected a finite number or null/],
      [file({ ...record, kind: 'seed' }), /kind: expected/],
      [file({ ...record, history: [{ reason: 'Normal' }] }), /history\[0\]: missing field atMs/],
      [file({ ...record, history: [{ reason: 1, atMs: 1 }] }), /history\[0\].reason: expected a string/],
      [file({ ...record, score: null }), /score: expected a finite number/],
      [file({ ...record, bannedUntilMs: 'soon' }), /bannedUntilMs: expected a finite number or null/],
      [file({ ...record, colour: 'blue' }), /unknown field colour/],
      [file((({ score: _score, ...rest }) => rest)(record)), /missing field score/],
      [{ version: 1, peers: [record, record] }, /peers\[1\].peerId: duplicate/],
    ];
    for (const [value, message] of bad) {
      assert.throws(
        () => PeerStore.fromJSON(value),
        (e: unknown) => e instanceof PeerStoreFormatError && e.code === 'PEER_STORE_FORMAT' && message.test(e.message),
        JSON.stringify(value),
      );
    }
  });

  it('applies its own bounds to data written with larger ones', () => {
    const big = new PeerStore({ maxHistory: 10, maxAddresses: 10 });
    for (let i = 0; i < 5; i++) {
      big.recordSeen(`Qm${i}`, i, `/ip4/10.0.0.${i}/tcp/1`);
      big.recordSeen(`Qm${i}`, i, `/ip4/10.0.1.${i}/tcp/1`);
      for (let j = 0; j < 10; j++) big.recordDisconnect(`Qm${i}`, 'Timeout', j);
    }
    const small = PeerStore.fromJSON(big.toJSON(), { maxPeers: 3, maxHistory: 2, maxAddresses: 1 });
    assert.deepEqual(small.list().map((r) => r.peerId), ['Qm2', 'Qm3', 'Qm4']);
    assert.deepEqual(small.get('Qm4')?.addresses, ['/ip4/10.0.1.4/tcp/1']);
    assert.deepEqual(small.get('Qm4')?.history.map((h) => h.atMs), [8, 9]);
  });
});

describe('peer store file', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'peerwarden-peer-store-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  let n = 0;
  /** A fresh sub-directory per test, so leftover files of one test never meet another. */
  async function freshDir(): Promise<string> {
    const sub = join(dir, `t${n++}`);
    await mkdir(sub);
    return sub;
  }

  it('a missing file is an empty store and no problem', async () => {
    const { store, problem } = await PeerStore.loadFromFile(join(await freshDir(), 'peers.json'));
    assert.equal(store.size, 0);
    assert.equal(problem, undefined);
  });

  it('saves and loads back the same peers, leaving no temporary file (property)', async () => {
    const sub = await freshDir();
    const path = join(sub, 'peers.json');
    await fc.assert(
      fc.asyncProperty(recordsArb, async (records) => {
        const store = storeOf(records);
        await store.saveToFile(path);
        const { store: loaded, problem } = await PeerStore.loadFromFile(path);
        assert.equal(problem, undefined);
        assert.deepEqual(loaded.list(), store.list());
        assert.deepEqual(await readdir(sub), ['peers.json']);
      }),
      { numRuns: 30 },
    );
  });

  it('dials persistent peers again on start: they come back from the file', async () => {
    const path = join(await freshDir(), 'peers.json');
    const store = new PeerStore();
    store.upsert('QmSeed', { kind: 'persistent', addresses: ['/ip4/127.0.0.1/tcp/4001'] });
    store.recordSeen('QmPassing', 5, '/ip4/127.0.0.1/tcp/4002');
    await store.saveToFile(path);
    const { store: loaded } = await PeerStore.loadFromFile(path);
    assert.deepEqual(
      loaded.persistentPeers().map((r) => [r.peerId, r.addresses]),
      [['QmSeed', ['/ip4/127.0.0.1/tcp/4001']]],
    );
  });

  for (const [label, bytes, message] of [
    ['not JSON', '{"version":1,"peers":[', /not JSON/],
    ['valid JSON, wrong schema', '{"version":1,"peers":[{"peerId":""}]}', /missing field addresses/],
    ['empty', '', /not JSON/],
  ] as const) {
    it(`a corrupt file (${label}) is set aside and reported, never silently dropped`, async () => {
      const sub = await freshDir();
      const path = join(sub, 'peers.json');
      await writeFile(path, bytes);
      const { store, problem } = await PeerStore.loadFromFile(path, { nowMs: 1_700_000_000_000 });
      assert.equal(store.size, 0);
      assert.ok(problem !== undefined);
      assert.equal(problem.kind, 'corrupt');
      assert.match(problem.message, message);
      assert.equal(problem.setAsidePath, `${path}.corrupt-1700000000000`);
      // The bytes moved aside intact, and the original path no longer holds them.
      assert.equal(await readFile(problem.setAsidePath, 'utf8'), bytes);
      await assert.rejects(readFile(path), { code: 'ENOENT' });
      // The next save writes a good file and leaves the evidence alone.
      store.upsert('QmA');
      await store.saveToFile(path);
      assert.equal((await PeerStore.loadFromFile(path)).store.size, 1);
      assert.equal(await readFile(problem.setAsidePath, 'utf8'), bytes);
    });
  }

  it('a second corrupt file at the same moment does not overwrite the first one set aside', async () => {
    const path = join(await freshDir(), 'peers.json');
    await writeFile(path, 'first');
    const first = await PeerStore.loadFromFile(path, { nowMs: 42 });
    await writeFile(path, 'second');
    const second = await PeerStore.loadFromFile(path, { nowMs: 42 });
    assert.equal(first.problem?.setAsidePath, `${path}.corrupt-42`);
    assert.equal(second.problem?.setAsidePath, `${path}.corrupt-42-1`);
    assert.equal(await readFile(`${path}.corrupt-42`, 'utf8'), 'first');
    assert.equal(await readFile(`${path}.corrupt-42-1`, 'utf8'), 'second');
  });

  it('an unreadable file is reported and left in place', async () => {
    const path = join(await freshDir(), 'peers.json');
    await mkdir(path); // a directory where the file should be: reading fails with EISDIR
    const { store, problem } = await PeerStore.loadFromFile(path);
    assert.equal(store.size, 0);
    assert.equal(problem?.kind, 'unreadable');
    assert.equal(problem.setAsidePath, undefined);
    assert.deepEqual(await readdir(path), []);
  });

  it('a crash mid-save (a leftover .tmp- file) never corrupts the real file', async () => {
    const sub = await freshDir();
    const path = join(sub, 'peers.json');
    const store = new PeerStore();
    store.upsert('QmA', { kind: 'persistent', addresses: ['/ip4/127.0.0.1/tcp/1'] });
    await store.saveToFile(path);
    const saved = await readFile(path, 'utf8');
    // What a process killed between write and rename leaves behind: a half-written temporary file.
    const leftover = `${path}.tmp-0123456789abcdef`;
    await writeFile(leftover, saved.slice(0, Math.floor(saved.length / 2)));
    assert.equal(await readFile(path, 'utf8'), saved);
    const { store: loaded, problem } = await PeerStore.loadFromFile(path);
    assert.equal(problem, undefined);
    assert.deepEqual(loaded.list(), store.list());
    // Later saves still replace the real file whole and never touch the leftover.
    loaded.upsert('QmB');
    await loaded.saveToFile(path);
    assert.deepEqual((await PeerStore.loadFromFile(path)).store.list(), loaded.list());
    assert.deepEqual((await readdir(sub)).sort(), ['peers.json', 'peers.json.tmp-0123456789abcdef']);
  });

  it('a failed save throws, removes its temporary file and leaves the old file whole', async () => {
    const sub = await freshDir();
    const store = new PeerStore();
    store.upsert('QmA');
    await assert.rejects(store.saveToFile(join(sub, 'missing-dir', 'peers.json')), { code: 'ENOENT' });
    // Renaming over a directory fails after the temporary file was written.
    const blocked = join(sub, 'blocked.json');
    await mkdir(join(blocked, 'inside'), { recursive: true });
    await assert.rejects(store.saveToFile(blocked));
    assert.deepEqual((await readdir(sub)).sort(), ['blocked.json']);
    const path = join(sub, 'peers.json');
    await store.saveToFile(path);
    const before = await readFile(path, 'utf8');
    store.upsert('QmB');
    await assert.rejects(store.saveToFile(join(sub, 'nowhere', 'peers.json')));
    assert.equal(await readFile(path, 'utf8'), before);
  });

  it('concurrent saves each write a whole snapshot: the file is one of them', async () => {
    const sub = await freshDir();
    const path = join(sub, 'peers.json');
    const store = new PeerStore();
    const snapshots: PeerRecord[][] = [];
    const saves: Promise<void>[] = [];
    for (let i = 0; i < 8; i++) {
      store.recordSeen(`Qm${i}`, i);
      snapshots.push(store.list());
      saves.push(store.saveToFile(path));
    }
    await Promise.all(saves);
    const { store: loaded, problem } = await PeerStore.loadFromFile(path);
    assert.equal(problem, undefined);
    assert.ok(snapshots.some((s) => JSON.stringify(s) === JSON.stringify(loaded.list())));
    assert.deepEqual(await readdir(sub), ['peers.json']);
  });
});

describe('peer score', () => {
  it('is 0.5 without history, bounded in [0, 1], up with clean ends and down with failures', () => {
    assert.equal(peerScore([]), 0.5);
    const reason = fc.constantFrom('Normal', 'NetworkRestructure', 'Timeout', 'ProtocolViolation', 'PeerBanned', 'ResourceConstraint');
    fc.assert(
      fc.property(fc.array(reason.map((r) => ({ reason: r })), { maxLength: 40 }), (history) => {
        const score = peerScore(history);
        assert.ok(score > 0 && score < 1);
        assert.ok(peerScore([...history, { reason: 'Normal' }]) > score);
        assert.ok(peerScore([...history, { reason: 'Timeout' }]) < score);
      }),
    );
  });
});

/**
 * The supervisor's public API over real TCP on 127.0.0.1 (issue 4): concurrent connect() calls
 * share one dial, typed refusals, a banned IP refused before any handshake byte, a ban that
 * closes a connected peer at once, the status API, and the peer store across a restart.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import { createSupervisor } from '../index.js';
import type { Supervisor, SupervisorOptions } from '../index.js';
import {
  AlreadyConnected,
  ConnectionFailed,
  ConnectionLimitReached,
  PeerAddressUnknown,
  PeerBanned,
} from '../supervisor/errors.js';
import { failOnUncaught } from './support/crashes.js';

const fast: SupervisorOptions = {
  listen: '127.0.0.1:0',
  timeouts: { connectTimeoutMs: 2_000, handshakeTimeoutMs: 2_000, gracefulShutdownTimeoutMs: 500 },
  ping: { intervalMs: 200, timeoutMs: 2_000 },
  timeoutBackoff: { baseMs: 20, factor: 2, capMs: 200 },
};

async function started(options: SupervisorOptions = {}): Promise<Supervisor> {
  const supervisor = createSupervisor({ ...fast, ...options });
  await supervisor.start();
  return supervisor;
}

describe('supervisor API over real TCP', () => {
  failOnUncaught();

  it('shares one dial among 20 concurrent connect() calls: one socket, one handshake, one result', async () => {
    const a = await started();
    const b = await started();
    let accepted = 0;
    const counter = net.createServer((socket) => {
      accepted++;
      const upstream = net.connect(Number(b.listenAddress?.split(':')[1]), '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => counter.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(counter.address() as net.AddressInfo).port}`;
    try {
      const results = await Promise.all(Array.from({ length: 20 }, () => a.connect(address, { kind: 'temporary' })));
      assert.equal(new Set(results.map((r) => r.connectionId)).size, 1);
      assert.equal(accepted, 1, 'one TCP connection');
      assert.equal(a.getMetrics().dials, 1);
      assert.equal(a.getMetrics().handshakes, 1);
      await firstValueFrom(b.status$(a.peerId).pipe(filter((status) => status.status === 'connected')));
      assert.equal(b.getMetrics().handshakes, 1);
      await assert.rejects(a.connect(address, { reuse: false }), AlreadyConnected);
      // By peer ID, too.
      assert.equal((await a.connect(b.peerId)).connectionId, results[0]?.connectionId);
    } finally {
      await a.stop();
      await b.stop();
      await new Promise<void>((resolve) => counter.close(() => resolve()));
    }
  });

  it('raises the typed refusals: ConnectionLimitReached, PeerBanned, PeerAddressUnknown', async () => {
    const a = await started({ limits: { maxOutbound: 1 } });
    const b = await started();
    const c = await started();
    try {
      await a.connect(b.listenAddress as string);
      await assert.rejects(a.connect(c.listenAddress as string), ConnectionLimitReached);
      await assert.rejects(a.connect(c.peerId), PeerAddressUnknown);
      a.ban({ ip: '127.0.0.1' }, { durationMs: 60_000 });
      await assert.rejects(a.connect(c.listenAddress as string), PeerBanned);
      assert.throws(() => a.ban({ ip: 'not-an-ip' }), RangeError);
      assert.deepEqual(
        a.bans().map((entry) => entry.by),
        ['ip'],
      );
    } finally {
      await Promise.all([a.stop(), b.stop(), c.stop()]);
    }
  });

  it('refuses a banned IP before any handshake byte and closes a banned peer at once with PeerBanned', async () => {
    const a = await started();
    const b = await started();
    try {
      await a.connect(b.listenAddress as string);
      const reasonOnB = firstValueFrom(b.events$.pipe(filter((e) => e.to === 'closed' || e.to === 'banned')));
      a.ban({ peerId: b.peerId });
      assert.equal((await reasonOnB).reason, 'PeerBanned', 'the goodbye carries PeerBanned');
      await firstValueFrom(a.status$(b.peerId).pipe(filter((s) => s.status === 'failed')));
      assert.equal(a.getStatus(b.peerId).reason, 'PeerBanned');

      b.ban({ ip: '127.0.0.1' });
      const raw = net.connect(Number(b.listenAddress?.split(':')[1]), '127.0.0.1');
      const received: Buffer[] = [];
      raw.on('data', (chunk: Buffer) => received.push(chunk));
      raw.on('error', () => undefined);
      raw.write(Buffer.alloc(32, 1));
      await new Promise<void>((resolve) => raw.once('close', () => resolve()));
      assert.equal(Buffer.concat(received).length, 0, 'not one handshake byte came back');
      assert.equal(b.connections().length, 0);
      assert.equal(b.getMetrics().refusals.PeerBanned, 1);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('refuses an inbound socket over the limit before any handshake work when nobody may be evicted', async () => {
    const a = await started();
    // No protection by netgroup, RTT or age: with one inbound peer those would always shield it.
    const b = await started({
      limits: { maxInbound: 1, maxTotal: 1 },
      eviction: { protectByNetgroup: 0, protectByRtt: 0, protectByAge: 0 },
    });
    const c = await started();
    try {
      await a.connect(b.listenAddress as string, { kind: 'temporary' });
      await firstValueFrom(b.status$(a.peerId).pipe(filter((status) => status.status === 'connected')));
      b.protect(a.peerId);
      await assert.rejects(c.connect(b.listenAddress as string, { kind: 'temporary' }), ConnectionFailed);
      const raw = net.connect(Number(b.listenAddress?.split(':')[1]), '127.0.0.1');
      const received: Buffer[] = [];
      raw.on('data', (chunk: Buffer) => received.push(chunk));
      raw.on('error', () => undefined);
      await new Promise<void>((resolve) => raw.once('close', () => resolve()));
      assert.equal(Buffer.concat(received).length, 0, 'not one handshake byte came back');
      assert.equal(b.getMetrics().refusals.ConnectionLimitReached, 2);
      assert.equal(b.getStatus(a.peerId).status, 'connected', 'the protected peer stays');

      // Unprotected, the same newcomer evicts it with NetworkRestructure.
      b.protect(a.peerId, false);
      const evicted = firstValueFrom(a.events$.pipe(filter((e) => e.to === 'closed')));
      await c.connect(b.listenAddress as string, { kind: 'temporary' });
      assert.equal((await evicted).reason, 'NetworkRestructure');
      assert.equal(b.getMetrics().evictions, 1);
    } finally {
      await Promise.all([a.stop(), b.stop(), c.stop()]);
    }
  });

  it('status$ gives the current status first, then every change, and completes on stop()', async () => {
    const a = await started();
    const b = await started();
    const seen = firstValueFrom(a.status$(b.peerId).pipe(take(3), toArray()));
    await a.connect(b.listenAddress as string, { kind: 'temporary' });
    const statuses = (await seen).map((s) => s.status);
    assert.deepEqual(statuses, ['disconnected', 'connecting', 'connected']);
    const rest = firstValueFrom(a.status$(b.peerId).pipe(toArray()));
    await a.stop();
    assert.equal((await rest).at(-1)?.status, 'disconnected', 'completes after the Normal close');
    await b.stop();
  });

  it('keeps the peer store in a file and redials its persistent peers on start; a corrupt file is set aside', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'peerwarden-store-'));
    const path = join(dir, 'peers.json');
    const key = new Uint8Array(32).fill(7);
    const b = await started();
    try {
      const a = await started({ staticPrivateKey: key, peerStore: { path } });
      await a.connect(b.listenAddress as string, { kind: 'persistent' });
      await a.stop();

      const again = createSupervisor({ ...fast, staticPrivateKey: key, peerStore: { path } });
      const connected = firstValueFrom(again.events$.pipe(filter((e) => e.to === 'connected')));
      const report = await again.start();
      assert.equal(report.peerStoreProblem, undefined);
      assert.equal((await connected).peerId, b.peerId, 'the persistent peer is dialed again on start');
      const record = again.peerStore.get(b.peerId);
      assert.equal(record?.kind, 'persistent');
      assert.ok(record?.history.some((entry) => entry.reason === 'Normal'), 'the stop is in the history');
      await again.stop();

      await writeFile(path, '{"version": 1, "peers": [', 'utf8');
      const third = createSupervisor({ ...fast, staticPrivateKey: key, peerStore: { path } });
      const problem = (await third.start()).peerStoreProblem;
      assert.equal(problem?.kind, 'corrupt');
      assert.ok((await readdir(dir)).some((name) => name.startsWith('peers.json.corrupt-')), 'set aside, not dropped');
      await third.stop();
    } finally {
      await b.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a temporary connection that fails rejects connect() with ConnectionFailed', async () => {
    const a = await started();
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    try {
      await assert.rejects(a.connect(`127.0.0.1:${port}`, { kind: 'temporary' }), ConnectionFailed);
      assert.equal(a.getMetrics().endsByReason.Timeout, 1);
    } finally {
      await a.stop();
    }
  });

  it('settles many concurrent connect() calls: one connection per peer, and stop() rejects a call still waiting', async () => {
    const a = await started({ limits: { maxOutbound: 64, maxTotal: 64, maxPending: 64 } });
    const peers = await Promise.all(Array.from({ length: 30 }, () => started()));
    // Accepts and never speaks: a connect() to it is still in Handshaking when stop() comes.
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const calls = peers.flatMap((peer) => Array.from({ length: 10 }, () => a.connect(peer.listenAddress as string, { kind: 'temporary' })));
      const results = await Promise.all(calls);
      const byAddress = new Map<string, Set<string>>();
      for (const result of results) {
        const ids = byAddress.get(result.address as string) ?? new Set();
        ids.add(result.connectionId);
        byAddress.set(result.address as string, ids);
      }
      assert.equal(byAddress.size, peers.length);
      for (const ids of byAddress.values()) assert.equal(ids.size, 1, 'every call for a peer gets its one connection');
      assert.equal(a.getMetrics().dials, peers.length);
      const waiting = a.connect(`127.0.0.1:${(silent.address() as net.AddressInfo).port}`, { kind: 'temporary' });
      const settled = waiting.then(
        () => 'resolved',
        (error: unknown) => error,
      );
      await a.stop();
      assert.ok((await settled) instanceof ConnectionFailed, 'the waiting call is rejected when its connection ends');
    } finally {
      await Promise.all(peers.map((peer) => peer.stop()));
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

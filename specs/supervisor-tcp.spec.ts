/**
 * Two supervisors over real TCP on 127.0.0.1: connect, a stream echoing 1 MiB, ping RTT, the
 * peer's socket destroyed → Backoff → Connected again when the peer returns, and bad input that
 * closes one connection without touching another. Waits are on events, never on sleeps.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { describe, it } from 'node:test';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import { createSupervisor, SelfConnection } from '../index.js';
import type { ConnectionTransition, Supervisor, SupervisorOptions } from '../index.js';
import { ConnectionFailed } from '../supervisor/errors.js';
import { startTcpProxy } from './support/tcp-proxy.js';
import { readAll, sha256 } from './support/sockets.js';
import { failOnUncaught } from './support/crashes.js';

const ECHO = '/test/echo/1';

const fast: SupervisorOptions = {
  listen: '127.0.0.1:0',
  timeouts: { connectTimeoutMs: 2_000, handshakeTimeoutMs: 2_000, gracefulShutdownTimeoutMs: 500 },
  ping: { intervalMs: 100, timeoutMs: 2_000 },
  timeoutBackoff: { baseMs: 20, factor: 2, capMs: 200 },
};



async function echo(client: Supervisor, peerId: string, payload: Buffer): Promise<Buffer> {
  const stream = await client.openStream(peerId, ECHO);
  const reply = readAll(stream);
  stream.end(payload);
  return reply;
}

/** Resolves with the transitions of one connection up to and including the first that matches. */
function transitionsUntil(
  supervisor: Supervisor,
  matches: (event: ConnectionTransition) => boolean,
): Promise<ConnectionTransition[]> {
  const seen: ConnectionTransition[] = [];
  return firstValueFrom(
    supervisor.events$.pipe(
      filter((event) => {
        seen.push(event);
        return matches(event);
      }),
    ),
  ).then(() => seen);
}

function handleEcho(supervisor: Supervisor): void {
  supervisor.handle(ECHO, (stream) => stream.pipe(stream));
}

describe('two supervisors over real TCP', () => {
  failOnUncaught();

  it('connects, echoes 1 MiB on a stream, measures RTT, and reuses the connection', async () => {
    const a = createSupervisor(fast);
    const b = createSupervisor(fast);
    handleEcho(b);
    await Promise.all([a.start(), b.start()]);
    try {
      const rtt = firstValueFrom(a.rtt$.pipe(filter((sample) => sample.peerId === b.peerId)));
      const info = await a.connect(b.listenAddress as string);
      assert.equal(info.peerId, b.peerId);
      assert.equal(info.state, 'connected');
      assert.equal(info.direction, 'outbound');

      const payload = randomBytes(1024 * 1024);
      assert.equal(sha256(await echo(a, b.peerId, payload)), sha256(payload));
      assert.ok((await rtt).rttMs > 0, 'RTT is positive');

      const again = await Promise.all([a.connect(b.listenAddress as string), a.connect(b.listenAddress as string)]);
      assert.deepEqual(
        again.map((each) => each.connectionId),
        [info.connectionId, info.connectionId],
        'connect() again returns the existing connection',
      );
      assert.equal(a.connections().length, 1);
      assert.equal(b.getStatus(a.peerId).connection?.state, 'connected');
      assert.equal(b.getStatus(a.peerId).connection?.direction, 'inbound');
      assert.equal(b.getStatus(a.peerId).connection?.kind, 'temporary');

      // B asks for A as a persistent peer: the inbound connection it has, announced listen address
      // and all, is returned and made persistent; nothing is dialed.
      const inbound = b.getStatus(a.peerId).connection?.connectionId;
      const persistent = await b.connect(a.listenAddress as string, { kind: 'persistent' });
      assert.equal(persistent.connectionId, inbound);
      assert.equal(persistent.kind, 'persistent');
      assert.equal(persistent.address, a.listenAddress);
      assert.equal(b.connections().length, 1);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('keeps exactly one connection when two peers dial each other at once', async () => {
    for (let round = 0; round < 5; round++) {
      const a = createSupervisor(fast);
      const b = createSupervisor(fast);
      handleEcho(a);
      handleEcho(b);
      await Promise.all([a.start(), b.start()]);
      try {
        const [fromA, fromB] = await Promise.all([
          a.connect(b.listenAddress as string),
          b.connect(a.listenAddress as string),
        ]);
        assert.equal(fromA.peerId, b.peerId);
        assert.equal(fromB.peerId, a.peerId);
        const settled = async (node: Supervisor): Promise<void> => {
          if (node.connections().length === 1) return;
          await firstValueFrom(node.events$.pipe(filter(() => node.connections().length === 1)));
        };
        await Promise.all([settled(a), settled(b)]);
        const [onA] = a.connections();
        const [onB] = b.connections();
        // The lower peer ID's dial survives: outbound on the lower side, inbound on the higher.
        const lowerIsA = a.peerId < b.peerId;
        assert.equal(onA?.direction, lowerIsA ? 'outbound' : 'inbound');
        assert.equal(onB?.direction, lowerIsA ? 'inbound' : 'outbound');
        assert.equal(onA?.kind, 'persistent', 'the survivor keeps the peer persistent');
        assert.equal(onB?.kind, 'persistent');
        const payload = randomBytes(16 * 1024);
        assert.equal(sha256(await echo(a, b.peerId, payload)), sha256(payload));
        assert.equal(sha256(await echo(b, a.peerId, payload)), sha256(payload));
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    }
  });

  it('goes through Backoff when the peer socket is destroyed and is Connected again when the peer returns', async () => {
    const a = createSupervisor(fast);
    const b = createSupervisor(fast);
    handleEcho(b);
    await Promise.all([a.start(), b.start()]);
    const proxy = await startTcpProxy(b.listenAddress as string);
    try {
      await a.connect(proxy.address);
      const away = transitionsUntil(a, (event) => event.to === 'backoff');
      proxy.setDown(true);
      proxy.cut();
      const lost = (await away).at(-1);
      assert.equal(lost?.from, 'connected');
      assert.equal(lost?.reason, 'Timeout');

      // While the peer is away, redials fail (the proxy accepts, then hangs up) and back off again.
      const redial = await transitionsUntil(a, (event) => event.to === 'backoff');
      assert.deepEqual(redial.map((event) => event.to).slice(0, 1), ['connecting']);
      const back = transitionsUntil(a, (event) => event.to === 'connected');
      proxy.setDown(false);
      const path = (await back).map((event) => event.to);
      assert.deepEqual(path.slice(-3), ['connecting', 'handshaking', 'connected']);
      const status = a.getStatus(b.peerId).connection;
      assert.equal(status?.state, 'connected');
      assert.ok((status?.reconnects ?? 0) >= 1);

      const payload = randomBytes(64 * 1024);
      assert.equal(sha256(await echo(a, b.peerId, payload)), sha256(payload), 'streams work after the reconnect');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await proxy.close();
    }
  });

  it('finds a half-open connection by its inactivity timeout and reconnects', async () => {
    // Pings far apart, so only the inactivity check can notice the silence.
    const quiet: SupervisorOptions = { ...fast, ping: { intervalMs: 60_000, timeoutMs: 60_000 }, inactivityTimeoutMs: 400 };
    const a = createSupervisor(quiet);
    const b = createSupervisor(fast);
    await Promise.all([a.start(), b.start()]);
    const proxy = await startTcpProxy(b.listenAddress as string);
    try {
      await a.connect(proxy.address);
      const lost = transitionsUntil(a, (event) => event.to === 'backoff');
      proxy.stall();
      const path = await lost;
      assert.deepEqual(
        path.map((event) => [event.from, event.to, event.reason]),
        [
          ['connected', 'disconnecting', 'Timeout'],
          ['disconnecting', 'backoff', 'Timeout'],
        ],
      );
      await transitionsUntil(a, (event) => event.to === 'connected');
      assert.equal(a.getStatus(b.peerId).connection?.state, 'connected');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await proxy.close();
    }
  });

  it('closes connections that send garbage (ProtocolViolation, or Timeout for a stalled message) and leaves the others alone', async () => {
    const a = createSupervisor(fast);
    const b = createSupervisor(fast);
    handleEcho(b);
    await Promise.all([a.start(), b.start()]);
    try {
      await a.connect(b.listenAddress as string);
      const [host, port] = (b.listenAddress as string).split(':');
      const ends: ConnectionTransition[] = [];
      const twoEnded = firstValueFrom(
        b.events$.pipe(
          filter((event) => event.direction === 'inbound' && event.to === 'closed' && event.peerId === null),
          take(2),
          toArray(),
        ),
      );
      // A Noise message 1 too short to hold the ephemeral key: a protocol violation at once.
      const truncated = net.connect({ host: host as string, port: Number(port) });
      truncated.on('error', () => undefined);
      truncated.write(Buffer.concat([Buffer.from([0, 16]), randomBytes(16)]));
      // Random bytes: either malformed at once, or a length prefix that stalls until handshakeTimeout.
      const random = net.connect({ host: host as string, port: Number(port) });
      random.on('error', () => undefined);
      random.write(randomBytes(4096));
      ends.push(...(await twoEnded));
      const reasons = ends.map((event) => event.reason);
      assert.ok(reasons.includes('ProtocolViolation'), `a violation is named: ${reasons.join(',')}`);
      for (const reason of reasons) assert.ok(reason === 'ProtocolViolation' || reason === 'Timeout');
      await Promise.all(
        [truncated, random].map((socket) => new Promise<void>((resolve) => (socket.closed ? resolve() : socket.once('close', () => resolve())))),
      );

      assert.equal(a.getStatus(b.peerId).connection?.state, 'connected');
      const payload = randomBytes(32 * 1024);
      assert.equal(sha256(await echo(a, b.peerId, payload)), sha256(payload));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('carries the reason in the goodbye so both ends agree why the connection ended', async () => {
    for (const reason of ['Normal', 'ResourceConstraint', 'NetworkRestructure', 'PeerBanned'] as const) {
      const a = createSupervisor(fast);
      const b = createSupervisor(fast);
      await Promise.all([a.start(), b.start()]);
      try {
        await a.connect(b.listenAddress as string, { kind: 'temporary' });
        const endedOnB = transitionsUntil(b, (event) => event.to === 'closed' || event.to === 'banned');
        const endedOnA = transitionsUntil(a, (event) => event.to === 'closed' || event.to === 'banned');
        a.actor.send({ type: 'disconnect', peerId: b.peerId, reason });
        const [onA, onB] = [(await endedOnA).at(-1), (await endedOnB).at(-1)];
        assert.equal(onA?.reason, reason);
        assert.equal(onB?.reason, reason, `the remote records ${reason} as its own reason`);
        assert.equal(onB?.to, reason === 'PeerBanned' ? 'banned' : 'closed');
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    }
  });

  it('refuses to dial itself and never dials that address again', async () => {
    const a = createSupervisor(fast);
    await a.start();
    try {
      const transitions = a.events$.pipe(take(100), toArray());
      const collected = firstValueFrom(transitions);
      await assert.rejects(a.connect(a.listenAddress as string), ConnectionFailed);
      await assert.rejects(a.connect(a.listenAddress as string), SelfConnection);
      await a.stop();
      const dials = (await collected).filter((event) => event.to === 'connecting' && event.direction === 'outbound');
      assert.equal(dials.length, 1, 'one dial, no redial');
    } finally {
      await a.stop();
    }
  });

  it('leaves no socket, server or timer behind after stop()', async () => {
    const kinds = (): Record<string, number> => {
      const counts: Record<string, number> = {};
      for (const kind of process.getActiveResourcesInfo()) counts[kind] = (counts[kind] ?? 0) + 1;
      return counts;
    };
    const before = kinds();
    const a = createSupervisor(fast);
    const b = createSupervisor(fast);
    handleEcho(b);
    await Promise.all([a.start(), b.start()]);
    await a.connect(b.listenAddress as string);
    await echo(a, b.peerId, randomBytes(1024));
    const during = kinds();
    assert.ok((during.TCPSocketWrap ?? 0) >= 2 && (during.TCPServerWrap ?? 0) >= 2, 'resources were in use');
    await Promise.all([a.stop(), b.stop()]);
    const afterStop = kinds();
    for (const kind of ['TCPSocketWrap', 'TCPServerWrap', 'Timeout']) {
      assert.equal(afterStop[kind] ?? 0, before[kind] ?? 0, `${kind} count is back to where it was`);
    }
  });
});

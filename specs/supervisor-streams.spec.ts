/**
 * The reactive pipelines wired into supervisors (issue 5), over the in-memory transport in
 * virtual time: Degraded with hysteresis, Critical links replaced, message batching and outboxes,
 * app events (offline/online, background/foreground, peerDiscovered), metrics and subscriptions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import { Subject } from 'rxjs';
import { createSupervisor } from '../supervisor/create-supervisor.js';
import type { AppEvent, ConnectionTransition, PeerMessage, Supervisor, SupervisorOptions } from '../supervisor/create-supervisor.js';
import { OutboxFull } from '../streams/outbox.js';
import { VirtualClock } from '../streams/clock.js';
import { MemoryNetwork } from '../transport/memory.js';
import { defaultCrypto } from '../transport/noise/node-crypto.js';

const PORT = 4000;

interface World {
  readonly clock: VirtualClock;
  readonly network: MemoryNetwork;
  readonly nodes: Supervisor[];
  /** Every transition of every node, by node index. */
  readonly transitions: ConnectionTransition[][];
  address(i: number): string;
  settle(): Promise<void>;
  advance(ms: number, stepMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const BASE: SupervisorOptions = {
  crypto: defaultCrypto,
  timeouts: { connectTimeoutMs: 1_000, handshakeTimeoutMs: 1_000, gracefulShutdownTimeoutMs: 500 },
  ping: { intervalMs: 1_000, timeoutMs: 500 },
  inactivityTimeoutMs: 30_000,
  timeoutBackoff: { baseMs: 100, factor: 2, capMs: 1_000 },
  random: () => 0.5,
};

async function world(count: number, options: (i: number) => SupervisorOptions = () => ({})): Promise<World> {
  const clock = new VirtualClock();
  const network = new MemoryNetwork({ clock });
  const host = (i: number): string => `10.${i + 1}.0.1`;
  const nodes = Array.from({ length: count }, (_, i) =>
    createSupervisor({
      ...BASE,
      clock,
      transport: network.transport(host(i)),
      listen: `${host(i)}:${PORT}`,
      staticPrivateKey: new Uint8Array(32).fill(i + 11),
      ...options(i),
    }),
  );
  const transitions = nodes.map(() => [] as ConnectionTransition[]);
  nodes.forEach((node, i) => node.events$.subscribe((event) => transitions[i]?.push(event)));
  await Promise.all(nodes.map((node) => node.start()));
  const settle = async (): Promise<void> => {
    for (let round = 0; round < 6; round++) await clock.advanceAsync(0);
  };
  return {
    clock,
    network,
    nodes,
    transitions,
    address: (i) => `${host(i)}:${PORT}`,
    settle,
    async advance(ms, stepMs = 100) {
      for (let passed = 0; passed < ms; passed += stepMs) {
        await clock.advanceAsync(Math.min(stepMs, ms - passed));
        await settle();
      }
    },
    async stop() {
      let done = false;
      const stopping = Promise.all(nodes.map((node) => node.stop())).then(() => {
        done = true;
      });
      for (let round = 0; !done && round < 1_000; round++) await clock.advanceAsync(100);
      await stopping;
      assert.equal(network.connections().length, 0, 'no connection left');
      network.close();
      assert.equal(clock.pendingTimers, 0, 'no timer left');
    },
  };
}

/** Connects node `from` to node `to` and lets both ends settle. */
async function connect(w: World, from: number, to: number, kind: 'persistent' | 'temporary' = 'persistent'): Promise<void> {
  const done = (w.nodes[from] as Supervisor).connect(w.address(to), { kind });
  await w.settle();
  await done;
  await w.settle();
}

const node = (w: World, i: number): Supervisor => w.nodes[i] as Supervisor;

describe('health: Degraded with hysteresis, Critical replaced', () => {
  const health: SupervisorOptions['health'] = {
    latency: { goodMs: 20, badMs: 200 },
    referenceBytesPerSecond: 1_000_000,
    degradedAfter: 3,
    criticalLimitMs: 5_000,
  };

  it('goes Degraded after k Poor samples, back after k Good ones, and one slow ping never flaps it', async () => {
    const w = await world(2, () => ({ health }));
    let trickle: { stop(): void } | undefined;
    try {
      await connect(w, 0, 1);
      const peer = node(w, 1).peerId;
      // A trickle of application traffic: bandwidth is measured (and low), so latency decides.
      trickle = setTrickle(w, 0, peer);
      await w.advance(5_000);
      assert.equal(node(w, 0).getStatus(peer).status, 'connected');
      const states = (): string[] => (w.transitions[0] ?? []).map((t) => t.to);

      // One slow ping: a delay for a single ping round only.
      const before = states().length;
      // 150 ms each way: answered (within the 500 ms ping timeout) but slow, latency score 0.
      const slow = w.network.inject({ kind: 'delay', ms: 150 });
      await w.advance(1_000);
      slow();
      await w.advance(5_000);
      assert.deepEqual(states().slice(before), [], 'one slow ping changes nothing');

      const remove = w.network.inject({ kind: 'delay', ms: 150 });
      await w.advance(6_000);
      assert.equal(node(w, 0).getStatus(peer).status, 'degraded');
      assert.equal(node(w, 0).getStatus(peer).connection?.healthCategory, 'Poor');
      remove();
      await w.advance(6_000);
      assert.equal(node(w, 0).getStatus(peer).status, 'connected');
      const path = states().slice(before);
      assert.deepEqual(path, ['degraded', 'connected']);
    } finally {
      trickle?.stop();
      await w.stop();
    }
  });

  it('replaces a temporary connection Critical for longer than the limit with another known peer', async () => {
    const w = await world(3, () => ({ health }));
    let trickle: { stop(): void } | undefined;
    try {
      // Node 0 knows node 2 (it was connected once), then uses a temporary connection to node 1.
      await connect(w, 0, 2, 'temporary');
      await node(w, 0).disconnect(node(w, 2).peerId);
      await w.settle();
      await connect(w, 0, 1, 'temporary');
      const peer1 = node(w, 1).peerId;
      trickle = setTrickle(w, 0, peer1);
      await w.advance(3_000);
      // Pongs arrive after pingTimeout while other bytes still arrive: reliability falls, latency is bad.
      // 400 ms each way: every pong comes after the 500 ms timeout, while the trickle keeps arriving.
      w.network.inject({ kind: 'delay', ms: 400 }, (c) => c.listener === w.address(1));
      const replaced = firstValueFrom(
        node(w, 0).events$.pipe(filter((e) => e.peerId === peer1 && e.to === 'closed')),
      );
      await w.advance(30_000);
      const end = await replaced;
      assert.equal(end.reason, 'NetworkRestructure');
      await w.advance(2_000);
      assert.equal(node(w, 0).getStatus(node(w, 2).peerId).status, 'connected', 'node 2 is dialed in its place');
    } finally {
      trickle?.stop();
      await w.stop();
    }
  });
});

/** Sends a small message from node `from` to `peer` every 200 ms of virtual time. */
function setTrickle(w: World, from: number, peer: string): { stop(): void } {
  let timer: ReturnType<VirtualClock['setTimeout']> | undefined;
  const tick = (): void => {
    try {
      node(w, from).send(peer, new Uint8Array(8));
    } catch {
      // The link may be changing; the spec checks states, not this traffic.
    }
    timer = w.clock.setTimeout(tick, 200);
  };
  tick();
  return {
    stop: () => {
      if (timer !== undefined) w.clock.clearTimeout(timer);
    },
  };
}

describe('messages: batching, graceful close, outbox', () => {
  it('delivers 300 messages in order, flushing at 128 or after 50 ms', async () => {
    const w = await world(2, () => ({ batch: { maxBatch: 128, maxDelayMs: 50 } }));
    try {
      await connect(w, 0, 1);
      const peer = node(w, 1).peerId;
      const received: PeerMessage[] = [];
      node(w, 1).messages$.subscribe((m) => received.push(m));
      for (let i = 0; i < 300; i++) node(w, 0).send(peer, Uint8Array.of(i >> 8, i & 0xff));
      await w.settle();
      assert.equal(received.length, 256, 'two full batches went at once; 44 wait for the timer');
      await w.clock.advanceAsync(49);
      await w.settle();
      assert.equal(received.length, 256);
      await w.clock.advanceAsync(1);
      await w.settle();
      assert.equal(received.length, 300);
      assert.deepEqual(
        received.map((m) => ((m.message[0] ?? 0) << 8) | (m.message[1] ?? 0)),
        Array.from({ length: 300 }, (_, i) => i),
      );
      assert.ok(received.every((m) => m.peerId === node(w, 0).peerId));
    } finally {
      await w.stop();
    }
  });

  it('flushes pending messages before a graceful close', async () => {
    const w = await world(2);
    try {
      await connect(w, 0, 1);
      const received: PeerMessage[] = [];
      node(w, 1).messages$.subscribe((m) => received.push(m));
      for (let i = 0; i < 5; i++) node(w, 0).send(node(w, 1).peerId, Uint8Array.of(i));
      const closing = node(w, 0).disconnect(node(w, 1).peerId);
      await w.advance(1_000);
      await closing;
      assert.deepEqual(
        received.map((m) => m.message[0]),
        [0, 1, 2, 3, 4],
      );
    } finally {
      await w.stop();
    }
  });

  it('a graceful close towards a stalled peer still ends within the graceful shutdown bound', async () => {
    // Pings far apart, so nothing but the flush bound can end the wait within the 5 s looked at.
    const w = await world(2, () => ({ ping: { intervalMs: 120_000, timeoutMs: 60_000 }, inactivityTimeoutMs: 600_000 }));
    try {
      await connect(w, 0, 1);
      const peer = node(w, 1).peerId;
      w.network.inject({ kind: 'stall' });
      // 400 KiB: more than a yamux window, so the message stream cannot drain.
      for (let i = 0; i < 400; i++) node(w, 0).send(peer, new Uint8Array(1024));
      await w.advance(100);
      const stopped = node(w, 0).stop();
      await w.advance(5_000);
      let done = false;
      void stopped.then(() => {
        done = true;
      });
      await w.settle();
      assert.ok(done, 'stop() finished within the graceful shutdown bound of virtual time');
    } finally {
      await w.stop();
    }
  });

  it('keeps messages for a persistent peer in Backoff, sends them on reconnect, and rejects past the bound', async () => {
    const w = await world(2, (i) => (i === 0 ? { outbox: { maxMessages: 3 } } : {}));
    try {
      await connect(w, 0, 1);
      const peer = node(w, 1).peerId;
      const received: PeerMessage[] = [];
      node(w, 1).messages$.subscribe((m) => received.push(m));
      w.network.setDown(`10.2.0.1`, true);
      for (const c of w.network.connections()) c.reset();
      await w.settle();
      assert.equal(node(w, 0).getStatus(peer).connection?.state, 'backoff');
      for (let i = 0; i < 3; i++) node(w, 0).send(peer, Uint8Array.of(i));
      assert.throws(() => node(w, 0).send(peer, Uint8Array.of(9)), OutboxFull);
      w.network.setDown(`10.2.0.1`, false);
      await w.advance(3_000);
      assert.equal(node(w, 0).getStatus(peer).status, 'connected');
      assert.deepEqual(
        received.map((m) => m.message[0]),
        [0, 1, 2],
      );
    } finally {
      await w.stop();
    }
  });
});

describe('app events', () => {
  it('offline pauses dialing and backoff without counting failures; online redials at once', async () => {
    const events = new Subject<AppEvent>();
    const w = await world(2, (i) => (i === 0 ? { appEvents: events } : {}));
    try {
      await connect(w, 0, 1);
      const peer = node(w, 1).peerId;
      events.next({ type: 'offline' });
      for (const c of w.network.connections()) c.reset();
      await w.settle();
      const record = node(w, 0).getStatus(peer).connection;
      assert.equal(record?.state, 'backoff');
      const dials = node(w, 0).getMetrics().dials;
      await w.advance(3_600_000, 60_000);
      assert.equal(node(w, 0).getMetrics().dials, dials, 'no dial while offline');
      assert.equal(node(w, 0).getStatus(peer).connection?.attempt, 0, 'failures while offline are not counted');
      // A new connect() while offline waits too.
      events.next({ type: 'online' });
      await w.settle();
      assert.equal(node(w, 0).getMetrics().dials, dials + 1, 'online redials at once');
      await w.advance(500);
      assert.equal(node(w, 0).getStatus(peer).status, 'connected');
    } finally {
      events.complete();
      await w.stop();
    }
  });

  it('background stretches the ping interval and closes temporary connections; foreground restores', async () => {
    const events = new Subject<AppEvent>();
    const w = await world(3, (i) => (i === 0 ? { appEvents: events, backgroundPingFactor: 10 } : {}));
    try {
      await connect(w, 0, 1, 'persistent');
      await connect(w, 0, 2, 'temporary');
      const pings: number[] = [];
      node(w, 0).rtt$.pipe(filter((s) => s.peerId === node(w, 1).peerId)).subscribe((s) => pings.push(s.t));
      await w.advance(10_000);
      const foregroundPings = pings.length;
      assert.ok(foregroundPings >= 9 && foregroundPings <= 11, `about one ping a second (${foregroundPings})`);
      events.next({ type: 'background' });
      await w.advance(1_000);
      assert.equal(node(w, 0).getStatus(node(w, 2).peerId).connection, null, 'the temporary connection is closed');
      assert.equal(node(w, 0).getStatus(node(w, 1).peerId).status, 'connected', 'the persistent one stays');
      pings.length = 0;
      await w.advance(30_000, 1_000);
      assert.ok(pings.length >= 2 && pings.length <= 4, `one ping per 10 s in the background (${pings.length})`);
      events.next({ type: 'foreground' });
      pings.length = 0;
      await w.advance(10_000);
      assert.ok(pings.length >= 9, `back to one a second (${pings.length})`);
    } finally {
      events.complete();
      await w.stop();
    }
  });

  it('peerDiscovered dials while outbound connections are below target', async () => {
    const events = new Subject<AppEvent>();
    const w = await world(4, (i) => (i === 0 ? { appEvents: events, targetOutbound: 2 } : {}));
    try {
      for (const i of [1, 2, 3]) events.next({ type: 'peerDiscovered', address: w.address(i) });
      await w.advance(1_000);
      const outbound = node(w, 0)
        .connections()
        .filter((c) => c.direction === 'outbound');
      assert.equal(outbound.length, 2, 'stops at the target');
    } finally {
      events.complete();
      await w.stop();
    }
  });
});

describe('metrics and subscriptions', () => {
  it('metrics$ emits counts, rates and latency; prometheus() renders them; streams complete on stop()', async () => {
    const w = await world(2);
    await connect(w, 0, 1);
    const peer = node(w, 1).peerId;
    const samples = firstValueFrom(node(w, 0).metrics$.pipe(take(3), toArray()));
    for (let i = 0; i < 20; i++) node(w, 0).send(peer, Uint8Array.of(i));
    await w.advance(3_000);
    const [, , last] = await samples;
    assert.equal(last?.connectionsByState.connected, 1);
    assert.equal(last?.handshakes, 1);
    assert.ok((last?.messagesOutPerSecond ?? 0) > 0);
    assert.ok((last?.latencyAvgMs ?? -1) >= 0 && last?.latencyP99Ms !== null);
    assert.ok((last?.heapUsedBytes ?? 0) > 0);
    const text = node(w, 0).prometheus();
    assert.match(text, /^# TYPE peerwarden_handshakes_total counter$/m);
    assert.match(text, /^peerwarden_connections\{state="connected"\} 1$/m);
    const ended = Promise.all([
      firstValueFrom(node(w, 0).events$.pipe(toArray())),
      firstValueFrom(node(w, 0).status$(peer).pipe(toArray())),
      firstValueFrom(node(w, 0).metrics$.pipe(toArray())),
      firstValueFrom(node(w, 0).messages$.pipe(toArray())),
    ]);
    await w.stop();
    const [events, statuses] = await ended;
    assert.ok(events.length > 0 && statuses.length > 0, 'they completed after emitting');
  });
});

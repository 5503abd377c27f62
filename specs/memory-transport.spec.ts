/**
 * The in-memory transport (transport/memory.ts; DESIGN §5, §8): TCP-like stream semantics —
 * order, half-close, resets, refusal, abort, ports, backpressure — every fault in virtual time,
 * no timer left behind, and Noise + secure channel + yamux running unchanged on top.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { VirtualClock } from '../streams/clock.js';
import { ConnectionClosed, DialFailed, HandshakeTimeout, PeerwardenError, ProtocolViolation } from '../transport/errors.js';
import { createNodeNonce, PROTOCOL_VERSION, type HandshakePayload } from '../transport/handshake-payload.js';
import { MemoryNetwork, SEGMENT_BYTES, WINDOW_BYTES, type MemoryConnection } from '../transport/memory.js';
import { nobleCrypto } from '../transport/noise/crypto.js';
import { establishLink, type Link, type LocalIdentity } from '../transport/link.js';
import { peerIdFromPublicKey } from '../transport/peer-id.js';
import type { RawConnection, Transport, TransportListener } from '../transport/transport.js';

interface World {
  clock: VirtualClock;
  network: MemoryNetwork;
  a: Transport;
  b: Transport;
  listener: TransportListener;
  /** Connections accepted by `listener`, in order. */
  accepted: RawConnection[];
  /** Dials a→b and returns both ends and the network's view of the connection. */
  pair: () => Promise<{ dialed: RawConnection; accepted: RawConnection; connection: MemoryConnection }>;
  /** Runs microtasks and one macrotask turn; no virtual time passes. */
  settle: () => Promise<void>;
  /**
   * Closes the network (which resets every connection still open: their 'error' is expected and
   * absorbed here) and checks that no timer is left on the clock.
   */
  close: () => void;
}

async function world(): Promise<World> {
  const clock = new VirtualClock();
  const network = new MemoryNetwork({ clock });
  const opened: RawConnection[] = [];
  const recording = (transport: Transport): Transport => ({
    dial: async (address, signal) => {
      const connection = await transport.dial(address, signal);
      opened.push(connection);
      return connection;
    },
    listen: (address, onConnection) =>
      transport.listen(address, (connection) => {
        opened.push(connection);
        onConnection(connection);
      }),
  });
  const a = recording(network.transport('10.0.0.1'));
  const b = recording(network.transport('10.0.0.2'));
  const accepted: RawConnection[] = [];
  const waiting: ((connection: RawConnection) => void)[] = [];
  const listener = await b.listen('10.0.0.2:0', (connection) => {
    accepted.push(connection);
    waiting.shift()?.(connection);
  });
  const pair = async (): Promise<{ dialed: RawConnection; accepted: RawConnection; connection: MemoryConnection }> => {
    const acceptedOne = new Promise<RawConnection>((resolve) => waiting.push(resolve));
    const dialed = await a.dial(listener.address);
    const other = await acceptedOne;
    const connection = network.connections().find((c) => c.listener === listener.address && c.dialer === other.remoteAddress);
    assert.ok(connection);
    return { dialed, accepted: other, connection };
  };
  const close = (): void => {
    for (const { stream } of opened) if (!stream.destroyed) stream.on('error', () => undefined);
    network.close();
    assert.equal(clock.pendingTimers, 0, 'no timer left after close()');
  };
  return { clock, network, a, b, listener, accepted, pair, settle: () => clock.advanceAsync(0), close };
}

/** Everything a stream delivers until 'end' (rejects on 'error'). */
function readAll(stream: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Resolves once `stream` has closed (at once if it has), whether or not it failed. */
function whenClosed(stream: Duplex): Promise<void> {
  return stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()));
}

/** Collects what arrives, live, and the error the stream closed with. */
function recorder(stream: Duplex): { bytes: () => Buffer; error: () => NodeJS.ErrnoException | undefined; ended: () => boolean; closed: Promise<void> } {
  const chunks: Buffer[] = [];
  let error: NodeJS.ErrnoException | undefined;
  let ended = false;
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.on('error', (e: NodeJS.ErrnoException) => (error = e));
  stream.on('end', () => (ended = true));
  const closed = whenClosed(stream);
  return { bytes: () => Buffer.concat(chunks), error: () => error, ended: () => ended, closed };
}

/** Deterministic pseudo-random bytes (xorshift32), so fast-check can shrink over a seed. */
function bytesFrom(seed: number, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed | 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A seeded random() in [0, 1) for reproducible corruption. */
function seededRandom(seed: number): () => number {
  let x = seed | 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/**
 * Writes `data` in pieces of the given sizes (cycled) from ONE scratch buffer that is overwritten
 * as soon as each write's callback ran, so a transport that kept the caller's buffer would
 * deliver garbage. Ends the stream after the last piece.
 */
async function writeReusingBuffer(stream: Duplex, data: Buffer, sizes: number[]): Promise<void> {
  const scratch = Buffer.alloc(Math.max(1, ...sizes));
  let offset = 0;
  for (let i = 0; offset < data.length; i++) {
    const size = Math.min(sizes[i % sizes.length] ?? 1, data.length - offset);
    data.copy(scratch, 0, offset, offset + size);
    offset += size;
    await new Promise<void>((resolve, reject) => stream.write(scratch.subarray(0, size), (error) => (error ? reject(error) : resolve())));
    scratch.fill(0xee);
  }
  stream.end();
}

describe('MemoryNetwork streams behave like TCP', () => {
  it('delivers every byte in order, both ways at once, over random chunkings (sha256), counting bytesRead', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          up: fc.integer({ min: 0, max: 300_000 }),
          down: fc.integer({ min: 0, max: 100_000 }),
          seed: fc.integer(),
          upSizes: fc.array(fc.integer({ min: 1, max: 2 * SEGMENT_BYTES }), { minLength: 1, maxLength: 12 }),
          downSizes: fc.array(fc.integer({ min: 1, max: 5_000 }), { minLength: 1, maxLength: 12 }),
        }),
        async ({ up, down, seed, upSizes, downSizes }) => {
          const w = await world();
          try {
            const { dialed, accepted } = await w.pair();
            const upstream = bytesFrom(seed, up);
            const downstream = bytesFrom(seed ^ 0x5a5a5a5a, down);
            const [received, receivedBack] = await Promise.all([
              readAll(accepted.stream),
              readAll(dialed.stream),
              writeReusingBuffer(dialed.stream, upstream, upSizes),
              writeReusingBuffer(accepted.stream, downstream, downSizes),
            ]);
            assert.equal(sha256(received), sha256(upstream));
            assert.equal(sha256(receivedBack), sha256(downstream));
            assert.equal(accepted.bytesRead(), up);
            assert.equal(dialed.bytesRead(), down);
            await Promise.all([w.settle(), whenClosed(dialed.stream), whenClosed(accepted.stream)]);
            assert.deepEqual(w.network.connections(), []);
            assert.equal(w.clock.pendingTimers, 0);
          } finally {
            w.close();
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('half-close: end() gives the peer its bytes then end, and the peer can still answer', async () => {
    const w = await world();
    try {
      const { dialed, accepted } = await w.pair();
      const back = recorder(dialed.stream);
      const forth = recorder(accepted.stream);
      dialed.stream.write('hello ');
      dialed.stream.end('world');
      await once(accepted.stream, 'end');
      assert.equal(forth.bytes().toString(), 'hello world');
      assert.equal(back.ended(), false);
      accepted.stream.end('answer after your FIN');
      await Promise.all([back.closed, forth.closed]);
      assert.equal(back.bytes().toString(), 'answer after your FIN');
      assert.equal(back.error(), undefined);
      assert.equal(forth.error(), undefined);
      assert.equal(w.clock.pendingTimers, 0);
    } finally {
      w.close();
    }
  });

  for (const who of ['dialer', 'listener'] as const) {
    it(`destroy() by the ${who} resets the other end (ECONNRESET) and both close`, async () => {
      const w = await world();
      try {
        const { dialed, accepted } = await w.pair();
        const [destroyer, victim] = who === 'dialer' ? [dialed, accepted] : [accepted, dialed];
        const seen = recorder(victim.stream);
        const destroyerClosed = whenClosed(destroyer.stream);
        destroyer.stream.write('last words');
        destroyer.stream.destroy();
        await Promise.all([seen.closed, destroyerClosed]);
        assert.equal(seen.error()?.code, 'ECONNRESET');
        assert.equal(seen.ended(), false);
        assert.deepEqual(w.network.connections(), []);
      } finally {
        w.network.close();
      }
    });
  }

  it('a listener that resets at once never beats the dialer to its listeners (as on a socket, the reset comes after connect)', async () => {
    const w = await world();
    try {
      const rude = await w.b.listen('10.0.0.2:0', (connection) => connection.stream.destroy());
      const dialed = await w.a.dial(rude.address);
      // Several promise hops, as through wrappers and async functions, before anyone listens.
      for (let i = 0; i < 5; i++) await Promise.resolve();
      assert.equal(dialed.stream.destroyed, false);
      const seen = recorder(dialed.stream);
      await seen.closed;
      assert.equal(seen.error()?.code, 'ECONNRESET');
      await rude.close();
    } finally {
      w.close();
    }
  });

  it('MemoryConnection.reset() errors both ends with ECONNRESET', async () => {
    const w = await world();
    try {
      const { dialed, accepted, connection } = await w.pair();
      const one = recorder(dialed.stream);
      const two = recorder(accepted.stream);
      connection.reset();
      await Promise.all([one.closed, two.closed]);
      assert.equal(one.error()?.code, 'ECONNRESET');
      assert.equal(two.error()?.code, 'ECONNRESET');
      assert.deepEqual(w.network.connections(), []);
    } finally {
      w.close();
    }
  });

  it('writing into a connection whose far end closed after its FIN gets a reset (RFC 9293 §3.5.2)', async () => {
    const w = await world();
    try {
      const { dialed, accepted } = await w.pair();
      const seen = recorder(dialed.stream);
      accepted.stream.resume();
      accepted.stream.end();
      await once(dialed.stream, 'end');
      accepted.stream.destroy();
      await whenClosed(accepted.stream);
      assert.equal(seen.error(), undefined, 'a close after our FIN is no abort');
      dialed.stream.write('anyone there?');
      await seen.closed;
      assert.equal(seen.error()?.code, 'ECONNRESET');
    } finally {
      w.close();
    }
  });

  it('remoteAddress is the other side; port 0 picks free ports; the dialer gets an ephemeral port', async () => {
    const w = await world();
    try {
      const second = await w.b.listen('10.0.0.2:0', () => undefined);
      assert.notEqual(second.address, w.listener.address);
      for (const address of [w.listener.address, second.address]) {
        const port = Number(/:(\d+)$/.exec(address)?.[1]);
        assert.ok(port >= 49152 && port <= 65535, address);
      }
      const { dialed, accepted, connection } = await w.pair();
      assert.equal(dialed.remoteAddress, w.listener.address);
      assert.equal(accepted.remoteAddress, connection.dialer);
      assert.match(connection.dialer, /^10\.0\.0\.1:\d+$/);
      assert.equal(connection.listener, w.listener.address);
      await second.close();
    } finally {
      w.close();
    }
  });

  it('IPv6 hosts are bracketed in addresses; a wildcard listen binds the transport host', async () => {
    const w = await world();
    try {
      const v6 = w.network.transport('fd00::1');
      const server = await v6.listen('[::]:4001', (connection) => connection.stream.on('error', () => undefined));
      assert.equal(server.address, '[fd00::1]:4001');
      const dialed = await w.a.dial('[FD00::1]:4001');
      assert.equal(dialed.remoteAddress, '[fd00::1]:4001');
      const client = await v6.dial(w.listener.address);
      await w.settle();
      assert.match(w.accepted.at(-1)?.remoteAddress ?? '', /^\[fd00::1\]:\d+$/);
      dialed.stream.destroy();
      client.stream.destroy();
    } finally {
      w.close();
    }
  });

  it('listening on a taken host:port rejects with EADDRINUSE; a foreign host with EADDRNOTAVAIL', async () => {
    const w = await world();
    try {
      await assert.rejects(w.b.listen(w.listener.address, () => undefined), (error: NodeJS.ErrnoException) => error.code === 'EADDRINUSE');
      await assert.rejects(w.b.listen('10.0.0.1:80', () => undefined), (error: NodeJS.ErrnoException) => error.code === 'EADDRNOTAVAIL');
      const fixed = await w.a.listen('10.0.0.1:80', () => undefined);
      assert.equal(fixed.address, '10.0.0.1:80');
      await fixed.close();
      const again = await w.a.listen('10.0.0.1:80', () => undefined);
      await again.close();
    } finally {
      w.close();
    }
  });

  it('malformed addresses are a typed ProtocolViolation', async () => {
    const w = await world();
    try {
      for (const bad of ['10.0.0.2', '10.0.0.2:0', '10.0.0.2:70000', 'x y:1', '']) {
        await assert.rejects(w.a.dial(bad), ProtocolViolation, bad);
      }
      await assert.rejects(w.a.listen('no-port', () => undefined), ProtocolViolation);
      assert.throws(() => w.network.transport('a b'), ProtocolViolation);
    } finally {
      w.close();
    }
  });
});

describe('MemoryNetwork dialing: refusal and abort', () => {
  const refused = (error: unknown): boolean =>
    error instanceof DialFailed && (error.cause as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED';

  it('refuses a port nobody listens on, asynchronously', async () => {
    const w = await world();
    try {
      let settled = false;
      const dial = w.a.dial('10.0.0.2:9').finally(() => (settled = true));
      assert.equal(settled, false);
      await assert.rejects(dial, refused);
      assert.deepEqual(w.network.connections(), []);
    } finally {
      w.close();
    }
  });

  it('a closed listener refuses new dials but leaves its accepted connections open', async () => {
    const w = await world();
    try {
      const { dialed, accepted } = await w.pair();
      await w.listener.close();
      await assert.rejects(w.a.dial(w.listener.address), refused);
      const got = recorder(accepted.stream);
      dialed.stream.write('still here');
      await w.settle();
      assert.equal(got.bytes().toString(), 'still here');
      assert.equal(w.network.connections().length, 1);
    } finally {
      w.close();
    }
  });

  it('setDown refuses a host or one address, without touching open connections, until set up again', async () => {
    const w = await world();
    try {
      const { dialed, accepted } = await w.pair();
      const got = recorder(accepted.stream);
      w.network.setDown('10.0.0.2', true);
      await assert.rejects(w.a.dial(w.listener.address), refused);
      dialed.stream.write('open connections keep working');
      await w.settle();
      assert.equal(got.bytes().toString(), 'open connections keep working');
      w.network.setDown('10.0.0.2', false);
      w.network.setDown(w.listener.address, true);
      await assert.rejects(w.a.dial(w.listener.address), refused);
      w.network.setDown(w.listener.address, false);
      (await w.a.dial(w.listener.address)).stream.destroy();
    } finally {
      w.close();
    }
  });

  it('an already-aborted signal rejects with DialFailed carrying the reason; nothing is opened', async () => {
    const w = await world();
    try {
      const reason = new Error('gave up');
      await assert.rejects(w.a.dial(w.listener.address, AbortSignal.abort(reason)), (error: unknown) => error instanceof DialFailed && error.cause === reason);
      await w.settle();
      assert.equal(w.accepted.length, 0);
      assert.deepEqual(w.network.connections(), []);
    } finally {
      w.close();
    }
  });

  it('aborting while the SYN is delayed rejects, cancels its timer and opens nothing', async () => {
    const w = await world();
    try {
      w.network.inject({ kind: 'delay', ms: 100 });
      const controller = new AbortController();
      const dial = w.a.dial(w.listener.address, controller.signal);
      await w.clock.advanceAsync(50);
      assert.equal(w.clock.pendingTimers, 1);
      controller.abort(new Error('connect timeout'));
      await assert.rejects(dial, DialFailed);
      assert.equal(w.clock.pendingTimers, 0);
      await w.clock.advanceAsync(1_000);
      assert.equal(w.accepted.length, 0);
      assert.deepEqual(w.network.connections(), []);
    } finally {
      w.close();
    }
  });

  it('aborting after the listener accepted (answer still delayed) resets the accepted end', async () => {
    const w = await world();
    try {
      w.network.inject({ kind: 'delay', ms: 100 });
      const controller = new AbortController();
      const dial = w.a.dial(w.listener.address, controller.signal);
      await w.clock.advanceAsync(100); // SYN arrives: accepted; the answer is due at 200
      const accepted = w.accepted[0];
      assert.ok(accepted);
      const seen = recorder(accepted.stream);
      controller.abort();
      await assert.rejects(dial, DialFailed);
      await w.clock.advanceAsync(100); // the reset travels with the delay
      await seen.closed;
      assert.equal(seen.error()?.code, 'ECONNRESET');
      assert.deepEqual(w.network.connections(), []);
      assert.equal(w.clock.pendingTimers, 0);
    } finally {
      w.close();
    }
  });

  it('reset() while the dial is still pending (answer delayed) rejects the dial, and no end errors unheard', async () => {
    const w = await world();
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => void uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      w.network.inject({ kind: 'delay', ms: 100 });
      const dial = w.a.dial(w.listener.address);
      await w.clock.advanceAsync(100); // accepted; the dialer's end exists, its dial has not resolved
      const [connection] = w.network.connections();
      assert.ok(connection);
      connection.reset();
      await assert.rejects(dial, DialFailed);
      await w.clock.advanceAsync(200);
      await new Promise<void>((resolve) => setImmediate(resolve));
      assert.deepEqual(uncaught, [], 'the reset of an end not yet handed out is not an uncaught error');
    } finally {
      process.off('uncaughtException', onUncaught);
      w.close();
    }
  });

  it('a dial under halfOpen hangs (SYN lost) until aborted, and goes through once the fault is removed', async () => {
    const w = await world();
    try {
      const remove = w.network.inject({ kind: 'halfOpen' });
      const controller = new AbortController();
      const lost = w.a.dial(w.listener.address, controller.signal);
      let settled = false;
      void lost.catch(() => undefined).finally(() => (settled = true));
      await w.clock.advanceAsync(60_000);
      assert.equal(settled, false);
      controller.abort();
      await assert.rejects(lost, DialFailed);
      const later = w.a.dial(w.listener.address);
      await w.clock.advanceAsync(1_000);
      remove();
      (await later).stream.destroy();
    } finally {
      w.close();
    }
  });
});

describe('MemoryNetwork backpressure', () => {
  it('a reader that never reads holds the writer after a bounded number of bytes, and releases it when it reads', async () => {
    const w = await world();
    try {
      const { dialed, accepted } = await w.pair();
      const writer = dialed.stream;
      const data = bytesFrom(7, 4 * 1024 * 1024);
      let acknowledged = 0;
      let offset = 0;
      let blocked = false;
      const writeMore = (): void => {
        while (offset < data.length) {
          const piece = data.subarray(offset, offset + 16 * 1024);
          offset += piece.length;
          const more = writer.write(piece, () => (acknowledged += piece.length));
          if (!more) {
            blocked = true;
            writer.once('drain', () => {
              blocked = false;
              writeMore();
            });
            return;
          }
        }
        writer.end();
      };
      writeMore();
      await w.settle();
      await w.settle();
      const bound = WINDOW_BYTES + SEGMENT_BYTES + accepted.stream.readableHighWaterMark;
      assert.ok(blocked, 'the writer waits for drain');
      assert.ok(acknowledged > 0 && acknowledged <= bound, `acknowledged ${acknowledged} > bound ${bound}`);
      assert.ok(accepted.stream.readableLength <= accepted.stream.readableHighWaterMark + SEGMENT_BYTES);
      const received = await readAll(accepted.stream);
      assert.equal(sha256(received), sha256(data));
      assert.equal(acknowledged, data.length);
    } finally {
      w.close();
    }
  });
  it('a flood of 1-byte writes in flight on a delayed link holds the writer after a bounded number of segments', async () => {
    const w = await world();
    try {
      const { dialed, accepted, connection } = await w.pair();
      connection.inject({ kind: 'delay', ms: 100 });
      const got = recorder(accepted.stream);
      let acknowledged = 0;
      const total = 50_000;
      for (let i = 0; i < total; i++) dialed.stream.write(Buffer.of(i & 0xff), () => acknowledged++);
      await w.settle();
      assert.ok(acknowledged > 0 && acknowledged <= WINDOW_BYTES / 64, `${acknowledged} one-byte segments in flight`);
      for (let spent = 0; acknowledged < total && spent < 100_000; spent += 100) await w.clock.advanceAsync(100);
      await w.clock.advanceAsync(100);
      assert.equal(got.bytes().length, total);
      assert.ok(got.bytes().equals(Buffer.from(Array.from({ length: total }, (_, i) => i & 0xff))));
    } finally {
      w.close();
    }
  });
});

describe('MemoryNetwork faults, in virtual time', () => {
  it('delay: each chunk arrives ms later on the clock, order kept when the delay is removed', async () => {
    const w = await world();
    try {
      const { dialed, accepted, connection } = await w.pair();
      const got = recorder(accepted.stream);
      const remove = connection.inject({ kind: 'delay', ms: 100 });
      dialed.stream.write('x');
      await w.clock.advanceAsync(50);
      remove();
      dialed.stream.write('y'); // undelayed, but must not overtake 'x'
      await w.clock.advanceAsync(49);
      assert.equal(got.bytes().toString(), '');
      await w.clock.advanceAsync(1);
      assert.equal(got.bytes().toString(), 'xy');
      assert.equal(w.clock.pendingTimers, 0);
    } finally {
      w.close();
    }
  });

  it('delay applies to both directions and to the end of stream', async () => {
    const w = await world();
    try {
      w.network.inject({ kind: 'delay', ms: 30 });
      const dialing = w.a.dial(w.listener.address);
      await w.clock.advanceAsync(60); // SYN + answer
      const dialed = await dialing;
      const accepted = w.accepted[0];
      assert.ok(accepted);
      const back = recorder(dialed.stream);
      accepted.stream.end('pong');
      await w.clock.advanceAsync(29);
      assert.equal(back.ended(), false);
      await w.clock.advanceAsync(1);
      await w.settle();
      assert.equal(back.bytes().toString(), 'pong');
      assert.equal(back.ended(), true);
    } finally {
      w.close();
    }
  });

  it('throttle: bytes are paced at bytesPerSecond on the clock', async () => {
    const w = await world();
    try {
      const { dialed, accepted, connection } = await w.pair();
      const got = recorder(accepted.stream);
      connection.inject({ kind: 'throttle', bytesPerSecond: 1_000 });
      let written = false;
      dialed.stream.write(bytesFrom(3, 10_000), () => (written = true));
      await w.clock.advanceAsync(5_000);
      const halfway = got.bytes().length;
      assert.ok(halfway >= 4_900 && halfway <= 5_000, `${halfway} bytes after 5 s`);
      assert.equal(written, false, 'the writer waits for the slow link');
      await w.clock.advanceAsync(5_000);
      assert.equal(got.bytes().length, 10_000);
      assert.equal(sha256(got.bytes()), sha256(bytesFrom(3, 10_000)));
      await w.settle();
      assert.equal(written, true);
      assert.equal(w.clock.pendingTimers, 0);
    } finally {
      w.close();
    }
  });

  it('stall: bytes are held (not lost), the writer is held after a bounded amount, and all flows on release', async () => {
    const w = await world();
    try {
      const { dialed, accepted, connection } = await w.pair();
      const release = connection.inject({ kind: 'stall' });
      const received = readAll(accepted.stream);
      const data = bytesFrom(11, 1024 * 1024);
      let acknowledged = 0;
      dialed.stream.write(data, () => (acknowledged = data.length));
      dialed.stream.end();
      await w.clock.advanceAsync(60_000);
      assert.equal(accepted.bytesRead(), 0);
      assert.equal(acknowledged, 0);
      assert.equal(w.clock.pendingTimers, 0, 'a stall holds without a timer');
      release();
      assert.equal(sha256(await received), sha256(data));
      assert.equal(acknowledged, data.length);
    } finally {
      w.close();
    }
  });

  it('halfOpen: bytes, FIN and even a reset vanish silently; after removal the survivor learns on its next write', async () => {
    const w = await world();
    try {
      const { dialed, accepted, connection } = await w.pair();
      const survivor = recorder(accepted.stream);
      const gone = recorder(dialed.stream);
      const remove = connection.inject({ kind: 'halfOpen' });
      dialed.stream.write('lost');
      accepted.stream.write('lost too');
      dialed.stream.end();
      await w.clock.advanceAsync(10_000);
      dialed.stream.destroy();
      await gone.closed;
      await w.clock.advanceAsync(10_000);
      assert.equal(survivor.bytes().length, 0);
      assert.equal(gone.bytes().length, 0);
      assert.equal(survivor.ended(), false);
      assert.equal(survivor.error(), undefined);
      assert.equal(accepted.stream.destroyed, false, 'the survivor does not know');
      assert.equal(w.network.connections().length, 1);
      remove();
      accepted.stream.write('hello?');
      await survivor.closed;
      assert.equal(survivor.error()?.code, 'ECONNRESET');
      assert.equal(survivor.bytes().length, 0);
      assert.deepEqual(w.network.connections(), []);
    } finally {
      w.close();
    }
  });

  it('corrupt: flips single bits at about the given rate, never in the writer’s own buffer', async () => {
    const w = await world();
    try {
      const { dialed, accepted, connection } = await w.pair();
      connection.inject({ kind: 'corrupt', probability: 0.01, random: seededRandom(42) });
      const data = bytesFrom(5, 100_000);
      const original = Buffer.from(data);
      const received = readAll(accepted.stream);
      dialed.stream.end(data);
      const got = await received;
      assert.equal(got.length, data.length);
      assert.ok(data.equals(original), 'the writer’s buffer is untouched');
      let flipped = 0;
      for (let i = 0; i < got.length; i++) {
        const diff = (got[i] ?? 0) ^ (data[i] ?? 0);
        if (diff === 0) continue;
        flipped++;
        assert.equal(diff & (diff - 1), 0, `byte ${i} has more than one bit flipped`);
      }
      assert.ok(flipped >= 800 && flipped <= 1_200, `${flipped} corrupted bytes of 100000 at p = 0.01`);
    } finally {
      w.close();
    }
  });

  it('cutAt: the reader gets exactly `offset` bytes then a reset, the writer is reset too (any chunking)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 50_000 }),
        fc.integer({ min: 1, max: 60_000 }),
        fc.array(fc.integer({ min: 1, max: 20_000 }), { minLength: 1, maxLength: 8 }),
        fc.constantFrom('dialerToListener' as const, 'both' as const, undefined),
        async (offset, total, sizes, direction) => {
          const w = await world();
          try {
            const { dialed, accepted, connection } = await w.pair();
            connection.inject(direction ? { kind: 'cutAt', offset, direction } : { kind: 'cutAt', offset });
            const reader = recorder(accepted.stream);
            const writer = recorder(dialed.stream);
            const data = bytesFrom(offset + total, total);
            await writeReusingBuffer(dialed.stream, data, sizes).catch(() => undefined);
            await w.settle();
            if (total < offset) {
              assert.equal(reader.bytes().length, total);
              assert.equal(reader.error(), undefined);
              assert.equal(reader.ended(), true);
            } else {
              await Promise.all([reader.closed, writer.closed]);
              assert.equal(reader.error()?.code, 'ECONNRESET');
              assert.equal(writer.error()?.code, 'ECONNRESET');
              assert.ok(reader.bytes().equals(data.subarray(0, offset)), `received ${reader.bytes().length} of cut at ${offset}`);
              assert.deepEqual(w.network.connections(), []);
            }
          } finally {
            w.close();
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('cutAt in one direction ignores the other direction', async () => {
    const w = await world();
    try {
      const { dialed, accepted, connection } = await w.pair();
      connection.inject({ kind: 'cutAt', offset: 3, direction: 'listenerToDialer' });
      const got = recorder(accepted.stream);
      dialed.stream.write('many more than three bytes');
      await w.settle();
      assert.equal(got.bytes().toString(), 'many more than three bytes');
      const back = recorder(dialed.stream);
      accepted.stream.write('abcdef');
      await Promise.all([back.closed, got.closed]);
      assert.equal(back.bytes().toString(), 'abc');
      assert.equal(back.error()?.code, 'ECONNRESET');
    } finally {
      w.close();
    }
  });

  it('a network-wide fault applies to open and future connections that match, until removed', async () => {
    const w = await world();
    try {
      const first = await w.pair();
      const remove = w.network.inject({ kind: 'delay', ms: 10 }, (c) => c.listener === w.listener.address);
      const dialing = w.pair();
      await w.clock.advanceAsync(20);
      const second = await dialing;
      for (const { dialed, accepted } of [first, second]) {
        const got = recorder(accepted.stream);
        dialed.stream.write('late');
        await w.clock.advanceAsync(9);
        assert.equal(got.bytes().length, 0);
        await w.clock.advanceAsync(1);
        assert.equal(got.bytes().toString(), 'late');
      }
      remove();
      const got = recorder(second.accepted.stream);
      second.dialed.stream.write('now');
      await w.settle();
      assert.equal(got.bytes().toString(), 'now');
      assert.throws(() => w.network.inject({ kind: 'throttle', bytesPerSecond: 0 }), RangeError);
      assert.throws(() => first.connection.inject({ kind: 'corrupt', probability: 2 }), RangeError);
    } finally {
      w.close();
    }
  });
});

describe('MemoryNetwork leaves nothing behind', () => {
  it('close() resets every connection, fails pending dials and leaves no timer', async () => {
    const w = await world();
    const ends: ReturnType<typeof recorder>[] = [];
    for (let i = 0; i < 5; i++) {
      const { dialed, accepted, connection } = await w.pair();
      connection.inject(i % 2 === 0 ? { kind: 'delay', ms: 1_000 } : { kind: 'throttle', bytesPerSecond: 10 });
      ends.push(recorder(dialed.stream), recorder(accepted.stream));
      dialed.stream.write(bytesFrom(i, 5_000));
      accepted.stream.write(bytesFrom(i + 1, 5_000));
    }
    w.network.inject({ kind: 'delay', ms: 500 });
    const pending = w.a.dial(w.listener.address);
    await w.clock.advanceAsync(100);
    assert.ok(w.clock.pendingTimers > 0);
    w.network.close();
    await assert.rejects(pending, DialFailed);
    await Promise.all(ends.map((end) => end.closed));
    for (const end of ends) assert.equal(end.error()?.code, 'ECONNRESET');
    assert.equal(w.clock.pendingTimers, 0);
    assert.deepEqual(w.network.connections(), []);
    await assert.rejects(w.a.dial(w.listener.address), DialFailed);
    await assert.rejects(w.a.listen('10.0.0.1:0', () => undefined), (error: NodeJS.ErrnoException) => error.code === 'ENETDOWN');
  });

  it('once both ends of every connection are destroyed, no timer remains, whatever was in flight', async () => {
    const w = await world();
    try {
      for (let i = 0; i < 4; i++) {
        const { dialed, accepted, connection } = await w.pair();
        connection.inject({ kind: 'delay', ms: 250 });
        connection.inject({ kind: 'throttle', bytesPerSecond: 100 });
        dialed.stream.on('error', () => undefined);
        accepted.stream.on('error', () => undefined);
        dialed.stream.write(bytesFrom(i, 50_000));
        await w.clock.advanceAsync(100);
        assert.ok(w.clock.pendingTimers > 0);
        dialed.stream.destroy();
        accepted.stream.destroy();
      }
      await w.settle();
      assert.equal(w.clock.pendingTimers, 0);
      assert.deepEqual(w.network.connections(), []);
    } finally {
      w.close();
    }
  });
});

describe('establishLink (Noise XX + secure channel + yamux + control stream) over memory connections', () => {
  const identity = (): LocalIdentity => {
    const staticKeyPair = nobleCrypto.generateKeyPair();
    const payload: HandshakePayload = {
      protocolVersion: PROTOCOL_VERSION,
      featureFlags: 0,
      privacyFlags: 0,
      nodeNonce: createNodeNonce(),
      listenAddresses: [],
    };
    return { staticKeyPair, peerId: peerIdFromPublicKey(staticKeyPair.publicKey), payload, requiredFeatures: 0 };
  };

  /** Advances virtual time in `step` ms slices until `promise` settles; fails past `limit` ms. */
  async function runUntil<T>(w: World, promise: Promise<T>, step: number, limit = 60_000): Promise<T> {
    let done = false;
    const settled = promise.finally(() => (done = true));
    void settled.catch(() => undefined);
    for (let spent = 0; !done && spent < limit; spent += step) await w.clock.advanceAsync(step);
    assert.ok(done, `still pending after ${limit} ms of virtual time`);
    return settled;
  }

  /** Both links over one memory connection; the responder echoes every application stream. */
  async function links(w: World, pair: { dialed: RawConnection; accepted: RawConnection }, step: number): Promise<{ initiator: Link; responder: Link; a: LocalIdentity; b: LocalIdentity }> {
    const a = identity();
    const b = identity();
    const [initiator, responder] = await runUntil(
      w,
      Promise.all([
        establishLink(pair.dialed, { identity: a, role: 'initiator', expectedPeerId: b.peerId }),
        establishLink(pair.accepted, { identity: b, role: 'responder', onStream: (_protocol, stream) => void stream.pipe(stream) }),
      ]),
      step,
    );
    return { initiator, responder, a, b };
  }

  it('establishes both links, pings in one round trip and echoes a stream, in virtual time with 25 ms each way; closes clean', async () => {
    const w = await world();
    try {
      w.network.inject({ kind: 'delay', ms: 25 });
      const pair = await runUntil(w, w.pair(), 25);
      assert.equal(w.clock.now(), 50, 'SYN and its answer, 25 ms each');
      const { initiator, responder, a, b } = await links(w, pair, 25);
      assert.equal(initiator.remotePeerId, b.peerId);
      assert.equal(responder.remotePeerId, a.peerId);
      assert.equal(initiator.remoteAddress, w.listener.address);
      assert.equal(responder.remoteAddress, w.network.connections()[0]?.dialer);
      let ponged = false;
      const ping = initiator.ping().then(() => (ponged = true));
      await w.clock.advanceAsync(49);
      assert.equal(ponged, false);
      await w.clock.advanceAsync(1);
      await ping;
      const stream = initiator.openStream('/echo/1');
      const data = bytesFrom(99, 300_000);
      const echoed = readAll(stream);
      stream.end(data);
      assert.equal(sha256(await runUntil(w, echoed, 25)), sha256(data));
      const closed = Promise.all([
        once(initiator, 'closed') as Promise<[Error | undefined]>,
        once(responder, 'closed') as Promise<[Error | undefined]>,
      ]);
      await runUntil(w, initiator.close('Normal'), 25);
      const [[initiatorError], [responderError]] = await runUntil(w, closed, 25);
      assert.equal(initiatorError, undefined);
      assert.ok(responderError === undefined || responderError instanceof ConnectionClosed, String(responderError));
      await runUntil(w, Promise.all([whenClosed(pair.dialed.stream), whenClosed(pair.accepted.stream)]), 25);
      assert.deepEqual(w.network.connections(), []);
      assert.equal(w.clock.pendingTimers, 0);
    } finally {
      w.close();
    }
  });

  it('corrupt bytes after the handshake end the receiving link with a typed ProtocolViolation, not a crash', async () => {
    const w = await world();
    try {
      const pair = await w.pair();
      const { initiator, responder } = await links(w, pair, 1);
      const responderClosed = once(responder, 'closed') as Promise<[Error | undefined]>;
      const initiatorClosed = once(initiator, 'closed') as Promise<[Error | undefined]>;
      w.network.connections()[0]?.inject({ kind: 'corrupt', probability: 1 / 1000, random: seededRandom(7) });
      const stream = initiator.openStream('/echo/1');
      stream.on('error', () => undefined);
      stream.write(bytesFrom(1, 200_000));
      const [error] = await responderClosed;
      assert.ok(error instanceof ProtocolViolation, `got ${String(error)}`);
      const [other] = await initiatorClosed;
      assert.ok(other instanceof PeerwardenError, `the initiator ends with a typed error too, got ${String(other)}`);
      await Promise.all([whenClosed(pair.dialed.stream), whenClosed(pair.accepted.stream)]);
      assert.deepEqual(w.network.connections(), []);
    } finally {
      w.close();
    }
  });

  it('corruption during the handshake fails it with typed errors (or a timeout), never a crash or a hang', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer(), fc.double({ min: 0.001, max: 0.05, noNaN: true }), async (seed, probability) => {
        const w = await world();
        try {
          w.network.inject({ kind: 'corrupt', probability, random: seededRandom(seed) });
          const pair = await w.pair();
          const controller = new AbortController();
          // The connection machine's handshakeTimeout, on the virtual clock (DESIGN §6: 10 s).
          const timeout = w.clock.setTimeout(() => controller.abort(new HandshakeTimeout(10_000)), 10_000);
          const outcomes = await runUntil(
            w,
            Promise.allSettled([
              establishLink(pair.dialed, { identity: identity(), role: 'initiator', signal: controller.signal }),
              establishLink(pair.accepted, { identity: identity(), role: 'responder', signal: controller.signal }),
            ]),
            1_000,
            11_000,
          );
          w.clock.clearTimeout(timeout);
          for (const outcome of outcomes) {
            if (outcome.status === 'fulfilled') outcome.value.destroy();
            else assert.ok(outcome.reason instanceof PeerwardenError, `untyped failure: ${String(outcome.reason)}`);
          }
        } finally {
          w.close();
        }
      }),
      { numRuns: 25 },
    );
  });
});

/**
 * The control stream (ping/pong, goodbye), protocol selection headers and TCP address parsing.
 */
import assert from 'node:assert/strict';
import { Duplex, PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ControlChannel } from '../transport/control-channel.js';
import type { Goodbye } from '../transport/control-channel.js';
import { DISCONNECT_REASONS } from '../transport/disconnect-reason.js';
import { ConnectionClosed, ProtocolViolation } from '../transport/errors.js';
import { encodeProtocolHeader, readProtocolHeader } from '../transport/protocol-select.js';
import { formatAddress, parseAddress } from '../transport/tcp.js';

/** Two Duplex ends wired back to back in memory. */
function duplexPair(): [Duplex, Duplex] {
  const aToB = new PassThrough();
  const bToA = new PassThrough();
  const make = (readable: PassThrough, writable: PassThrough): Duplex =>
    new Duplex({
      read() {
        // data is pushed from the readable side's 'data' events
      },
      write(chunk: Buffer, _encoding, callback) {
        writable.write(chunk, callback);
      },
      final(callback) {
        writable.end();
        callback();
      },
      destroy(error, callback) {
        writable.destroy();
        callback(error);
      },
    }).on('pipe', () => undefined);
  const a = make(bToA, aToB);
  const b = make(aToB, bToA);
  bToA.on('data', (chunk: Buffer) => a.push(chunk)).on('end', () => a.push(null)).on('close', () => a.destroy());
  aToB.on('data', (chunk: Buffer) => b.push(chunk)).on('end', () => b.push(null)).on('close', () => b.destroy());
  return [a, b];
}

describe('ControlChannel', () => {
  it('answers pings and resolves each ping on its own pong', async () => {
    const [a, b] = duplexPair();
    const left = new ControlChannel(a);
    const right = new ControlChannel(b);
    await Promise.all([left.ping(), left.ping(), right.ping()]);
    left.close();
    right.close();
  });

  it('resolves concurrent pings exactly on their own pongs, in any order, ignores unsolicited ones, and close() rejects the rest (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 12 }).chain((count) =>
          fc.tuple(fc.constant(count), fc.shuffledSubarray([...Array(count).keys()], { minLength: count, maxLength: count })),
        ),
        fc.array(fc.nat({ max: 2 ** 32 - 1 }), { maxLength: 3 }),
        fc.nat(),
        async ([count, order], strays, cutSeed) => {
          const answered = order.slice(0, cutSeed % (count + 1));
          const [a, b] = duplexPair();
          const channel = new ControlChannel(a);
          const bodies: Buffer[] = [];
          b.on('data', (chunk: Buffer) => {
            // Frames of 11 bytes: length, type 1 (PING), 8-byte body.
            for (let at = 0; at + 11 <= chunk.length; at += 11) bodies.push(Buffer.from(chunk.subarray(at + 3, at + 11)));
          });
          const settled: number[] = [];
          const failed: number[] = [];
          const pings = Array.from({ length: count }, (_, i) =>
            channel.ping().then(
              () => settled.push(i),
              (error: unknown) => {
                assert.ok(error instanceof ConnectionClosed);
                failed.push(i);
              },
            ),
          );
          while (bodies.length < count) await new Promise((resolve) => setImmediate(resolve));
          const pong = (body: Buffer): Buffer => Buffer.concat([Buffer.from([0, 9, 2]), body]);
          for (const stray of strays) {
            const body = Buffer.alloc(8);
            body.writeUInt32BE(1, 0); // high half set: never one of ours
            body.writeUInt32BE(stray, 4);
            b.write(pong(body));
          }
          for (const [step, i] of answered.entries()) {
            b.write(pong(bodies[i] as Buffer));
            while (settled.length <= step) await new Promise((resolve) => setImmediate(resolve));
            assert.deepEqual(settled, answered.slice(0, step + 1), 'each pong settles its own ping and no other');
          }
          channel.close();
          await Promise.all(pings);
          assert.deepEqual(
            failed.sort((x, y) => x - y),
            order.slice(answered.length).sort((x, y) => x - y),
            'close() rejects exactly the pings still waiting',
          );
        },
      ),
      { numRuns: 40 },
    );
  });

  it('carries every disconnect reason and the duplicate flag in the goodbye', async () => {
    for (const reason of DISCONNECT_REASONS) {
      for (const duplicate of [false, true]) {
        const [a, b] = duplexPair();
        const left = new ControlChannel(a);
        const right = new ControlChannel(b);
        const received = new Promise<Goodbye>((resolve) => right.once('goodbye', resolve));
        await left.goodbye(reason, duplicate);
        assert.deepEqual(await received, { reason, duplicate });
        left.close();
        right.close();
      }
    }
  });

  it('rejects pending pings with ConnectionClosed when the stream closes', async () => {
    const [a] = duplexPair();
    const left = new ControlChannel(a);
    left.on('error', () => undefined);
    const pending = left.ping(); // the other end never answers
    a.destroy();
    await assert.rejects(pending, ConnectionClosed);
  });

  it('close() and detach() reject pending pings and later pings and announce no error; only close() destroys', async () => {
    for (const how of ['close', 'detach'] as const) {
      const [a] = duplexPair();
      const left = new ControlChannel(a);
      const errors: Error[] = [];
      left.on('error', (error) => errors.push(error));
      const pending = left.ping(); // the other end never answers
      if (how === 'close') left.close();
      else left.detach();
      await assert.rejects(pending, ConnectionClosed);
      await assert.rejects(left.ping(), ConnectionClosed);
      await left.goodbye('Normal'); // resolves at once: nothing is sent any more
      assert.equal(a.destroyed, how === 'close', `${how} destroys the stream or leaves it to its owner`);
      if (how === 'detach') {
        // Nobody listens any more, so a yamux session aborts the stream without an error object.
        assert.equal(a.listenerCount('error'), 0);
        assert.equal(a.listenerCount('data'), 0);
        const closed = new Promise((resolve) => a.once('close', resolve));
        a.destroy();
        await closed;
      }
      assert.deepEqual(errors, []);
    }
  });

  it('detach() after the stream failed swallows the error already on its way', async () => {
    const [a] = duplexPair();
    const left = new ControlChannel(a);
    const errors: Error[] = [];
    left.on('error', (error) => errors.push(error));
    const closed = new Promise((resolve) => a.once('close', resolve));
    a.destroy(new ConnectionClosed('reset')); // its 'error' event is emitted on the next tick
    left.detach();
    await closed; // an uncaught 'error' would have failed the test
    assert.deepEqual(errors, []);
  });

  it('turns malformed frames into ProtocolViolation and ignores unknown types', async () => {
    const cases: Array<{ bytes: number[]; violation: boolean }> = [
      { bytes: [0, 0], violation: true }, // empty frame
      { bytes: [0x04, 0x01], violation: true }, // over 1024 bytes
      { bytes: [0, 3, 1, 0, 0], violation: true }, // ping body not 8 bytes
      { bytes: [0, 3, 3, 99, 0], violation: true }, // goodbye with an unknown reason
      { bytes: [0, 2, 42, 7], violation: false }, // unknown type: ignored
    ];
    for (const { bytes, violation } of cases) {
      const [a, b] = duplexPair();
      const channel = new ControlChannel(b);
      const failure = new Promise<Error>((resolve) => channel.once('error', resolve));
      a.write(Buffer.from(bytes));
      if (violation) {
        assert.ok((await failure) instanceof ProtocolViolation, `frame ${bytes.join(',')}`);
      } else {
        const reply = new ControlChannel(a);
        await reply.ping(); // the channel still works after the unknown message
        reply.close();
      }
      channel.close();
    }
  });

  it('never throws on random input (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2_000 }), async (bytes) => {
        const [a, b] = duplexPair();
        const channel = new ControlChannel(b);
        const errors: Error[] = [];
        channel.on('error', (error) => errors.push(error));
        a.write(Buffer.from(bytes));
        await new Promise((resolve) => setImmediate(resolve));
        for (const error of errors) assert.ok(error instanceof ProtocolViolation || error instanceof ConnectionClosed);
        channel.close();
        a.destroy();
      }),
      { numRuns: 200 },
    );
  });
});

describe('protocol selection', () => {
  it('reads the header and leaves the following bytes in the stream', async () => {
    const stream = new PassThrough();
    stream.write(Buffer.concat([encodeProtocolHeader('/echo/1'), Buffer.from('hello')]));
    assert.equal(await readProtocolHeader(stream), '/echo/1');
    assert.equal((stream.read() as Buffer).toString(), 'hello');
  });

  it('assembles a header split across writes', async () => {
    const stream = new PassThrough();
    const header = encodeProtocolHeader('/a/very/long/protocol/name/1');
    const reading = readProtocolHeader(stream);
    for (const byte of header) stream.write(Buffer.from([byte]));
    assert.equal(await reading, '/a/very/long/protocol/name/1');
  });

  it('rejects an empty name, a stream that ends early, and names over 255 bytes', async () => {
    const empty = new PassThrough();
    empty.write(Buffer.from([0]));
    await assert.rejects(readProtocolHeader(empty), ProtocolViolation);
    const short = new PassThrough();
    short.end(Buffer.from([10, 65]));
    await assert.rejects(readProtocolHeader(short), ConnectionClosed);
    assert.throws(() => encodeProtocolHeader(''), RangeError);
    assert.throws(() => encodeProtocolHeader('x'.repeat(256)), RangeError);
  });
});

describe('TCP addresses', () => {
  it('parses and formats IPv4, names and bracketed IPv6', () => {
    assert.deepEqual(parseAddress('127.0.0.1:4001'), { host: '127.0.0.1', port: 4001 });
    assert.deepEqual(parseAddress('[::1]:9'), { host: '::1', port: 9 });
    assert.deepEqual(parseAddress('localhost:80'), { host: 'localhost', port: 80 });
    assert.equal(formatAddress({ host: '::1', port: 9 }), '[::1]:9');
    assert.deepEqual(parseAddress('127.0.0.1:0', { listen: true }), { host: '127.0.0.1', port: 0 });
  });

  it('rejects anything else with ProtocolViolation (property)', () => {
    for (const bad of ['', '127.0.0.1', '127.0.0.1:0', ':80', '1.2.3.4:65536', 'a b:1', '[::1:80', '1.2.3.4:-1']) {
      assert.throws(() => parseAddress(bad), ProtocolViolation, bad);
    }
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (text) => {
        try {
          const parsed = parseAddress(text);
          assert.ok(parsed.port >= 1 && parsed.port <= 65535);
        } catch (error) {
          assert.ok(error instanceof ProtocolViolation);
        }
      }),
    );
  });
});

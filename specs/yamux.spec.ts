/**
 * yamux sessions and streams over real TCP sockets on 127.0.0.1 (HashiCorp yamux spec.md).
 *
 * Covers bulk transfer, frames split at every byte, many concurrent and sequential streams,
 * half-close, flow control credited on read, receive-window auto-tuning (with an injected clock)
 * and its budget, Data bodies streamed to their stream as they arrive, GoAway, RST, ping, graceful
 * and forced close, and hostile input (crafted frames and fast-check fuzzing) ending only in
 * ProtocolViolation or a clean close. No test sleeps: every wait is on an event or a promise.
 */
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import fc from 'fast-check';

import { ByteQueue } from '../transport/byte-queue.js';
import { ConnectionClosed, ProtocolViolation } from '../transport/errors.js';
import {
  DEFAULT_MAX_SEND_FRAME_LENGTH,
  Flag,
  FrameType,
  GoAwayCode,
  HEADER_LENGTH,
  INITIAL_STREAM_WINDOW,
  StreamOpenRefused,
  StreamReset,
  YamuxSession,
  decodeHeader,
  encodeHeader,
} from '../transport/yamux/index.js';
import type { FrameHeader, FrameHeaderInit, YamuxSessionOptions, YamuxStream } from '../transport/yamux/index.js';
import type { SessionTimers } from '../transport/yamux/session.js';
import { readAll, sha256, tcpPair, waitClosed, writeAll } from './support/sockets.js';

// ---- helpers -------------------------------------------------------------------------------




interface Sessions {
  clientSocket: net.Socket;
  serverSocket: net.Socket;
  client: YamuxSession;
  server: YamuxSession;
}

type SideOptions = Omit<YamuxSessionOptions, 'role'>;

/** Runs `body` with a client and a server session over one TCP connection, then tears all down. */
async function withSessions(
  options: { client?: SideOptions; server?: SideOptions },
  body: (sessions: Sessions) => Promise<void>,
): Promise<void> {
  const pair = await tcpPair();
  const client = new YamuxSession(pair.client, { role: 'client', ...options.client });
  const server = new YamuxSession(pair.server, { role: 'server', ...options.server });
  try {
    await body({ clientSocket: pair.client, serverSocket: pair.server, client, server });
  } finally {
    client.destroy();
    server.destroy();
    await pair.close();
  }
}


/** The session's 'close' argument. Not `events.once`, which would add an 'error' listener. */
function sessionClosed(session: YamuxSession): Promise<Error | undefined> {
  return new Promise((resolve) => session.once('close', (error) => resolve(error)));
}

/** Resolves on the stream's 'close' without listening for 'error' (unlike `events.once`). */
function streamClosed(stream: YamuxStream): Promise<void> {
  return new Promise((resolve) => stream.once('close', () => resolve()));
}



/** Echoes every inbound stream back, half-closing after the peer does. */
function echo(stream: YamuxStream): void {
  stream.on('error', () => undefined);
  stream.pipe(stream);
}

function frame(header: FrameHeaderInit, body: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeHeader(header), body]);
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Parses what a session writes to a raw peer socket, frame by frame. */
class FrameReader {
  readonly frames: FrameHeader[] = [];
  private readonly queue = new ByteQueue();
  private header: FrameHeader | undefined;
  private waiters: { match: (h: FrameHeader) => boolean; resolve: (h: FrameHeader) => void; from: number }[] = [];

  constructor(socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      for (;;) {
        if (this.header === undefined) {
          const bytes = this.queue.read(HEADER_LENGTH);
          if (bytes === undefined) return;
          this.header = decodeHeader(bytes);
        }
        const bodyLength = this.header.type === FrameType.Data ? this.header.length : 0;
        if (this.queue.length < bodyLength) return;
        this.queue.skip(bodyLength);
        this.frames.push(this.header);
        this.header = undefined;
        this.wake();
      }
    });
  }

  /** The first frame matching `match` at or after index `from` of everything received. */
  next(match: (h: FrameHeader) => boolean, from = 0): Promise<FrameHeader> {
    const found = this.frames.slice(from).find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve) => this.waiters.push({ match, resolve, from }));
  }

  private wake(): void {
    const last = this.frames.length - 1;
    const header = this.frames[last] as FrameHeader;
    this.waiters = this.waiters.filter((waiter) => {
      if (last < waiter.from || !waiter.match(header)) return true;
      waiter.resolve(header);
      return false;
    });
  }
}

interface RawPeer {
  /** Our hand-written side: write raw frames here. */
  raw: net.Socket;
  reader: FrameReader;
  session: YamuxSession;
  closed: Promise<Error | undefined>;
}

/** A server session facing a raw socket we drive frame by frame. */
async function withRawPeer(options: SideOptions, body: (peer: RawPeer) => Promise<void>): Promise<void> {
  const pair = await tcpPair();
  pair.client.on('error', () => undefined); // a reset after a violation is expected
  const session = new YamuxSession(pair.server, { role: 'server', ...options });
  const closed = sessionClosed(session);
  try {
    await body({ raw: pair.client, reader: new FrameReader(pair.client), session, closed });
  } finally {
    session.destroy();
    await pair.close();
  }
}

const isPing = (opaque: number) => (h: FrameHeader) => h.type === FrameType.Ping && h.flags === Flag.ACK && h.length === opaque;
const isGoAway = (h: FrameHeader) => h.type === FrameType.GoAway;

// ---- specs ---------------------------------------------------------------------------------

// A regression fails within a minute rather than hanging the run.
describe('yamux over TCP', { timeout: 60_000 }, () => {
  it('carries 64 MiB over one stream intact and in seconds', async () => {
    const size = 64 * 1024 * 1024;
    const data = randomBytes(size);
    const digest = deferred<string>();
    await withSessions(
      {
        server: {
          onStream: (stream) => {
            const hash = createHash('sha256');
            let received = 0;
            stream.on('data', (chunk: Buffer) => {
              hash.update(chunk);
              received += chunk.length;
            });
            stream.on('end', () => {
              assert.equal(received, size);
              digest.resolve(hash.digest('hex'));
              stream.end();
            });
          },
        },
      },
      async ({ client }) => {
        const started = performance.now();
        const stream = client.openStream();
        await writeAll(stream, data, 1024 * 1024);
        assert.equal(await digest.promise, sha256(data));
        const elapsedMs = performance.now() - started;
        assert.ok(elapsedMs < 20_000, `64 MiB took ${elapsedMs.toFixed(0)} ms`);
      },
    );
  });

  it('works when every byte arrives and leaves on its own (frames split at every boundary)', async () => {
    /** Wraps a socket: writes each byte with its own write(), delivers each received byte alone. */
    class OneByteAtATime extends Duplex {
      constructor(private readonly socket: net.Socket) {
        super();
        socket.setNoDelay(true);
        socket.on('data', (chunk: Buffer) => {
          for (let i = 0; i < chunk.length; i++) this.push(chunk.subarray(i, i + 1));
        });
        socket.on('end', () => this.push(null));
        socket.on('error', (error) => this.destroy(error));
        socket.on('close', () => this.destroy());
      }
      override _read(): void {}
      override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
        for (let i = 0; i < chunk.length - 1; i++) this.socket.write(chunk.subarray(i, i + 1));
        this.socket.write(chunk.subarray(chunk.length - 1), () => callback());
      }
      override _final(callback: (error?: Error | null) => void): void {
        this.socket.end(() => callback());
      }
      override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
        this.socket.destroy();
        callback(error);
      }
    }

    const pair = await tcpPair();
    const client = new YamuxSession(new OneByteAtATime(pair.client), { role: 'client', onStream: echo });
    const server = new YamuxSession(new OneByteAtATime(pair.server), { role: 'server', onStream: echo });
    try {
      assert.ok((await client.ping()) > 0);
      assert.ok((await server.ping()) > 0);
      const message = randomBytes(100 * 1024); // two Data frames of 64 KiB and the rest
      const upstream = client.openStream();
      const upstreamReply = readAll(upstream);
      await writeAll(upstream, message, 7_000);
      assert.equal(sha256(await upstreamReply), sha256(message));

      const downstream = server.openStream();
      const downstreamReply = readAll(downstream);
      downstream.end('from the server, byte by byte');
      assert.equal((await downstreamReply).toString(), 'from the server, byte by byte');
      assert.equal(downstream.id % 2, 0);
    } finally {
      client.destroy();
      server.destroy();
      await pair.close();
    }
  });

  it('runs 1,000 concurrent streams, each echoing its own message', async () => {
    await withSessions({ server: { onStream: echo } }, async ({ client, server }) => {
      const streams = Array.from({ length: 1_000 }, () => client.openStream());
      assert.equal(client.streamCount, 1_000);
      const results = await Promise.all(
        streams.map(async (stream, index) => {
          const message = Buffer.from(`stream ${index}: ${randomBytes(16 + (index % 50)).toString('hex')}`);
          const reply = readAll(stream);
          stream.end(message);
          return { message, reply: await reply, id: stream.id };
        }),
      );
      for (const { message, reply } of results) assert.deepEqual(reply, message);
      const ids = new Set(results.map((r) => r.id));
      assert.equal(ids.size, 1_000);
      assert.ok([...ids].every((id) => id % 2 === 1), 'client streams use odd IDs');
      assert.equal(client.streamCount, 0);
      assert.equal(server.streamCount, 0);
    });
  });

  it('does request/response with half-close', async () => {
    await withSessions(
      {
        server: {
          onStream: (stream) => {
            void readAll(stream).then((request) => {
              // The client's FIN ended our readable side; we can still write.
              assert.ok(stream.writable);
              stream.end(`response to ${request.toString()}`);
            });
          },
        },
      },
      async ({ client, server }) => {
        const stream = client.openStream();
        stream.write('GET ');
        stream.end('/status');
        assert.equal((await readAll(stream)).toString(), 'response to GET /status');
        assert.equal(client.streamCount, 0);
        assert.equal(server.streamCount, 0);
      },
    );
  });

  it('holds a writer at the window while the reader does not read, then delivers everything', async () => {
    const inbound = deferred<YamuxStream>();
    await withSessions({ server: { onStream: (stream) => inbound.resolve(stream) } }, async ({ client, server, serverSocket }) => {
      const data = randomBytes(1024 * 1024);
      const chunkSize = 1024;
      const stream = client.openStream();
      let accepted = 0;
      const writer = (async () => {
        for (let offset = 0; offset < data.length; offset += chunkSize) {
          const ok = stream.write(data.subarray(offset, offset + chunkSize));
          accepted += chunkSize;
          if (!ok) await once(stream, 'drain');
        }
        stream.end();
      })();
      const receiver = await inbound.promise;

      // Checked after the session has handled each chunk the server socket delivers.
      await new Promise<void>((resolve) => {
        const check = (): void => {
          if (receiver.bufferedBytes < INITIAL_STREAM_WINDOW) return;
          serverSocket.off('data', check);
          resolve();
        };
        serverSocket.on('data', check);
        check();
      });
      const limit = INITIAL_STREAM_WINDOW + stream.writableHighWaterMark + chunkSize;
      const assertBlocked = (): void => {
        assert.equal(stream.sendWindow, 0);
        assert.equal(receiver.receiveWindow, 0, 'nothing is credited before the application reads');
        assert.equal(receiver.bufferedBytes, INITIAL_STREAM_WINDOW);
        assert.ok(accepted >= INITIAL_STREAM_WINDOW && accepted <= limit, `writer accepted ${accepted} bytes`);
      };
      assertBlocked();
      // A round trip later the writer is still held and nothing more has arrived.
      assert.ok((await server.ping()) > 0);
      assert.ok((await client.ping()) > 0);
      assertBlocked();

      const received = await readAll(receiver);
      await writer;
      assert.equal(received.length, data.length);
      assert.equal(sha256(received), sha256(data));
    });
  });

  it('interleaves streams: a small exchange is not stuck behind a bulk transfer', async () => {
    await withSessions({ server: { onStream: echo } }, async ({ client }) => {
      const bulk = client.openStream();
      const bulkData = randomBytes(16 * 1024 * 1024);
      let bulkDone = false;
      const bulkReply = readAll(bulk).then((reply) => {
        bulkDone = true;
        return reply;
      });
      const bulkWriter = writeAll(bulk, bulkData, 1024 * 1024);
      // Wait until bulk data is really flowing back.
      await once(bulk, 'data');
      const small = client.openStream();
      const smallReply = readAll(small);
      small.end('quick');
      assert.equal((await smallReply).toString(), 'quick');
      assert.equal(bulkDone, false, 'the small stream finished while the bulk one was still going');
      await bulkWriter;
      assert.equal(sha256(await bulkReply), sha256(bulkData));
    });
  });

  it('answers pings with a positive round-trip time', async () => {
    await withSessions({}, async ({ client, server }) => {
      const rtts = await Promise.all([client.ping(), client.ping(), server.ping(), client.ping()]);
      for (const rtt of rtts) assert.ok(rtt > 0 && Number.isFinite(rtt), `rtt ${rtt}`);
    });
  });

  it('keeps stream IDs working far past 256: 1,000 streams opened and closed one after another', async () => {
    await withSessions({ client: { onStream: echo }, server: { onStream: echo } }, async ({ client, server }) => {
      let lastId = 0;
      for (let i = 0; i < 1_000; i++) {
        const stream = client.openStream();
        const reply = readAll(stream);
        stream.end(`n${i}`);
        assert.equal((await reply).toString(), `n${i}`);
        lastId = stream.id;
      }
      assert.equal(lastId, 1_999);
      for (let i = 0; i < 300; i++) {
        const stream = server.openStream();
        const reply = readAll(stream);
        stream.end(`s${i}`);
        assert.equal((await reply).toString(), `s${i}`);
        lastId = stream.id;
      }
      assert.equal(lastId, 600);
      assert.equal(client.streamCount, 0);
      assert.equal(server.streamCount, 0);
    });
  });

  it('forgets every closed or reset stream (no leak across 20,000 streams)', async () => {
    await withSessions({ server: { onStream: echo } }, async ({ client, server }) => {
      for (let batch = 0; batch < 20; batch++) {
        await Promise.all(
          Array.from({ length: 1_000 }, async (_, i) => {
            const stream = client.openStream();
            if (i % 10 === 0) {
              // Every tenth stream is reset instead of closed.
              stream.reset();
              return;
            }
            const reply = readAll(stream);
            stream.end('x');
            assert.equal((await reply).toString(), 'x');
          }),
        );
        assert.equal(client.streamCount, 0);
      }
      // The server forgets the reset streams when their RST arrives: a ping round trip later.
      await client.ping();
      assert.equal(server.streamCount, 0);
    });
  });

  describe('RST', () => {
    it('a stream reset by the peer errors with StreamReset, and both sides forget it', async () => {
      await withSessions({ server: { onStream: (stream) => stream.once('data', () => stream.reset()) } }, async ({ client, server }) => {
        const stream = client.openStream();
        const failed = once(stream, 'error') as Promise<[Error]>;
        stream.write('trigger');
        const [error] = await failed;
        assert.ok(error instanceof StreamReset);
        assert.equal(error.streamId, stream.id);
        assert.equal(client.streamCount, 0);
        assert.equal(server.streamCount, 0);
      });
    });

    it('a stream with no error listener just closes on RST, without crashing', async () => {
      await withSessions({ server: { onStream: (stream) => stream.reset() } }, async ({ client }) => {
        const stream = client.openStream();
        let ended = false;
        stream.on('end', () => {
          ended = true;
        });
        stream.resume();
        await streamClosed(stream);
        assert.equal(ended, false);
        assert.equal(client.streamCount, 0);
      });
    });

    it('destroying a stream locally resets it on the peer', async () => {
      const inbound = deferred<YamuxStream>();
      await withSessions({ server: { onStream: (stream) => inbound.resolve(stream) } }, async ({ client }) => {
        const stream = client.openStream();
        stream.write('hello');
        const remote = await inbound.promise;
        const failed = once(remote, 'error') as Promise<[Error]>;
        stream.destroy();
        const [error] = await failed;
        assert.ok(error instanceof StreamReset);
      });
    });
  });

  describe('GoAway', () => {
    it('stops new streams both ways while existing streams go on', async () => {
      await withSessions({ client: { onStream: echo }, server: { onStream: echo } }, async ({ client, server }) => {
        const existing = client.openStream();
        existing.write('before ');
        // The server must have accepted the stream before its GoAway, or it would refuse it.
        await once(existing, 'data');
        const goaway = once(client, 'goaway') as Promise<[number]>;
        server.goAway();
        const [code] = await goaway;
        assert.equal(code, GoAwayCode.Normal);
        assert.throws(() => client.openStream(), (error) => error instanceof StreamOpenRefused && error.reason === 'remote-goaway');
        assert.throws(() => server.openStream(), (error) => error instanceof StreamOpenRefused && error.reason === 'local-goaway');
        const reply = readAll(existing);
        existing.end('after');
        assert.equal((await reply).toString(), 'after');
      });
    });

    it('refuses with RST a SYN that crosses our GoAway', async () => {
      await withSessions({ server: { onStream: echo } }, async ({ client, server }) => {
        server.goAway(GoAwayCode.Normal);
        const late = client.openStream(); // sent before the GoAway arrives
        const [error] = (await once(late, 'error')) as [Error];
        assert.ok(error instanceof StreamReset);
        assert.equal(server.streamCount, 0);
      });
    });
  });

  describe('close and destroy', () => {
    it('close() is graceful: GoAway, FIN on open streams, then the connection ends', async () => {
      await withSessions({ server: { onStream: echo } }, async ({ client, server, clientSocket, serverSocket }) => {
        const stream = client.openStream();
        const reply = readAll(stream);
        stream.write('unfinished business');
        const serverGoaway = once(server, 'goaway') as Promise<[number]>;
        const serverClosed = sessionClosed(server);
        const clientClosed = sessionClosed(client);
        await client.close();
        assert.equal(client.closed, true);
        assert.equal((await reply).toString(), 'unfinished business');
        assert.deepEqual(await serverGoaway, [GoAwayCode.Normal]);
        assert.equal(await clientClosed, undefined);
        assert.equal(await serverClosed, undefined);
        assert.equal(server.closed, true);
        await Promise.all([waitClosed(clientSocket), waitClosed(serverSocket)]);
        assert.throws(() => client.openStream(), ConnectionClosed);
        await assert.rejects(client.ping(), ConnectionClosed);
      });
    });

    it('destroy() ends streams and pending pings at once', async () => {
      await withSessions({ server: { onStream: echo } }, async ({ client }) => {
        const stream = client.openStream();
        const failed = once(stream, 'error') as Promise<[Error]>;
        const ping = client.ping();
        const reason = new Error('shutting down');
        client.destroy(reason);
        await assert.rejects(ping, ConnectionClosed);
        assert.deepEqual(await failed, [reason]);
        assert.equal(client.closed, true);
        assert.equal(client.streamCount, 0);
      });
    });

    it('the connection dropping closes the session and its streams with ConnectionClosed', async () => {
      await withSessions({ server: { onStream: echo } }, async ({ client, serverSocket }) => {
        const stream = client.openStream();
        stream.write('x');
        await once(stream, 'data');
        const failed = once(stream, 'error') as Promise<[Error]>;
        const closed = sessionClosed(client);
        serverSocket.destroy();
        const [error] = await failed;
        assert.ok(error instanceof ConnectionClosed);
        await closed;
        assert.equal(client.closed, true);
      });
    });
  });

  describe('against hand-written frames', () => {
    it('accepts with ACK, delivers data carried on the SYN, and answers Ping with the same opaque value', async () => {
      const inbound = deferred<YamuxStream>();
      await withRawPeer({ onStream: (stream) => inbound.resolve(stream) }, async ({ raw, reader }) => {
        raw.write(frame({ type: FrameType.Data, flags: Flag.SYN, streamId: 1, length: 5 }, Buffer.from('hello')));
        const ack = await reader.next((h) => h.streamId === 1);
        assert.deepEqual(ack, { version: 0, type: FrameType.WindowUpdate, flags: Flag.ACK, streamId: 1, length: 0 });
        const stream = await inbound.promise;
        const [chunk] = (await once(stream, 'data')) as [Buffer];
        assert.equal(chunk.toString(), 'hello');
        raw.write(frame({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: 0xdeadbeef }));
        await reader.next(isPing(0xdeadbeef));
      });
    });

    it('credits the receive window as the application reads, never on receipt', async () => {
      const inbound = deferred<YamuxStream>();
      await withRawPeer({ onStream: (stream) => inbound.resolve(stream) }, async ({ raw, reader, session }) => {
        const window = INITIAL_STREAM_WINDOW;
        raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }));
        raw.write(frame({ type: FrameType.Data, flags: 0, streamId: 1, length: window }, randomBytes(window)));
        raw.write(frame({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: 1 }));
        await reader.next(isPing(1));
        const updates = (): FrameHeader[] => reader.frames.filter((h) => h.type === FrameType.WindowUpdate && h.streamId === 1);
        assert.equal(updates().length, 1, 'only the ACK so far');
        assert.equal(updates()[0]?.flags, Flag.ACK);

        const stream = await inbound.promise;
        assert.equal(stream.receiveWindow, 0);
        const seen = reader.frames.length;
        stream.resume(); // the application reads
        const credit = await reader.next((h) => h.type === FrameType.WindowUpdate && h.streamId === 1, seen);
        assert.ok(credit.length >= window / 2, `credit of ${credit.length} bytes`);

        // The credit really is usable: another full window is accepted.
        raw.write(frame({ type: FrameType.Data, flags: 0, streamId: 1, length: credit.length }, randomBytes(credit.length)));
        raw.write(frame({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: 2 }));
        await reader.next(isPing(2));
        assert.equal(session.closed, false);
      });
    });

    it('ends the session with GoAway(ProtocolError) when data exceeds the window', async () => {
      const inbound = deferred<YamuxStream>();
      await withRawPeer({ onStream: (stream) => inbound.resolve(stream) }, async ({ raw, reader, closed }) => {
        raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }));
        const stream = await inbound.promise;
        const streamFailed = once(stream, 'error') as Promise<[Error]>;
        raw.write(frame({ type: FrameType.Data, flags: 0, streamId: 1, length: INITIAL_STREAM_WINDOW }, Buffer.alloc(INITIAL_STREAM_WINDOW)));
        raw.write(frame({ type: FrameType.Data, flags: 0, streamId: 1, length: 1 }, Buffer.from('!')));
        const goaway = await reader.next(isGoAway);
        assert.equal(goaway.length, GoAwayCode.ProtocolError);
        const error = await closed;
        assert.ok(error instanceof ProtocolViolation);
        const [streamError] = await streamFailed;
        assert.ok(streamError instanceof ProtocolViolation);
      });
    });

    it('rejects a frame longer than the cap from its header alone, before buffering its body', async () => {
      await withRawPeer({ onStream: echo, maxFrameLength: 1024 }, async ({ raw, reader, closed }) => {
        raw.write(encodeHeader({ type: FrameType.Data, flags: Flag.SYN, streamId: 1, length: 4096 }));
        assert.equal((await reader.next(isGoAway)).length, GoAwayCode.ProtocolError);
        const error = await closed;
        assert.ok(error instanceof ProtocolViolation);
      });
    });

    const violations: [string, Buffer][] = [
      ['a bad version', Buffer.from([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])],
      ['an unknown type', Buffer.from([0, 9, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])],
      ['a SYN for an ID of the server parity', frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 2, length: 0 })],
      ['a frame for a stream never opened', frame({ type: FrameType.Data, flags: 0, streamId: 7, length: 1 }, Buffer.from('?'))],
      [
        'a duplicate SYN',
        Buffer.concat([
          frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }),
          frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }),
        ]),
      ],
      [
        'data after FIN',
        Buffer.concat([
          frame({ type: FrameType.WindowUpdate, flags: Flag.SYN | Flag.FIN, streamId: 1, length: 0 }),
          frame({ type: FrameType.Data, flags: 0, streamId: 1, length: 1 }, Buffer.from('?')),
        ]),
      ],
      [
        'a send window overflowing u32',
        Buffer.concat([
          frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }),
          frame({ type: FrameType.WindowUpdate, flags: 0, streamId: 1, length: 0xffff_ffff }),
        ]),
      ],
    ];
    for (const [name, bytes] of violations) {
      it(`treats ${name} as a ProtocolViolation`, async () => {
        await withRawPeer({ onStream: echo }, async ({ raw, reader, closed }) => {
          raw.write(bytes);
          assert.equal((await reader.next(isGoAway)).length, GoAwayCode.ProtocolError);
          const error = await closed;
          assert.ok(error instanceof ProtocolViolation, String(error));
        });
      });
    }

    it('drops late frames for a stream already reset, without a violation', async () => {
      await withRawPeer({ onStream: echo }, async ({ raw, reader, session }) => {
        raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }));
        raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 1, length: 0 }));
        raw.write(frame({ type: FrameType.Data, flags: 0, streamId: 1, length: 3 }, Buffer.from('old')));
        raw.write(frame({ type: FrameType.WindowUpdate, flags: 0, streamId: 1, length: 100 }));
        raw.write(frame({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: 3 }));
        await reader.next(isPing(3));
        assert.equal(session.closed, false);
        assert.equal(session.streamCount, 0);
      });
    });

    it('refuses inbound streams beyond maxStreams with RST', async () => {
      await withRawPeer({ onStream: () => undefined, maxStreams: 2 }, async ({ raw, reader, session }) => {
        for (const id of [1, 3, 5]) raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: id, length: 0 }));
        assert.equal((await reader.next((h) => h.streamId === 1)).flags, Flag.ACK);
        assert.equal((await reader.next((h) => h.streamId === 3)).flags, Flag.ACK);
        assert.equal((await reader.next((h) => h.streamId === 5)).flags, Flag.RST);
        assert.equal(session.streamCount, 2);
        assert.equal(session.closed, false);
      });
    });

    it('refuses inbound streams with RST when nobody takes them', async () => {
      await withRawPeer({}, async ({ raw, reader }) => {
        raw.write(frame({ type: FrameType.Data, flags: Flag.SYN, streamId: 1, length: 2 }, Buffer.from('hi')));
        assert.equal((await reader.next((h) => h.streamId === 1)).flags, Flag.RST);
      });
    });
  });

  it('stops reading a peer that floods pings without reading the answers, and answers them all later', async () => {
    const pair = await tcpPair();
    const { client: raw, server: socket } = pair;
    raw.pause(); // the flooding peer reads nothing for now
    const session = new YamuxSession(socket, { role: 'server', maxPendingBytes: 0 });
    // Replies may only queue up to: high-water mark + one Data frame + maxPendingBytes (0 here),
    // plus the one frame whose write crossed the bound.
    const bound = socket.writableHighWaterMark + DEFAULT_MAX_SEND_FRAME_LENGTH + 2 * HEADER_LENGTH;
    let peakQueued = 0;
    let sawPause = false;
    const paused = deferred<void>();
    // Registered after the session's listeners, so these run once it has handled the event.
    const observe = (): void => {
      peakQueued = Math.max(peakQueued, socket.writableLength);
      if (socket.isPaused() && !sawPause) {
        sawPause = true;
        paused.resolve();
      }
    };
    socket.on('data', observe);
    socket.on('drain', observe);
    try {
      const pings = Buffer.concat(
        Array.from({ length: 1_000 }, (_, i) => encodeHeader({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: i })),
      );
      let sent = 0;
      // Flood until the session stops reading; the kernel's buffers absorb a few MB first.
      while (!sawPause) {
        assert.ok(sent < 256 * 1024 * 1024, 'the session never stopped reading');
        sent += pings.length;
        if (!raw.write(pings)) {
          await Promise.race([new Promise<void>((resolve) => raw.once('drain', () => resolve())), paused.promise]);
        }
      }
      assert.ok(peakQueued <= bound, `queued ${peakQueued} bytes, bound ${bound}`);

      let answered = 0;
      const allAnswered = new Promise<void>((resolve) => {
        raw.on('data', (chunk: Buffer) => {
          answered += chunk.length;
          if (answered === sent) resolve();
        });
      });
      raw.resume();
      await allAnswered;
      assert.equal(answered, sent, 'every ping got its answer');
      assert.ok(peakQueued <= bound, `queued ${peakQueued} bytes, bound ${bound}`);
      assert.equal(session.closed, false);
    } finally {
      session.destroy();
      await pair.close();
    }
  });

  describe('hostile input (fast-check)', () => {
    /** A valid client transcript touching every frame type and flag. */
    const transcript = Buffer.concat([
      frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }),
      frame({ type: FrameType.Data, flags: 0, streamId: 1, length: 5 }, Buffer.from('hello')),
      frame({ type: FrameType.Ping, flags: Flag.SYN, streamId: 0, length: 42 }),
      frame({ type: FrameType.WindowUpdate, flags: Flag.ACK, streamId: 1, length: 1000 }),
      frame({ type: FrameType.Data, flags: Flag.FIN, streamId: 1, length: 3 }, Buffer.from('bye')),
      frame({ type: FrameType.Data, flags: Flag.SYN, streamId: 3, length: 1 }, Buffer.from('x')),
      frame({ type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 3, length: 0 }),
      frame({ type: FrameType.Data, flags: Flag.SYN | Flag.FIN, streamId: 5, length: 8 }, Buffer.from('one-shot')),
      frame({ type: FrameType.Ping, flags: Flag.ACK, streamId: 0, length: 7 }),
      frame({ type: FrameType.GoAway, flags: 0, streamId: 0, length: GoAwayCode.Normal }),
    ]);

    /** Feeds `chunks` from a raw client to a fresh server session; resolves with how the session ended. */
    async function feed(listener: net.Server, port: number, chunks: Uint8Array[]): Promise<Error | undefined> {
      const accepted = once(listener, 'connection') as Promise<[net.Socket]>;
      const raw = net.connect(port, '127.0.0.1');
      raw.on('error', () => undefined);
      raw.resume();
      const [[socket]] = await Promise.all([accepted, once(raw, 'connect')]);
      const session = new YamuxSession(socket, {
        role: 'server',
        onStream: (stream) => {
          stream.on('error', () => undefined);
          stream.resume();
        },
      });
      const closed = sessionClosed(session);
      for (const chunk of chunks) raw.write(chunk);
      raw.end();
      const error = await closed;
      session.destroy();
      raw.destroy();
      await Promise.all([waitClosed(raw), waitClosed(socket)]);
      return error;
    }

    function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const chunks: Uint8Array[] = [];
      let start = 0;
      for (const point of [...points, bytes.length]) {
        if (point > start) chunks.push(bytes.subarray(start, point));
        start = Math.max(start, point);
      }
      return chunks;
    }

    const isCleanOrViolation = (error: Error | undefined): boolean =>
      error === undefined || error instanceof ProtocolViolation || error instanceof ConnectionClosed;

    async function withListener(body: (listener: net.Server, port: number) => Promise<void>): Promise<void> {
      const listener = net.createServer();
      listener.listen(0, '127.0.0.1');
      await once(listener, 'listening');
      try {
        await body(listener, (listener.address() as AddressInfo).port);
      } finally {
        await new Promise<void>((resolve) => listener.close(() => resolve()));
      }
    }

    it('the intact transcript, split anywhere, ends cleanly', async () => {
      await withListener(async (listener, port) => {
        await fc.assert(
          fc.asyncProperty(fc.array(fc.nat(), { maxLength: 8 }), async (cuts) => {
            assert.equal(await feed(listener, port, split(transcript, cuts)), undefined);
          }),
          { numRuns: 40 },
        );
      });
    });

    it('mutated transcripts only end in ProtocolViolation or a clean close', async () => {
      await withListener(async (listener, port) => {
        const edits = fc.array(fc.record({ at: fc.nat({ max: transcript.length - 1 }), value: fc.integer({ min: 0, max: 255 }) }), {
          minLength: 1,
          maxLength: 4,
        });
        await fc.assert(
          fc.asyncProperty(edits, fc.option(fc.nat({ max: transcript.length })), fc.array(fc.nat(), { maxLength: 4 }), async (changes, cut, cuts) => {
            const bytes = Buffer.from(transcript);
            for (const { at, value } of changes) bytes[at] = value;
            const input = cut === null ? bytes : bytes.subarray(0, cut);
            const error = await feed(listener, port, split(input, cuts));
            assert.ok(isCleanOrViolation(error), String(error));
          }),
          { numRuns: 150 },
        );
      });
    });

    it('random bytes and random frame sequences only end in ProtocolViolation or a clean close', async () => {
      await withListener(async (listener, port) => {
        const randomFrame = fc
          .record({
            type: fc.integer({ min: 0, max: 4 }),
            flags: fc.integer({ min: 0, max: 16 }),
            streamId: fc.integer({ min: 0, max: 8 }),
            length: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constantFrom(INITIAL_STREAM_WINDOW, INITIAL_STREAM_WINDOW + 1, 0xffff_ffff)),
            body: fc.uint8Array({ maxLength: 64 }),
          })
          .map(({ type, flags, streamId, length, body }) => {
            const header = Buffer.alloc(HEADER_LENGTH);
            header.writeUInt8(0, 0);
            header.writeUInt8(type, 1);
            header.writeUInt16BE(flags, 2);
            header.writeUInt32BE(streamId, 4);
            header.writeUInt32BE(type === FrameType.Data ? Math.min(length, body.length) : length, 8);
            return type === FrameType.Data ? Buffer.concat([header, body.subarray(0, Math.min(length, body.length))]) : header;
          });
        const input = fc.oneof(
          fc.uint8Array({ maxLength: 256 }),
          fc.array(randomFrame, { maxLength: 12 }).map((frames) => Buffer.concat(frames)),
        );
        await fc.assert(
          fc.asyncProperty(input, fc.array(fc.nat(), { maxLength: 4 }), async (bytes, cuts) => {
            const error = await feed(listener, port, split(bytes, cuts));
            assert.ok(isCleanOrViolation(error), String(error));
          }),
          { numRuns: 150 },
        );
      });
    });
  });
});

// ---- receive window auto-tuning and streamed bodies ------------------------------------------

/** A clock whose `now()` is what `time` returns; real (unref'd) timers for the violation linger. */
function clockAt(time: () => number): SessionTimers {
  return {
    setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
    clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
    now: time,
  };
}

/**
 * Plays the sender of stream 1 against a raw peer: `rounds` times, sends all the credit it has in
 * one Data frame and waits for the next WindowUpdate. Returns the grants seen (bytes) and checks
 * the session never fails (it would on data beyond the window it granted).
 */
async function sendRounds(peer: RawPeer, rounds: number): Promise<number[]> {
  const { raw, reader, session } = peer;
  const isCredit = (h: FrameHeader): boolean => h.type === FrameType.WindowUpdate && h.streamId === 1 && h.flags === 0;
  let credit = INITIAL_STREAM_WINDOW;
  let seen = reader.frames.length;
  const grants: number[] = [];
  for (let round = 0; round < rounds; round++) {
    raw.write(frame({ type: FrameType.Data, flags: 0, streamId: 1, length: credit }, Buffer.alloc(credit, round)));
    credit = 0;
    const update = await reader.next(isCredit, seen);
    seen = reader.frames.indexOf(update) + 1;
    grants.push(update.length);
    credit += update.length;
  }
  assert.equal(session.closed, false);
  return grants;
}

describe('yamux receive window auto-tuning', { timeout: 60_000 }, () => {
  it('a reader that keeps up doubles the window it grants, up to maxStreamWindow', async () => {
    const inbound = deferred<YamuxStream>();
    const onStream = (stream: YamuxStream): void => {
      stream.resume();
      inbound.resolve(stream);
    };
    const maxStreamWindow = 4 * INITIAL_STREAM_WINDOW;
    await withRawPeer({ onStream, maxStreamWindow, timers: clockAt(() => 0) }, async (peer) => {
      peer.raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }));
      const grants = await sendRounds(peer, 6);
      const stream = await inbound.promise;
      assert.equal(stream.receiveWindowSize, maxStreamWindow);
      assert.ok(Math.max(...grants) > INITIAL_STREAM_WINDOW, `grants ${grants.join(', ')}`);
      assert.ok(Math.max(...grants) <= maxStreamWindow, `grants ${grants.join(', ')}`);
      assert.ok(stream.receiveWindow <= maxStreamWindow);
    });
  });

  it('a reader slower than the growth threshold keeps the initial window', async () => {
    const inbound = deferred<YamuxStream>();
    const onStream = (stream: YamuxStream): void => {
      stream.resume();
      inbound.resolve(stream);
    };
    let time = 0;
    await withRawPeer({ onStream, timers: clockAt(() => (time += 1_000)) }, async (peer) => {
      peer.raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }));
      const grants = await sendRounds(peer, 4);
      assert.equal((await inbound.promise).receiveWindowSize, INITIAL_STREAM_WINDOW);
      for (const grant of grants) assert.ok(grant <= INITIAL_STREAM_WINDOW, `grant of ${grant}`);
    });
  });

  it('growth comes out of the session budget, which a closed stream gives back; maxStreamWindow = initialWindow disables it', async () => {
    const streams: YamuxStream[] = [];
    const onStream = (stream: YamuxStream): void => {
      stream.resume();
      streams.push(stream);
    };
    const options = { onStream, maxStreamWindow: 4 * INITIAL_STREAM_WINDOW, windowGrowthBudget: INITIAL_STREAM_WINDOW, timers: clockAt(() => 0) };
    await withRawPeer(options, async (peer) => {
      peer.raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }));
      await sendRounds(peer, 4);
      const first = streams[0];
      assert.ok(first !== undefined);
      assert.equal(first.receiveWindowSize, 2 * INITIAL_STREAM_WINDOW, 'one doubling is all the budget allows');
      const firstClosed = streamClosed(first);
      peer.raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.RST, streamId: 1, length: 0 }));
      await firstClosed;

      // Stream 3 gets the budget back. Its grants are read off the wire like stream 1's.
      peer.raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 3, length: 0 }));
      const isCredit3 = (h: FrameHeader): boolean => h.type === FrameType.WindowUpdate && h.streamId === 3 && h.flags === 0;
      const seen = peer.reader.frames.length;
      peer.raw.write(frame({ type: FrameType.Data, flags: 0, streamId: 3, length: INITIAL_STREAM_WINDOW }, Buffer.alloc(INITIAL_STREAM_WINDOW)));
      await peer.reader.next(isCredit3, seen);
      assert.equal(streams[1]?.receiveWindowSize, 2 * INITIAL_STREAM_WINDOW);
    });

    const unused = new Duplex({ read() {}, write(_chunk, _encoding, callback) { callback(); } });
    assert.throws(() => new YamuxSession(unused, { role: 'client', maxStreamWindow: INITIAL_STREAM_WINDOW - 1 }), RangeError);
    unused.destroy();
    const fixed = deferred<YamuxStream>();
    await withRawPeer(
      {
        onStream: (stream) => {
          stream.resume();
          fixed.resolve(stream);
        },
        maxStreamWindow: INITIAL_STREAM_WINDOW,
        timers: clockAt(() => 0),
      },
      async (peer) => {
        peer.raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }));
        const grants = await sendRounds(peer, 3);
        assert.equal((await fixed.promise).receiveWindowSize, INITIAL_STREAM_WINDOW);
        for (const grant of grants) assert.ok(grant <= INITIAL_STREAM_WINDOW, `grant of ${grant}`);
      },
    );
  });

  it('hands a Data body to its stream as it arrives, before the whole frame is in', async () => {
    const inbound = deferred<YamuxStream>();
    await withRawPeer({ onStream: (stream) => inbound.resolve(stream) }, async ({ raw }) => {
      const body = randomBytes(200_000);
      // A SYN with an empty body announces the stream at once; then one long frame, sent in two parts.
      raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.SYN, streamId: 1, length: 0 }));
      const stream = await inbound.promise;
      const received: Buffer[] = [];
      let total = 0;
      const firstPart = new Promise<void>((resolve) => {
        stream.on('data', (chunk: Buffer) => {
          received.push(chunk);
          total += chunk.length;
          if (total === 1000) resolve();
        });
      });
      raw.write(Buffer.concat([encodeHeader({ type: FrameType.Data, flags: 0, streamId: 1, length: body.length }), body.subarray(0, 1000)]));
      await firstPart;
      const ended = once(stream, 'end');
      raw.write(body.subarray(1000));
      raw.write(frame({ type: FrameType.WindowUpdate, flags: Flag.FIN, streamId: 1, length: 0 }));
      await ended;
      assert.deepEqual(Buffer.concat(received), body);
    });
  });
});

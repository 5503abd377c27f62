/**
 * Interoperability of our yamux with other implementations, over real TCP on 127.0.0.1:
 * - `@chainsafe/libp2p-yamux` v8 (js-libp2p 3), both directions: bulk echo on several streams,
 *   half-close request/response, streams opened by either side, pings, GoAway on close;
 * - `yamux-js` 0.2.0, for what it handles: a small echo, ping and GoAway, both directions.
 *
 * libp2p-yamux runs over a libp2p `MessageStream`; a small adapter below drives one from a
 * `net.Socket`. Test code only: the library never depends on libp2p.
 */
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { AbortOptions, Stream as Libp2pStream, StreamMuxer } from '@libp2p/interface';
import type { SendResult } from '@libp2p/utils';
import { Client as YamuxJsClient, Server as YamuxJsServer } from 'yamux-js';

import { GoAwayCode, StreamOpenRefused, YamuxSession } from '../transport/yamux/index.js';
import type { YamuxStream } from '../transport/yamux/index.js';
import { readAll, sha256, tcpPair, writeAll } from './support/sockets.js';

// libp2p-yamux uses Promise.withResolvers (ES2024), which Node 20 lacks: define it before the
// libp2p modules load (hence their dynamic imports below). Spec code only.
interface Resolvers<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
}
const promiseStatics = Promise as PromiseConstructor & { withResolvers?: <T>() => Resolvers<T> };
if (typeof promiseStatics.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>(): Resolvers<T> {
      let resolve!: (value: T | PromiseLike<T>) => void;
      let reject!: (reason?: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}
const { yamux } = await import('@chainsafe/libp2p-yamux');
const { AbstractMultiaddrConnection } = await import('@libp2p/utils');
const { defaultLogger } = await import('@libp2p/logger');
const { multiaddr } = await import('@multiformats/multiaddr');

/** What libp2p hands to `sendData` (a Uint8ArrayList of the copy @libp2p/utils resolves). */
type OutgoingData = Parameters<InstanceType<typeof AbstractMultiaddrConnection>['sendData']>[0];

/** A libp2p MultiaddrConnection over a connected `net.Socket`. */
class SocketConnection extends AbstractMultiaddrConnection {
  private readonly socket: net.Socket;

  constructor(socket: net.Socket, direction: 'inbound' | 'outbound') {
    super({
      log: defaultLogger().forComponent(`spec:socket:${direction}`),
      direction,
      remoteAddr: multiaddr(`/ip4/127.0.0.1/tcp/${socket.remotePort ?? 0}`),
    });
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.safeDispatchEvent('drain'));
    socket.on('end', () => this.onRemoteCloseWrite());
    socket.on('error', (error) => this.abort(error));
    socket.on('close', () => this.onTransportClosed());
  }

  sendData(data: OutgoingData): SendResult {
    let canSendMore = true;
    for (const chunk of data) canSendMore = this.socket.write(chunk);
    return { sentBytes: data.byteLength, canSendMore };
  }

  sendReset(): void {
    this.socket.resetAndDestroy();
  }

  async sendClose(_options?: AbortOptions): Promise<void> {
    if (this.socket.writableEnded) return;
    await new Promise<void>((resolve) => this.socket.end(() => resolve()));
  }

  sendPause(): void {
    this.socket.pause();
  }

  sendResume(): void {
    this.socket.resume();
  }
}

// ---- helpers -------------------------------------------------------------------------------


/** Collects a stream's text until `length` characters have arrived (for peers that never send FIN). */
function receiveText(stream: Duplex, length: number): Promise<string> {
  return new Promise<string>((resolve) => {
    let text = '';
    stream.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.length >= length) resolve(text);
    });
  });
}

async function withTcpPair(body: (client: net.Socket, server: net.Socket) => Promise<void>): Promise<void> {
  const pair = await tcpPair();
  for (const socket of [pair.client, pair.server]) socket.on('error', () => undefined); // a peer may reset when torn down
  try {
    await body(pair.client, pair.server);
  } finally {
    await pair.close();
  }
}




/** Our request/response handler: read to the peer's FIN, answer, FIN. */
function ourResponder(stream: YamuxStream): void {
  stream.on('error', () => undefined);
  void readAll(stream).then((request) => stream.end(Buffer.concat([Buffer.from('ours: '), request])));
}

/** Reads one of their streams to its end. */
async function readTheirs(stream: Libp2pStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk.subarray()));
  return Buffer.concat(chunks);
}

async function sendTheirs(stream: Libp2pStream, data: Uint8Array): Promise<void> {
  if (!stream.send(data)) await stream.onDrain();
}

/**
 * Their stream handler. First byte 'E': echo as data arrives; otherwise request/response: read
 * to our FIN, then answer and close their side (half-close).
 */
async function theirHandler(stream: Libp2pStream): Promise<void> {
  let mode: 'echo' | 'respond' | undefined;
  const request: Buffer[] = [];
  for await (const chunk of stream) {
    const bytes = chunk.subarray();
    mode ??= bytes[0] === 0x45 ? 'echo' : 'respond';
    if (mode === 'echo') await sendTheirs(stream, bytes);
    else request.push(Buffer.from(bytes));
  }
  if (mode === 'respond') await sendTheirs(stream, Buffer.concat([Buffer.from('theirs: '), ...request]));
  await stream.close();
}

interface Libp2pPeer {
  ours: YamuxSession;
  theirs: StreamMuxer<Libp2pStream>;
}

/** Our session on one end of a TCP connection, libp2p-yamux on the other. */
async function withLibp2p(ourRole: 'client' | 'server', body: (peer: Libp2pPeer) => Promise<void>): Promise<void> {
  await withTcpPair(async (clientSocket, serverSocket) => {
    const ourSocket = ourRole === 'client' ? clientSocket : serverSocket;
    const theirSocket = ourRole === 'client' ? serverSocket : clientSocket;
    const ours = new YamuxSession(ourSocket, { role: ourRole, onStream: ourResponder });
    const connection = new SocketConnection(theirSocket, ourRole === 'client' ? 'inbound' : 'outbound');
    const theirs = yamux({ enableKeepAlive: false })().createStreamMuxer(connection);
    theirs.addEventListener('stream', (event) => {
      theirHandler(event.detail).catch(() => undefined);
    });
    try {
      await body({ ours, theirs });
    } finally {
      ours.destroy();
      theirs.abort(new Error('test over'));
    }
  });
}

// ---- specs ---------------------------------------------------------------------------------

for (const ourRole of ['client', 'server'] as const) {
  const title = ourRole === 'client' ? 'our client ↔ libp2p-yamux server' : 'libp2p-yamux client ↔ our server';
  describe(`interop: ${title}`, { timeout: 30_000 }, () => {
    it('echoes a few MiB on several concurrent streams we open', async () => {
      await withLibp2p(ourRole, async ({ ours }) => {
        const results = await Promise.all(
          Array.from({ length: 4 }, async () => {
            const data = Buffer.concat([Buffer.from('E'), randomBytes(2 * 1024 * 1024)]);
            const stream = ours.openStream();
            const reply = readAll(stream);
            await writeAll(stream, data, 64 * 1024);
            return sha256(await reply) === sha256(data);
          }),
        );
        assert.deepEqual(results, [true, true, true, true]);
        assert.equal(ours.streamCount, 0);
      });
    });

    it('does half-close request/response on a stream we open', async () => {
      await withLibp2p(ourRole, async ({ ours }) => {
        const stream = ours.openStream();
        const reply = readAll(stream);
        stream.write('request ');
        stream.end('body');
        assert.equal((await reply).toString(), 'theirs: request body');
      });
    });

    it('serves streams they open, in bulk and with half-close', async () => {
      await withLibp2p(ourRole, async ({ ours, theirs }) => {
        const payloads = [randomBytes(1024 * 1024), Buffer.from('small request')];
        const replies = await Promise.all(
          payloads.map(async (payload) => {
            const stream = await theirs.createStream();
            const reply = readTheirs(stream);
            await sendTheirs(stream, payload);
            await stream.close(); // their FIN: our responder answers after it
            return reply;
          }),
        );
        payloads.forEach((payload, index) => {
          assert.equal(sha256(replies[index] ?? Buffer.alloc(0)), sha256(Buffer.concat([Buffer.from('ours: '), payload])));
        });
        assert.equal(ours.streamCount, 0);
      });
    });

    it('answers pings both ways', async () => {
      await withLibp2p(ourRole, async ({ ours, theirs }) => {
        assert.ok((await ours.ping()) > 0);
        const their = theirs as StreamMuxer<Libp2pStream> & { ping(): Promise<number> };
        assert.ok((await their.ping()) >= 0);
      });
    });

    it('sees their GoAway when they close, and then opens no new stream', async () => {
      await withLibp2p(ourRole, async ({ ours, theirs }) => {
        const goaway = once(ours, 'goaway') as Promise<[number]>;
        await theirs.close();
        assert.deepEqual(await goaway, [GoAwayCode.Normal]);
        assert.throws(() => ours.openStream(), (error) => error instanceof StreamOpenRefused && error.reason === 'remote-goaway');
        await ours.close();
        assert.equal(ours.closed, true);
      });
    });
  });
}

describe('interop: yamux-js 0.2.0', { timeout: 30_000 }, () => {
  const quiet = { enableKeepAlive: false, logger: () => undefined };

  it('our client ↔ their server: echo, ping, GoAway both ways', async () => {
    await withTcpPair(async (clientSocket, serverSocket) => {
      const theirs = new YamuxJsServer((stream: Duplex) => {
        stream.on('error', () => undefined);
        stream.on('data', (chunk: Buffer) => stream.write(chunk));
      }, quiet);
      theirs.on('error', () => undefined);
      serverSocket.pipe(theirs).pipe(serverSocket);
      const ours = new YamuxSession(clientSocket, { role: 'client' });
      try {
        const stream = ours.openStream();
        const message = 'hello yamux-js';
        const echoed = receiveText(stream, message.length);
        stream.write(message);
        assert.equal(await echoed, message);
        assert.equal(stream.established, true, 'their ACK arrived');

        assert.ok((await ours.ping()) > 0);

        // Our GoAway: once it reached them, they refuse to open streams. yamux-js drops whatever
        // follows a GoAway in the same read, so no ping as a barrier: their socket's 'data'
        // listeners run in order, and the pipe into their session was attached first.
        const delivered = once(serverSocket, 'data');
        ours.goAway();
        await delivered;
        const refused = once(theirs, 'error') as Promise<[Error]>;
        theirs.open();
        const [error] = await refused;
        assert.match(error.message, /not accepting/);

        // Their GoAway (their close): no new streams on our side.
        const opened = new Promise<unknown>((resolve) => {
          ours.once('goaway', (code) => {
            assert.equal(code, GoAwayCode.Normal);
            try {
              ours.openStream();
              resolve(undefined);
            } catch (refusal) {
              resolve(refusal);
            }
          });
        });
        theirs.close();
        assert.ok((await opened) instanceof StreamOpenRefused);
      } finally {
        ours.destroy();
        theirs.destroy();
      }
    });
  });

  it('their client ↔ our server: echo and ping', async () => {
    await withTcpPair(async (clientSocket, serverSocket) => {
      const theirs = new YamuxJsClient(quiet);
      theirs.on('error', () => undefined);
      clientSocket.pipe(theirs).pipe(clientSocket);
      const ours = new YamuxSession(serverSocket, {
        role: 'server',
        onStream: (stream) => {
          stream.on('error', () => undefined);
          stream.on('data', (chunk: Buffer) => stream.write(chunk));
        },
      });
      try {
        const stream = theirs.open();
        stream.on('error', () => undefined);
        const message = 'hi from yamux-js';
        const echoed = receiveText(stream, message.length);
        stream.write(message);
        assert.equal(await echoed, message);
        assert.equal(ours.streamCount, 1);
        assert.ok((await ours.ping()) > 0);
      } finally {
        ours.destroy();
        theirs.destroy();
      }
    });
  });
});

/**
 * Raw `node:net`, the baseline of the benchmark: what TCP alone costs on this machine, with no
 * handshake, no encryption and no multiplexing.
 *
 * Wire format (bench only, 8-byte frames until the sink starts):
 * - ping: the node sends 8 bytes starting with `'P'` (0x50); the peer echoes them unchanged.
 *   Answers come back in order (TCP), so a FIFO of waiting pings matches them.
 * - sink: the node sends one 8-byte frame starting with `'B'` (0x42), the socket's stand-in for
 *   opening a stream of {@link SINK_PROTOCOL}; from then on the peer counts every byte until the
 *   node half-closes, then writes the count as a u64 big-endian and ends. The socket is spent after
 *   that: raw TCP has no streams, the whole socket is the stream.
 *
 * A connection is up on `'connect'` (there is no handshake). The node pings every connection every
 * {@link TCP_PING_INTERVAL_MS} like the other systems; the peers only answer.
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';

import { ConnectionClosed, DialFailed, ProtocolViolation } from '../../transport/errors.js';
import type { BenchConnection, BenchImpl, BenchNode, NodeOptions, PeerGroup, PeersOptions } from '../impl.js';

/** Interval of the node's pings on every connection, ms (the others ping every 10 s too). */
export const TCP_PING_INTERVAL_MS = 10_000;

/** Size of a ping frame, the sink's opening frame and the sink's count, bytes. */
const FRAME_BYTES = 8;
const PING_TAG = 0x50;
const SINK_TAG = 0x42;

/** Splits `host:port` (IPv4 or a bracketed IPv6 host). @throws RangeError on anything else. */
function parseAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new RangeError(`not a host:port address: ${address}`);
  }
  return { host, port };
}

/**
 * The peer's side of one accepted socket: echoes ping frames until a sink frame arrives, then
 * counts bytes until the node's end and answers with the count. An unknown frame tag is a
 * protocol violation: the socket is destroyed (the bench's node never sends one).
 */
function servePeerSocket(socket: net.Socket): void {
  socket.setNoDelay(true);
  // Resets by the node (destroy, reaction case) are expected; never crash the peers' process.
  socket.on('error', () => undefined);
  let pending: Buffer | undefined;
  let sinking = false;
  let received = 0;
  socket.on('data', (chunk: Buffer) => {
    if (sinking) {
      received += chunk.length;
      return;
    }
    const bytes = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
    pending = undefined;
    let offset = 0;
    let echoEnd = 0;
    while (bytes.length - offset >= FRAME_BYTES) {
      const tag = bytes[offset];
      if (tag === PING_TAG) {
        offset += FRAME_BYTES;
        echoEnd = offset;
      } else if (tag === SINK_TAG) {
        sinking = true;
        received += bytes.length - offset - FRAME_BYTES;
        break;
      } else {
        socket.destroy(new ProtocolViolation(`unknown bench frame tag ${String(tag)}`));
        return;
      }
    }
    // One write for every ping frame of this chunk, in order, before anything else.
    if (echoEnd > 0) socket.write(bytes.subarray(0, echoEnd));
    if (!sinking && offset < bytes.length) pending = Buffer.from(bytes.subarray(offset));
  });
  socket.on('end', () => {
    if (sinking) {
      const count = Buffer.alloc(FRAME_BYTES);
      count.writeBigUInt64BE(BigInt(received));
      socket.end(count);
    } else {
      socket.end();
    }
  });
}

/** Listens on 127.0.0.1, port chosen by the OS. @throws the listen error. */
function listenOn(server: net.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Peers: one listener per peer on 127.0.0.1. */
async function startPeers(options: PeersOptions): Promise<PeerGroup> {
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const listenOne = async (): Promise<net.Server> => {
    // allowHalfOpen: the sink must still write its count after the node's end.
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      servePeerSocket(socket);
    });
    await listenOn(server);
    return server;
  };
  for (let index = 0; index < options.count; index++) servers.push(await listenOne());
  const addresses = servers.map((server) => {
    const { port } = server.address() as net.AddressInfo;
    return `127.0.0.1:${port}`;
  });
  return {
    addresses,
    stop: async () => {
      const closed = servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
      for (const socket of sockets) socket.destroy();
      await Promise.all(closed);
    },
  };
}

interface PingWaiter {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/** The node's side of one raw TCP connection. */
class TcpConnection implements BenchConnection {
  /** Pings sent and not yet answered, oldest first. */
  private readonly waiters: PingWaiter[] = [];
  private pending: Buffer | undefined;
  private sequence = 0;
  private sink: { readonly expected: number; readonly resolve: () => void; readonly reject: (error: Error) => void } | undefined;
  private sinkStarted = false;
  private readonly timer: NodeJS.Timeout;
  /** Resolves when the socket has closed, for whatever reason. */
  private readonly closed: Promise<void>;

  constructor(private readonly socket: net.Socket) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined); // the 'close' that follows does the cleanup
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.once('close', () => this.onClose());
    this.timer = setInterval(() => void this.ping().catch(() => undefined), TCP_PING_INTERVAL_MS);
    this.timer.unref();
  }

  private onData(chunk: Buffer): void {
    let bytes = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = undefined;
    while (bytes.length >= FRAME_BYTES) {
      const frame = bytes.subarray(0, FRAME_BYTES);
      bytes = bytes.subarray(FRAME_BYTES);
      const waiter = this.waiters.shift();
      if (waiter !== undefined) {
        waiter.resolve();
      } else if (this.sink !== undefined) {
        const count = Number(frame.readBigUInt64BE(0));
        const sink = this.sink;
        this.sink = undefined;
        if (count === sink.expected) sink.resolve();
        else sink.reject(new ProtocolViolation(`sink counted ${count} bytes, ${sink.expected} were sent`));
      } else {
        this.socket.destroy(new ProtocolViolation('unexpected 8 bytes from the peer'));
        return;
      }
    }
    if (bytes.length > 0) this.pending = Buffer.from(bytes);
  }

  private onClose(): void {
    clearInterval(this.timer);
    const error = new ConnectionClosed();
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
    const sink = this.sink;
    this.sink = undefined;
    sink?.reject(error);
  }

  ping(): Promise<void> {
    if (this.socket.closed || this.socket.writableEnded) return Promise.reject(new ConnectionClosed());
    if (this.sinkStarted) return Promise.reject(new ConnectionClosed('the socket carries the sink now'));
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      const frame = Buffer.alloc(FRAME_BYTES);
      frame[0] = PING_TAG;
      frame.writeUIntBE(this.sequence++ % 2 ** 48, 2, 6);
      this.socket.write(frame);
    });
  }

  async sendBulk(totalBytes: number, chunkBytes: number): Promise<void> {
    if (this.sinkStarted) throw new ConnectionClosed('raw TCP carries one sink per socket');
    if (this.socket.closed) throw new ConnectionClosed();
    this.sinkStarted = true;
    clearInterval(this.timer); // any further ping frame would be counted as sink bytes
    const answered = new Promise<void>((resolve, reject) => {
      this.sink = { expected: totalBytes, resolve, reject };
    });
    // Keep the rejection handled while writing; it is awaited below.
    answered.catch(() => undefined);
    const opening = Buffer.alloc(FRAME_BYTES);
    opening[0] = SINK_TAG;
    this.socket.write(opening);
    const chunk = Buffer.alloc(chunkBytes, 0x61);
    let remaining = totalBytes;
    while (remaining > 0) {
      const size = Math.min(remaining, chunkBytes);
      remaining -= size;
      if (!this.socket.write(size === chunkBytes ? chunk : chunk.subarray(0, size))) await this.drained();
    }
    this.socket.end();
    await answered;
  }

  /** Resolves on 'drain'. @throws ConnectionClosed when the socket closes first. */
  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onDrain = (): void => {
        this.socket.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        this.socket.off('drain', onDrain);
        reject(new ConnectionClosed());
      };
      this.socket.once('drain', onDrain);
      this.socket.once('close', onClose);
    });
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    if (!this.socket.closed) this.socket.end();
    await this.closed;
  }

  async destroySocketAndTimeReaction(): Promise<number> {
    const started = performance.now();
    this.socket.destroy();
    await this.closed;
    return performance.now() - started;
  }

  /** Destroys the socket at once (node stop). */
  destroy(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

/** The node: dials with `net.connect`, Nagle off as in the other systems. */
function startNode(_options: NodeOptions): Promise<BenchNode> {
  const connections = new Set<TcpConnection>();
  const node: BenchNode = {
    connect: (address) =>
      new Promise((resolve, reject) => {
        const { host, port } = parseAddress(address);
        const socket = net.connect({ host, port, noDelay: true });
        const onError = (error: Error): void => reject(new DialFailed(address, { cause: error }));
        socket.once('error', onError);
        socket.once('connect', () => {
          socket.off('error', onError);
          const connection = new TcpConnection(socket);
          connections.add(connection);
          socket.once('close', () => connections.delete(connection));
          resolve(connection);
        });
      }),
    stop: async () => {
      await Promise.all([...connections].map((connection) => connection.destroy()));
    },
  };
  return Promise.resolve(node);
}

/** Raw `node:net`: the baseline system of the benchmark. */
export const tcpImpl: BenchImpl = {
  name: 'raw TCP',
  startPeers,
  startNode,
};

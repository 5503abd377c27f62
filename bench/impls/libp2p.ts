/**
 * js-libp2p 3 as a system under test: `libp2p` with `@libp2p/tcp`, `@chainsafe/libp2p-noise`,
 * `@chainsafe/libp2p-yamux` and `@libp2p/ping`. js-libp2p's defaults everywhere (connection
 * monitor on, pinging every connection every 10 s; yamux keep-alive; TCP socket options), no
 * identify, no DHT, no relay, and only the connection limits raised (see {@link connectionLimits})
 * so the cases can hold 10,000 connections.
 *
 * js-libp2p is loaded on first use with `import()`, after `./withresolvers.js` (Node 20 lacks
 * `Promise.withResolvers`), so processes that measure another system never load it.
 */
import './withresolvers.js';
import net from 'node:net';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Connection, Libp2p, Stream } from '@libp2p/interface';
import type { Ping } from '@libp2p/ping';
import type { ConnectionManagerInit, Libp2pOptions } from 'libp2p';
import type * as Libp2pModule from 'libp2p';
import type * as TcpModule from '@libp2p/tcp';
import type * as NoiseModule from '@chainsafe/libp2p-noise';
import type * as YamuxModule from '@chainsafe/libp2p-yamux';
import type * as PingModule from '@libp2p/ping';
import type * as MultiaddrModule from '@multiformats/multiaddr';
import { SINK_PROTOCOL } from '../impl.js';
import type { BenchConnection, BenchImpl, BenchNode, NodeOptions, PeerGroup, PeersOptions } from '../impl.js';

/** A js-libp2p node with the one service the bench uses. */
type PingNode = Libp2p<{ ping: Ping }>;

/** The js-libp2p factories, loaded once. */
interface Modules {
  readonly createLibp2p: typeof Libp2pModule.createLibp2p;
  readonly tcp: typeof TcpModule.tcp;
  readonly noise: typeof NoiseModule.noise;
  readonly yamux: typeof YamuxModule.yamux;
  readonly ping: typeof PingModule.ping;
  readonly multiaddr: typeof MultiaddrModule.multiaddr;
}

let modules: Promise<Modules> | undefined;

/** Imports js-libp2p (after the polyfill above). Rejects when a package is missing. */
function loadModules(): Promise<Modules> {
  modules ??= (async (): Promise<Modules> => {
    const [libp2p, tcp, noise, yamux, ping, ma] = await Promise.all([
      import('libp2p'),
      import('@libp2p/tcp'),
      import('@chainsafe/libp2p-noise'),
      import('@chainsafe/libp2p-yamux'),
      import('@libp2p/ping'),
      import('@multiformats/multiaddr'),
    ]);
    return {
      createLibp2p: libp2p.createLibp2p,
      tcp: tcp.tcp,
      noise: noise.noise,
      yamux: yamux.yamux,
      ping: ping.ping,
      multiaddr: ma.multiaddr,
    };
  })();
  return modules;
}

/**
 * The connection-manager limits raised from js-libp2p's defaults so that `connections`
 * connections (count) fit; everything else stays default. Every dial and every inbound
 * connection of the bench comes from 127.0.0.1, which js-libp2p's per-host limits were not made for.
 * - `maxConnections` (default 300): above it the pruner closes connections. Raised to
 *   `connections` + 64 so a close whose `connection:close` is still pending never triggers pruning.
 * - `maxParallelDials` (default 100) and `maxDialQueueLength` (default 500: further dials fail
 *   with "Dial queue is full"): raised to `connections`, so the case decides the dial
 *   concurrency, not the queue.
 * - `maxIncomingPendingConnections` (default 10 inbound connections mid-upgrade): raised to
 *   `connections`, or 32 concurrent dialers to one peer are refused.
 * - `inboundConnectionThreshold` (default 5 inbound connections per second per remote host):
 *   unlimited, or a peer refuses the sequential connect/close case from 127.0.0.1 after 5 dials.
 */
export function connectionLimits(connections: number): ConnectionManagerInit {
  return {
    maxConnections: connections + 64,
    maxParallelDials: Math.max(100, connections),
    maxDialQueueLength: Math.max(500, connections),
    maxIncomingPendingConnections: Math.max(10, connections),
    inboundConnectionThreshold: Number.MAX_SAFE_INTEGER,
  };
}

/**
 * Each peer's own limits: a peer may be dialled over and over (connection-rate cases) or by many
 * dialers at once, so it gets room for 10,000 connections like the node.
 */
const PEER_CONNECTIONS = 10_000;

/** Peers started at once by {@link libp2pImpl.startPeers}: enough to overlap key generation and listen. */
const START_BATCH = 64;

/** How long {@link BenchConnection.destroySocketAndTimeReaction} waits for `connection:close`, ms. */
const REACTION_TIMEOUT_MS = 30_000;

/** Options shared by peers and node: TCP + Noise + yamux, `@libp2p/ping`, no other service. */
function baseOptions(m: Modules, connections: number): Libp2pOptions<{ ping: Ping }> {
  return {
    transports: [m.tcp()],
    connectionEncrypters: [m.noise()],
    streamMuxers: [m.yamux()],
    // The ping stream limits are raised from 1 outbound / 2 inbound per connection: the connection
    // monitor pings over the same protocol every 10 s, and a bench ping that overlaps it failed
    // with TooManyOutboundProtocolStreamsError (2/1); inbound leaves room for closing streams.
    services: { ping: m.ping({ maxOutboundStreams: 2, maxInboundStreams: 4 }) },
    connectionManager: connectionLimits(connections),
  };
}

/** Serves {@link SINK_PROTOCOL}: counts bytes until the writer ends, answers the count (u64 BE), closes. */
async function serveSink(stream: Stream): Promise<void> {
  let count = 0;
  for await (const chunk of stream) count += chunk.byteLength;
  const answer = new Uint8Array(8);
  new DataView(answer.buffer).setBigUint64(0, BigInt(count));
  stream.send(answer);
  await stream.close();
}

/**
 * Writes `totalBytes` on a new sink stream in `chunkBytes` pieces of one reused buffer, waiting on
 * `onDrain()` whenever `send()` returns false (js-libp2p 3's backpressure signal), ends the
 * writable side and reads the peer's 8-byte count.
 * @throws when the count differs from `totalBytes` or the stream closes before it arrives.
 */
async function sendBulk(connection: Connection, totalBytes: number, chunkBytes: number): Promise<void> {
  const stream = await connection.newStream(SINK_PROTOCOL);
  // Listen before writing: the count may arrive as soon as the writable side ends.
  const answer = new Promise<bigint>((resolve, reject) => {
    const parts: Uint8Array[] = [];
    let length = 0;
    const onMessage = (evt: { data: Uint8Array | { subarray(): Uint8Array } }): void => {
      const data = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray();
      parts.push(data);
      length += data.byteLength;
      if (length >= 8) finish();
    };
    const onEnd = (): void => finish();
    const finish = (): void => {
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('remoteCloseWrite', onEnd);
      stream.removeEventListener('close', onEnd);
      const bytes = Buffer.concat(parts);
      if (bytes.length !== 8) reject(new Error(`sink answered ${bytes.length} bytes, not 8`));
      else resolve(bytes.readBigUInt64BE(0));
    };
    stream.addEventListener('message', onMessage);
    stream.addEventListener('remoteCloseWrite', onEnd);
    stream.addEventListener('close', onEnd);
  });
  // Handled now as well as awaited below: a stream that fails mid-write must not leave an
  // unhandled rejection behind while the loop still waits on onDrain().
  answer.catch(() => undefined);
  const chunk = new Uint8Array(chunkBytes).fill(0xa5);
  let sent = 0;
  try {
    while (sent < totalBytes) {
      const n = Math.min(chunkBytes, totalBytes - sent);
      sent += n;
      if (!stream.send(n === chunkBytes ? chunk : chunk.subarray(0, n))) await stream.onDrain();
    }
    await stream.close();
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
  const count = await answer;
  if (count !== BigInt(totalBytes)) throw new Error(`sink counted ${count} bytes, sent ${totalBytes}`);
}

/**
 * Where the socket of a dial goes: {@link armedSlot} is set by the dial's `tcp:open-connection`
 * progress event, which `@libp2p/tcp` (11.x, `TCP._connect`) emits synchronously right before it
 * calls `net.connect`; the wrapped `net.connect` fills the slot and disarms it. Nothing can run in
 * between, so the socket is that dial's, even with many dials in flight.
 */
interface SocketSlot {
  socket?: Socket;
}

let armedSlot: SocketSlot | undefined;
let netConnectWrapped = false;

/**
 * Wraps `net.connect` (the export `@libp2p/tcp` calls, shared by every ESM/CJS importer of
 * `node:net`) to hand each new socket to the armed slot. Call only in a process that measures
 * js-libp2p: it is never undone. Passes every call through unchanged.
 */
function wrapNetConnect(): void {
  if (netConnectWrapped) return;
  netConnectWrapped = true;
  const original = net.connect;
  const wrapped = (...args: unknown[]): Socket => {
    const socket = Reflect.apply(original, net, args) as Socket;
    if (armedSlot !== undefined) {
      armedSlot.socket = socket;
      armedSlot = undefined;
    }
    return socket;
  };
  Reflect.set(net, 'connect', wrapped);
}

/** Starts `count` listening peers (each its own Ed25519 identity) on 127.0.0.1, {@link START_BATCH} at a time. */
async function startPeers(options: PeersOptions): Promise<PeerGroup> {
  const m = await loadModules();
  const nodes: PingNode[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(
      nodes.map(async (node) => {
        await node.stop();
      }),
    );
  };
  try {
    for (let i = 0; i < options.count; i += START_BATCH) {
      const batch = Math.min(START_BATCH, options.count - i);
      await Promise.all(
        Array.from({ length: batch }, async () => {
          const node = await m.createLibp2p({
            ...baseOptions(m, PEER_CONNECTIONS),
            addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
          });
          nodes.push(node);
          await node.handle(SINK_PROTOCOL, (stream) => {
            serveSink(stream).catch((err: unknown) => stream.abort(err instanceof Error ? err : new Error(String(err))));
          });
        }),
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const addresses = nodes.map((node) => {
    const address = node.getMultiaddrs()[0];
    if (address === undefined) throw new Error(`js-libp2p peer ${node.peerId.toString()} has no listen address`);
    return address.toString();
  });
  return { addresses, stop };
}

/** Starts the node under measure: no listener, ping service and connection monitor on. */
async function startNode(options: NodeOptions): Promise<BenchNode> {
  const m = await loadModules();
  wrapNetConnect();
  const node = await m.createLibp2p(baseOptions(m, options.maxConnections));
  // One listener for every destroy timing rather than one per connection: a node-wide event
  // with thousands of listeners would cost each dispatch O(connections).
  const closeWaiters = new Map<Connection, () => void>();
  node.addEventListener('connection:close', (evt) => {
    const waiter = closeWaiters.get(evt.detail);
    if (waiter === undefined) return;
    closeWaiters.delete(evt.detail);
    waiter();
  });
  // js-libp2p joins concurrent dials to one peer (even with `force`) into one connection; a bench
  // connection must be its own, so a joined dial is an error, not a silent miscount.
  const handedOut = new WeakSet<Connection>();

  const connect = async (address: string): Promise<BenchConnection> => {
    const target = m.multiaddr(address);
    const slot: SocketSlot = {};
    let joined = false;
    const connection = await node.dial(target, {
      // A new connection per call, as the other systems do, even if one to the peer is open.
      force: true,
      onProgress: (evt) => {
        const type = evt.type as string;
        // A joined dial also hears the first dial's events: only the first one owns the socket.
        if (type === 'dial-queue:already-in-dial-queue') joined = true;
        else if (type === 'tcp:open-connection' && !joined) armedSlot = slot;
      },
    });
    if (joined || handedOut.has(connection)) {
      throw new Error(
        `js-libp2p joined this dial to ${address} with another one in flight, so it has no connection of its own: ` +
          'dial one peer concurrently only from distinct nodes',
      );
    }
    const socket = slot.socket;
    const port = /\/tcp\/(\d+)/.exec(address)?.[1];
    if (socket === undefined || String(socket.remotePort) !== port) {
      connection.abort(new Error('socket not captured'));
      throw new Error(`could not find the socket of the connection to ${address} (has @libp2p/tcp changed how it dials?)`);
    }
    handedOut.add(connection);
    return new Libp2pConnection(node, connection, socket, closeWaiters);
  };

  return {
    connect,
    stop: async () => {
      await node.stop();
    },
  };
}

/** js-libp2p 3 (TCP + Noise + yamux + `@libp2p/ping`), defaults but for {@link connectionLimits}. */
export const libp2pImpl: BenchImpl = {
  name: 'js-libp2p',
  startPeers,
  startNode,
};

/**
 * The bench's handle on one js-libp2p connection: a class, not an object of closures, so the
 * harness adds as little to the measured heap as it does for the other systems.
 */
class Libp2pConnection implements BenchConnection {
  constructor(
    private readonly node: Libp2p<{ ping: Ping }>,
    private readonly connection: Connection,
    private readonly socket: Socket,
    private readonly closeWaiters: Map<Connection, () => void>,
  ) {}

  async ping(): Promise<void> {
    // `@libp2p/ping` pings a peer, not a connection: with this connection gone it would dial
    // a new one and succeed, so a closed connection fails here instead.
    if (this.connection.status !== 'open') throw new Error(`connection is ${this.connection.status}, not open`);
    await this.node.services.ping.ping(this.connection.remotePeer);
  }

  sendBulk(totalBytes: number, chunkBytes: number): Promise<void> {
    return sendBulk(this.connection, totalBytes, chunkBytes);
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  destroySocketAndTimeReaction(): Promise<number> {
    const { connection, closeWaiters } = this;
    if (connection.status !== 'open') return Promise.reject(new Error(`connection is ${connection.status}, not open`));
    return new Promise<number>((resolve, reject) => {
      // A reaction that never comes must fail the case, not hang it.
      const timer = setTimeout(() => {
        closeWaiters.delete(connection);
        reject(new Error(`no connection:close within ${REACTION_TIMEOUT_MS} ms of destroying the socket`));
      }, REACTION_TIMEOUT_MS);
      const start = performance.now();
      closeWaiters.set(connection, () => {
        const elapsed = performance.now() - start;
        clearTimeout(timer);
        resolve(elapsed);
      });
      this.socket.destroy();
    });
  }
}

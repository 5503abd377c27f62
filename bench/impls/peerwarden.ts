/**
 * peerwarden as a system under test: each peer is a whole supervisor (its own static key, peer ID
 * and listener); the node is one supervisor that dials persistent connections, so a lost socket
 * takes the connection to Backoff. Defaults everywhere (ping every 10 s, node:crypto), except the
 * connection limits, raised so the cases fit.
 *
 * It runs the built package (`dist/`, what users embed; `npm run bench` builds it first), not the
 * TypeScript sources through tsx: tsx's transform wraps every closure in a `__name` call that
 * gives it its own property store, about 10 KiB of heap per connection that no user pays.
 */
import { existsSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import type * as Peerwarden from '../../index.js';
import type { Supervisor, Transport } from '../../index.js';

const DIST = new URL('../../dist/index.js', import.meta.url);
if (!existsSync(DIST)) throw new Error('dist/ is missing: run `npm run build` (npm run bench does)');
const { createSupervisor, tcpTransport } = (await import(DIST.href)) as typeof Peerwarden;
import { SINK_PROTOCOL } from '../impl.js';
import type { BenchConnection, BenchImpl, BenchNode, PeerGroup } from '../impl.js';

/** Limits that fit `connections` at once, with room for 64 handshakes in flight. */
function limitsFor(connections: number): { maxOutbound: number; maxInbound: number; maxTotal: number; maxPending: number } {
  return { maxOutbound: connections, maxInbound: connections, maxTotal: connections, maxPending: Math.max(64, Math.min(connections, 256)) };
}

/** Serves the sink protocol: counts bytes until the writer ends, answers the count (u64 BE), ends. */
function serveSink(stream: Duplex): void {
  let count = 0;
  stream.on('data', (chunk: Buffer) => {
    count += chunk.length;
  });
  stream.on('end', () => {
    const answer = Buffer.alloc(8);
    answer.writeBigUInt64BE(BigInt(count));
    stream.end(answer);
  });
  stream.on('error', () => undefined);
}

/** Writes `totalBytes` of one reused chunk with backpressure, ends, and reads back the peer's count. */
async function sendBulk(stream: Duplex, totalBytes: number, chunkBytes: number): Promise<void> {
  const chunk = Buffer.alloc(chunkBytes, 0xa5);
  const answer = new Promise<bigint>((resolve, reject) => {
    const parts: Buffer[] = [];
    stream.on('data', (part: Buffer) => parts.push(part));
    stream.once('end', () => {
      const bytes = Buffer.concat(parts);
      if (bytes.length !== 8) reject(new Error(`sink answered ${bytes.length} bytes, not 8`));
      else resolve(bytes.readBigUInt64BE(0));
    });
    stream.once('error', reject);
  });
  let sent = 0;
  while (sent < totalBytes) {
    const n = Math.min(chunkBytes, totalBytes - sent);
    sent += n;
    if (!stream.write(n === chunkBytes ? chunk : chunk.subarray(0, n))) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => {
          stream.off('close', onClose);
          resolve();
        };
        const onClose = (): void => {
          stream.off('drain', onDrain);
          reject(new Error('stream closed while writing'));
        };
        stream.once('drain', onDrain);
        stream.once('close', onClose);
      });
    }
  }
  stream.end();
  const count = await answer;
  if (count !== BigInt(totalBytes)) throw new Error(`sink counted ${count} bytes, sent ${totalBytes}`);
}

/** peerwarden, TCP + Noise XX + yamux, supervised. */
export const peerwardenImpl: BenchImpl = {
  name: 'peerwarden',

  async startPeers({ count }): Promise<PeerGroup> {
    const peers: Supervisor[] = [];
    for (let i = 0; i < count; i++) {
      const peer = createSupervisor({ listen: '127.0.0.1:0', limits: limitsFor(1_024) });
      peer.handle(SINK_PROTOCOL, (stream) => serveSink(stream));
      await peer.start();
      peers.push(peer);
    }
    return {
      addresses: peers.map((peer) => peer.listenAddress as string),
      async stop() {
        await Promise.all(peers.map((peer) => peer.stop()));
      },
    };
  },

  async startNode({ maxConnections }): Promise<BenchNode> {
    // The node's own transport keeps the latest socket of each dialed address, so the reaction
    // case can destroy one; everything else is the stock TCP transport.
    const tcp = tcpTransport;
    const sockets = new Map<string, Duplex>();
    const transport: Transport = {
      async dial(address, signal) {
        const connection = await tcp.dial(address, signal);
        sockets.set(address, connection.stream);
        return connection;
      },
      listen: (address, onConnection) => tcp.listen(address, onConnection),
    };
    const node = createSupervisor({ transport, limits: limitsFor(maxConnections) });
    await node.start();
    // One subscription for every reaction wait: connection ID → resolver.
    const backoffWaiters = new Map<string, () => void>();
    const subscription = node.events$.subscribe((transition) => {
      if (transition.to !== 'backoff') return;
      const waiter = backoffWaiters.get(transition.connectionId);
      if (waiter) {
        backoffWaiters.delete(transition.connectionId);
        waiter();
      }
    });
    return {
      async connect(address): Promise<BenchConnection> {
        const info = await node.connect(address, { kind: 'persistent' });
        return new PeerwardenConnection(node, info.peerId as string, info.connectionId, address, sockets, backoffWaiters);
      },
      async stop() {
        subscription.unsubscribe();
        await node.stop();
      },
    };
  },
};

/**
 * The bench's handle on one peerwarden connection: a class, not an object of closures, so the
 * harness adds about 100 bytes per connection to the heap it measures (closures and their
 * contexts were about 0.5 KiB). The other systems' handles are built the same way.
 */
class PeerwardenConnection implements BenchConnection {
  constructor(
    private readonly node: Supervisor,
    private readonly peerId: string,
    private readonly connectionId: string,
    private readonly address: string,
    private readonly sockets: ReadonlyMap<string, Duplex>,
    private readonly backoffWaiters: Map<string, () => void>,
  ) {}

  async ping(): Promise<void> {
    await this.node.ping(this.peerId);
  }

  async sendBulk(totalBytes: number, chunkBytes: number): Promise<void> {
    await sendBulk(await this.node.openStream(this.peerId, SINK_PROTOCOL), totalBytes, chunkBytes);
  }

  close(): Promise<void> {
    return this.node.disconnect(this.peerId);
  }

  destroySocketAndTimeReaction(): Promise<number> {
    const socket = this.sockets.get(this.address);
    if (!socket) return Promise.reject(new Error(`no socket for ${this.address}`));
    return new Promise<number>((resolve) => {
      const startedAt = performance.now();
      this.backoffWaiters.set(this.connectionId, () => resolve(performance.now() - startedAt));
      socket.destroy();
    });
  }
}

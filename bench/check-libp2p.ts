/**
 * Development self-check of `bench/impls/libp2p.ts` (not a spec, not the benchmark): starts
 * js-libp2p peers in child processes, exercises every method of the node once and prints timings.
 *
 *   node --import tsx bench/check-libp2p.ts [--peers N] [--hold N] [--processes P]
 *
 * `--peers` peers per child (default 1,000), `--processes` children (default 1), `--hold`
 * connections held for the memory figure (default 1,000; at most peers × processes). The
 * 10,000-connection shape is `--peers 2000 --processes 5 --hold 10000`.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { libp2pImpl } from './impls/libp2p.js';
import type { BenchConnection } from './impl.js';

/** What a child reports once its peers listen. */
interface Ready {
  readonly addresses: string[];
  /** Port of a raw `node:net` sink in the same child, the throughput reference. */
  readonly rawPort: number;
  /** Time to start every peer, ms. */
  readonly startMs: number;
  /** Heap and RSS growth per idle peer after a full GC, bytes. */
  readonly heapPerPeer: number;
  readonly rssPerPeer: number;
}

/** A full GC, without needing `--expose-gc` on the command line. */
function collect(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Heap used and RSS after a full GC, bytes. */
function memory(): { heap: number; rss: number } {
  collect();
  collect();
  const usage = process.memoryUsage();
  return { heap: usage.heapUsed, rss: usage.rss };
}

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  const value = i < 0 ? undefined : process.argv[i + 1];
  return value === undefined ? fallback : Number(value);
};

/** Child: starts the peers, reports, stops on the parent's word. */
async function child(count: number): Promise<void> {
  const before = memory();
  const start = performance.now();
  const group = await libp2pImpl.startPeers({ count });
  const startMs = performance.now() - start;
  const after = memory();
  const raw = net.createServer((socket) => {
    let count = 0;
    socket.on('data', (chunk: Buffer) => (count += chunk.length));
    socket.on('end', () => {
      const answer = Buffer.alloc(8);
      answer.writeBigUInt64BE(BigInt(count));
      socket.end(answer);
    });
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  const ready: Ready = {
    addresses: [...group.addresses],
    rawPort: (raw.address() as net.AddressInfo).port,
    startMs,
    heapPerPeer: (after.heap - before.heap) / count,
    rssPerPeer: (after.rss - before.rss) / count,
  };
  process.send?.(ready);
  // Stop on the parent's word, or when the parent is gone (its IPC channel closes).
  await new Promise<void>((resolve) => {
    process.once('message', () => resolve());
    process.once('disconnect', () => resolve());
  });
  raw.close();
  await group.stop();
  if (process.connected) process.disconnect();
}

/** Forks one child with `count` peers; resolves with its report. */
function startChild(count: number): Promise<{ proc: ChildProcess; ready: Ready }> {
  const proc = fork(fileURLToPath(import.meta.url), ['--child', String(count)], { execArgv: ['--import', 'tsx'] });
  return new Promise((resolve, reject) => {
    proc.once('message', (ready: Ready) => resolve({ proc, ready }));
    proc.once('exit', (code) => reject(new Error(`peer process exited with ${code}`)));
  });
}

/** The raw TCP reference for sendBulk: one socket, same chunking and backpressure. */
async function rawSendBulk(port: number, totalBytes: number, chunkBytes: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const chunk = Buffer.alloc(chunkBytes, 0xa5);
  for (let sent = 0; sent < totalBytes; sent += chunkBytes) if (!socket.write(chunk)) await once(socket, 'drain');
  socket.end();
  const parts: Buffer[] = [];
  for await (const part of socket) parts.push(part as Buffer);
  if (Buffer.concat(parts).readBigUInt64BE(0) !== BigInt(totalBytes)) throw new Error('raw sink miscounted');
}

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;

/** Parent: runs each check once and prints its figure. */
async function main(): Promise<void> {
  const peersPerChild = arg('--peers', 1000);
  const processes = arg('--processes', 1);
  const hold = arg('--hold', 1000);
  const children = await Promise.all(Array.from({ length: processes }, () => startChild(peersPerChild)));
  const addresses = children.flatMap((c) => c.ready.addresses);
  for (const { ready } of children) {
    console.log(`peers: ${peersPerChild} started in ${(ready.startMs / 1000).toFixed(1)} s; idle peer node ${kib(ready.heapPerPeer)} heap, ${kib(ready.rssPerPeer)} RSS`);
  }
  const node = await libp2pImpl.startNode({ maxConnections: Math.max(hold, 1000) });
  const peer = (i: number): string => addresses[i % addresses.length] ?? '';
  try {
    let t = performance.now();
    for (let i = 0; i < 200; i++) await (await node.connect(peer(i))).close();
    console.log(`sequential connect+close: ${(200_000 / (performance.now() - t)).toFixed(0)} conn/s`);

    // 32 dialer nodes, as the benchmark does: one node joins concurrent dials to one peer.
    const dialers = await Promise.all(Array.from({ length: 32 }, () => libp2pImpl.startNode({ maxConnections: 64 })));
    t = performance.now();
    await Promise.all(
      dialers.map(async (dialer, k) => {
        for (let j = 0; j < 10; j++) await (await dialer.connect(peer(200 + k * 10 + j))).close();
      }),
    );
    console.log(`32 concurrent dialers: ${(320_000 / (performance.now() - t)).toFixed(0)} conn/s`);
    await Promise.all(dialers.map((dialer) => dialer.stop()));

    // Alternate js-libp2p and raw TCP, as the wall clock here is shared with other work.
    const conn = await node.connect(peer(0));
    const rawPort = children[0]?.ready.rawPort ?? 0;
    for (let round = 0; round < 2; round++) {
      t = performance.now();
      await conn.sendBulk(256 * 2 ** 20, 64 * 1024);
      const libp2pMBs = (256 * 2 ** 20) / 1e3 / (performance.now() - t);
      t = performance.now();
      await rawSendBulk(rawPort, 256 * 2 ** 20, 64 * 1024);
      const rawMBs = (256 * 2 ** 20) / 1e3 / (performance.now() - t);
      console.log(`sendBulk 256 MiB: ${libp2pMBs.toFixed(0)} MB/s (raw TCP ${rawMBs.toFixed(0)} MB/s, ratio ${(libp2pMBs / rawMBs).toFixed(2)})`);
    }

    const rtts: number[] = [];
    for (let i = 0; i < 1000; i++) {
      t = performance.now();
      await conn.ping();
      rtts.push(performance.now() - t);
    }
    rtts.sort((a, b) => a - b);
    console.log(`ping x1000: median ${quantile(rtts, 0.5).toFixed(3)} ms, p99 ${quantile(rtts, 0.99).toFixed(3)} ms`);
    await conn.close();

    const reactions: number[] = [];
    for (let i = 0; i < 20; i++) reactions.push(await (await node.connect(peer(i))).destroySocketAndTimeReaction());
    reactions.sort((a, b) => a - b);
    console.log(`destroy -> connection:close x20: median ${quantile(reactions, 0.5).toFixed(3)} ms, max ${quantile(reactions, 1).toFixed(3)} ms`);

    const base = memory();
    const held: BenchConnection[] = [];
    const failures = new Map<string, number>();
    t = performance.now();
    let next = 0;
    // Failed dials are counted, not fatal: at scale they are the finding.
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < hold) {
          try {
            held.push(await node.connect(peer(next++)));
          } catch (err) {
            const message = err instanceof Error ? err.message : String(err);
            failures.set(message, (failures.get(message) ?? 0) + 1);
          }
        }
      }),
    );
    console.log(`held ${held.length}/${hold} connections, opened in ${((performance.now() - t) / 1000).toFixed(1)} s; waiting one ping interval (11 s)`);
    for (const [message, n] of failures) console.log(`  ${n} dials failed: ${message}`);
    await new Promise((resolve) => setTimeout(resolve, 11_000));
    const loaded = memory();
    console.log(`per connection at ${held.length}: ${kib((loaded.heap - base.heap) / held.length)} heap, ${kib((loaded.rss - base.rss) / held.length)} RSS`);

    // Reaction at scale: destroy 200 of the held sockets one after another; a connection js-libp2p
    // already dropped (ping failure) rejects and is counted.
    reactions.length = 0;
    let dropped = 0;
    let why = '';
    for (const c of held.splice(0, Math.min(200, held.length))) {
      try {
        reactions.push(await c.destroySocketAndTimeReaction());
      } catch (err) {
        dropped++;
        why = err instanceof Error ? err.message : String(err);
      }
    }
    reactions.sort((a, b) => a - b);
    console.log(`destroy at ${hold}: p50 ${quantile(reactions, 0.5).toFixed(3)} ms, p99 ${quantile(reactions, 0.99).toFixed(3)} ms, ${dropped} failed${why === '' ? '' : ` (${why})`}`);
    await Promise.all(held.map((c) => c.close().catch(() => undefined)));
  } finally {
    await node.stop();
    for (const { proc } of children) {
      proc.removeAllListeners('exit');
      proc.send('stop');
    }
  }
}

if (process.argv[2] === '--child') {
  await child(Number(process.argv[3]));
} else {
  await main();
}

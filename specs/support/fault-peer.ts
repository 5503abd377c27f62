/**
 * A peer process for the fault-matrix spec ("the peer process killed"): one supervisor that only
 * listens on 127.0.0.1, started with `fork` (IPC channel required) and killed by the spec.
 *
 * Arguments: `--port N` (0: the OS picks), `--key HEX` (32-byte X25519 private key, so a restart
 * keeps the peer ID). Sends `{ type: 'ready', peerId, listenAddress }` to the parent once it
 * listens; stops when the parent disconnects.
 */
import { parseArgs } from 'node:util';
import { createSupervisor } from '../../index.js';

/** The one message this process sends to its parent. */
export interface FaultPeerReady {
  readonly type: 'ready';
  readonly peerId: string;
  readonly listenAddress: string;
}

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, key: { type: 'string' } } });
if (values.key === undefined || !process.send) throw new Error('specs/support/fault-peer.ts is forked by the fault-matrix spec');

const supervisor = createSupervisor({
  staticPrivateKey: Buffer.from(values.key, 'hex'),
  listen: `127.0.0.1:${values.port}`,
  timeouts: { connectTimeoutMs: 1_000, handshakeTimeoutMs: 1_000, gracefulShutdownTimeoutMs: 300 },
  ping: { intervalMs: 100, timeoutMs: 1_000 },
});
process.on('disconnect', () => void supervisor.stop());

await supervisor.start();
const ready: FaultPeerReady = { type: 'ready', peerId: supervisor.peerId, listenAddress: supervisor.listenAddress ?? '' };
process.send(ready);

/**
 * One demo node: a supervisor on 127.0.0.1 that dials the peers its parent names, as persistent
 * peers, and reports every transition over IPC. Run by `demo/main.ts`, not by hand.
 *
 * Arguments: `--port N` (0: the OS picks), `--key HEX` (32-byte X25519 private key, so a
 * restarted node keeps its peer ID).
 */
import { parseArgs } from 'node:util';
import { createSupervisor } from '../index.js';
import type { NodeMessage, ParentMessage } from './messages.js';

const { values } = parseArgs({
  options: { port: { type: 'string', default: '0' }, key: { type: 'string' } },
});
if (!values.key || !process.send) throw new Error('demo/node.ts is started by demo/main.ts');

const send = (message: NodeMessage): void => {
  if (process.connected) process.send?.(message);
};

const supervisor = createSupervisor({
  staticPrivateKey: Buffer.from(values.key, 'hex'),
  listen: `127.0.0.1:${values.port}`,
  timeouts: { connectTimeoutMs: 2_000, handshakeTimeoutMs: 2_000, gracefulShutdownTimeoutMs: 500 },
  ping: { intervalMs: 1_000, timeoutMs: 1_000 },
  timeoutBackoff: { baseMs: 250, factor: 2, capMs: 2_000 },
});

supervisor.events$.subscribe((event) => {
  send({
    type: 'transition',
    t: Date.now(),
    peerId: event.peerId,
    address: event.address,
    from: event.from,
    to: event.to,
    reason: event.reason,
    rttMs: event.rttMs,
  });
});

process.on('message', (raw) => {
  const message = raw as ParentMessage;
  if (message.type === 'peers') {
    for (const address of message.addresses) {
      // Persistent peers retry by themselves; a failure here is already reported as transitions.
      supervisor.connect(address, { kind: 'persistent' }).catch(() => undefined);
    }
  } else if (message.type === 'summary') {
    send({
      type: 'summary',
      rows: supervisor
        .connections()
        .filter((info) => info.peerId !== null)
        .map((info) => ({
          peerId: info.peerId as string,
          state: info.state,
          rttMs: info.rttMs,
          healthScore: info.healthScore,
          healthCategory: info.healthCategory,
        })),
    });
  } else if (message.type === 'stop') {
    void supervisor.stop().then(() => process.disconnect());
  }
});
process.on('disconnect', () => {
  void supervisor.stop();
});

await supervisor.start();
send({ type: 'ready', peerId: supervisor.peerId, listenAddress: supervisor.listenAddress ?? '' });

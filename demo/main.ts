/**
 * `npm start`: N peerwarden nodes in separate processes on 127.0.0.1, every node a persistent peer
 * of every other. Once all are connected, one node is killed with SIGKILL and restarted on the same
 * port with the same key; every other node's connection to it must go to Backoff and come back to
 * Connected through Connecting and Handshaking. The restarted node first only listens: the
 * survivors' persistent connections bring it back. (Were it to dial them at once, the
 * simultaneous-open rule would keep its dial on the survivors with a higher peer ID, and their own
 * redial would be the one closed.) Then it is given its peers as persistent, which marks the
 * connections it already has persistent without dialing again.
 *
 * Flags: `--nodes N` (default 4), `--duration S` (seconds, default 12: the run lasts at least this
 * long), `--json` (one JSON object per transition line). Exit code 0 when every pair ends
 * Connected and every survivor saw the reconnection path, 1 otherwise.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { NodeMessage, ParentMessage, SummaryRow } from './messages.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '4' },
    duration: { type: 'string', default: '12' },
    json: { type: 'boolean', default: false },
  },
});
const nodeCount = Number(values.nodes);
const durationMs = Number(values.duration) * 1000;
if (!Number.isInteger(nodeCount) || nodeCount < 2 || nodeCount > 64) throw new Error('--nodes must be 2..64');
if (!(durationMs > 0)) throw new Error('--duration must be a positive number of seconds');

const NODE_SCRIPT = fileURLToPath(new URL('./node.ts', import.meta.url));
const started = Date.now();

interface DemoNode {
  readonly name: string;
  readonly key: string;
  port: number;
  peerId: string;
  address: string;
  process: ChildProcess | undefined;
  summary: SummaryRow[] | undefined;
}

/** Per (node, peer) what the demo must see after the kill: backoff, then connecting → handshaking → connected. */
interface Recovery {
  backoff: boolean;
  connecting: boolean;
  handshaking: boolean;
  connected: boolean;
  reconnects: number;
}

const nodes: DemoNode[] = Array.from({ length: nodeCount }, (_, i) => ({
  name: `node${i + 1}`,
  key: randomBytes(32).toString('hex'),
  port: 0,
  peerId: '',
  address: '',
  process: undefined,
  summary: undefined,
}));
const nameByPeerId = new Map<string, string>();
const nameByAddress = new Map<string, string>();
const states = new Map<string, string>(); // `${node}|${peer}` → latest state of any of its connections
const recoveries = new Map<string, Recovery>();
let victim: DemoNode | undefined;
let killedAt = 0;

function peerName(peerId: string | null, address: string | null): string {
  return (peerId && nameByPeerId.get(peerId)) ?? (address && nameByAddress.get(address)) ?? peerId ?? address ?? '?';
}

let quiet = false;

function log(node: DemoNode, message: Extract<NodeMessage, { type: 'transition' }>): void {
  if (quiet) return;
  const peer = message.peerId === null && message.address === null ? '(inbound)' : peerName(message.peerId, message.address);
  if (values.json) {
    const line: Record<string, unknown> = { t: new Date(message.t).toISOString(), node: node.name, peer };
    line.from = message.from;
    line.to = message.to;
    if (message.reason && ['disconnecting', 'backoff', 'closed', 'banned'].includes(message.to)) line.reason = message.reason;
    if (message.rttMs !== null) line.rttMs = Number(message.rttMs.toFixed(3));
    console.log(JSON.stringify(line));
    return;
  }
  const time = new Date(message.t).toISOString().slice(11, 23);
  const ending = ['disconnecting', 'backoff', 'closed', 'banned'].includes(message.to);
  const reason = ending && message.reason ? `  (${message.reason})` : '';
  console.log(`${time}  ${node.name.padEnd(7)} → ${peer.padEnd(7)} ${(message.from ?? 'start').padEnd(13)} → ${message.to}${reason}`);
}

function note(text: string): void {
  if (values.json) console.log(JSON.stringify({ t: new Date().toISOString(), note: text }));
  else console.log(`${new Date().toISOString().slice(11, 23)}  ── ${text}`);
}

function onTransition(node: DemoNode, message: Extract<NodeMessage, { type: 'transition' }>): void {
  log(node, message);
  const peer = peerName(message.peerId, message.address);
  states.set(`${node.name}|${peer}`, message.to);
  if (!victim || peer !== victim.name || node === victim || killedAt === 0) return;
  const key = `${node.name}|${peer}`;
  const recovery = recoveries.get(key) ?? { backoff: false, connecting: false, handshaking: false, connected: false, reconnects: 0 };
  if (message.to === 'backoff') recovery.backoff = true;
  if (recovery.backoff && message.to === 'connecting') recovery.connecting = true;
  if (recovery.connecting && message.to === 'handshaking') recovery.handshaking = true;
  if (recovery.handshaking && message.to === 'connected') {
    recovery.connected = true;
    recovery.reconnects += 1;
  }
  recoveries.set(key, recovery);
}

function start(node: DemoNode): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const child = fork(NODE_SCRIPT, ['--port', String(node.port), '--key', node.key], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    node.process = child;
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (!node.peerId || node.process !== child) reject(new Error(`${node.name} exited (${signal ?? code}) before it was ready`));
    });
    child.on('message', (raw) => {
      const message = raw as NodeMessage;
      if (message.type === 'ready') {
        node.peerId = message.peerId;
        node.address = message.listenAddress;
        node.port = Number(message.listenAddress.split(':').pop());
        nameByPeerId.set(node.peerId, node.name);
        nameByAddress.set(node.address, node.name);
        resolve();
      } else if (message.type === 'transition') {
        onTransition(node, message);
      } else if (message.type === 'summary') {
        node.summary = message.rows;
      }
    });
  });
}

function tell(node: DemoNode, message: ParentMessage): void {
  if (node.process?.connected) node.process.send(message);
}

function allConnected(): boolean {
  return nodes.every((a) =>
    nodes.every((b) => a === b || ['connected', 'degraded'].includes(states.get(`${a.name}|${b.name}`) ?? '')),
  );
}

async function until(condition: () => boolean, limitMs: number): Promise<boolean> {
  const deadline = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

async function collectSummaries(): Promise<void> {
  for (const node of nodes) node.summary = undefined;
  for (const node of nodes) tell(node, { type: 'summary' });
  await until(() => nodes.every((node) => node.summary !== undefined), 5_000);
}

function printSummary(): boolean {
  let ok = true;
  const rows: string[][] = [['node', 'peer', 'state', 'rtt ms', 'health', 'reconnects', 'recovered via backoff']];
  for (const node of nodes) {
    for (const peer of nodes) {
      if (peer === node) continue;
      const row = node.summary?.find((candidate) => candidate.peerId === peer.peerId);
      const state = row?.state ?? 'none';
      const recovery = recoveries.get(`${node.name}|${peer.name}`);
      const mustRecover = victim !== undefined && peer === victim;
      const recovered = recovery ? recovery.backoff && recovery.connected : false;
      if (!['connected', 'degraded'].includes(state) || (mustRecover && !recovered)) ok = false;
      rows.push([
        node.name,
        peer.name,
        state,
        row?.rttMs == null ? '-' : row.rttMs.toFixed(3),
        row?.healthScore == null ? '-' : `${row.healthScore.toFixed(2)} ${row.healthCategory ?? ''}`,
        String(recovery?.reconnects ?? 0),
        mustRecover ? (recovered ? 'yes' : 'NO') : '',
      ]);
    }
  }
  if (values.json) {
    for (const row of rows.slice(1)) {
      const [node, peer, state, rtt, health, reconnects, recovered] = row;
      const [score, category] = health === undefined || health === '-' ? [] : health.split(' ');
      console.log(
        JSON.stringify({
          summary: true,
          node,
          peer,
          state,
          rttMs: rtt === '-' ? null : Number(rtt),
          healthScore: score === undefined ? null : Number(score),
          healthCategory: category ?? null,
          reconnects: Number(reconnects),
          ...(recovered ? { recoveredViaBackoff: recovered === 'yes' } : {}),
        }),
      );
    }
    console.log(JSON.stringify({ result: ok ? 'ok' : 'failed' }));
  } else {
    const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
    console.log('');
    for (const row of rows) console.log(row.map((cell, column) => cell.padEnd(widths[column]!)).join('  '));
    console.log('');
    console.log(ok ? 'every pair is Connected' : 'FAILED: some pair is not Connected or did not recover');
  }
  return ok;
}

async function main(): Promise<number> {
  note(`starting ${nodeCount} nodes on 127.0.0.1`);
  await Promise.all(nodes.map(start));
  for (const node of nodes) {
    note(`${node.name} ${node.peerId} listens on ${node.address}`);
  }
  for (const node of nodes) {
    tell(node, { type: 'peers', addresses: nodes.filter((peer) => peer !== node).map((peer) => peer.address) });
  }
  if (!(await until(allConnected, 20_000))) {
    note('not every pair connected within 20 s');
  }
  note('all pairs connected');
  await new Promise((resolve) => setTimeout(resolve, 1_500));

  victim = nodes[nodes.length - 1];
  if (!victim) throw new Error('no nodes');
  note(`killing ${victim.name} (SIGKILL)`);
  killedAt = Date.now();
  victim.process?.kill('SIGKILL');
  const survivors = nodes.filter((node) => node !== victim);
  await until(() => survivors.every((node) => recoveries.get(`${node.name}|${victim!.name}`)?.backoff), 10_000);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  note(`restarting ${victim.name} on port ${victim.port} with the same key`);
  await start(victim);

  const recovered = (): boolean =>
    allConnected() && survivors.every((node) => recoveries.get(`${node.name}|${victim!.name}`)?.connected === true);
  await until(recovered, 20_000);
  tell(victim, { type: 'peers', addresses: survivors.map((peer) => peer.address) });
  const remaining = durationMs - (Date.now() - started);
  if (remaining > 0) await new Promise((resolve) => setTimeout(resolve, remaining));

  await collectSummaries();
  quiet = true; // the shutdown's own goodbyes are not part of the story
  const ok = printSummary();
  for (const node of nodes) tell(node, { type: 'stop' });
  await until(() => nodes.every((node) => node.process?.exitCode !== null || node.process.signalCode !== null), 5_000);
  for (const node of nodes) node.process?.kill('SIGKILL');
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    for (const node of nodes) node.process?.kill('SIGKILL');
    process.exit(1);
  },
);

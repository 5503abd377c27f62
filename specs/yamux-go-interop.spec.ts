/**
 * Interoperability of our yamux with HashiCorp's Go yamux, the reference implementation of the
 * yamux spec, over plain TCP on 127.0.0.1 (no Noise: the Go peer speaks raw yamux), in both
 * roles: Go server ↔ our client, and our server ↔ Go client.
 *
 * The Go peer is `interop/go-yamux/main.go` (its header documents the per-stream command line:
 * ECHO, SHA256, PING, OPEN). It is built once per run into a temp dir from Debian's
 * `golang-go` and `golang-github-hashicorp-yamux-dev`, offline in GOPATH mode
 * (/work/shared/TESTING.md, "Reference peers written by others"). Without them this spec fails
 * and says what to install: it never passes silently.
 *
 * Each test runs its own Go process on a fresh connection, closes our session gracefully at
 * the end, and checks that the Go peer then exits with status 0 and logged no complaint.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { access, mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { YamuxSession } from '../transport/yamux/index.js';
import type { YamuxStream } from '../transport/yamux/index.js';
import { readAll, sha256, waitClosed, writeAll } from './support/sockets.js';

const GOPATH = '/usr/share/gocode';
const YAMUX_SOURCE = join(GOPATH, 'src/github.com/hashicorp/yamux');
const PEER_SOURCE = fileURLToPath(new URL('../interop/go-yamux/', import.meta.url));
const INSTALL_HINT =
  'install Go and the yamux sources with `apt-get install -y golang-go golang-github-hashicorp-yamux-dev` ' +
  '(CI installs them in .ci/run)';
const MiB = 1024 * 1024;

// ---- the Go peer ---------------------------------------------------------------------------

let workDir: string | undefined;
let peerBinary: string | undefined;
/** Go processes still running: killed by `after` if a test could not stop its own. */
const running = new Set<GoProcess>();
/**
 * Sockets and listeners not yet closed. A test that times out never reaches its `finally`;
 * `after` closes what it left, or the open handles would keep the test process alive.
 */
const handles = new Set<net.Socket | net.Server>();

function tracked<T extends net.Socket | net.Server>(handle: T): T {
  handles.add(handle);
  handle.once('close', () => handles.delete(handle));
  return handle;
}

/**
 * Builds the Go peer into `dir` offline (GOPATH mode, Debian's yamux sources), with a build
 * cache inside `dir`.
 * @returns the binary's path.
 * @throws Error naming the packages to install when `go` or the yamux sources are missing,
 *   or carrying the compiler's output when the build fails.
 */
async function buildPeer(dir: string): Promise<string> {
  try {
    await access(join(YAMUX_SOURCE, 'session.go'));
  } catch {
    throw new Error(`HashiCorp's Go yamux sources are missing (${YAMUX_SOURCE}): ${INSTALL_HINT}`);
  }
  const binary = join(dir, 'go-yamux-peer');
  const env = {
    ...process.env,
    GO111MODULE: 'off',
    GOPATH,
    GOPROXY: 'off',
    GOFLAGS: '',
    GOENV: 'off', // ignore the user's go env file: this build must not depend on it
    GOCACHE: join(dir, 'go-cache'), // HOME may be read-only; nothing is left behind
  };
  try {
    await promisify(execFile)('go', ['build', '-o', binary, '.'], { cwd: PEER_SOURCE, env });
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') throw new Error(`\`go\` is not on PATH: ${INSTALL_HINT}`);
    throw new Error(`building ${PEER_SOURCE} failed (${INSTALL_HINT}):\n${failure.stderr ?? failure.message}`);
  }
  return binary;
}

/** A running Go peer process. */
interface GoProcess {
  child: ChildProcessWithoutNullStreams;
  /** Resolves with the exit status (null when killed by a signal). */
  exited: Promise<number | null>;
  /** What it wrote to stderr so far (yamux logs go there). */
  stderr: () => string;
}

function startGo(args: string[]): GoProcess {
  if (peerBinary === undefined) throw new Error('the Go peer was not built');
  // stdin stays an open pipe: the peer exits when it reaches EOF, so it cannot outlive us.
  const child = spawn(peerBinary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    if (stderr.length < 64 * 1024) stderr += text;
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      running.delete(go);
      resolve(code);
    });
  });
  exited.catch(() => undefined); // observed by whoever awaits it
  const go: GoProcess = { child, exited, stderr: () => stderr };
  running.add(go);
  return go;
}

/** Kills `go` unless it has exited, and waits for its exit. */
async function stopGo(go: GoProcess): Promise<void> {
  if (go.child.exitCode === null && go.child.signalCode === null) go.child.kill('SIGKILL');
  await go.exited.catch(() => undefined);
}

/** Resolves with `promise`, or rejects with the peer's stderr if it exits first. */
function unlessExited<T>(go: GoProcess, promise: Promise<T>): Promise<T> {
  const died = go.exited.then((code) => {
    throw new Error(`the Go peer exited (status ${code}) early:\n${go.stderr()}`);
  });
  died.catch(() => undefined);
  return Promise.race([promise, died]);
}

/** Go listens (`-mode server`); we dial it. */
async function connectToGoServer(): Promise<{ go: GoProcess; socket: net.Socket; released: Promise<void> }> {
  const go = startGo(['-mode', 'server', '-listen', '127.0.0.1:0']);
  const lines = createInterface({ input: go.child.stdout });
  try {
    const [line] = (await unlessExited(go, once(lines, 'line'))) as [string];
    const match = /^LISTEN (127\.0\.0\.1):(\d+)$/.exec(line);
    assert.ok(match !== null, `unexpected first line from the Go peer: ${line}`);
    const socket = tracked(net.connect(Number(match[2]), match[1]));
    socket.on('error', () => undefined); // the session reports connection errors
    await unlessExited(go, once(socket, 'connect'));
    socket.setNoDelay(true);
    return { go, socket, released: Promise.resolve() };
  } catch (error) {
    await stopGo(go);
    throw error;
  } finally {
    lines.close();
  }
}

/**
 * We listen; Go dials us (`-mode client`). The listener stops accepting at once; `released`
 * resolves once it has closed, which is after the accepted socket has.
 */
async function acceptGoClient(): Promise<{ go: GoProcess; socket: net.Socket; released: Promise<void> }> {
  const listener = tracked(net.createServer((socket) => tracked(socket)));
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as net.AddressInfo;
  const accepted = once(listener, 'connection') as Promise<[net.Socket]>;
  const go = startGo(['-mode', 'client', '-connect', `127.0.0.1:${port}`]);
  const released = new Promise<void>((resolve) => {
    accepted.then(
      () => listener.close(() => resolve()),
      () => resolve(),
    );
  });
  try {
    const [socket] = await unlessExited(go, accepted);
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    return { go, socket, released };
  } catch (error) {
    listener.close();
    await stopGo(go);
    throw error;
  }
}

// ---- our side ------------------------------------------------------------------------------

/** One test's setup: our session and what it saw of the streams the Go peer opened. */
interface Peers {
  ours: YamuxSession;
  /** Per stream ID the Go peer opened: resolves with the SHA-256 (hex) of what we received, once the stream is closed both ways. */
  received: Map<number, Promise<string>>;
}

/** Our handler for streams the Go peer opens: echo everything, FIN after theirs, hash what came. */
function echoAndHash(stream: YamuxStream, received: Map<number, Promise<string>>): void {
  const hash = createHash('sha256');
  const done = new Promise<string>((resolve, reject) => {
    let digest: string | undefined;
    stream.on('data', (chunk: Buffer) => hash.update(chunk));
    stream.once('end', () => (digest = hash.digest('hex')));
    stream.once('error', reject);
    stream.once('close', () => (digest === undefined ? reject(new Error(`stream ${stream.id} closed before its end`)) : resolve(digest)));
  });
  done.catch(() => undefined); // awaited by the test that asked for these streams
  received.set(stream.id, done);
  stream.pipe(stream); // echo; pipe ends our side once theirs has ended
}

/**
 * Runs `body` with our session in `ourRole` against a fresh Go peer in the other role, then
 * closes our session gracefully and expects the Go peer to exit cleanly (status 0, no log).
 */
async function withGoPeer(ourRole: 'client' | 'server', body: (peers: Peers) => Promise<void>): Promise<void> {
  const { go, socket, released } = ourRole === 'client' ? await connectToGoServer() : await acceptGoClient();
  const received = new Map<number, Promise<string>>();
  const ours = new YamuxSession(socket, { role: ourRole, onStream: (stream) => echoAndHash(stream, received) });
  try {
    await body({ ours, received });
    assert.equal(ours.streamCount, 0, 'every stream closed both ways');
    await ours.close();
    assert.equal(await go.exited, 0, `the Go peer exits cleanly:\n${go.stderr()}`);
    assert.deepEqual(goComplaints(go.stderr()), [], 'the Go peer logged no complaint');
  } finally {
    ours.destroy();
    socket.destroy();
    await waitClosed(socket);
    await Promise.all([stopGo(go), released]);
  }
}

/**
 * The Go peer's log lines, less one benign race: a WindowUpdate we sent while a stream was open
 * can arrive after Go has forgotten the stream (both FINs passed on its side); Go drops it
 * with a warning, as it would from another Go peer.
 */
function goComplaints(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line !== '' && !/\[WARN\] yamux: frame for missing stream: .* Type:1 /.test(line));
}

/** Sends one command line on a new stream, FINs, and reads the reply up to their FIN. */
async function command(ours: YamuxSession, line: string): Promise<string> {
  const stream = ours.openStream();
  const reply = readAll(stream);
  stream.end(`${line}\n`);
  return (await reply).toString();
}

// ---- specs ---------------------------------------------------------------------------------

describe('interop: HashiCorp Go yamux', { timeout: 60_000 }, () => {
  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'peerwarden-go-yamux-'));
    peerBinary = await buildPeer(workDir);
  });

  after(async () => {
    for (const handle of handles) {
      if (handle instanceof net.Socket) handle.destroy();
      else handle.close();
    }
    await Promise.all([...running].map(stopGo));
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  for (const ourRole of ['client', 'server'] as const) {
    const title = ourRole === 'client' ? 'Go server ↔ our client' : 'Go client ↔ our server';
    describe(title, () => {
      it('echoes 16 MiB of random bytes through one stream intact', async () => {
        await withGoPeer(ourRole, async ({ ours }) => {
          const data = randomBytes(16 * MiB);
          const stream = ours.openStream();
          const reply = readAll(stream);
          stream.write('ECHO\n');
          await writeAll(stream, data, 64 * 1024);
          const echoed = await reply;
          assert.equal(echoed.length, data.length);
          assert.equal(sha256(echoed), sha256(data));
          assert.ok(stream.bytesReceived === data.length && stream.bytesSent === data.length + 5);
        });
      });

      it('half-closes: our FIN first, their reply after it, then their FIN', async () => {
        await withGoPeer(ourRole, async ({ ours }) => {
          const data = randomBytes(MiB);
          const stream = ours.openStream();
          const events: string[] = [];
          stream.once('finish', () => events.push('our FIN'));
          stream.once('data', () => events.push('their reply'));
          stream.once('end', () => events.push('their FIN'));
          const reply = readAll(stream);
          stream.write('SHA256\n');
          await writeAll(stream, data, 64 * 1024);
          // SHA256 answers only after reading to our FIN, so any reply proves half-close.
          assert.equal((await reply).toString(), `${data.length} ${sha256(data)}\n`);
          assert.deepEqual(events, ['our FIN', 'their reply', 'their FIN']);

          // The same on an echo stream: the echo still comes back after our FIN.
          const echo = ours.openStream();
          const echoed = readAll(echo);
          echo.end('ECHO\nlast words');
          assert.equal((await echoed).toString(), 'last words');
        });
      });

      it('answers pings both ways', async () => {
        await withGoPeer(ourRole, async ({ ours }) => {
          const rttMs = await ours.ping();
          assert.ok(rttMs > 0 && rttMs < 10_000, `our ping RTT ${rttMs} ms`);
          const pong = /^PONG (\d+)\n$/.exec(await command(ours, 'PING'));
          assert.ok(pong !== null && Number(pong[1]) > 0, 'their ping was answered');
        });
      });

      it('echoes 100 concurrent streams, each with its own payload', async () => {
        await withGoPeer(ourRole, async ({ ours }) => {
          const payloads = Array.from({ length: 100 }, (_, index) => randomBytes(1024 * (index + 1)));
          const streams = payloads.map(() => ours.openStream());
          assert.equal(ours.streamCount, 100);
          const replies = await Promise.all(
            streams.map(async (stream, index) => {
              const reply = readAll(stream);
              stream.write('ECHO\n');
              await writeAll(stream, payloads[index] ?? Buffer.alloc(0), 16 * 1024);
              return reply;
            }),
          );
          replies.forEach((reply, index) => assert.ok(reply.equals(payloads[index] ?? Buffer.alloc(0)), `stream ${index} echoed intact`));
        });
      });

      it('serves streams the Go side opens: their data arrives intact and our echo returns intact', async () => {
        await withGoPeer(ourRole, async ({ ours, received }) => {
          const count = 20;
          const size = 384 * 1024; // beyond the 256 KiB window both ways
          const report = await command(ours, `OPEN ${count} ${size}`);
          const lines = report.trimEnd().split('\n');
          assert.equal(lines.length, count, report);
          const theirParity = ourRole === 'client' ? 0 : 1; // the Go server opens even IDs, the Go client odd
          for (const line of lines) {
            const match = /^STREAM (\d+) ([0-9a-f]{64}) ([0-9a-f]{64})$/.exec(line);
            assert.ok(match !== null, `report line: ${line}`);
            const [, id, sent, echoed] = match;
            assert.equal(Number(id) % 2, theirParity, `stream ${id} has the opener's parity`);
            assert.equal(await received.get(Number(id)), sent, `stream ${id}: we received what they sent`);
            assert.equal(echoed, sent, `stream ${id}: they received our echo intact`);
          }
          assert.equal(received.size, count);
        });
      });
    });
  }
});

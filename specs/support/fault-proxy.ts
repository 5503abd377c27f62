/**
 * An in-process TCP fault proxy on 127.0.0.1 for the fault-matrix specs (peerwarden issue 6,
 * item 1). It forwards every accepted connection to one target and, on command, delays,
 * throttles, stalls, resets, goes half-open, corrupts bytes or cuts at a byte offset.
 *
 * Every fault applies to the connections open now and to those accepted later, until `clear()`.
 * TESTING.md: the kernel here has no `tc netem`, so delay, stall, reset, corrupt and cut are done
 * in userspace, with real timers (these are real sockets; the specs wait on events, not on time).
 *
 * Directions: `toTarget` is what the dialer sends to the target, `fromTarget` what comes back.
 */
import * as net from 'node:net';

/** Which way a fault applies: dialer → target, target → dialer, or both. */
export type FaultDirection = 'toTarget' | 'fromTarget' | 'both';

/** Options of {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** Uniform source in [0, 1) for `corrupt`'s probability; `Math.random` by default. */
  readonly random?: () => number;
}

/** A running fault proxy. Every fault holds until {@link FaultProxy.clear}. */
export interface FaultProxy {
  /** `127.0.0.1:port` to dial instead of the target. */
  readonly address: string;
  /** Connections accepted so far (reset ones included). */
  readonly accepted: number;
  /**
   * Holds every byte arriving from now on for `ms` ms before forwarding it (both directions, order kept).
   * @throws RangeError unless `ms` is finite and ≥ 0.
   */
  delay(ms: number): void;
  /**
   * Forwards at most `bytesPerSecond` bytes per second each way, in pieces of 1/20 s worth
   * (at least 1 byte), so a low rate dribbles bytes as a slowloris peer does.
   * @throws RangeError unless `bytesPerSecond` is finite and > 0.
   */
  throttle(bytesPerSecond: number): void;
  /**
   * Stops forwarding both ways and stops reading (TCP flow control pushes back on the senders);
   * the bytes are held, nothing is lost, no FIN or RST is sent. {@link FaultProxy.resume} forwards them.
   */
  stall(): void;
  /** Ends a {@link FaultProxy.stall}: held bytes go out in order. */
  resume(): void;
  /** Resets (RST) both ends of every connection; new connections are reset as soon as accepted. */
  reset(): void;
  /**
   * Half-open: the peer vanished. Every connection stops forwarding both ways without FIN or RST;
   * bytes are read and thrown away (the sender's writes succeed), ends and resets are not passed
   * on, so both ends stay ESTABLISHED until their owners give up. A connection that went half-open
   * stays dead after `clear()` (its bytes are lost); `close()` destroys what is left of it.
   */
  halfOpen(): void;
  /**
   * Corrupts each chunk forwarded in `direction` (default `both`) with `probability`: the lowest
   * bit of its last byte is flipped. On a framed, authenticated stream a chunk usually ends with a
   * frame's tag, and at worst a length prefix moves by one, so the receiver always sees a bad
   * frame and never a length that makes it wait.
   * @throws RangeError unless 0 ≤ probability ≤ 1.
   */
  corrupt(probability: number, direction?: FaultDirection): void;
  /**
   * Forwards the first `offset` bytes of each connection in `direction` (default `both`), then
   * resets (RST) both ends; a connection already past `offset` is reset at once.
   * @throws RangeError unless `offset` is a non-negative integer.
   */
  cutAt(offset: number, direction?: FaultDirection): void;
  /** Lifts every fault; stalled bytes go out. Half-open connections stay dead. */
  clear(): void;
  /** Stops listening and destroys every socket; resolves when the server and every socket are closed. */
  close(): Promise<void>;
}

/** One way of one connection. */
type Way = 'toTarget' | 'fromTarget';

/** The faults in force; each new chunk and each connection reads them when it moves. */
interface Faults {
  delayMs: number;
  bytesPerSecond: number | null;
  stalled: boolean;
  halfOpen: boolean;
  reset: boolean;
  corrupt: Record<Way, number>;
  cutAt: Record<Way, number | null>;
}

/** A source pauses once this many bytes wait in its pipe (bounded memory under delay or throttle). */
const PIPE_HIGH_WATER = 256 * 1024;
/** A throttled pipe sends 1/20 s worth of bytes per step. */
const THROTTLE_STEPS_PER_SECOND = 20;

function neutralFaults(): Faults {
  return {
    delayMs: 0,
    bytesPerSecond: null,
    stalled: false,
    halfOpen: false,
    reset: false,
    corrupt: { toTarget: 0, fromTarget: 0 },
    cutAt: { toTarget: null, fromTarget: null },
  };
}

function ways(direction: FaultDirection): Way[] {
  return direction === 'both' ? ['toTarget', 'fromTarget'] : [direction];
}

/** Forwards one way of a connection: queue with due times, pacing, cut, end. */
class Pipe {
  private readonly queue: { bytes: Buffer; due: number }[] = [];
  private queuedBytes = 0;
  /** Bytes written to the destination so far (what `cutAt` counts). */
  private forwarded = 0;
  private nextSendAt = 0;
  private sourceEnded = false;
  private endSent = false;
  private waitingDrain = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly way: Way,
    private readonly source: net.Socket,
    private readonly destination: net.Socket,
    private readonly connection: ProxiedConnection,
  ) {
    source.on('data', (chunk: Buffer) => this.onData(chunk));
    source.on('end', () => {
      this.sourceEnded = true;
      this.pump();
    });
    destination.on('drain', () => {
      this.waitingDrain = false;
      this.pump();
    });
  }

  private onData(chunk: Buffer): void {
    const faults = this.connection.faults;
    // Half-open: read and thrown away; a destination that is gone can take nothing more.
    if (this.connection.dead || this.connection.ended || this.destination.destroyed) return;
    let bytes = chunk;
    if (faults.corrupt[this.way] > 0 && chunk.length > 0 && this.connection.random() < faults.corrupt[this.way]) {
      bytes = Buffer.from(chunk);
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0x01;
    }
    this.queue.push({ bytes, due: performance.now() + faults.delayMs });
    this.queuedBytes += bytes.length;
    if (this.queuedBytes > PIPE_HIGH_WATER) this.source.pause();
    this.pump();
  }

  /** Sends what is due, as far as the faults, the pacing and the destination allow. */
  pump(): void {
    this.clearTimer();
    const connection = this.connection;
    const faults = connection.faults;
    if (connection.dead || connection.ended || this.destination.destroyed) return;
    if (faults.stalled) {
      this.source.pause();
      return;
    }
    const cut = faults.cutAt[this.way];
    while (!this.waitingDrain) {
      if (cut !== null && this.forwarded >= cut) {
        connection.resetBoth();
        return;
      }
      const head = this.queue[0];
      if (head === undefined) break;
      const now = performance.now();
      const wait = Math.max(head.due, faults.bytesPerSecond === null ? 0 : this.nextSendAt) - now;
      if (wait > 0) {
        this.timer = setTimeout(() => this.pump(), Math.ceil(wait));
        return;
      }
      let size = head.bytes.length;
      if (faults.bytesPerSecond !== null) {
        size = Math.min(size, Math.max(1, Math.floor(faults.bytesPerSecond / THROTTLE_STEPS_PER_SECOND)));
      }
      if (cut !== null) size = Math.min(size, cut - this.forwarded);
      const piece = head.bytes.subarray(0, size);
      if (size === head.bytes.length) this.queue.shift();
      else head.bytes = head.bytes.subarray(size);
      this.queuedBytes -= size;
      this.forwarded += size;
      if (faults.bytesPerSecond !== null) this.nextSendAt = now + (size / faults.bytesPerSecond) * 1000;
      const reachedCut = cut !== null && this.forwarded >= cut;
      // At the cut, reset only once the last allowed byte is handed to the kernel.
      const ok = this.destination.write(piece, reachedCut ? () => connection.resetBoth() : undefined);
      if (reachedCut) return;
      if (!ok) this.waitingDrain = true;
    }
    if (this.queuedBytes <= PIPE_HIGH_WATER && !this.source.destroyed) this.source.resume();
    if (this.queue.length === 0 && this.sourceEnded && !this.endSent && !this.waitingDrain) {
      this.endSent = true;
      this.destination.end();
    }
  }

  /** Drops every held byte (half-open, reset, close). */
  discard(): void {
    this.clearTimer();
    this.queue.length = 0;
    this.queuedBytes = 0;
    if (!this.source.destroyed) this.source.resume();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** One accepted connection and its upstream connection to the target. */
class ProxiedConnection {
  /** Half-open: nothing is forwarded ever again, nothing is passed on. */
  dead = false;
  /** Reset or closed by the proxy. */
  ended = false;
  private readonly pipes: Pipe[];

  constructor(
    readonly client: net.Socket,
    readonly upstream: net.Socket,
    readonly faults: Faults,
    readonly random: () => number,
    private readonly onGone: (connection: ProxiedConnection) => void,
  ) {
    this.pipes = [new Pipe('toTarget', client, upstream, this), new Pipe('fromTarget', upstream, client, this)];
    for (const socket of [client, upstream]) {
      // An error on one side is a reset of the connection, passed on as a reset (unless half-open).
      socket.on('error', () => {
        if (!this.dead) this.resetBoth();
      });
      socket.on('close', () => {
        if (client.destroyed && upstream.destroyed) this.onGone(this);
      });
    }
    // A side that closes without its end having been read was destroyed: pass that on as a reset.
    client.on('close', () => {
      if (!this.dead && !client.readableEnded) this.resetBoth();
    });
    upstream.on('close', () => {
      if (!this.dead && !upstream.readableEnded && !upstream.connecting) this.resetBoth();
    });
  }

  pump(): void {
    for (const pipe of this.pipes) pipe.pump();
  }

  goHalfOpen(): void {
    if (this.ended) return;
    this.dead = true;
    for (const pipe of this.pipes) pipe.discard();
  }

  /** RST to both ends (a socket still connecting is reset once connected). */
  resetBoth(): void {
    if (this.ended) return;
    this.ended = true;
    for (const pipe of this.pipes) pipe.discard();
    for (const socket of [this.client, this.upstream]) {
      if (!socket.destroyed) socket.resetAndDestroy();
    }
  }

  /** Destroys both sockets; resolves once both are closed. */
  async destroy(): Promise<void> {
    this.ended = true;
    for (const pipe of this.pipes) pipe.discard();
    await Promise.all(
      [this.client, this.upstream].map(
        (socket) =>
          new Promise<void>((resolve) => {
            if (socket.closed) return resolve();
            socket.once('close', () => resolve());
            socket.destroy();
          }),
      ),
    );
  }
}

/**
 * Starts a fault proxy on 127.0.0.1 (port picked by the OS) forwarding to `target`.
 * @param target `host:port` of the real listener, normally on 127.0.0.1.
 * @returns the running proxy; close it with `close()`.
 * @throws RangeError when `target` is not `host:port`; the listen error as the rejection.
 */
export async function startFaultProxy(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const colon = target.lastIndexOf(':');
  const host = target.slice(0, colon);
  const port = Number(target.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`not a host:port target: ${target}`);
  const random = options.random ?? Math.random;
  const faults = neutralFaults();
  const connections = new Set<ProxiedConnection>();
  const strays = new Set<net.Socket>();
  let accepted = 0;

  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    accepted++;
    client.on('error', () => undefined);
    if (faults.reset) {
      strays.add(client);
      client.once('close', () => strays.delete(client));
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    upstream.on('error', () => undefined);
    const connection = new ProxiedConnection(client, upstream, faults, random, (gone) => connections.delete(gone));
    connections.add(connection);
    if (faults.halfOpen) connection.goHalfOpen();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as net.AddressInfo;
  const pumpAll = (): void => {
    for (const connection of connections) connection.pump();
  };

  return {
    address: `127.0.0.1:${bound.port}`,
    get accepted() {
      return accepted;
    },
    delay(ms) {
      if (!(ms >= 0 && Number.isFinite(ms))) throw new RangeError(`delay must be a finite number of ms ≥ 0, got ${ms}`);
      faults.delayMs = ms;
    },
    throttle(bytesPerSecond) {
      if (!(bytesPerSecond > 0 && Number.isFinite(bytesPerSecond))) {
        throw new RangeError(`throttle needs a finite rate > 0 bytes/s, got ${bytesPerSecond}`);
      }
      faults.bytesPerSecond = bytesPerSecond;
    },
    stall() {
      faults.stalled = true;
      pumpAll();
    },
    resume() {
      faults.stalled = false;
      pumpAll();
    },
    reset() {
      faults.reset = true;
      for (const connection of connections) connection.resetBoth();
    },
    halfOpen() {
      faults.halfOpen = true;
      for (const connection of connections) connection.goHalfOpen();
    },
    corrupt(probability, direction = 'both') {
      if (!(probability >= 0 && probability <= 1)) throw new RangeError(`probability must be in [0, 1], got ${probability}`);
      for (const way of ways(direction)) faults.corrupt[way] = probability;
    },
    cutAt(offset, direction = 'both') {
      if (!Number.isInteger(offset) || offset < 0) throw new RangeError(`offset must be an integer ≥ 0, got ${offset}`);
      for (const way of ways(direction)) faults.cutAt[way] = offset;
      pumpAll();
    },
    clear() {
      Object.assign(faults, neutralFaults());
      pumpAll();
    },
    async close() {
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([
        ...[...connections].map((connection) => connection.destroy()),
        ...[...strays].map(
          (socket) =>
            new Promise<void>((resolve) => {
              if (socket.closed) return resolve();
              socket.once('close', () => resolve());
              socket.destroy();
            }),
        ),
      ]);
      connections.clear();
      await serverClosed;
    },
  };
}

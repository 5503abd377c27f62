/**
 * The transport seam (DESIGN §7: "options carry … transport"): what the supervisor needs to dial
 * and accept raw byte streams, before any handshake. TCP (`tcpTransport` in `tcp.ts`) is the real
 * one; the in-memory network (`memory.ts`) runs the same Noise and yamux layers without sockets,
 * in virtual time, with injectable faults, for model-based specs.
 */
import type { Duplex } from 'node:stream';

/**
 * A connected byte stream, before any handshake. Whoever takes it owns it: `stream.destroy()`
 * releases it, and its `'close'` event says it is released. Transports hand it out with a no-op
 * `'error'` listener already attached ({@link guardErrors}), so a reset that lands between
 * two owners never becomes an uncaught exception.
 */
export interface RawConnection {
  /** The bytes, both ways. Half-close (`end()`) is supported; `allowHalfOpen` is true. */
  readonly stream: Duplex;
  /** The remote end as `host:port` (`[v6]:port` for IPv6). */
  readonly remoteAddress: string;
  /** Bytes received so far (for the inactivity check: it polls this counter). */
  bytesRead(): number;
}

/** A listening endpoint of a {@link Transport}. */
export interface TransportListener {
  /** The bound address as `host:port` (the picked port when 0 was asked for). */
  readonly address: string;
  /** Stops accepting; connections already handed over stay open. Resolves when closed. */
  close(): Promise<void>;
}

/** Dials and listens. Implementations: `tcpTransport`, `MemoryNetwork.transport(host)`. */
export interface Transport {
  /**
   * Opens a raw connection to `address` (`host:port`).
   * @param signal aborting it rejects with DialFailed and releases whatever was half-open.
   * @throws DialFailed on refusal, unreachable address, reset or abort (`cause` holds the detail);
   *   ProtocolViolation when `address` is not a `host:port`.
   */
  dial(address: string, signal?: AbortSignal): Promise<RawConnection>;
  /**
   * Listens on `address` (port 0: the transport picks one) and hands each accepted connection to
   * `onConnection`.
   * @throws the listen error (e.g. EADDRINUSE) as the rejection; ProtocolViolation for a bad address.
   */
  listen(address: string, onConnection: (connection: RawConnection) => void): Promise<TransportListener>;
}

/** Ignores an error: the stream is destroyed by it anyway, and 'close' tells its owners. */
function ignoreError(): void {}

/**
 * Keeps a no-op 'error' listener on a handed-out stream for its whole life: between one owner
 * letting go (a resolved dial, a finished handshake) and the next taking it, a reset must not
 * become an uncaught exception. Real handlers still receive the error.
 */
export function guardErrors(stream: Duplex): void {
  if (!stream.listeners('error').includes(ignoreError)) stream.on('error', ignoreError);
}

/**
 * Typed errors raised on the wire path (TCP, Noise, secure channel, yamux).
 *
 * Every failure caused by a remote peer's bytes is a {@link ProtocolViolation}: callers close that
 * one connection and never crash the process. Each class carries a stable `code` string so that
 * logs and metrics can group failures without matching on messages.
 */

/**
 * Builds an error without capturing a stack trace. For errors raised from I/O callbacks (a
 * socket closed, a session ended), where the stack names only Node's internals, and where Node's
 * `stream.destroy(error)` formats it at once (its `checkError` reads `error.stack`): that
 * formatting was two thirds of the CPU of reacting to a lost socket. Errors thrown to a caller
 * keep their stack. Never throws but what `make` throws.
 */
export function withoutStack<T extends Error>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Base class of every error peerwarden raises on purpose. `code` is stable across versions. */
export class PeerwardenError extends Error {
  /** Stable machine-readable identifier, e.g. `'PROTOCOL_VIOLATION'`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * The remote peer sent bytes that break a protocol: a failed AEAD decrypt, a truncated or
 * over-long Noise message (> 65535 bytes, Noise spec rev 34 §3), a malformed handshake payload,
 * a yamux frame with a bad version, type, flag set, stream ID or length (HashiCorp yamux spec.md).
 *
 * Maps to disconnect reason `ProtocolViolation` (DESIGN §2).
 */
export class ProtocolViolation extends PeerwardenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PROTOCOL_VIOLATION', message, options);
  }
}

/**
 * The remote peer is this node itself: the handshake showed our own node nonce or our own static
 * public key. The address must never be dialed again (DESIGN §2).
 */
export class SelfConnection extends PeerwardenError {
  constructor(message = 'dialed ourselves: same node nonce or same static key') {
    super('SELF_CONNECTION', message);
  }
}

/**
 * The remote peer speaks a protocol version we do not, or lacks a feature we require (handshake
 * payload, DESIGN §5).
 */
export class IncompatiblePeer extends PeerwardenError {
  constructor(message: string) {
    super('INCOMPATIBLE_PEER', message);
  }
}

/**
 * The remote peer authenticated with a static key whose peer ID is not the one we dialed.
 */
export class PeerIdMismatch extends PeerwardenError {
  constructor(expected: string, actual: string) {
    super('PEER_ID_MISMATCH', `expected peer ${expected}, the handshake authenticated ${actual}`);
  }
}

/** The handshake did not finish within `handshakeTimeout` ms (DESIGN §6: 10 s by default). */
export class HandshakeTimeout extends PeerwardenError {
  constructor(timeoutMs: number) {
    super('HANDSHAKE_TIMEOUT', `handshake did not finish within ${timeoutMs} ms`);
  }
}

/** A TCP dial failed: refused, unreachable, reset or aborted. `cause` holds the socket error. */
export class DialFailed extends PeerwardenError {
  constructor(address: string, options?: { cause?: unknown }) {
    const detail = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super('DIAL_FAILED', `dial to ${address} failed${detail}`, options);
  }
}

/** The connection or stream was closed while an operation on it was still waiting. */
export class ConnectionClosed extends PeerwardenError {
  constructor(message = 'connection closed') {
    super('CONNECTION_CLOSED', message);
  }
}

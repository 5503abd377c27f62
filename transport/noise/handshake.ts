/**
 * Runs the Noise XX handshake (Noise_XX_25519_ChaChaPoly_SHA256) over a connected byte stream,
 * usually a TCP socket, and checks the peer's handshake payload.
 *
 * Wire format: each Noise message is preceded by its length as a 2-byte big-endian integer (the
 * framing libp2p-noise uses), so a message is at most 65535 bytes (Noise spec rev 34 §3).
 *
 * ```
 * initiator                               responder
 *   -> e                       payload: empty
 *   <- e, ee, s, es            payload: responder's HandshakePayload
 *   -> s, se                   payload: initiator's HandshakePayload
 * ```
 * The initiator checks the responder's identity and payload before it reveals its own static key
 * and payload in message 3.
 */
import type { Duplex } from 'node:stream';
import { ByteQueue } from '../byte-queue.js';
import { ConnectionClosed, PeerIdMismatch, ProtocolViolation, SelfConnection } from '../errors.js';
import {
  checkCompatibility,
  decodeHandshakePayload,
  encodeHandshakePayload,
  type HandshakePayload,
} from '../handshake-payload.js';
import { peerIdFromPublicKey, type PeerId } from '../peer-id.js';
import type { CipherState } from './cipher-state.js';
import { nobleCrypto, type KeyPair, type NoiseCrypto } from './crypto.js';
import { HandshakeState } from './handshake-state.js';

/** The prologue both sides mix into the handshake hash by default (Noise §6): UTF-8 `peerwarden/1`. */
export const DEFAULT_PROLOGUE: Uint8Array = new TextEncoder().encode('peerwarden/1');

/** Bytes of the big-endian length prefix before every Noise message on the wire. */
export const LENGTH_PREFIX_BYTES = 2;

/** Options of {@link handshakeInitiator} and {@link handshakeResponder}. */
export interface HandshakeOptions {
  /** Our long-term X25519 static key pair (32-byte keys); our peer ID derives from its public key. */
  readonly staticKeyPair: KeyPair;
  /** Our handshake payload, sent in message 2 (responder) or 3 (initiator). */
  readonly payload: HandshakePayload;
  /** Feature bits (u32) the peer must advertise, default 0; checked with `checkCompatibility`. */
  readonly requiredFeatures?: number;
  /**
   * The peer ID we expect to authenticate. The initiator checks it before sending message 3;
   * the responder, if given one, checks it after message 3.
   */
  readonly expectedPeerId?: PeerId;
  /** The primitives; default `nobleCrypto`. */
  readonly crypto?: NoiseCrypto;
  /** Aborting rejects the handshake at once with `signal.reason` (this is how callers time out). */
  readonly signal?: AbortSignal;
  /** Prologue (Noise §6); both sides must use the same bytes. Default {@link DEFAULT_PROLOGUE}. */
  readonly prologue?: Uint8Array;
  /**
   * Initiator only: message 3 is written into a corked socket (`socket.cork()`), so that what the
   * caller writes next leaves with it in one segment (one wake-up of the responder instead of
   * two). The caller must call `socket.uncork()` once after a successful handshake; on failure
   * the socket is destroyed anyway. Default false.
   */
  readonly corkLastMessage?: boolean;
}

/** What a successful handshake established. */
export interface HandshakeResult {
  /** The peer ID of the authenticated remote static key. */
  readonly remotePeerId: PeerId;
  /** The remote static X25519 public key, 32 bytes. */
  readonly remotePublicKey: Uint8Array;
  /** The remote's decoded handshake payload. */
  readonly remotePayload: HandshakePayload;
  /** Encrypts what we send (nonce 0 next). */
  readonly send: CipherState;
  /** Decrypts what we receive (nonce 0 next). */
  readonly receive: CipherState;
  /** The final Noise handshake hash `h` (32 bytes), the same on both sides; usable for channel binding. */
  readonly handshakeHash: Uint8Array;
  /** Bytes that arrived after the last handshake message; the secure channel must consume them first. */
  readonly leftover: Buffer;
}

/**
 * Runs the XX handshake as initiator (the dialer) over a connected `socket`.
 *
 * On success the socket is paused, no listener of ours remains, and bytes received past the
 * handshake are in `leftover`. On failure every listener is removed, the socket is destroyed and
 * the promise rejects with:
 * - `ProtocolViolation`: a malformed, truncated, over-long or unauthenticated Noise message or a
 *   malformed payload (a message cut short by the end of the stream is `ConnectionClosed`);
 * - `SelfConnection`: the peer showed our own static key or our own node nonce;
 * - `PeerIdMismatch`: `expectedPeerId` is set and the responder authenticated as someone else;
 * - `IncompatiblePeer`: another protocol version, or `requiredFeatures` missing;
 * - `ConnectionClosed`: the socket ended (even in the middle of a message), closed or errored
 *   (the error is the `cause`);
 * - `signal.reason`: the signal aborted (a generic `ConnectionClosed` if the reason is no Error);
 * - `RangeError`: our own payload or keys are invalid.
 * No timeout of its own: pass a `signal` (e.g. `AbortSignal.timeout(ms)`).
 */
export function handshakeInitiator(socket: Duplex, options: HandshakeOptions): Promise<HandshakeResult> {
  return runHandshake(socket, true, options);
}

/**
 * Runs the XX handshake as responder (the listener) over an accepted `socket`. Message 1 must
 * carry an empty payload (else ProtocolViolation). Otherwise as {@link handshakeInitiator}.
 */
export function handshakeResponder(socket: Duplex, options: HandshakeOptions): Promise<HandshakeResult> {
  return runHandshake(socket, false, options);
}

function runHandshake(socket: Duplex, initiator: boolean, options: HandshakeOptions): Promise<HandshakeResult> {
  return new Promise<HandshakeResult>((resolve, reject) => {
    const { signal } = options;
    const queue = new ByteQueue();
    let settled = false;

    const onData = (chunk: Buffer): void => {
      queue.push(chunk);
      advance();
    };
    const onEnd = (): void => {
      // A message cut short by the end of the stream is the network's (or a hang-up's) doing, not
      // bad bytes: like yamux, call it ConnectionClosed, so flaky cuts never count towards a ban.
      fail(
        new ConnectionClosed(
          queue.length > 0
            ? 'connection ended in the middle of a handshake message'
            : 'peer ended the connection during the handshake',
        ),
      );
    };
    const onClose = (): void => fail(new ConnectionClosed('connection closed during the handshake'));
    const onError = (error: Error): void => fail(closedBy(error));
    const onAbort = (): void => fail(abortReason(signal));

    function cleanup(): void {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onClose);
      socket.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    }

    function fail(error: Error): void {
      if (settled) return;
      settled = true;
      cleanup();
      socket.destroy();
      reject(error);
    }

    if (signal?.aborted === true) {
      fail(abortReason(signal));
      return;
    }
    if (socket.destroyed || socket.readableEnded) {
      fail(new ConnectionClosed('socket closed before the handshake'));
      return;
    }

    let state: HandshakeState;
    let ourPayload: Uint8Array;
    try {
      ourPayload = encodeHandshakePayload(options.payload);
      state = new HandshakeState({
        initiator,
        staticKeyPair: options.staticKeyPair,
        prologue: options.prologue ?? DEFAULT_PROLOGUE,
        crypto: options.crypto ?? nobleCrypto,
      });
    } catch (error) {
      fail(asError(error));
      return;
    }

    // Reads each complete message and answers it; stops when a message is still partial.
    function advance(): void {
      try {
        while (!settled && !state.isComplete && !state.isMyTurn) {
          const message = readFrame(queue);
          if (message === undefined) return;
          const payload = state.readMessage(message);
          if (initiator) {
            // Message 2: check the responder before revealing who we are in message 3.
            const remote = verifyRemote(state, payload, options);
            if (options.corkLastMessage === true) socket.cork();
            sendFrame(state.writeMessage(ourPayload));
            succeed(remote);
          } else if (!state.isComplete) {
            // Message 1: nothing is authenticated yet, so the payload must be empty.
            if (payload.length !== 0) throw new ProtocolViolation('Noise message 1 must carry an empty payload');
            sendFrame(state.writeMessage(ourPayload));
          } else {
            succeed(verifyRemote(state, payload, options));
          }
        }
      } catch (error) {
        fail(asError(error));
      }
    }

    function sendFrame(message: Uint8Array): void {
      const frame = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + message.length);
      frame.writeUInt16BE(message.length, 0);
      frame.set(message, LENGTH_PREFIX_BYTES);
      socket.write(frame);
    }

    function succeed(remote: { remotePeerId: PeerId; remotePublicKey: Uint8Array; remotePayload: HandshakePayload }): void {
      settled = true;
      // Pause before dropping our 'data' listener: a flowing stream keeps emitting without one.
      socket.pause();
      cleanup();
      const { send, receive } = state.split();
      resolve({ ...remote, send, receive, handshakeHash: state.getHandshakeHash(), leftover: queue.readAll() });
    }

    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.on('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.resume();
    if (initiator) {
      try {
        sendFrame(state.writeMessage(new Uint8Array(0)));
      } catch (error) {
        fail(asError(error));
      }
    }
  });
}

/** The next length-prefixed Noise message, or undefined while it is incomplete. */
function readFrame(queue: ByteQueue): Buffer | undefined {
  const prefix = queue.peek(LENGTH_PREFIX_BYTES);
  if (prefix === undefined) return undefined;
  const length = prefix.readUInt16BE(0);
  if (queue.length < LENGTH_PREFIX_BYTES + length) return undefined;
  queue.skip(LENGTH_PREFIX_BYTES);
  return queue.read(length);
}

/**
 * Decodes and checks the remote payload once the remote static key is known: self-connection
 * first (it is also an ID "mismatch"), then the expected peer ID, then compatibility.
 */
function verifyRemote(
  state: HandshakeState,
  payloadBytes: Uint8Array,
  options: HandshakeOptions,
): { remotePeerId: PeerId; remotePublicKey: Uint8Array; remotePayload: HandshakePayload } {
  const remotePublicKey = state.remoteStaticPublicKey;
  if (remotePublicKey === undefined) throw new Error('remote static key missing after its message');
  const remotePayload = decodeHandshakePayload(payloadBytes);
  if (bytesEqual(remotePublicKey, options.staticKeyPair.publicKey)) {
    throw new SelfConnection('dialed ourselves: the peer has our static key');
  }
  if (bytesEqual(remotePayload.nodeNonce, options.payload.nodeNonce)) {
    throw new SelfConnection('dialed ourselves: the peer has our node nonce');
  }
  const remotePeerId = peerIdFromPublicKey(remotePublicKey);
  if (options.expectedPeerId !== undefined && remotePeerId !== options.expectedPeerId) {
    throw new PeerIdMismatch(options.expectedPeerId, remotePeerId);
  }
  checkCompatibility(options.payload, remotePayload, options.requiredFeatures ?? 0);
  return { remotePeerId, remotePublicKey, remotePayload };
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}

function closedBy(cause: Error): ConnectionClosed {
  const error = new ConnectionClosed(`connection failed during the handshake: ${cause.message}`);
  Object.defineProperty(error, 'cause', { value: cause, configurable: true, writable: true });
  return error;
}

function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new ConnectionClosed('handshake aborted');
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * A link: one authenticated, multiplexed pipe to one peer, built in layers over a raw connection
 * of a transport (a TCP socket, or a memory pipe in specs)
 * (DESIGN §5): Noise XX handshake → secure channel (framed AEAD) → yamux session → control stream
 * (ping, goodbye) plus application streams opened by protocol name.
 *
 * A link owns everything below it: `destroy()` releases the socket, the channel, the session and
 * every stream. The connection machine's link actor holds exactly one link for the lifetime of
 * `live`.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { ControlChannel, CONTROL_PROTOCOL } from './control-channel.js';
import type { Goodbye } from './control-channel.js';
import type { DisconnectReason } from './disconnect-reason.js';
import { ConnectionClosed, ProtocolViolation, withoutStack } from './errors.js';
import type { HandshakePayload } from './handshake-payload.js';
import type { KeyPair, NoiseCrypto } from './noise/crypto.js';
import { handshakeInitiator, handshakeResponder } from './noise/handshake.js';
import type { PeerId } from './peer-id.js';
import { encodeProtocolHeader, readProtocolHeader } from './protocol-select.js';
import { SecureChannel } from './secure-channel.js';
import { guardErrors } from './transport.js';
import type { RawConnection } from './transport.js';
import { YamuxSession } from './yamux/session.js';
import type { SessionTimers } from './yamux/session.js';
import type { YamuxStream } from './yamux/stream.js';

/** Who we are on the wire: keys and the payload we announce. */
export interface LocalIdentity {
  /** Long-term X25519 static key pair (32-byte keys). */
  readonly staticKeyPair: KeyPair;
  /** Our peer ID (from `staticKeyPair.publicKey`). */
  readonly peerId: PeerId;
  /** Our handshake payload (version, flags, node nonce, listen addresses). */
  readonly payload: HandshakePayload;
  /** Feature bits a peer must advertise to be accepted (u32 bitfield). */
  readonly requiredFeatures: number;
  /** Noise primitives; default `nobleCrypto`. */
  readonly crypto?: NoiseCrypto;
}

/** Options of {@link establishLink}. */
export interface EstablishLinkOptions {
  readonly identity: LocalIdentity;
  /** `initiator`: we dialed (Noise initiator, yamux client, we open the control stream). */
  readonly role: 'initiator' | 'responder';
  /** Initiator only: abort with PeerIdMismatch if the peer is someone else. */
  readonly expectedPeerId?: PeerId;
  /** Aborting stops the handshake and the control stream set-up and destroys the socket. */
  readonly signal?: AbortSignal;
  /** Timers of the yamux session (its violation linger); the injected clock in the supervisor. */
  readonly timers?: SessionTimers;
  /**
   * Receives each inbound application stream once its protocol header is read, from the first
   * one on (streams can arrive before `establishLink` resolves). Without it, streams are reset.
   */
  readonly onStream?: (protocol: string, stream: Duplex, link: Link) => void;
}

/** Events of a {@link Link}. */
export interface LinkEvents {
  /** The remote said goodbye, with its reason. */
  goodbye: [Goodbye];
  /** The link is gone. `error` is undefined after our own `close()`, else why it failed. */
  closed: [error: Error | undefined];
}

/**
 * An established link. Create it with {@link establishLink}.
 */
export class Link extends EventEmitter<LinkEvents> {
  private ended = false;
  private closingByUs = false;
  private openAppStreams = 0;
  private streamEvents = 0;
  /** Application streams open now, for the byte count. */
  /** Open application streams; made at the first one (many links carry none). */
  private appStreams: Set<YamuxStream> | undefined;
  /** Payload bytes both ways of the application streams already closed. */
  private closedStreamBytes = 0;
  private readonly socket: Duplex;

  constructor(
    private readonly connection: RawConnection,
    private readonly channel: SecureChannel,
    private readonly session: YamuxSession,
    private readonly control: ControlChannel,
    /** The authenticated peer. */
    readonly remotePeerId: PeerId,
    /** The peer's handshake payload. */
    readonly remotePayload: HandshakePayload,
    private readonly onStream: ((protocol: string, stream: Duplex, link: Link) => void) | undefined,
  ) {
    super();
    this.socket = connection.stream;
    control.on('goodbye', (goodbye) => {
      // A goodbye always ends the connection (DESIGN §2): our FIN leaves now, before the owner
      // reacts, so the peer's close does not wait for our bookkeeping. The owner then destroys us.
      if (!this.ended) this.socket.end();
      this.emit('goodbye', goodbye);
    });
    control.on('error', (error) => this.end(error));
    session.on('error', (error: Error) => this.end(error));
    session.on('close', () => this.endClosed('yamux session closed'));
    channel.on('error', (error: Error) => this.end(error));
    this.socket.on('close', () => this.endClosed('socket closed'));
  }

  /** The remote `host:port` of the raw connection. */
  get remoteAddress(): string {
    return this.connection.remoteAddress;
  }

  /** Bytes received on the raw connection so far (control traffic included). */
  get bytesRead(): number {
    return this.connection.bytesRead();
  }

  /**
   * Application use of the link, for the reaper's idle check (DESIGN §3): `openStreams` is the
   * number of application streams open now (the control stream is not counted), `events` counts
   * every application stream opened or closed so far, so a change between two looks means use.
   */
  get usage(): { readonly openStreams: number; readonly events: number } {
    return { openStreams: this.openAppStreams, events: this.streamEvents };
  }

  /** Whether the link has ended (closed or failed). */
  get closed(): boolean {
    return this.ended;
  }

  /**
   * Sends a ping on the control stream; resolves when the pong arrives.
   * @throws ConnectionClosed (rejection) when the link ends first.
   */
  ping(): Promise<void> {
    return this.control.ping();
  }

  /**
   * Opens an application stream for `protocol`; the header goes out with the first bytes.
   * @throws ConnectionClosed when the link has ended; RangeError for an invalid protocol name.
   */
  openStream(protocol: string): YamuxStream {
    if (this.ended) throw new ConnectionClosed('link closed');
    const header = encodeProtocolHeader(protocol);
    const stream = this.session.openStream();
    this.track(stream);
    stream.write(header);
    return stream;
  }

  /**
   * Graceful close (DESIGN §2 Disconnecting): goodbye with `reason`, then the yamux GoAway and the
   * socket's FIN once everything is flushed. The caller bounds it with `gracefulShutdownTimeout`
   * and calls {@link Link.destroy} when that passes.
   */
  async close(reason: DisconnectReason, duplicate = false): Promise<void> {
    if (this.ended) return;
    this.closingByUs = true;
    // Both in this tick: the session corks the connection until the tick ends, so the goodbye, the
    // GoAway and the streams' FINs (each after its stream's data) reach the peer in one segment
    // instead of one round of callbacks and one wake-up of the peer each.
    const goodbyeSent = this.control.goodbye(reason, duplicate);
    const sessionClosed = this.session.close();
    await goodbyeSent;
    await sessionClosed;
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.end();
    });
    this.end(undefined);
  }

  /** Immediate close: destroys the session, the channel and the socket. Idempotent. */
  destroy(error?: Error): void {
    this.closingByUs = this.closingByUs || error === undefined;
    // The control channel lets go first, so the session aborts its stream quietly: no RST frame
    // encrypted and sent on a connection that goes anyway, no error object nobody reads.
    this.control.detach();
    this.session.destroy(error);
    this.control.close();
    this.channel.destroy();
    this.socket.destroy();
    this.end(error);
  }

  /** @internal dispatches an inbound stream once its protocol header is read. */
  acceptStream(stream: YamuxStream): void {
    this.track(stream);
    readProtocolHeader(stream).then(
      (protocol) => {
        if (this.onStream && !this.ended) this.onStream(protocol, stream, this);
        else stream.destroy();
      },
      () => stream.destroy(),
    );
  }

  /** Counts an application stream while it is open. */
  private track(stream: YamuxStream): void {
    this.openAppStreams++;
    this.streamEvents++;
    const streams = (this.appStreams ??= new Set());
    streams.add(stream);
    stream.once('close', () => {
      this.openAppStreams--;
      this.streamEvents++;
      streams.delete(stream);
      this.closedStreamBytes += stream.bytesReceived + stream.bytesSent;
    });
  }

  /**
   * Application payload bytes moved both ways so far (stream data, not control traffic nor
   * framing): the health pipeline's bandwidth counter. O(open application streams).
   */
  get appBytes(): number {
    let total = this.closedStreamBytes;
    if (this.appStreams) for (const stream of this.appStreams) total += stream.bytesReceived + stream.bytesSent;
    return total;
  }

  /** Ends with ConnectionClosed, built only if someone will see it (a stack costs more than the close). */
  private endClosed(message: string): void {
    if (this.ended) return;
    this.end(this.closingByUs ? undefined : withoutStack(() => new ConnectionClosed(message)));
  }

  private end(error: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.socket.destroy();
    this.emit('closed', this.closingByUs ? undefined : error);
  }
}

/**
 * Runs the whole upgrade on a raw connection: handshake, secure channel, yamux, control stream.
 * The link owns the connection from here on; on failure its stream is destroyed. The initiator's
 * Noise message 3 and the opening of the control stream leave in one segment, so the responder
 * wakes up once for both.
 * @throws ProtocolViolation (bad bytes, incompatible peer, wrong peer ID), SelfConnection,
 *   ConnectionClosed (the peer hung up), or `signal.reason` when aborted.
 */
export async function establishLink(connection: RawConnection, options: EstablishLinkOptions): Promise<Link> {
  const { identity, role, signal } = options;
  const socket = connection.stream;
  // The link's layers listen for errors only while they own the stream; the guard covers the gaps.
  guardErrors(socket);
  const initiator = role === 'initiator';
  let session: YamuxSession | undefined;
  try {
    const handshake = await (initiator ? handshakeInitiator : handshakeResponder)(socket, {
      staticKeyPair: identity.staticKeyPair,
      payload: identity.payload,
      requiredFeatures: identity.requiredFeatures,
      ...(options.expectedPeerId ? { expectedPeerId: options.expectedPeerId } : {}),
      ...(identity.crypto ? { crypto: identity.crypto } : {}),
      ...(signal ? { signal } : {}),
      corkLastMessage: initiator,
    });
    const channel = new SecureChannel(socket, handshake);
    const pendingStreams: YamuxStream[] = [];
    // Streams that arrive before the link exists wait here; the responder takes the control stream from them.
    let accept = (stream: YamuxStream): void => void pendingStreams.push(stream);
    session = new YamuxSession(channel, {
      role: initiator ? 'client' : 'server',
      onStream: (stream) => accept(stream),
      ...(options.timers ? { timers: options.timers } : {}),
    });
    let controlStream: YamuxStream;
    if (initiator) {
      controlStream = openControlStream(session);
      // Message 3 waits in the corked socket: the session hands the control stream's opening to
      // the channel on the next tick, and this uncork, queued after it, sends both in one segment.
      await new Promise<void>((resolve) =>
        process.nextTick(() => {
          socket.uncork();
          resolve();
        }),
      );
    } else {
      controlStream = await acceptControlStream(pendingStreams, session, signal);
    }
    const control = new ControlChannel(controlStream);
    const link = new Link(
      connection,
      channel,
      session,
      control,
      handshake.remotePeerId,
      handshake.remotePayload,
      options.onStream,
    );
    accept = (stream) => link.acceptStream(stream);
    for (const stream of pendingStreams.splice(0)) link.acceptStream(stream);
    return link;
  } catch (error) {
    session?.destroy();
    socket.destroy();
    throw error;
  }
}

function openControlStream(session: YamuxSession): YamuxStream {
  const stream = session.openStream();
  stream.write(encodeProtocolHeader(CONTROL_PROTOCOL));
  return stream;
}

/** The responder waits for the initiator's first stream, which must be the control stream. */
function acceptControlStream(
  pending: YamuxStream[],
  session: YamuxSession,
  signal: AbortSignal | undefined,
): Promise<YamuxStream> {
  return new Promise<YamuxStream>((resolve, reject) => {
    const check = (): void => {
      const first = pending.shift();
      if (!first) return;
      cleanup();
      readProtocolHeader(first).then((protocol) => {
        if (protocol === CONTROL_PROTOCOL) resolve(first);
        else reject(new ProtocolViolation(`first stream must be ${CONTROL_PROTOCOL}, got ${protocol.slice(0, 64)}`));
      }, reject);
    };
    // The session's close carries why it ended: a bad frame stays a ProtocolViolation.
    const onClose = (error?: Error): void => {
      cleanup();
      reject(error instanceof ProtocolViolation ? error : new ConnectionClosed('closed before the control stream opened'));
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal?.reason instanceof Error ? signal.reason : new ConnectionClosed('aborted'));
    };
    const cleanup = (): void => {
      session.off('stream', check);
      session.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    session.on('stream', check);
    session.once('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
    check();
  });
}

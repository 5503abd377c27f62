/**
 * Messages between peers (issue 5 item 6, DESIGN §4 batching): `send(peerId, message)` queues per
 * peer, a batch goes out when 128 are queued or 50 ms passed, on one application stream per
 * connection (`MESSAGES_PROTOCOL`), so the receiver gets them in order. While a persistent peer
 * has no live link, messages wait in its bounded outbox and go out when it is Connected again.
 * Nothing is dropped silently: a refused message rejects `send`, an undeliverable batch is
 * reported.
 */
import type { Duplex } from 'node:stream';
import { Subject, firstValueFrom, from, race, timer } from 'rxjs';
import type { Observable, SchedulerLike, Subscription } from 'rxjs';
import { batch } from '../streams/batch.js';
import type { BatchOptions } from '../streams/batch.js';
import { Outbox, OutboxFull } from '../streams/outbox.js';
import type { OutboxLimits } from '../streams/outbox.js';
import { encodeMessages, MAX_MESSAGE_BYTES, MessageDecoder } from '../transport/message-codec.js';
import type { Link } from '../transport/link.js';
import { PeerAddressUnknown } from './errors.js';

/** The protocol name of the message stream. */
export const MESSAGES_PROTOCOL = '/peerwarden/messages/1';

/** A message received from a peer. */
export interface PeerMessage {
  readonly peerId: string;
  readonly message: Uint8Array;
}

/** Messages that could not be delivered, and why (they were accepted by `send` earlier). */
export interface UndeliveredMessages {
  readonly peerId: string;
  readonly messages: readonly Uint8Array[];
  readonly reason: string;
}

/** Where a peer stands, for sending. */
export type PeerReach =
  /** A live link: batches go out on it. */
  | { readonly kind: 'live'; readonly connectionId: string; readonly link: Link }
  /** No live link, but the peer will be back (a persistent peer in Backoff or dialing): wait in the outbox. */
  | { readonly kind: 'waiting' }
  /** Neither: messages cannot be sent. */
  | { readonly kind: 'none' };

/** What the messenger needs from the supervisor. */
export interface MessengerDeps {
  readonly scheduler: SchedulerLike;
  readonly batch: BatchOptions;
  readonly outbox: Partial<OutboxLimits>;
  /** How long a graceful flush may wait for a stream to drain, ms (the graceful shutdown bound). */
  readonly flushTimeoutMs: number;
  reach(peerId: string): PeerReach;
}

interface PeerQueue {
  queue: Subject<Uint8Array>;
  subscription: Subscription;
  readonly outbox: Outbox;
  stream?: { readonly connectionId: string; readonly stream: Duplex };
}

/** Per-peer batching, outboxes and message streams. Owned by one supervisor. */
export class Messenger {
  private readonly peers = new Map<string, PeerQueue>();
  private readonly received = new Subject<PeerMessage>();
  private readonly undeliveredSubject = new Subject<UndeliveredMessages>();

  constructor(private readonly deps: MessengerDeps) {}

  /** Every message received, in order per peer; completes on {@link Messenger.close}. */
  get messages$(): Observable<PeerMessage> {
    return this.received.asObservable();
  }

  /** Batches that could not be delivered after `send` accepted them (e.g. the link went and the peer is temporary). */
  get undelivered$(): Observable<UndeliveredMessages> {
    return this.undeliveredSubject.asObservable();
  }

  /**
   * Queues `message` (bytes, at most `MAX_MESSAGE_BYTES`) for `peerId`.
   * @throws PeerAddressUnknown when the peer has no live link and will not come back;
   *   OutboxFull when its outbox (or the unsent bytes of its stream) is at its bound;
   *   RangeError for an oversize message.
   */
  send(peerId: string, message: Uint8Array): void {
    const reach = this.deps.reach(peerId);
    if (reach.kind === 'none') throw new PeerAddressUnknown(peerId);
    const peer = this.peer(peerId);
    if (message.length > MAX_MESSAGE_BYTES) throw new RangeError(`message of ${message.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
    if (reach.kind === 'waiting') {
      peer.outbox.enqueue(message);
      return;
    }
    // A stream that cannot keep up holds at most an outbox's worth of bytes: backpressure on send().
    const unsent = peer.stream?.stream.writableLength ?? 0;
    if (unsent + message.length > peer.outbox.limits.maxBytes) {
      throw new OutboxFull(peerId, 'bytes', peer.outbox.limits.maxBytes);
    }
    peer.queue.next(message);
  }

  /** The peer is Connected again: what waited in its outbox goes out first, in order. */
  linkUp(peerId: string): void {
    const peer = this.peers.get(peerId);
    if (!peer || peer.outbox.size === 0) return;
    this.deliver(peerId, peer.outbox.drain());
  }

  /**
   * Graceful close of `peerId`: the pending batch goes out now and its stream is ended; resolves
   * once the stream has flushed, is gone, or `flushTimeoutMs` passed (a stalled peer must not
   * hold a shutdown).
   */
  async flush(peerId: string): Promise<void> {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    // Completing the queue makes the batcher emit its partial batch at once.
    peer.queue.complete();
    peer.subscription.unsubscribe();
    this.startQueue(peerId, peer);
    const current = peer.stream;
    peer.stream = undefined;
    if (current) {
      await firstValueFrom(race(from(endStream(current.stream)), timer(this.deps.flushTimeoutMs, this.deps.scheduler)));
    }
  }

  /** {@link Messenger.flush} for every peer. */
  async flushAll(): Promise<void> {
    await Promise.all([...this.peers.keys()].map((peerId) => this.flush(peerId)));
  }

  /** Reads an inbound message stream from `peerId`; a malformed stream is destroyed. */
  receive(peerId: string, stream: Duplex): void {
    const decoder = new MessageDecoder();
    stream.on('data', (chunk: Uint8Array) => {
      try {
        for (const message of decoder.push(chunk)) this.received.next({ peerId, message });
      } catch (error) {
        stream.destroy(error instanceof Error ? error : undefined);
      }
    });
    stream.on('end', () => {
      try {
        decoder.end();
      } catch {
        // A record cut by the end of the stream: the link was closing; nothing more to read.
      }
      stream.end();
    });
    stream.on('error', () => undefined);
  }

  /** Stops everything: queued batches are reported undelivered, streams destroyed, subjects completed. */
  close(): void {
    for (const [peerId, peer] of this.peers) {
      peer.subscription.unsubscribe();
      const left = peer.outbox.drain();
      if (left.length > 0) this.undeliveredSubject.next({ peerId, messages: left, reason: 'supervisor stopped' });
      peer.stream?.stream.destroy();
    }
    this.peers.clear();
    this.received.complete();
    this.undeliveredSubject.complete();
  }

  private peer(peerId: string): PeerQueue {
    let peer = this.peers.get(peerId);
    if (!peer) {
      peer = {
        queue: new Subject<Uint8Array>(),
        subscription: EMPTY_SUBSCRIPTION,
        outbox: new Outbox(peerId, this.deps.outbox),
      };
      this.startQueue(peerId, peer);
      this.peers.set(peerId, peer);
    }
    return peer;
  }

  private startQueue(peerId: string, peer: PeerQueue): void {
    peer.queue = new Subject<Uint8Array>();
    peer.subscription = peer.queue
      .pipe(batch<Uint8Array>(this.deps.batch, this.deps.scheduler))
      .subscribe((messages) => this.deliver(peerId, messages));
  }

  /** Writes a batch on the peer's live stream, or keeps it in the outbox, or reports it undelivered. */
  private deliver(peerId: string, messages: Uint8Array[]): void {
    const peer = this.peer(peerId);
    const reach = this.deps.reach(peerId);
    if (reach.kind === 'live') {
      if (peer.stream?.connectionId !== reach.connectionId || peer.stream.stream.destroyed) {
        try {
          const stream = reach.link.openStream(MESSAGES_PROTOCOL);
          stream.on('error', () => undefined);
          // The receiver never writes back; reading its end lets the stream close.
          stream.resume();
          peer.stream = { connectionId: reach.connectionId, stream };
        } catch {
          this.undeliveredSubject.next({ peerId, messages, reason: 'the link closed' });
          return;
        }
      }
      peer.stream?.stream.write(encodeMessages(messages));
      return;
    }
    if (reach.kind === 'waiting') {
      for (let i = 0; i < messages.length; i++) {
        try {
          peer.outbox.enqueue(messages[i] as Uint8Array);
        } catch (error) {
          if (!(error instanceof OutboxFull)) throw error;
          this.undeliveredSubject.next({ peerId, messages: messages.slice(i), reason: error.message });
          return;
        }
      }
      return;
    }
    this.undeliveredSubject.next({ peerId, messages, reason: 'no connection to the peer' });
  }
}

const EMPTY_SUBSCRIPTION = new Subject<never>().subscribe();

/** Ends a stream and resolves when it finished (or closed). */
function endStream(stream: Duplex): Promise<void> {
  return new Promise<void>((resolve) => {
    if (stream.destroyed || stream.writableFinished) return resolve();
    stream.once('finish', () => resolve());
    stream.once('close', () => resolve());
    stream.end();
  });
}

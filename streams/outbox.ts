/**
 * The per-peer outbox (peerwarden issue 5): where a peer's outgoing messages wait while it has no
 * live link, e.g. a persistent peer in Backoff. On reconnect the supervisor drains it into the new
 * link. It is bounded in messages and bytes, and refuses (never drops) what would not fit, so the
 * sender always learns that a message was not queued.
 */
import { PeerwardenError } from '../transport/errors.js';

/** Which bound of an {@link Outbox} was hit. */
export type OutboxLimitKind = 'messages' | 'bytes';

/**
 * A message was refused because queueing it would pass the outbox's message or byte limit. Nothing
 * was queued; the caller may retry after the peer reconnects, or give up.
 */
export class OutboxFull extends PeerwardenError {
  /** The peer whose outbox is full. */
  readonly peerId: string;
  /** The bound that was hit. */
  readonly limit: OutboxLimitKind;
  /** That bound's value: a message count, or bytes. */
  readonly limitValue: number;

  constructor(peerId: string, limit: OutboxLimitKind, limitValue: number) {
    super('OUTBOX_FULL', `outbox of peer ${peerId} is full: the limit is ${limitValue} ${limit}`);
    this.peerId = peerId;
    this.limit = limit;
    this.limitValue = limitValue;
  }
}

/** Bounds of an {@link Outbox}. Both are inclusive: a queue exactly at a limit is allowed. */
export interface OutboxLimits {
  /** Most messages queued at once (default 1024). Integer ≥ 0. */
  readonly maxMessages: number;
  /** Most payload bytes queued at once, summed over messages, framing not counted (default 8 MiB). Integer ≥ 0. */
  readonly maxBytes: number;
}

/** 1024 messages, 8 MiB (8 388 608 bytes): peerwarden issue 5; room for eight full-size messages (1 MiB each). */
export const DEFAULT_OUTBOX_LIMITS: OutboxLimits = { maxMessages: 1024, maxBytes: 8 * 1024 * 1024 };

/**
 * A bounded FIFO of one peer's outgoing messages. Messages are kept by reference (not copied): the
 * caller must not mutate a message after enqueueing it.
 */
export class Outbox {
  /** The peer these messages are for (used in {@link OutboxFull}). */
  readonly peerId: string;
  /** The effective limits: the defaults overridden by the constructor's argument. */
  readonly limits: OutboxLimits;
  private messages: Uint8Array[] = [];
  private byteCount = 0;

  /**
   * @param peerId the peer the messages are for.
   * @param limits overrides of {@link DEFAULT_OUTBOX_LIMITS}.
   * @throws RangeError unless each limit is a non-negative safe integer.
   */
  constructor(peerId: string, limits: Partial<OutboxLimits> = {}) {
    const merged = { ...DEFAULT_OUTBOX_LIMITS, ...limits };
    for (const [name, value] of Object.entries(merged)) {
      if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
    }
    this.peerId = peerId;
    this.limits = merged;
  }

  /** Messages queued. */
  get size(): number {
    return this.messages.length;
  }

  /** Payload bytes queued (sum of the messages' lengths). */
  get bytes(): number {
    return this.byteCount;
  }

  /**
   * Appends `message` at the end of the queue.
   *
   * @throws OutboxFull (and queues nothing) if it would make the queue hold more than
   *   `maxMessages` messages or more than `maxBytes` bytes. A message larger than `maxBytes`
   *   alone is always refused.
   */
  enqueue(message: Uint8Array): void {
    if (this.messages.length + 1 > this.limits.maxMessages) {
      throw new OutboxFull(this.peerId, 'messages', this.limits.maxMessages);
    }
    if (this.byteCount + message.byteLength > this.limits.maxBytes) {
      throw new OutboxFull(this.peerId, 'bytes', this.limits.maxBytes);
    }
    this.messages.push(message);
    this.byteCount += message.byteLength;
  }

  /** Removes and returns every queued message, oldest first; the outbox is then empty and usable again. */
  drain(): Uint8Array[] {
    const out = this.messages;
    this.messages = [];
    this.byteCount = 0;
    return out;
  }
}

/**
 * The supervisor actor (DESIGN §3): spawns one connection actor per dial or accepted socket,
 * keeps plain tables of them (`tables.ts`), and composes the pure policies: admission
 * (`admission.ts`), duplicates (`simultaneous-open.ts`), bans (`bans.ts`), eviction
 * (`eviction.ts`) and the reaper (`reaper.ts`). Every handler works on a {@link Draft} of the
 * context and queues its effects (spawn, send, stop, emit), applied in order after one assign.
 * The draft writes the tables in place and keeps the counts up to date as records change, so one
 * event costs O(1) whatever the number of connections (the 10,000-connection benchmark).
 *
 * Connection actors are kept in `connection-actors.ts`, which forwards their reports to it. Refusals
 * are emitted (`actor.on('refused', …)`) for the API to raise as typed errors.
 */
import { assign, enqueueActions, setup } from 'xstate';
import type { ActorRefFrom, AnyActorLogic, AnyActorRef, AnyStateMachine } from 'xstate';
import { connectionMachine } from '../machines/connection.js';
import type { ConnectionCommand, ConnectionInput, ConnectionReport } from '../machines/connection.js';
import { DEFAULT_VIOLATION_BAN, recordViolation } from '../streams/reconnect.js';
import type { ConnectionKind } from '../streams/reconnect.js';
import type { DisconnectReason } from '../transport/disconnect-reason.js';
import { addCounts, admitInbound, admitOutbound, DEFAULT_LIMITS, NO_CONNECTIONS } from './admission.js';
import { ban, emptyBans, findBan, normalizeIp, pruneExpired, unban, DEFAULT_BAN_DURATION_MS } from './bans.js';
import type { BanTarget } from './bans.js';
import { DEFAULT_EVICTION_OPTIONS, EVICTION_DISCONNECT_REASON, selectInboundToEvict } from './eviction.js';
import type { EvictionCandidate } from './eviction.js';
import { hostOfRemoteAddress } from './netgroup.js';
import { connectionActorsOf, spawnConnectionActor, stopConnectionActor } from './connection-actors.js';
import type { ConnectionSample } from './connection-actors.js';
import { DEFAULT_REAPER_SETTINGS, reap } from './reaper.js';
import type { LinkUsage } from './reaper.js';
import { chooseSurvivor } from './simultaneous-open.js';
import { STALE_SWEEP_REMOVALS, dropIndexEntries, hasEnded, isLive, newRecord, slotsOf, sweepStaleIndexes, zeroCounters } from './tables.js';
import type { ConnectionRecord, Refusal, SupervisorConfig, SupervisorContext } from './tables.js';

export type { ConnectionRecord, Refusal, SupervisorConfig, SupervisorContext } from './tables.js';

/** DESIGN §6 defaults of the supervisor's settings. */
export const DEFAULT_SUPERVISOR_CONFIG: SupervisorConfig = {
  limits: DEFAULT_LIMITS,
  reaper: DEFAULT_REAPER_SETTINGS,
  eviction: DEFAULT_EVICTION_OPTIONS,
  banDurationMs: DEFAULT_BAN_DURATION_MS,
  violationBan: DEFAULT_VIOLATION_BAN,
};

/** Input of the supervisor actor. */
export interface SupervisorInput {
  readonly localPeerId: string;
  readonly config?: SupervisorConfig;
}

/** Commands to the supervisor actor. */
export type SupervisorCommand =
  /**
   * Dial `address` unless a connection already serves it (or `peerId`, when given); `connectionId`
   * names the new actor. `reuse: false` refuses with AlreadyConnected instead of reusing;
   * `protect` tags the connection (never evicted or reaped).
   */
  | {
      type: 'connect';
      connectionId: string;
      address: string;
      kind: ConnectionKind;
      peerId?: string;
      reuse?: boolean;
      protect?: boolean;
    }
  /**
   * A raw connection was accepted and parked under `connectionId`. `reclaimable` lists pending
   * inbound connections that have not sent a whole first handshake message yet, the best to drop
   * first: when pending is full, the first of them gives its slot to the newcomer.
   */
  | { type: 'inbound'; connectionId: string; remoteAddress: string; reclaimable?: readonly string[] }
  /** Close the connection to a peer for good (app request). */
  | { type: 'disconnect'; peerId: string; reason: DisconnectReason }
  /** Close every connection for good (shutdown). */
  | { type: 'disconnectAll'; reason: DisconnectReason }
  /** Stop every connection actor now and drop its record (end of a shutdown, after `disconnectAll` had its time). */
  | { type: 'stopAll' }
  /** Ban a peer ID and/or IP for `durationMs` (default from the config) and close what matches with PeerBanned. */
  | { type: 'ban'; target: BanTarget; durationMs?: number; reason?: string }
  /** Lift a ban. */
  | { type: 'unban'; target: BanTarget }
  /** The app is done with its temporary connection to `peerId`: pool it for the pool TTL. */
  | { type: 'release'; peerId: string }
  /** Tag or untag the connection to `peerId` as protected. */
  | { type: 'protect'; peerId: string; protected: boolean }
  /** A reaper pass; `usage` is each live link's application use, by connection ID. */
  | { type: 'reaper.tick'; usage: Record<string, LinkUsage> }
  /** The app's network went down (pause dialing and backoff timers) or came back (redial at once). */
  | { type: 'network.offline' }
  | { type: 'network.online' }
  /** Close every temporary connection with `reason`, for good (e.g. the app went to the background). */
  | { type: 'closeTemporary'; reason: DisconnectReason }
  /**
   * The latest ping sample of each connection that reported one since the last batch, sent by the
   * connection table (`connection-actors.ts`) at most every `DEFAULT_SAMPLE_FLUSH_MS`; samples of
   * connections no longer in the tables are ignored.
   */
  | { type: 'connection.samples'; samples: readonly ConnectionSample[] };

/**
 * Every event the supervisor actor accepts. Single ping samples are not among them: the
 * connection table batches them into `connection.samples`.
 */
export type SupervisorEvent = SupervisorCommand | Exclude<ConnectionReport, { type: 'connection.sample' }>;

/** Events the supervisor emits (`actor.on(type, handler)`). */
export type SupervisorEmitted = { type: 'refused'; connectionId: string; refusal: Refusal; detail: string };

type Effect =
  | { kind: 'spawn'; input: ConnectionInput }
  | { kind: 'send'; to: string; event: ConnectionCommand }
  | { kind: 'stop'; id: string }
  | { kind: 'emit'; event: SupervisorEmitted };

/**
 * The context a handler works on plus the effects it queues. The top level and the counters are
 * copies; the tables are the context's own, written in place, and every record change goes
 * through {@link Draft.put}, which keeps `slots` and `waiting` in step.
 */
class Draft {
  readonly context: SupervisorContext;
  readonly effects: Effect[] = [];
  /** Slots given up during this step; as many waiting connections may resume. */
  freedSlots = 0;

  constructor(context: SupervisorContext) {
    this.context = {
      ...context,
      counters: {
        ...context.counters,
        endsByReason: { ...context.counters.endsByReason },
        refusals: { ...context.counters.refusals },
      },
    };
  }

  get now(): number {
    return this.context.nowMs;
  }

  record(id: string | undefined): ConnectionRecord | undefined {
    return id === undefined ? undefined : this.context.connections[id];
  }

  update(id: string, fields: Partial<ConnectionRecord>): void {
    const record = this.context.connections[id];
    if (record) this.put(id, { ...record, ...fields });
  }

  /** Replaces (or, with `next` undefined, deletes) a record, moving its share of the counts. */
  private put(id: string, next: ConnectionRecord | undefined): void {
    const { context } = this;
    const previous = context.connections[id];
    if (previous) context.slots = addCounts(context.slots, slotsOf(previous), -1);
    if (next) {
      context.connections[id] = next;
      context.slots = addCounts(context.slots, slotsOf(next));
    } else {
      delete context.connections[id];
    }
    if (next && next.waitTicket !== null && next.state === 'backoff') {
      if (context.waiting[id] !== next.waitTicket) enqueueWaiting(context.waitQueue, id, next.waitTicket);
      context.waiting[id] = next.waitTicket;
    } else {
      delete context.waiting[id];
    }
  }

  send(to: string, event: ConnectionCommand): void {
    this.effects.push({ kind: 'send', to, event });
  }

  /** Closes a connection: the record shows Disconnecting at once, so counts are right before its report arrives. */
  close(id: string, reason: DisconnectReason, duplicate = false): void {
    const record = this.context.connections[id];
    if (!record || hasEnded(record)) return;
    if (record.state !== 'backoff' && record.state !== 'disconnecting') {
      if (record.waitTicket === null) this.freedSlots++;
      this.update(id, { state: 'disconnecting', reason });
    }
    this.send(id, { type: 'disconnect', reason, final: true, ...(duplicate ? { duplicate } : {}) });
  }

  refuse(connectionId: string, refusal: Refusal, detail: string): void {
    this.context.counters.refusals[refusal] = (this.context.counters.refusals[refusal] ?? 0) + 1;
    this.effects.push({ kind: 'emit', event: { type: 'refused', connectionId, refusal, detail } });
  }

  spawn(record: ConnectionRecord): void {
    this.put(record.connectionId, record);
    this.effects.push({
      kind: 'spawn',
      input: {
        connectionId: record.connectionId,
        direction: record.direction,
        kind: record.kind,
        address: record.address,
        remoteAddress: record.remoteAddress,
        offline: this.context.offline,
      },
    });
  }

  remove(id: string): void {
    const record = this.context.connections[id];
    if (record) {
      dropIndexEntries(this.context, record);
      this.put(id, undefined);
      this.context.removedSinceSweep++;
    }
    this.effects.push({ kind: 'stop', id });
  }
}

/** The normalised IP of a `host:port` (null for a host name). */
function ipOf(address: string | null): string | null {
  return address === null ? null : normalizeIp(hostOfRemoteAddress(address));
}

function banTargetOf(peerId: string | null | undefined, address: string | null): BanTarget {
  const ip = ipOf(address);
  return { ...(peerId != null ? { peerId } : {}), ...(ip !== null ? { ip } : {}) };
}

/** Whether the record matches a ban target (its peer ID, or the IP it talks to). */
function matchesBan(record: ConnectionRecord, target: BanTarget): boolean {
  if (target.peerId !== undefined && record.peerId === target.peerId) return true;
  if (target.ip === undefined) return false;
  const ip = normalizeIp(target.ip);
  return ip !== null && (ipOf(record.remoteAddress) === ip || ipOf(record.address) === ip);
}

/** Closes every connection matching `target` with PeerBanned. */
function closeBanned(draft: Draft, target: BanTarget): void {
  for (const record of Object.values(draft.context.connections)) {
    if (matchesBan(record, target)) draft.close(record.connectionId, 'PeerBanned');
  }
}

/**
 * `freed` slots were given up: resumes as many connections waiting for a slot, oldest ticket
 * first, as admission allows. Only a freed slot wakes them (issue 4 item 7): a connection that
 * waits because the remote was short of resources must not redial just because we have room.
 */
function resumeWaiting(draft: Draft, freed: number): void {
  const { context } = draft;
  const queue = context.waitQueue;
  for (let n = 0; n < freed; n++) {
    if (admitOutbound(context.slots, context.config.limits).admit !== true) return;
    // Stale entries (no longer waiting, or waiting again under a newer ticket) are dropped as reached.
    let oldest = queue.shift();
    while (oldest !== undefined && context.waiting[oldest.connectionId] !== oldest.ticket) oldest = queue.shift();
    if (oldest === undefined) return;
    draft.update(oldest.connectionId, { waitTicket: null });
    draft.send(oldest.connectionId, { type: 'resources.available' });
  }
}

/** Puts a waiting connection in ticket order (tickets are handed out in order, so almost always at the end). */
function enqueueWaiting(queue: SupervisorContext['waitQueue'], connectionId: string, ticket: number): void {
  let at = queue.length;
  while (at > 0 && (queue[at - 1] as { ticket: number }).ticket > ticket) at--;
  queue.splice(at, 0, { connectionId, ticket });
}

function onConnect(draft: Draft, event: Extract<SupervisorCommand, { type: 'connect' }>): void {
  const { context } = draft;
  const byPeer = event.peerId === undefined ? undefined : draft.record(context.byPeer[event.peerId]);
  const byAddress = draft.record(context.byAddress[event.address]);
  const existing = [byPeer, byAddress].find((r) => r !== undefined && (isLive(r) || r.state === 'backoff'));
  if (existing) {
    if (event.reuse === false) {
      draft.refuse(event.connectionId, 'AlreadyConnected', `connection ${existing.connectionId} already serves ${event.address}`);
      return;
    }
    draft.update(existing.connectionId, {
      releasedAtMs: null,
      lastActiveMs: draft.now,
      protected: existing.protected || event.protect === true,
    });
    // Asking for a persistent connection to a peer we already reach makes that connection persistent.
    if (event.kind === 'persistent' && existing.kind !== 'persistent') {
      draft.update(existing.connectionId, { kind: 'persistent', address: event.address });
      if (existing.peerId !== null) context.persistentPeers[existing.peerId] = event.address;
      draft.send(existing.connectionId, { type: 'promote', kind: 'persistent', address: event.address });
    }
    return;
  }
  const banned = findBan(context.bans, banTargetOf(event.peerId, event.address), draft.now);
  if (banned) {
    draft.refuse(event.connectionId, 'PeerBanned', `${event.address} is banned until ${banned.until} ms (${banned.reason})`);
    return;
  }
  const verdict = admitOutbound(context.slots, context.config.limits);
  if (verdict.admit === false) {
    draft.refuse(event.connectionId, verdict.refusal, verdict.detail);
    return;
  }
  const record = newRecord(event.connectionId, 'outbound', event.kind, event.address, null, draft.now);
  draft.spawn({ ...record, protected: event.protect === true });
  context.byAddress[event.address] = event.connectionId;
}

function onInbound(draft: Draft, event: Extract<SupervisorCommand, { type: 'inbound' }>): void {
  const { context } = draft;
  const banned = findBan(context.bans, banTargetOf(null, event.remoteAddress), draft.now);
  if (banned) {
    draft.refuse(event.connectionId, 'PeerBanned', `${event.remoteAddress} is banned (${banned.reason})`);
    return;
  }
  let verdict = admitInbound(context.slots, context.config.limits);
  if (verdict.admit === false && verdict.refusal === 'TooManyPendingConnections') {
    // A flood of sockets that never speak must not lock out a peer that does (issue 6 item 4):
    // the silent pending connection gives its slot up; one that is handshaking keeps it.
    const silent = (event.reclaimable ?? [])
      .map((id) => context.connections[id])
      .find((r) => r !== undefined && r.direction === 'inbound' && r.state === 'handshaking' && r.peerId === null);
    if (silent) {
      context.counters.pendingReclaimed++;
      draft.close(silent.connectionId, 'ResourceConstraint');
      verdict = admitInbound(context.slots, context.config.limits);
    }
  }
  if (verdict.admit === false) {
    draft.refuse(event.connectionId, verdict.refusal, verdict.detail);
    return;
  }
  if (verdict.admit === 'afterEviction') {
    const candidates: EvictionCandidate[] = Object.values(context.connections)
      .filter((r) => r.direction === 'inbound' && (r.state === 'connected' || r.state === 'degraded'))
      .map((r) => ({
        connectionId: r.connectionId,
        peerId: r.peerId,
        remoteAddress: r.remoteAddress ?? '',
        connectedAtMs: r.connectedAtMs ?? r.openedAtMs,
        rttMs: r.rttMs,
        persistent: r.kind === 'persistent',
        protected: r.protected,
      }));
    const victim = selectInboundToEvict(candidates, context.config.eviction);
    if (!victim) {
      draft.refuse(event.connectionId, 'ConnectionLimitReached', 'inbound is full and every inbound connection is protected');
      return;
    }
    context.counters.evictions++;
    draft.close(victim.connectionId, EVICTION_DISCONNECT_REASON);
  }
  draft.spawn(newRecord(event.connectionId, 'inbound', 'temporary', null, event.remoteAddress, draft.now));
}

function onBan(draft: Draft, event: Extract<SupervisorCommand, { type: 'ban' }>): void {
  const { context } = draft;
  context.bans = ban(
    context.bans,
    event.target,
    draft.now,
    event.durationMs ?? context.config.banDurationMs,
    event.reason ?? 'manual',
  );
  closeBanned(draft, event.target);
}

/** A ProtocolViolation ended a link: count it against the IP; repeated ones ban IP and peer. */
function countViolation(draft: Draft, record: ConnectionRecord, peerId: string | null): void {
  const ip = ipOf(record.remoteAddress) ?? ipOf(record.address);
  const { context } = draft;
  if (ip === null) return;
  const verdict = recordViolation(context.violationsByIp[ip] ?? [], draft.now, context.config.violationBan);
  context.violationsByIp[ip] = verdict.times;
  if (!verdict.ban) return;
  delete context.violationsByIp[ip];
  const target = banTargetOf(peerId, record.remoteAddress ?? record.address);
  context.bans = ban(context.bans, target, draft.now, context.config.banDurationMs, 'repeated protocol violations');
  context.counters.autoBans++;
  closeBanned(draft, target);
}

function onTransition(draft: Draft, event: Extract<ConnectionReport, { type: 'connection.transition' }>): void {
  const { context } = draft;
  const record = draft.record(event.connectionId);
  if (!record) return;
  const linkEnded = event.from !== 'backoff' && (event.to === 'backoff' || event.to === 'closed' || event.to === 'banned');
  if (linkEnded && event.reason !== null) {
    context.counters.endsByReason[event.reason] = (context.counters.endsByReason[event.reason] ?? 0) + 1;
  }
  if (event.to === 'connecting') context.counters.dials++;
  if (event.to === 'connected' && event.from === 'handshaking') context.counters.handshakes++;
  const up = event.to === 'connected' && event.from !== 'degraded';
  const waits = event.to === 'backoff' && event.strategy === 'AfterResourcesAvailable';
  draft.update(event.connectionId, {
    peerId: event.peerId,
    address: event.address,
    remoteAddress: event.remoteAddress,
    direction: event.direction,
    kind: event.kind,
    state: event.to,
    reason: event.reason,
    attempt: event.attempt,
    nextDelayMs: event.nextDelayMs,
    rttMs: event.rttMs,
    reconnects: record.reconnects + (up && record.everConnected ? 1 : 0),
    everConnected: record.everConnected || event.to === 'connected',
    waitTicket: waits ? (record.waitTicket ?? context.nextWaitTicket++) : null,
    ...(up ? { connectedAtMs: draft.now, lastActiveMs: draft.now, usageEvents: 0 } : {}),
  });
  if (linkEnded && event.reason === 'ProtocolViolation') countViolation(draft, record, event.peerId);
  if (event.to === 'banned') {
    // Ended in Banned (its own violation rule, or the peer banned us): ban the peer ID, or the IP
    // while the peer is unknown; a ban already in force is left as it is, so unban() lifts it.
    const target = event.peerId !== null ? { peerId: event.peerId } : banTargetOf(null, event.remoteAddress ?? event.address);
    if ((target.peerId !== undefined || target.ip !== undefined) && !findBan(context.bans, target, draft.now)) {
      context.bans = ban(context.bans, target, draft.now, context.config.banDurationMs, 'connection ended in Banned');
    }
  }
  const heldSlot = record.state !== 'disconnecting' && !hasEnded(record) && record.waitTicket === null;
  const freed = heldSlot && (event.to === 'disconnecting' || event.to === 'closed' || event.to === 'banned') ? 1 : 0;
  if (event.to === 'closed' || event.to === 'banned') {
    draft.remove(event.connectionId);
  } else if (event.to === 'backoff' && !waits) {
    // A redial must fit the limits like a new dial (counted without its own slot); if it would not, it waits for a free slot.
    const others = addCounts(context.slots, slotsOf(draft.record(event.connectionId) as ConnectionRecord), -1);
    if (admitOutbound(others, context.config.limits).admit !== true) {
      draft.update(event.connectionId, { waitTicket: context.nextWaitTicket++ });
      draft.send(event.connectionId, { type: 'resources.wait' });
    }
  }
  draft.freedSlots += freed;
}

function onIdentified(draft: Draft, event: Extract<ConnectionReport, { type: 'connection.identified' }>): void {
  const { context } = draft;
  const arriving = draft.record(event.connectionId);
  if (!arriving) return;
  draft.update(event.connectionId, { peerId: event.peerId, listenAddresses: event.listenAddresses });
  if (findBan(context.bans, { peerId: event.peerId }, draft.now)) {
    draft.close(event.connectionId, 'PeerBanned');
    return;
  }
  const existing = draft.record(context.byPeer[event.peerId]);
  let survivorId = event.connectionId;
  if (existing && existing.connectionId !== event.connectionId && (existing.state === 'backoff' || isLive(existing))) {
    // The peer is back on another connection while ours waits in Backoff: the one that is up
    // serves the peer (and inherits persistence below). Redialing as well would race it, and two
    // connections that keep failing would wake each other at once, forever: a dial storm.
    survivorId =
      existing.state === 'backoff'
        ? event.connectionId
        : chooseSurvivor(context.localPeerId, event.peerId, existing, arriving).connectionId;
    const loserId = survivorId === event.connectionId ? existing.connectionId : event.connectionId;
    const loser = draft.record(loserId) as ConnectionRecord;
    const survivor = draft.record(survivorId) as ConnectionRecord;
    draft.close(loserId, 'NetworkRestructure', true);
    draft.update(survivorId, { protected: survivor.protected || loser.protected });
    // The survivor inherits the loser's persistence, so the peer still comes back if it drops.
    const address = survivor.address ?? loser.address;
    if (address !== null && (loser.kind === 'persistent' || survivor.kind === 'persistent')) {
      draft.update(survivorId, { kind: 'persistent', address });
      draft.send(survivorId, { type: 'promote', kind: 'persistent', address });
      context.byAddress[address] = survivorId;
    }
  }
  context.byPeer[event.peerId] = survivorId;
  const kept = draft.record(survivorId) as ConnectionRecord;
  const persistentAddress = context.persistentPeers[event.peerId];
  if (kept.kind === 'persistent' && kept.address !== null) {
    context.persistentPeers[event.peerId] = kept.address;
  } else if (persistentAddress !== undefined) {
    draft.update(survivorId, { kind: 'persistent', address: persistentAddress });
    draft.send(survivorId, { type: 'promote', kind: 'persistent', address: persistentAddress });
    context.byAddress[persistentAddress] = survivorId;
  }
  for (const listen of event.listenAddresses) {
    const holder = context.byAddress[listen];
    if (holder === undefined || !context.connections[holder]) context.byAddress[listen] = survivorId;
  }
}

function onReaperTick(draft: Draft, event: Extract<SupervisorCommand, { type: 'reaper.tick' }>): void {
  const { context } = draft;
  const verdict = reap(Object.values(context.connections), event.usage, draft.now, context.config.reaper);
  for (const [id, use] of Object.entries(verdict.used)) draft.update(id, use);
  for (const { connectionId } of verdict.close) {
    context.counters.reaped++;
    draft.close(connectionId, 'Normal');
  }
  for (const id of verdict.sweep) draft.remove(id);
  draft.freedSlots += verdict.sweep.length;
  if (context.removedSinceSweep >= STALE_SWEEP_REMOVALS) {
    sweepStaleIndexes(context);
    context.removedSinceSweep = 0;
  }
  context.waitQueue = context.waitQueue.filter((entry) => context.waiting[entry.connectionId] === entry.ticket);
  context.bans = pruneExpired(context.bans, draft.now);
  const windowMs = context.config.violationBan.windowMs;
  for (const [ip, times] of Object.entries(context.violationsByIp)) {
    const recent = times.filter((at) => draft.now - at < windowMs);
    if (recent.length === 0) delete context.violationsByIp[ip];
    else context.violationsByIp[ip] = recent;
  }
}

function forPeer(draft: Draft, peerId: string, fields: Partial<ConnectionRecord>): void {
  const record = draft.record(draft.context.byPeer[peerId]);
  if (record) draft.update(record.connectionId, fields);
}

/** Routes an event to its handler; reports and commands the supervisor ignores do nothing. */
function handle(draft: Draft, event: SupervisorEvent): void {
  switch (event.type) {
    case 'connect':
      return onConnect(draft, event);
    case 'inbound':
      return onInbound(draft, event);
    case 'disconnect': {
      // The connection that serves the peer; any other record of the peer is closing for good
      // already (a duplicate's loser, a banned arrival), so no O(n) scan is needed.
      const record = draft.record(draft.context.byPeer[event.peerId]);
      if (record) draft.close(record.connectionId, event.reason);
      return;
    }
    case 'disconnectAll':
      for (const id of Object.keys(draft.context.connections)) draft.close(id, event.reason);
      return;
    case 'stopAll':
      for (const id of Object.keys(draft.context.connections)) draft.remove(id);
      return;
    case 'ban':
      return onBan(draft, event);
    case 'unban':
      draft.context.bans = unban(draft.context.bans, event.target);
      return;
    case 'release': {
      const record = draft.record(draft.context.byPeer[event.peerId]);
      // Persistent connections are kept by definition; only temporary ones are pooled.
      if (record && record.kind === 'temporary') draft.update(record.connectionId, { releasedAtMs: draft.now });
      return;
    }
    case 'protect':
      return forPeer(draft, event.peerId, { protected: event.protected });
    case 'reaper.tick':
      return onReaperTick(draft, event);
    case 'network.offline':
    case 'network.online':
      draft.context.offline = event.type === 'network.offline';
      for (const id of Object.keys(draft.context.connections)) draft.send(id, { type: event.type });
      return;
    case 'closeTemporary':
      for (const record of Object.values(draft.context.connections)) {
        if (record.kind === 'temporary') draft.close(record.connectionId, event.reason);
      }
      return;
    case 'connection.transition':
      return onTransition(draft, event);
    case 'connection.identified':
      return onIdentified(draft, event);
    case 'connection.samples':
      for (const sample of event.samples) recordSample(draft, sample);
      return;
  }
}

/**
 * Writes a ping sample into its record, in place: the RTT (a lost ping keeps the previous one) and
 * the health. These fields count toward no limit, index or queue, so nothing else moves. In place
 * because a fresh record per sample (10,000 a second at 10,000 connections, each living until the
 * connection's next ping) was promoted to the old generation and dominated the GC work of an idle
 * supervisor. The tables are written in place anyway (see {@link Draft}).
 */
function recordSample(draft: Draft, sample: ConnectionSample): void {
  const record = draft.context.connections[sample.connectionId];
  if (!record) return;
  if (sample.rttMs !== null) record.rttMs = sample.rttMs;
  record.healthScore = sample.score;
  record.healthCategory = sample.category;
}

/** The connection logic given to `setup()` or `provide()` (what `spawnChild('connection')` would use). */
function connectionLogicOf(self: AnyActorRef): AnyActorLogic {
  const machine = (self.getSnapshot() as { machine: AnyStateMachine }).machine;
  return machine.implementations.actors['connection'] as AnyActorLogic;
}

/**
 * The supervisor machine. Provide `actors.connection` (the connection machine with its link and
 * policies), `actions.publish` (receives every connection report, for `events$`) and
 * `actions.stamp` (sets `nowMs` from the injected clock; see {@link withSupervisorClock}).
 */
export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
    emitted: {} as SupervisorEmitted,
  },
  actors: {
    connection: connectionMachine,
  },
  actions: {
    publish: (_, _report: ConnectionReport) => undefined,
    stamp: assign({ nowMs: () => performance.now() }),
    /**
     * Runs the event's handler on a draft, then one assign and the queued effects, in order.
     * Connection actors live in `connection-actors.ts`, not in `snapshot.children` (O(1) spawn
     * and stop at 10,000 connections); commands reach them with a direct `send`.
     */
    apply: enqueueActions(({ context, event, enqueue, self }) => {
      const draft = new Draft(context);
      handle(draft, event);
      resumeWaiting(draft, draft.freedSlots);
      enqueue.assign(draft.context);
      const actors = connectionActorsOf(self);
      for (const effect of draft.effects) {
        if (effect.kind === 'spawn') {
          const { input } = effect;
          enqueue(() => spawnConnectionActor(self, connectionLogicOf(self), input.connectionId, input));
        } else if (effect.kind === 'send') {
          const { to, event: command } = effect;
          enqueue(() => actors.get(to)?.send(command));
        } else if (effect.kind === 'stop') {
          const { id } = effect;
          enqueue(() => stopConnectionActor(self, id));
        } else {
          enqueue.emit(effect.event);
        }
      }
    }),
  },
}).createMachine({
  id: 'supervisor',
  context: ({ input }) => ({
    localPeerId: input.localPeerId,
    config: input.config ?? DEFAULT_SUPERVISOR_CONFIG,
    nowMs: 0,
    connections: {},
    byPeer: {},
    byAddress: {},
    persistentPeers: {},
    slots: NO_CONNECTIONS,
    waiting: {},
    waitQueue: [],
    removedSinceSweep: 0,
    nextWaitTicket: 1,
    bans: emptyBans(),
    violationsByIp: {},
    counters: zeroCounters(),
    offline: false,
  }),
  on: {
    connect: { actions: ['stamp', 'apply'] },
    inbound: { actions: ['stamp', 'apply'] },
    disconnect: { actions: ['stamp', 'apply'] },
    disconnectAll: { actions: ['stamp', 'apply'] },
    stopAll: { actions: ['stamp', 'apply'] },
    ban: { actions: ['stamp', 'apply'] },
    unban: { actions: ['stamp', 'apply'] },
    release: { actions: ['stamp', 'apply'] },
    protect: { actions: ['stamp', 'apply'] },
    'reaper.tick': { actions: ['stamp', 'apply'] },
    'network.offline': { actions: ['stamp', 'apply'] },
    'network.online': { actions: ['stamp', 'apply'] },
    closeTemporary: { actions: ['stamp', 'apply'] },
    'connection.transition': { actions: ['stamp', 'apply', { type: 'publish', params: ({ event }) => event }] },
    'connection.identified': { actions: ['stamp', 'apply'] },
    'connection.samples': { actions: 'apply' },
  },
});

/** The machine with `stamp` reading `now()` (ms) of the injected clock. */
export function withSupervisorClock(now: () => number): typeof supervisorMachine {
  return supervisorMachine.provide({ actions: { stamp: assign({ nowMs: () => now() }) } });
}

/** A running supervisor actor. */
export type SupervisorActor = ActorRefFrom<typeof supervisorMachine>;

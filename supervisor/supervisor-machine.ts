/**
 * The supervisor actor (DESIGN §3): spawns one connection actor per dial or accepted socket,
 * keeps plain tables of them (by connection ID, by peer ID, by address), resolves duplicates to
 * one connection per peer, and stops the actors that reached a final state.
 *
 * Its context is plain data for the inspector; sockets and links live in the connection actors.
 * Connection actors report to it through the actor system (`systemId: 'supervisor'`).
 */
import { assign, enqueueActions, setup } from 'xstate';
import type { ActorRefFrom } from 'xstate';
import type { ConnectionKind, Direction } from '../streams/reconnect.js';
import { connectionMachine } from '../machines/connection.js';
import type { ConnectionReport, ConnectionState } from '../machines/connection.js';
import type { DisconnectReason } from '../transport/disconnect-reason.js';
import { chooseSurvivor } from './simultaneous-open.js';

/** The supervisor's view of one connection actor (plain data). */
export interface ConnectionRecord {
  readonly connectionId: string;
  peerId: string | null;
  /** Address we dial (null for an inbound connection of a peer we cannot dial). */
  address: string | null;
  remoteAddress: string | null;
  direction: Direction;
  kind: ConnectionKind;
  state: ConnectionState;
  reason: DisconnectReason | null;
  attempt: number;
  nextDelayMs: number | null;
  rttMs: number | null;
  listenAddresses: string[];
  /** Times this connection came back to Connected after losing its link. */
  reconnects: number;
  /** It reached Connected at least once. */
  everConnected: boolean;
  /** Queue position while it waits in Backoff for a free slot (AfterResourcesAvailable); lower goes first. */
  waitTicket: number | null;
}

/** Context of the supervisor actor. */
export interface SupervisorContext {
  readonly localPeerId: string;
  /** Every running connection actor, by connection ID. */
  connections: Record<string, ConnectionRecord>;
  /** The connection that represents each identified peer. */
  byPeer: Record<string, string>;
  /** The connection that serves each dialable address (dialed ones and announced listen addresses). */
  byAddress: Record<string, string>;
  /** Dial address of every identified persistent peer: whichever connection serves it is kept persistent. */
  persistentPeers: Record<string, string>;
  /** Next ticket for connections waiting on AfterResourcesAvailable. */
  nextWaitTicket: number;
}

/** Input of the supervisor actor. */
export interface SupervisorInput {
  readonly localPeerId: string;
}

/** Commands to the supervisor actor. */
export type SupervisorCommand =
  /** Dial `address` unless a connection already serves it; `connectionId` names a new actor. */
  | { type: 'connect'; connectionId: string; address: string; kind: ConnectionKind }
  /** A socket was accepted and parked under `connectionId`. */
  | { type: 'inbound'; connectionId: string; remoteAddress: string }
  /** Close the connection to a peer for good (app request). */
  | { type: 'disconnect'; peerId: string; reason: DisconnectReason }
  /** Close every connection for good (shutdown). */
  | { type: 'disconnectAll'; reason: DisconnectReason };

/** Every event the supervisor actor accepts. */
export type SupervisorEvent = SupervisorCommand | ConnectionReport;

const ENDED: readonly ConnectionState[] = ['closed', 'banned'];

/**
 * The supervisor machine. Provide `actors.connection` (the connection machine with its link and
 * policies) and `actions.publish` (receives every connection report, for `events$`).
 */
export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
  },
  actors: {
    connection: connectionMachine,
  },
  actions: {
    publish: (_, _report: ConnectionReport) => undefined,
  },
}).createMachine({
  id: 'supervisor',
  context: ({ input }) => ({
    localPeerId: input.localPeerId,
    connections: {},
    byPeer: {},
    byAddress: {},
    persistentPeers: {},
    nextWaitTicket: 1,
  }),
  on: {
    connect: {
      actions: enqueueActions(({ context, event, enqueue }) => {
        const existingId = context.byAddress[event.address];
        const existing = existingId === undefined ? undefined : context.connections[existingId];
        if (existing) {
          // Asking for a persistent connection to a peer we already reach makes that connection persistent.
          if (event.kind === 'persistent' && existing.kind !== 'persistent') {
            enqueue.assign({
              connections: {
                ...context.connections,
                [existing.connectionId]: { ...existing, kind: 'persistent', address: event.address },
              },
              persistentPeers:
                existing.peerId === null
                  ? context.persistentPeers
                  : { ...context.persistentPeers, [existing.peerId]: event.address },
            });
            enqueue.sendTo(existing.connectionId, { type: 'promote', kind: 'persistent', address: event.address });
          }
          return;
        }
        enqueue.assign({
          connections: {
            ...context.connections,
            [event.connectionId]: newRecord(event.connectionId, 'outbound', event.kind, event.address, null),
          },
          byAddress: { ...context.byAddress, [event.address]: event.connectionId },
        });
        enqueue.spawnChild('connection', {
          id: event.connectionId,
          input: { connectionId: event.connectionId, direction: 'outbound', kind: event.kind, address: event.address },
        });
      }),
    },
    inbound: {
      actions: enqueueActions(({ context, event, enqueue }) => {
        enqueue.assign({
          connections: {
            ...context.connections,
            [event.connectionId]: newRecord(event.connectionId, 'inbound', 'temporary', null, event.remoteAddress),
          },
        });
        enqueue.spawnChild('connection', {
          id: event.connectionId,
          input: {
            connectionId: event.connectionId,
            direction: 'inbound',
            kind: 'temporary',
            address: null,
            remoteAddress: event.remoteAddress,
          },
        });
      }),
    },
    disconnect: {
      actions: enqueueActions(({ context, event, enqueue }) => {
        for (const record of Object.values(context.connections)) {
          if (record.peerId !== event.peerId) continue;
          enqueue.sendTo(record.connectionId, { type: 'disconnect', reason: event.reason, final: true });
        }
      }),
    },
    disconnectAll: {
      actions: enqueueActions(({ context, event, enqueue }) => {
        for (const id of Object.keys(context.connections)) {
          enqueue.sendTo(id, { type: 'disconnect', reason: event.reason, final: true });
        }
      }),
    },
    'connection.transition': {
      actions: [
        enqueueActions(({ context, event, enqueue }) => {
          const record = context.connections[event.connectionId];
          if (!record) return;
          if (ENDED.includes(event.to)) {
            enqueue.assign(removeConnection(context, event.connectionId));
            enqueue.stopChild(event.connectionId);
            // A slot is free: the connection that has waited longest for one dials again.
            const next = oldestWaiting(context, event.connectionId);
            if (next) {
              enqueue.assign(({ context: updated }) => ({
                connections: { ...updated.connections, [next.connectionId]: { ...next, waitTicket: null } },
              }));
              enqueue.sendTo(next.connectionId, { type: 'resources.available' });
            }
            return;
          }
          const waits = event.to === 'backoff' && event.strategy === 'AfterResourcesAvailable';
          const comesBack = event.to === 'connected' && event.from !== 'degraded' && record.everConnected;
          enqueue.assign({
            connections: {
              ...context.connections,
              [event.connectionId]: {
                ...record,
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
                reconnects: record.reconnects + (comesBack ? 1 : 0),
                everConnected: record.everConnected || event.to === 'connected',
                waitTicket: waits ? (record.waitTicket ?? context.nextWaitTicket) : null,
              },
            },
            nextWaitTicket: waits && record.waitTicket === null ? context.nextWaitTicket + 1 : context.nextWaitTicket,
          });
        }),
        { type: 'publish', params: ({ event }) => event },
      ],
    },
    'connection.rtt': {
      actions: [
        assign(({ context, event }) => {
          const record = context.connections[event.connectionId];
          if (!record) return {};
          return { connections: { ...context.connections, [event.connectionId]: { ...record, rttMs: event.rttMs } } };
        }),
        { type: 'publish', params: ({ event }) => event },
      ],
    },
    'connection.identified': {
      actions: [
        enqueueActions(({ context, event, enqueue }) => {
          const arriving = context.connections[event.connectionId];
          if (!arriving) return;
          const connections = {
            ...context.connections,
            [event.connectionId]: { ...arriving, peerId: event.peerId, listenAddresses: event.listenAddresses },
          };
          const byPeer = { ...context.byPeer };
          const byAddress = { ...context.byAddress };
          const existingId = context.byPeer[event.peerId];
          const existing = existingId !== undefined ? context.connections[existingId] : undefined;
          let survivorId = event.connectionId;
          if (existing && existing.connectionId !== event.connectionId && existing.state === 'backoff') {
            // The peer is back before our redial: redial now, and let the duplicate rule pick one
            // connection once both are identified.
            enqueue.sendTo(existing.connectionId, { type: 'peer.returned' });
          } else if (existing && existing.connectionId !== event.connectionId && isLive(existing)) {
            const survivor = chooseSurvivor(context.localPeerId, event.peerId, existing, arriving);
            survivorId = survivor.connectionId;
            const loserId = survivorId === event.connectionId ? existing.connectionId : event.connectionId;
            const loser = connections[loserId] as ConnectionRecord;
            const survivorRecord = connections[survivorId] as ConnectionRecord;
            enqueue.sendTo(loserId, {
              type: 'disconnect',
              reason: 'NetworkRestructure',
              final: true,
              duplicate: true,
            });
            // The survivor inherits the loser's persistence, so the peer still comes back if it drops.
            const address = survivorRecord.address ?? loser.address;
            if (address !== null && (loser.kind === 'persistent' || survivorRecord.kind === 'persistent')) {
              connections[survivorId] = { ...survivorRecord, kind: 'persistent', address };
              enqueue.sendTo(survivorId, { type: 'promote', kind: 'persistent', address });
              byAddress[address] = survivorId;
            }
          }
          byPeer[event.peerId] = survivorId;
          const persistentPeers = { ...context.persistentPeers };
          const kept = connections[survivorId] as ConnectionRecord;
          if (kept.kind === 'persistent' && kept.address !== null) {
            persistentPeers[event.peerId] = kept.address;
          } else if (persistentPeers[event.peerId] !== undefined) {
            const address = persistentPeers[event.peerId] as string;
            connections[survivorId] = { ...kept, kind: 'persistent', address };
            enqueue.sendTo(survivorId, { type: 'promote', kind: 'persistent', address });
            byAddress[address] = survivorId;
          }
          for (const listen of event.listenAddresses) {
            const holder = byAddress[listen];
            if (holder === undefined || !connections[holder]) byAddress[listen] = survivorId;
          }
          enqueue.assign({ connections, byPeer, byAddress, persistentPeers });
        }),
      ],
    },
  },
});

function newRecord(
  connectionId: string,
  direction: Direction,
  kind: ConnectionKind,
  address: string | null,
  remoteAddress: string | null,
): ConnectionRecord {
  return {
    connectionId,
    peerId: null,
    address,
    remoteAddress,
    direction,
    kind,
    state: direction === 'inbound' ? 'handshaking' : 'connecting',
    reason: null,
    attempt: 0,
    nextDelayMs: null,
    rttMs: null,
    listenAddresses: [],
    reconnects: 0,
    everConnected: false,
    waitTicket: null,
  };
}

/** The connection waiting longest for a free slot, other than `except`. */
function oldestWaiting(context: SupervisorContext, except: string): ConnectionRecord | undefined {
  let oldest: ConnectionRecord | undefined;
  for (const record of Object.values(context.connections)) {
    if (record.connectionId === except || record.waitTicket === null) continue;
    if (!oldest || record.waitTicket < (oldest.waitTicket ?? Infinity)) oldest = record;
  }
  return oldest;
}

function isLive(record: ConnectionRecord): boolean {
  return !ENDED.includes(record.state) && record.state !== 'disconnecting';
}

function removeConnection(context: SupervisorContext, connectionId: string): Partial<SupervisorContext> {
  const connections = { ...context.connections };
  delete connections[connectionId];
  const byPeer = Object.fromEntries(Object.entries(context.byPeer).filter(([, id]) => id !== connectionId));
  const byAddress = Object.fromEntries(Object.entries(context.byAddress).filter(([, id]) => id !== connectionId));
  return { connections, byPeer, byAddress };
}

/** A running supervisor actor. */
export type SupervisorActor = ActorRefFrom<typeof supervisorMachine>;

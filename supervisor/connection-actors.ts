/**
 * Where a supervisor actor keeps its connection actors: a Map by connection ID, outside its
 * snapshot, each connection actor the root of its own small actor system.
 *
 * Why not XState's `spawnChild`, measured on the benchmark machine at 10,000 connections:
 * - XState keeps spawned children in `snapshot.children` and copies that object on every spawn and
 *   every stop, O(n): several ms each, so dialing 10,000 peers took minutes;
 * - actors of one system share one table of scheduled events (every `after` timer), and stopping
 *   any actor (a link actor leaving Live, say) walks that whole table: ms per stop, which is the
 *   supervisor's reaction time to a lost socket, and O(n²) to stop them all.
 * Here spawn, command and stop are O(1), and a stop walks only its own connection's timers.
 *
 * The supervisor still decides every spawn and stop (its machine queues them as effects); its
 * clock drives every connection's timers; each connection's reports (`emit`ted events, see
 * `ConnectionReport`) are forwarded to it; and `inspect` observers, when configured, see every
 * connection actor (as its own root).
 *
 * Ping samples (`connection.sample`, one per connection every ping interval: 1,000/s at 10,000
 * connections) are not forwarded one by one: each costs the supervisor a whole macrostep (about
 * 10 KiB of garbage and a snapshot), for a table entry only status, eviction and the inspector
 * read. The latest sample of each connection is kept and they go as one `connection.samples`
 * event every {@link DEFAULT_SAMPLE_FLUSH_MS}; `onSample` still sees each one at once.
 */
import { createActor } from 'xstate';
import type { AnyActorLogic, AnyActorRef, EventObject, InspectionEvent, Observer } from 'xstate';
import type { ConnectionReport } from '../machines/connection.js';

/** One ping outcome of a connection, as its actor reports it. */
export type ConnectionSample = Extract<ConnectionReport, { type: 'connection.sample' }>;

/** How long samples wait to reach the supervisor's tables, ms (peerwarden's choice; metrics sample every 1 s too). */
export const DEFAULT_SAMPLE_FLUSH_MS = 1_000;

/** Options of the connection actors of one supervisor (see {@link configureConnectionActors}). */
export interface ConnectionActorOptions {
  /** Inspection observer given to every connection actor (the supervisor's own `inspect`). */
  readonly inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Sees every ping sample as it is reported, before it is batched (e.g. for an RTT stream). */
  readonly onSample?: (sample: ConnectionSample) => void;
}

/**
 * The latest sample of one connection, written in place at every ping and kept for the
 * connection's life. Kept objects, not the reported events: an event held until the flush lived
 * across young-generation GCs (about 2 a second at 10,000 connections) and was copied or promoted.
 */
interface LatestSample {
  readonly connectionId: string;
  peerId: string | null;
  /** Latest RTT since the last flush, ms; null when every ping since then was lost. */
  rttMs: number | null;
  score: number | null;
  category: ConnectionSample['category'];
  /** Waiting in {@link Registry.dirty}. */
  dirty: boolean;
}

interface Registry {
  readonly actors: Map<string, AnyActorRef>;
  options: ConnectionActorOptions;
  /** Latest sample by connection ID, while the connection actor lives. */
  readonly latest: Map<string, LatestSample>;
  /** Samples changed since the last flush, in arrival order. */
  dirty: LatestSample[];
  /** The pending flush timer of the supervisor's clock, if any. */
  flush: unknown;
}

const registries = new WeakMap<AnyActorRef, Registry>();

function registryOf(supervisor: AnyActorRef): Registry {
  let registry = registries.get(supervisor);
  if (!registry) {
    registry = { actors: new Map(), options: {}, latest: new Map(), dirty: [], flush: undefined };
    registries.set(supervisor, registry);
  }
  return registry;
}

/** The connection actors of `supervisor`, by connection ID (empty before the first spawn). */
export function connectionActorsOf(supervisor: AnyActorRef): ReadonlyMap<string, AnyActorRef> {
  return registryOf(supervisor).actors;
}

/** Sets the options used for the connection actors `supervisor` spawns from now on. */
export function configureConnectionActors(supervisor: AnyActorRef, options: ConnectionActorOptions): void {
  registryOf(supervisor).options = options;
}

/**
 * Creates and starts a connection actor of `logic` for `supervisor`, registered as `id`, on the
 * supervisor's clock; everything it emits is sent to the supervisor.
 * @throws Error when `id` is already registered (connection IDs are unique per supervisor).
 */
export function spawnConnectionActor(supervisor: AnyActorRef, logic: AnyActorLogic, id: string, input: unknown): void {
  const registry = registryOf(supervisor);
  if (registry.actors.has(id)) throw new Error(`connection actor ${id} already exists`);
  const { inspect } = registry.options;
  const actor = createActor(logic, {
    id,
    input,
    clock: supervisor.system._clock,
    ...(inspect ? { inspect } : {}),
  });
  actor.on('*', (report: EventObject) => {
    if (report.type === 'connection.sample') takeSample(supervisor, registry, report as ConnectionSample);
    else supervisor.send(report);
  });
  registry.actors.set(id, actor);
  actor.start();
}

/** Stops the connection actor `id` of `supervisor` (its link, socket and timers) and forgets it. */
export function stopConnectionActor(supervisor: AnyActorRef, id: string): void {
  const registry = registries.get(supervisor);
  const actor = registry?.actors.get(id);
  if (!actor) return;
  registry?.actors.delete(id);
  registry?.latest.delete(id);
  actor.stop();
  // The last connection gone (the supervisor stopping): nothing is left to report on, and no timer may outlive it.
  if (registry?.actors.size === 0) cancelFlush(supervisor, registry);
}

/** Keeps the latest sample of its connection and makes sure a flush is scheduled. */
function takeSample(supervisor: AnyActorRef, registry: Registry, sample: ConnectionSample): void {
  registry.options.onSample?.(sample);
  let latest = registry.latest.get(sample.connectionId);
  if (latest === undefined) {
    if (!registry.actors.has(sample.connectionId)) return; // already stopped
    latest = { connectionId: sample.connectionId, peerId: null, rttMs: null, score: null, category: null, dirty: false };
    registry.latest.set(sample.connectionId, latest);
  }
  latest.peerId = sample.peerId;
  // A lost ping (no RTT) does not erase the RTT of a sample still waiting: the table keeps the last one.
  if (sample.rttMs !== null) latest.rttMs = sample.rttMs;
  latest.score = sample.score;
  latest.category = sample.category;
  if (!latest.dirty) {
    latest.dirty = true;
    registry.dirty.push(latest);
  }
  if (registry.flush !== undefined) return;
  registry.flush = supervisor.system._clock.setTimeout(() => {
    registry.flush = undefined;
    const dirty = registry.dirty;
    registry.dirty = [];
    const samples: ConnectionSample[] = [];
    for (const entry of dirty) {
      entry.dirty = false;
      // Made and consumed in this one step, so they die young.
      if (registry.latest.get(entry.connectionId) === entry) {
        const { connectionId, peerId, rttMs, score, category } = entry;
        samples.push({ type: 'connection.sample', connectionId, peerId, rttMs, score, category });
      }
      entry.rttMs = null;
    }
    if (samples.length > 0 && (supervisor.getSnapshot() as { status: string }).status === 'active') {
      supervisor.send({ type: 'connection.samples', samples });
    }
  }, DEFAULT_SAMPLE_FLUSH_MS);
}

function cancelFlush(supervisor: AnyActorRef, registry: Registry): void {
  registry.latest.clear();
  registry.dirty = [];
  if (registry.flush === undefined) return;
  supervisor.system._clock.clearTimeout(registry.flush);
  registry.flush = undefined;
}

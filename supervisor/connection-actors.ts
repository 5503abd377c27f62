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
 */
import { createActor } from 'xstate';
import type { AnyActorLogic, AnyActorRef, EventObject, InspectionEvent, Observer } from 'xstate';

/** Options of the connection actors of one supervisor (see {@link configureConnectionActors}). */
export interface ConnectionActorOptions {
  /** Inspection observer given to every connection actor (the supervisor's own `inspect`). */
  readonly inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
}

interface Registry {
  readonly actors: Map<string, AnyActorRef>;
  options: ConnectionActorOptions;
}

const registries = new WeakMap<AnyActorRef, Registry>();

function registryOf(supervisor: AnyActorRef): Registry {
  let registry = registries.get(supervisor);
  if (!registry) {
    registry = { actors: new Map(), options: {} };
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
  actor.on('*', (report: EventObject) => supervisor.send(report));
  registry.actors.set(id, actor);
  actor.start();
}

/** Stops the connection actor `id` of `supervisor` (its link, socket and timers) and forgets it. */
export function stopConnectionActor(supervisor: AnyActorRef, id: string): void {
  const registry = registries.get(supervisor);
  const actor = registry?.actors.get(id);
  if (!actor) return;
  registry?.actors.delete(id);
  actor.stop();
}

/**
 * Where a supervisor actor keeps its connection actors: a Map by connection ID, outside its
 * snapshot.
 *
 * Why not XState's `spawnChild`: XState keeps spawned children in `snapshot.children` and copies
 * that object on every spawn and every stop, O(n); at 10,000 connections one spawn or stop cost
 * several ms (measured on this project's benchmark machine), so dialing 10,000 peers took minutes
 * and `stop()` longer. Each connection actor here is still created with the supervisor as its
 * parent: it shares the supervisor's actor system (its clock, `system.get('supervisor')` for
 * reports) and the inspector shows it under the supervisor; it is stopped through the supervisor
 * with `stopChild`. Only the lookup table moved.
 */
import { createActor } from 'xstate';
import type { AnyActorLogic, AnyActorRef } from 'xstate';

const registries = new WeakMap<AnyActorRef, Map<string, AnyActorRef>>();

/** The connection actors of `supervisor`, by connection ID (empty before the first spawn). */
export function connectionActorsOf(supervisor: AnyActorRef): ReadonlyMap<string, AnyActorRef> {
  return registryOf(supervisor);
}

function registryOf(supervisor: AnyActorRef): Map<string, AnyActorRef> {
  let registry = registries.get(supervisor);
  if (!registry) {
    registry = new Map();
    registries.set(supervisor, registry);
  }
  return registry;
}

/**
 * Creates and starts a connection actor of `logic` under `supervisor`, registered as `id`.
 * @throws Error when `id` is already registered (connection IDs are unique per supervisor).
 */
export function spawnConnectionActor(supervisor: AnyActorRef, logic: AnyActorLogic, id: string, input: unknown): void {
  const registry = registryOf(supervisor);
  if (registry.has(id)) throw new Error(`connection actor ${id} already exists`);
  const actor = createActor(logic, { id, parent: supervisor, input });
  registry.set(id, actor);
  actor.start();
}

/** Removes `id` from the table (after the supervisor stopped it with `stopChild`). */
export function forgetConnectionActor(supervisor: AnyActorRef, id: string): void {
  registries.get(supervisor)?.delete(id);
}

/**
 * A scripted link actor for machine specs: each invocation is recorded, and the spec drives it by
 * calling `sendBack` with link events, as the real link would after socket work.
 */
import { createActor, fromCallback } from 'xstate';
import type { Actor } from 'xstate';
import { withConnectionPolicies, DEFAULT_CONNECTION_POLICIES } from '../../machines/connection.js';
import type {
  ConnectionInput,
  ConnectionMachine,
  ConnectionPolicies,
  LinkCommand,
  LinkEvent,
  LinkInput,
} from '../../machines/connection.js';
import { VirtualClock } from '../../streams/clock.js';

/** One invocation of the scripted link. */
export interface ScriptedLink {
  readonly input: LinkInput;
  readonly commands: LinkCommand[];
  stopped: boolean;
  send(event: LinkEvent): void;
}

/** Link actor logic that records each invocation in `links` for the spec to drive. */
export function scriptedLinkLogic(links: ScriptedLink[]) {
  return fromCallback<LinkCommand, LinkInput>(({ input: linkInput, sendBack, receive }) => {
    const record: ScriptedLink = {
      input: linkInput,
      commands: [],
      stopped: false,
      send: (event) => {
        if (!record.stopped) sendBack(event);
      },
    };
    links.push(record);
    receive((command) => record.commands.push(command));
    return () => {
      record.stopped = true;
    };
  });
}

/** A connection actor on a virtual clock with a scripted link, plus what the spec needs to drive it. */
export interface MachineHarness {
  readonly actor: Actor<ConnectionMachine>;
  readonly clock: VirtualClock;
  readonly links: ScriptedLink[];
  /** The link of the current `live` state (the last one invoked). */
  current(): ScriptedLink;
  /** Every state entered, in order (from the context's `state`). */
  readonly states: string[];
}

/** Starts a connection actor with a scripted link on a fresh virtual clock. */
export function startScripted(
  input: ConnectionInput,
  policies: Partial<ConnectionPolicies> = {},
): MachineHarness {
  const clock = new VirtualClock();
  const links: ScriptedLink[] = [];
  const link = scriptedLinkLogic(links);
  const machine = withConnectionPolicies({
    ...DEFAULT_CONNECTION_POLICIES,
    random: () => 0.5,
    now: () => clock.now(),
    ...policies,
  }).provide({
    actors: { link },
  });
  const actor = createActor(machine, { input, clock });
  const states: string[] = [];
  actor.subscribe((snapshot) => {
    const state = snapshot.context.state;
    if (state !== null && states[states.length - 1] !== state) states.push(state);
  });
  actor.start();
  return {
    actor,
    clock,
    links,
    states,
    current: () => {
      const last = links[links.length - 1];
      if (!last) throw new Error('no link was invoked');
      return last;
    },
  };
}

/** Drives the current link through a successful dial and handshake. */
export function connectCurrent(harness: MachineHarness, peerId = 'pwpeer'): void {
  const link = harness.current();
  if (link.input.direction === 'outbound') link.send({ type: 'link.tcpConnected', remoteAddress: '127.0.0.1:4001' });
  link.send({ type: 'link.secured', peerId, listenAddresses: ['127.0.0.1:4001'] });
  link.send({ type: 'link.ready' });
}

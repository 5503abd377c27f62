/**
 * `createSupervisor({ inspect })` hands XState's inspection events out: one real connection's life
 * is visible as its state sequence, and every snapshot's context is plain data.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { InspectionEvent } from 'xstate';
import { createSupervisor } from '../index.js';

describe('inspection', () => {
  it('shows a real connection life as Connecting → Handshaking → Connected → Disconnecting → Closed', async () => {
    const inspected: InspectionEvent[] = [];
    const a = createSupervisor({ listen: '127.0.0.1:0', inspect: (event) => inspected.push(event) });
    const b = createSupervisor({ listen: '127.0.0.1:0' });
    await Promise.all([a.start(), b.start()]);
    try {
      const info = await a.connect(b.listenAddress as string);
      await a.disconnect(b.peerId);

      const idOf = (event: InspectionEvent): string | undefined => (event.actorRef as { id?: string }).id;
      const contextOf = (event: Extract<InspectionEvent, { type: '@xstate.snapshot' }>): unknown =>
        (event.snapshot as unknown as { context?: unknown }).context;
      const snapshots = inspected.filter(
        (event): event is Extract<InspectionEvent, { type: '@xstate.snapshot' }> => event.type === '@xstate.snapshot',
      );
      const states: string[] = [];
      for (const event of snapshots) {
        if (idOf(event) !== info.connectionId) continue;
        const state = (contextOf(event) as { state?: string | null } | undefined)?.state;
        if (typeof state === 'string' && states.at(-1) !== state) states.push(state);
      }
      assert.deepEqual(states, ['connecting', 'handshaking', 'connected', 'disconnecting', 'closed']);

      const withContext = snapshots.filter((event) => contextOf(event) !== undefined);
      assert.ok(withContext.length > 10, 'the supervisor and the connection were both inspected');
      for (const event of withContext) {
        const context = contextOf(event);
        assert.deepEqual(JSON.parse(JSON.stringify(context)), context, `context of ${idOf(event)} is plain data`);
      }
      assert.ok(inspected.some((event) => event.type === '@xstate.actor' && idOf(event) === info.connectionId));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

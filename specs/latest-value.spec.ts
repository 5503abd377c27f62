/**
 * LatestValue: the setting every link follows (the ping interval). Replays the latest value,
 * passes every set, forgets an unsubscribed follower, and completes everyone.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LatestValue } from '../streams/latest-value.js';

describe('LatestValue', () => {
  it('gives each follower the latest value, then every set until it unsubscribes (property)', () => {
    fc.assert(
      fc.property(
        fc.integer(),
        // Each step sets a value, or adds / removes a follower (by index among those added).
        fc.array(fc.oneof(fc.record({ set: fc.integer() }), fc.record({ add: fc.constant(true) }), fc.record({ remove: fc.nat(20) }))),
        (initial, steps) => {
          const setting = new LatestValue(initial);
          const followers: { seen: number[]; expected: number[]; stop: () => void; live: boolean }[] = [];
          let latest = initial;
          for (const step of steps) {
            if ('set' in step) {
              setting.set(step.set);
              latest = step.set;
              for (const follower of followers) if (follower.live) follower.expected.push(step.set);
            } else if ('add' in step) {
              const seen: number[] = [];
              const subscription = setting.changes.subscribe((value) => seen.push(value));
              followers.push({ seen, expected: [latest], stop: () => subscription.unsubscribe(), live: true });
            } else {
              const follower = followers[step.remove];
              if (follower?.live) {
                follower.stop();
                follower.live = false;
              }
            }
          }
          for (const follower of followers) assert.deepEqual(follower.seen, follower.expected);
          assert.equal(setting.followerCount, followers.filter((f) => f.live).length);
          assert.equal(setting.value, latest);
        },
      ),
    );
  });

  it('completes every follower and ignores sets after complete; a late subscriber gets the last value', () => {
    const setting = new LatestValue(1);
    const seen: number[] = [];
    let completed = 0;
    setting.changes.subscribe({ next: (value) => seen.push(value), complete: () => completed++ });
    setting.set(2);
    setting.complete();
    setting.set(3);
    const late: number[] = [];
    setting.changes.subscribe({ next: (value) => late.push(value), complete: () => completed++ });
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(late, [2]);
    assert.equal(completed, 2);
    assert.equal(setting.followerCount, 0);
  });
});

/**
 * Makes the enclosing `describe` fail on any uncaught exception or unhandled rejection in the
 * process while it runs (issue 6: "a spec fails on any uncaught exception or unhandled rejection").
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';

/** Call inside a `describe`: collects crashes from its first test to its last, then asserts there were none. */
export function failOnUncaught(): void {
  const crashes: unknown[] = [];
  const onCrash = (error: unknown): void => void crashes.push(error);
  before(() => {
    process.on('uncaughtException', onCrash);
    process.on('unhandledRejection', onCrash);
  });
  after(() => {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
    assert.deepEqual(crashes, [], 'no uncaught exception or unhandled rejection');
  });
}

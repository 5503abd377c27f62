/**
 * `Promise.withResolvers` (ES2024) for Node 20, where it does not exist: js-libp2p 3 and its
 * modules (`@libp2p/utils` streams, `@libp2p/ping`, `@chainsafe/libp2p-yamux`) call it. Bench
 * code only, never the library. Import this module for its side effect before calling into
 * js-libp2p; it defines nothing when the runtime already has the method.
 */

/** The shape `Promise.withResolvers()` returns (ES2024 §27.2.4.8): the promise and its two settlers. */
export interface PromiseWithResolversShape<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
}

/** The polyfill itself: a new pending promise with its `resolve` and `reject`. Never throws. */
function withResolvers<T>(): PromiseWithResolversShape<T> {
  let resolve!: (value: T | PromiseLike<T>) => void;
  let reject!: (reason?: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// The project's lib is ES2023, so the method is not in Promise's type: reach it by name.
if (typeof Reflect.get(Promise, 'withResolvers') !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', { value: withResolvers, writable: true, configurable: true });
}

/**
 * Tear-down for suites that start servers, gateways and client connections in
 * their tests: `track(x)` hands `x` back and closes it after the test, even
 * when the test failed half-way.
 */
import { afterEach } from 'vitest';

/** Anything a test starts: servers and gateways close, sink processes stop, client connections are destroyed. */
export type Closeable = { close(): unknown } | { stop(): unknown } | { destroy(): unknown };

/**
 * Registers an afterEach that closes every resource tracked during the test,
 * newest first (so clients go before the gateway, and the gateway before its
 * upstream), and returns the `track` function.
 */
export function closeAfterEach(): <T extends Closeable>(resource: T) => T {
  const tracked: Closeable[] = [];
  afterEach(async () => {
    for (const resource of tracked.splice(0).reverse()) {
      if ('close' in resource) await resource.close();
      else if ('stop' in resource) await resource.stop();
      else resource.destroy();
    }
  });
  return (resource) => {
    tracked.push(resource);
    return resource;
  };
}

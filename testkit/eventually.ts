/**
 * Waits for something that happens asynchronously outside the test's control
 * (a file event, a poll, a reload) without fixed sleeps: polls `condition` until
 * it holds, and fails naming `what` when it does not within `timeoutMs`.
 */
export async function eventually(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

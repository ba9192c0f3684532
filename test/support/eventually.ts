/**
 * The one way tests wait for a condition: poll `check` until it yields a value (anything but
 * `undefined` or `false`), with an outer bound only. The bound is generous on purpose: it exists so a
 * broken run fails with a message instead of hanging, never to assert how fast something happens.
 * A `check` that throws counts as "not yet" (its last error is in the timeout message), except a
 * failed `expect`: that fails the wait at once, so a check can assert an invariant that must hold all
 * the while it waits.
 */
export async function eventually<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  what: string | (() => string),
  timeoutMs = 15_000,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      if ((error as Error)?.name === "AssertionError") throw error;
      last = error;
    }
    if (Date.now() > deadline) {
      const text = typeof what === "string" ? what : what();
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${text}${last ? ` (last error: ${last})` : ""}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * One API answer kept in a view: loaded when its inputs change (and every `refreshMs`, if given),
 * with the last error. An answer that arrives after the inputs changed (or the view left) is dropped.
 */
import { useEffect, useState } from "preact/hooks";
import type { ApiError } from "./api.ts";

export interface Resource<T> {
  readonly data: T | null;
  readonly error: ApiError | null;
}

export function useResource<T>(
  load: () => Promise<T>,
  inputs: readonly unknown[],
  refreshMs?: number,
): Resource<T> {
  const [resource, setResource] = useState<Resource<T>>({ data: null, error: null });
  useEffect(() => {
    let current = true;
    const run = () =>
      load().then(
        (data) => {
          if (current) setResource({ data, error: null });
        },
        (error: ApiError) => {
          if (current) setResource((previous) => ({ data: previous.data, error }));
        },
      );
    void run();
    const timer = refreshMs ? setInterval(run, refreshMs) : undefined;
    return () => {
      current = false;
      clearInterval(timer);
    };
  }, inputs);
  return resource;
}

/**
 * Option objects under `exactOptionalPropertyTypes`: an optional property may be absent but not
 * `undefined`, so values that may be undefined are passed on through {@link present}.
 */

/** `T` with every property optional and never `undefined`. */
export type Present<T> = { [K in keyof T]?: Exclude<T[K], undefined> };

/** The properties of `values` whose value is not `undefined`. */
export function present<T extends object>(values: T): Present<T> {
  const out: Record<string, unknown> = {};
  for (const key in values) {
    const value = values[key];
    if (value !== undefined && Object.hasOwn(values, key)) out[key] = value;
  }
  return out as Present<T>;
}

/** `T` with its properties writable: a record built field by field before it is handed on read-only. */
export type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * The operator's API key for this browser tab: kept in sessionStorage (gone when the tab closes,
 * never in localStorage or a cookie), sent as `Authorization: Bearer <key>`.
 */
const KEY = "doppel.apiKey";

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key: string): void {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY);
}

import { hash } from 'node:crypto';

/**
 * At most this long a verified token is taken from the cache without checking its signature
 * again. A key the provider withdraws stops verifying once the signing-key store's refresh (after
 * 10 min, on use) drops it; the cache can add at most this much to that.
 */
export const VERIFIED_TOKEN_MAX_AGE_SECONDS = 60;
/** Bounds the cache's memory: an entry is a 44-character digest and a small result object. */
export const VERIFIED_TOKEN_MAX_ENTRIES = 10_000;

interface Entry<T> {
  result: T;
  /** Unix seconds after which the entry is not used (the token's own limits, or the cache's). */
  until: number;
}

export interface VerifiedTokenCache<T> {
  /** What verifying this exact token gave, while it is still valid at `nowSeconds`. */
  get(token: string, nowSeconds: number): T | undefined;
  /**
   * Keeps what verifying the token gave until `validUntil` (Unix seconds: its `exp`, or an earlier
   * limit such as a maximum token age), and never longer than VERIFIED_TOKEN_MAX_AGE_SECONDS.
   */
  set(token: string, result: T, validUntil: number, nowSeconds: number): void;
}

/**
 * The results of verified tokens, keyed by the token's SHA-256 (the cache holds no bearer token).
 * Apps send the same token with every request until it expires; checking its RSA signature again
 * each time was the largest part of a session request's CPU that the broker itself decides.
 * Only tokens that passed every check are kept, and a hit is only as good as the token's own
 * limits, checked again on every use.
 */
export function createVerifiedTokenCache<T>(
  maxEntries: number = VERIFIED_TOKEN_MAX_ENTRIES,
): VerifiedTokenCache<T> {
  // Insertion order is age order: the first key is the oldest entry.
  const entries = new Map<string, Entry<T>>();
  const keyOf = (token: string) => hash('sha256', token, 'base64');
  return {
    get(token, nowSeconds) {
      const key = keyOf(token);
      const entry = entries.get(key);
      if (entry === undefined) return undefined;
      if (nowSeconds < entry.until) return entry.result;
      entries.delete(key);
      return undefined;
    },
    set(token, result, validUntil, nowSeconds) {
      const until = Math.min(validUntil, nowSeconds + VERIFIED_TOKEN_MAX_AGE_SECONDS);
      if (!(until > nowSeconds)) return;
      const key = keyOf(token);
      entries.delete(key);
      if (entries.size >= maxEntries) entries.delete(entries.keys().next().value as string);
      entries.set(key, { result, until });
    },
  };
}

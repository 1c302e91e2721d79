import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import axios from 'axios';
import type { JwksClient } from 'jwks-rsa';
import type { KeySource } from '../config/config';
import { AuthenticationError, ServiceUnavailableError } from '../errors';
import type { Logger } from '../observability/logger';

/** Resolves the key that verifies a token, by the token header's `kid`. */
export interface SigningKeyStore {
  /**
   * The key for `kid`. A published key that names its algorithm (JWK `alg`) verifies only tokens
   * of that algorithm (RFC 8725 §3.1): the allowlist alone would let an RS256 key verify PS256.
   */
  keyFor(kid: string | undefined, alg: string): Promise<KeyObject>;
  /** True once a key has ever been obtained (always, for a shared secret). */
  hasKeys(): boolean;
  /** Fetches the keys once at start so the first user does not wait; failures are logged. */
  warmUp(): Promise<void>;
}

export interface JwksStoreOptions {
  fetchTimeoutMs: number;
  /** An unknown kid refetches at most this often. Default 30 s. */
  minRefetchIntervalMs?: number;
  /** Keys older than this are refreshed in the background on use. Default 10 min. */
  refreshAfterMs?: number;
  logger: Logger;
  now?: () => number;
}

const MAX_KID_LENGTH = 256;

/** A key from the JWKS, and the algorithm it is published for when the JWK names one. */
interface PublishedKey {
  key: KeyObject;
  alg?: string;
}

export function createSigningKeyStore(
  source: KeySource,
  options: JwksStoreOptions,
): SigningKeyStore {
  if (source.kind === 'secret') {
    const key = createSecretKey(Buffer.from(source.secret, 'utf8'));
    return { keyFor: async () => key, hasKeys: () => true, warmUp: async () => undefined };
  }
  return createJwksStore(
    source.kind === 'jwks'
      ? async () => source.jwksUri
      : () => discoverJwksUri(source.issuer, options.fetchTimeoutMs),
    options,
  );
}

/** Reads `jwks_uri` from the issuer's OIDC discovery document, checking it names the same issuer. */
async function discoverJwksUri(issuer: string, timeoutMs: number): Promise<string> {
  const response = await axios.get<unknown>(
    `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`,
    {
      timeout: timeoutMs,
      maxRedirects: 0,
      responseType: 'json',
    },
  );
  const document = response.data as { issuer?: unknown; jwks_uri?: unknown } | null;
  if (document?.issuer !== issuer) {
    throw new Error('the discovery document names a different issuer');
  }
  if (typeof document.jwks_uri !== 'string') {
    throw new Error('the discovery document has no jwks_uri');
  }
  const jwksUri = new URL(document.jwks_uri);
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(jwksUri.hostname);
  if (jwksUri.protocol !== 'https:' && !(jwksUri.protocol === 'http:' && loopback)) {
    throw new Error('the discovery document names a jwks_uri that is not https');
  }
  return jwksUri.href;
}

function createJwksStore(
  resolveJwksUri: () => Promise<string>,
  options: JwksStoreOptions,
): SigningKeyStore {
  const { logger, fetchTimeoutMs } = options;
  const now = options.now ?? Date.now;
  const minRefetchIntervalMs = options.minRefetchIntervalMs ?? 30_000;
  const refreshAfterMs = options.refreshAfterMs ?? 10 * 60_000;

  // A list per kid: a provider may publish one kid for the same key under two algorithms.
  let keys = new Map<string, PublishedKey[]>();
  let onlyKey: PublishedKey[] | undefined;
  let fetchedAt = 0;
  let lastAttemptAt = Number.NEGATIVE_INFINITY;
  let inFlight: Promise<void> | undefined;
  let failing = false;
  let client: JwksClient | undefined;

  async function fetchKeys(): Promise<void> {
    if (!client) {
      // Loaded on first use, after the listener is up: it is a fifth of the start-up time, and a
      // broker with a shared secret never needs it.
      const { JwksClient } = await import('jwks-rsa');
      client = new JwksClient({
        jwksUri: await resolveJwksUri(),
        cache: false,
        rateLimit: false,
        timeout: fetchTimeoutMs,
      });
    }
    const signingKeys = await client.getSigningKeys();
    const next = new Map<string, PublishedKey[]>();
    for (const key of signingKeys) {
      const kid = key.kid ?? '';
      // A KeyObject once, here, so verifying a token never re-parses a PEM. jwks-rsa's types say
      // `alg` is always there; it is only there when the JWK has one.
      const published = {
        key: createPublicKey(key.getPublicKey()),
        alg: (key.alg as string | undefined) || undefined,
      };
      next.set(kid, [...(next.get(kid) ?? []), published]);
    }
    keys = next;
    onlyKey = next.size === 1 ? next.values().next().value : undefined;
    fetchedAt = now();
  }

  /** Starts a fetch unless one ran within the refetch interval; concurrent callers share it. */
  function refresh(): Promise<void> {
    if (inFlight) return inFlight;
    if (now() - lastAttemptAt < minRefetchIntervalMs) return Promise.resolve();
    lastAttemptAt = now();
    inFlight = fetchKeys()
      .then(() => {
        if (failing) logger.info('signing keys fetched again; the identity provider is back');
        failing = false;
      })
      .catch((error: unknown) => {
        // Logged once per outage: a down IdP must not flood the logs with one line per request.
        if (!failing) {
          logger.error(
            { reason: error instanceof Error ? error.message : 'unknown', keysHeld: keys.size },
            'cannot fetch signing keys; keys already held stay in use',
          );
        }
        failing = true;
      })
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  }

  function lookup(kid: string | undefined): PublishedKey[] | undefined {
    return kid === undefined ? onlyKey : keys.get(kid);
  }

  function keyOf(published: PublishedKey[], alg: string): KeyObject {
    const match =
      published.find((each) => each.alg === alg) ??
      published.find((each) => each.alg === undefined);
    if (!match) {
      throw new AuthenticationError(
        'the token is signed with an algorithm its signing key is not published for',
        'invalid_token',
      );
    }
    return match.key;
  }

  return {
    async keyFor(kid, alg) {
      if (kid !== undefined && (typeof kid !== 'string' || kid.length > MAX_KID_LENGTH)) {
        throw new AuthenticationError('the token names an unknown signing key', 'invalid_token');
      }
      let published = lookup(kid);
      if (published) {
        if (now() - fetchedAt > refreshAfterMs) void refresh();
        return keyOf(published, alg);
      }
      await refresh();
      published = lookup(kid);
      if (published) return keyOf(published, alg);
      if (keys.size === 0) {
        throw new ServiceUnavailableError(
          'the keys that verify logins cannot be fetched right now',
          minRefetchIntervalMs / 1000,
        );
      }
      throw new AuthenticationError(
        kid === undefined
          ? 'the token names no signing key'
          : 'the token names an unknown signing key',
        'invalid_token',
      );
    },
    hasKeys: () => keys.size > 0,
    warmUp: refresh,
  };
}

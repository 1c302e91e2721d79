import type { AuthConfig, JwtAlgorithm, ProviderConfig } from '../config/config';
import { createSigningKeyStore, type JwksStoreOptions, type SigningKeyStore } from './signing-keys';

/** One identity provider as the authenticator uses it: its settings and its own key store. */
export interface Provider {
  /** `default` in single-provider mode. */
  name: string;
  /** The `iss` it accepts; undefined only in single-provider mode without AUTH_ISSUER. */
  issuer?: string;
  algorithms: readonly JwtAlgorithm[];
  audience: readonly string[];
  audienceClaim: string;
  /**
   * Whether the broker checks the audience itself (another claim than `aud`, or several providers);
   * otherwise jsonwebtoken checks `aud` as it always did in single-provider mode.
   */
  checksAudience: boolean;
  userIdClaim: string;
  /** Empty in single-provider mode: the user ids of today. */
  userIdPrefix: string;
  /**
   * The other providers' prefixes, for the one provider with an empty prefix: a claim of its that
   * starts with one of them (folded by `lookAlike`) would read as another provider's user id, so it
   * is refused.
   */
  foreignPrefixes: readonly string[];
  requiredScopes: readonly string[];
  userIdHashSecret?: string;
  keys: SigningKeyStore;
}

/** Every provider of the deployment. */
export interface Providers {
  /** Set in single-provider mode: every token is its. */
  single?: Provider;
  /** By exact `iss`: choosing the provider of a token is one lookup, never trial verification. */
  byIssuer: ReadonlyMap<string, Provider>;
  all: readonly Provider[];
  /** Every algorithm some provider accepts; each token is then held to its own provider's list. */
  algorithms: JwtAlgorithm[];
  /** The names of the providers that hold no key yet, each asked again (at most once per 30 s). */
  unavailable(): string[];
  /** Fetches every provider's keys at once; failures are logged by each store. */
  warmUp(): Promise<void>;
  /** True while at least one provider can verify tokens. */
  hasKeys(): boolean;
}

export const SINGLE_PROVIDER_NAME = 'default';

/**
 * A user id folded the way a reader (or a vendor comparing loosely) might see it: compatibility
 * forms (a full-width colon) and case. `STAFF:42` or `staff：42` from the provider without a
 * prefix must not pass for staff member 42.
 */
export function lookAlike(value: string): string {
  return value.normalize('NFKC').toLowerCase();
}

function fromProviderConfig(
  provider: ProviderConfig,
  userIdHashSecret: string | undefined,
  options: JwksStoreOptions,
): Provider {
  return {
    name: provider.name,
    issuer: provider.issuer,
    algorithms: provider.algorithms,
    audience: provider.audience,
    audienceClaim: provider.audienceClaim,
    checksAudience: true,
    userIdClaim: provider.userIdClaim,
    userIdPrefix: provider.userIdPrefix,
    foreignPrefixes: [],
    requiredScopes: provider.requiredScopes,
    userIdHashSecret,
    keys: createSigningKeyStore(provider.keys, {
      ...options,
      logger: options.logger.child({ provider: provider.name }),
    }),
  };
}

export function createProviders(auth: AuthConfig, options: JwksStoreOptions): Providers {
  let single: Provider | undefined;
  let all: Provider[];
  if (auth.providers) {
    all = auth.providers.map((each) => fromProviderConfig(each, auth.userIdHashSecret, options));
    const unprefixed = all.find((provider) => provider.userIdPrefix === '');
    if (unprefixed && !auth.userIdHashSecret) {
      unprefixed.foreignPrefixes = all
        .filter((provider) => provider !== unprefixed)
        .map((provider) => lookAlike(provider.userIdPrefix));
    }
  } else {
    single = {
      name: SINGLE_PROVIDER_NAME,
      issuer: auth.issuer,
      algorithms: auth.algorithms,
      audience: auth.audience,
      audienceClaim: auth.audienceClaim,
      checksAudience: auth.audienceClaim !== 'aud',
      userIdClaim: auth.userIdClaim,
      userIdPrefix: '',
      foreignPrefixes: [],
      requiredScopes: auth.requiredScopes,
      userIdHashSecret: auth.userIdHashSecret,
      keys: createSigningKeyStore(auth.keys, options),
    };
    all = [single];
  }
  const byIssuer = new Map<string, Provider>();
  for (const provider of all) {
    if (provider.issuer !== undefined) byIssuer.set(provider.issuer, provider);
  }
  return {
    single,
    byIssuer,
    all,
    algorithms: [...new Set(all.flatMap((provider) => provider.algorithms))],
    unavailable() {
      const missing = all.filter((provider) => !provider.keys.hasKeys());
      // The probe retries the fetch: a provider that was down at start gets no traffic of its own
      // to trigger it and would never recover otherwise.
      for (const provider of missing) void provider.keys.warmUp();
      return missing.map((provider) => provider.name);
    },
    warmUp: async () => {
      await Promise.all(all.map((provider) => provider.keys.warmUp()));
    },
    hasKeys: () => all.some((provider) => provider.keys.hasKeys()),
  };
}

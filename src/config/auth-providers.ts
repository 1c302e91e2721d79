import { z } from 'zod';
import {
  atLeastBytes,
  claimName,
  HMAC_ALGORITHMS,
  KEY_ALGORITHMS,
  list,
  scopes,
  secureUrl,
  type JwtAlgorithm,
  type KeySource,
  type ProviderConfig,
} from './config';

/** The settings of one provider: `AUTH_<N>_` followed by one of these. */
const SETTINGS = [
  'ISSUER',
  'JWKS_URI',
  'JWT_SECRET',
  'AUDIENCE',
  'AUDIENCE_CLAIM',
  'ALGORITHMS',
  'USER_ID_CLAIM',
  'USER_ID_PREFIX',
  'REQUIRED_SCOPE',
] as const;
type Setting = (typeof SETTINGS)[number];

/** The variables of the AUTH_PROVIDERS family, as the docs and .env.example write them. */
export const PROVIDER_VARIABLES: readonly string[] = [
  'AUTH_PROVIDERS',
  ...SETTINGS.map((setting) => `AUTH_<N>_${setting}`),
];

/** The variables of single-provider mode: any of them next to AUTH_PROVIDERS is a mistake. */
const SINGLE_PROVIDER_VARIABLES = [
  'AUTH_ISSUER',
  'AUTH_JWKS_URI',
  'AUTH_JWT_SECRET',
  'AUTH_AUDIENCE',
  'AUTH_AUDIENCE_CLAIM',
  'AUTH_ALGORITHMS',
  'AUTH_USER_ID_CLAIM',
  'AUTH_REQUIRED_SCOPE',
];

const PROVIDER_NAME = /^[a-z][a-z0-9_]{0,31}$/;
/** `default` labels single-provider metrics and `unknown` the logins no provider claimed. */
const RESERVED_NAMES = new Set(['default', 'unknown']);
/** What a user_id may start with: it goes to Cardscan as part of the id. */
const USER_ID_PREFIX = /^[A-Za-z0-9._:|@/-]{0,64}$/;
const FAMILY = new RegExp(`^AUTH_[A-Z0-9_]+_(${SETTINGS.join('|')})$`);

/**
 * Built on each call, not at load: config.ts imports this module, so its exports are only
 * complete once both modules have loaded.
 */
function providerFields() {
  return z.object({
    // Kept exactly as written: `iss` is compared to it byte for byte.
    ISSUER: secureUrl.optional(),
    JWKS_URI: secureUrl.optional(),
    JWT_SECRET: atLeastBytes(32).optional(),
    AUDIENCE: z.string().transform(list).optional(),
    AUDIENCE_CLAIM: claimName.default('aud'),
    ALGORITHMS: z.string().transform(list).optional(),
    USER_ID_CLAIM: claimName.default('sub'),
    USER_ID_PREFIX: z
      .string()
      .regex(USER_ID_PREFIX, {
        message: 'must be at most 64 letters, digits or . _ : | @ / -',
      })
      .optional(),
    REQUIRED_SCOPE: scopes.optional(),
  });
}

export interface ParsedProviders {
  /** Undefined when AUTH_PROVIDERS is unset (single-provider mode). */
  providers?: ProviderConfig[];
  problems: string[];
}

/** The value of a variable as loadConfig reads it: trimmed, and empty counts as unset. */
function valueOf(env: Record<string, string | undefined>, name: string): string | undefined {
  return env[name]?.trim() || undefined;
}

/** Checks that cannot be seen on one provider alone: the same issuer, or user ids that could meet. */
function collisions(providers: ProviderConfig[]): string[] {
  const problems: string[] = [];
  const variable = (provider: ProviderConfig, setting: Setting) =>
    `AUTH_${provider.name.toUpperCase()}_${setting}`;
  providers.forEach((provider, index) => {
    for (const earlier of providers.slice(0, index)) {
      if (provider.issuer === earlier.issuer) {
        problems.push(
          `${variable(provider, 'ISSUER')}: is the same issuer as ${variable(earlier, 'ISSUER')}; a token must have exactly one provider`,
        );
      }
      if (provider.userIdPrefix === '' && earlier.userIdPrefix === '') {
        problems.push(
          `${variable(provider, 'USER_ID_PREFIX')}: ${variable(earlier, 'USER_ID_PREFIX')} is empty too; at most one provider may have an empty prefix, or their users could get the same user_id`,
        );
        continue;
      }
      // The provider with the empty prefix refuses claims that start with another's prefix.
      if (provider.userIdPrefix === '' || earlier.userIdPrefix === '') continue;
      const [shorter, longer] =
        earlier.userIdPrefix.length <= provider.userIdPrefix.length
          ? [earlier, provider]
          : [provider, earlier];
      if (longer.userIdPrefix.startsWith(shorter.userIdPrefix)) {
        problems.push(
          `${variable(longer, 'USER_ID_PREFIX')}: starts with the prefix of ${variable(shorter, 'USER_ID_PREFIX')}, so users of ${shorter.name} and ${longer.name} could get the same user_id`,
        );
      }
    }
  });
  return problems;
}

function parseProvider(
  name: string,
  env: Record<string, string | undefined>,
  problems: string[],
): ProviderConfig | undefined {
  const prefix = `AUTH_${name.toUpperCase()}_`;
  const raw: Partial<Record<Setting, string>> = {};
  for (const setting of SETTINGS) {
    const value = valueOf(env, prefix + setting);
    if (value !== undefined) raw[setting] = value;
  }
  // USER_ID_PREFIX may be set to the empty string on purpose: the empty prefix keeps the user ids
  // of a deployment that had one provider.
  const prefixSet = env[`${prefix}USER_ID_PREFIX`] !== undefined;
  if (prefixSet) raw.USER_ID_PREFIX = env[`${prefix}USER_ID_PREFIX`]?.trim() ?? '';

  const before = problems.length;
  const parsed = providerFields().safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(`${prefix}${String(issue.path[0])}: ${issue.message}`);
    }
  }
  if (!raw.ISSUER) problems.push(`${prefix}ISSUER: is required`);
  if (!raw.AUDIENCE || list(raw.AUDIENCE).length === 0) {
    problems.push(
      `${prefix}AUDIENCE: is required: without it, tokens this provider mints for any other application are accepted`,
    );
  }
  if (raw.JWKS_URI && raw.JWT_SECRET) {
    problems.push(
      `${prefix}JWT_SECRET: cannot be combined with ${prefix}JWKS_URI; choose one way to verify this provider's tokens`,
    );
  }
  const secret = raw.JWT_SECRET !== undefined;
  if (raw.ALGORITHMS !== undefined) {
    const allowed: readonly string[] = secret ? HMAC_ALGORITHMS : KEY_ALGORITHMS;
    const algorithms = list(raw.ALGORITHMS);
    const refused = algorithms.filter((alg) => !allowed.includes(alg));
    if (refused.length > 0 || algorithms.length === 0) {
      problems.push(
        `${prefix}ALGORITHMS: with ${secret ? `${prefix}JWT_SECRET` : 'signing keys'} only ${allowed.join(', ')} are allowed` +
          (refused.length > 0 ? ` (refused: ${refused.join(', ')})` : ''),
      );
    }
  }
  if (!parsed.success || problems.length > before) return undefined;

  const f = parsed.data;
  const issuer = f.ISSUER ?? '';
  const keys: KeySource = f.JWT_SECRET
    ? { kind: 'secret', secret: f.JWT_SECRET }
    : f.JWKS_URI
      ? { kind: 'jwks', jwksUri: f.JWKS_URI }
      : { kind: 'discovery', issuer };
  return {
    name,
    keys,
    issuer,
    audience: f.AUDIENCE ?? [],
    audienceClaim: f.AUDIENCE_CLAIM,
    algorithms:
      (f.ALGORITHMS as JwtAlgorithm[] | undefined) ??
      (secret ? ['HS256'] : ['RS256', 'ES256', 'PS256']),
    userIdClaim: f.USER_ID_CLAIM,
    userIdPrefix: f.USER_ID_PREFIX ?? `${name}:`,
    requiredScopes: f.REQUIRED_SCOPE ?? [],
  };
}

/**
 * AUTH_PROVIDERS and its AUTH_<N>_… variables, read from the raw environment (the family has no
 * fixed names). Every problem is reported, one line each, naming the variable, never a value.
 */
export function parseAuthProviders(env: Record<string, string | undefined>): ParsedProviders {
  const problems: string[] = [];
  const listed = valueOf(env, 'AUTH_PROVIDERS');
  const names = listed === undefined ? [] : list(listed);

  for (const [index, name] of names.entries()) {
    if (!PROVIDER_NAME.test(name)) {
      problems.push(
        `AUTH_PROVIDERS: entry ${index + 1} is not a name of lowercase letters, digits and _ (starting with a letter, at most 32)`,
      );
    } else if (RESERVED_NAMES.has(name)) {
      problems.push(`AUTH_PROVIDERS: "${name}" is reserved for the metrics; choose another name`);
    } else if (names.indexOf(name) !== index) {
      problems.push(`AUTH_PROVIDERS: "${name}" is listed twice`);
    }
  }
  if (listed !== undefined && names.length === 0)
    problems.push('AUTH_PROVIDERS: lists no provider');

  // A typo in a name (or in AUTH_PROVIDERS itself) must not silently drop a setting.
  const known = new Set(
    names.flatMap((name) => SETTINGS.map((setting) => `AUTH_${name.toUpperCase()}_${setting}`)),
  );
  for (const variable of Object.keys(env).sort()) {
    const set =
      valueOf(env, variable) !== undefined ||
      (variable.endsWith('_USER_ID_PREFIX') && env[variable] !== undefined);
    if (FAMILY.test(variable) && !known.has(variable) && set) {
      problems.push(
        listed === undefined
          ? `${variable}: AUTH_PROVIDERS is not set, so this setting would be ignored`
          : `${variable}: names no provider in AUTH_PROVIDERS, so this setting would be ignored`,
      );
    }
  }
  if (listed === undefined) return { problems };

  for (const variable of SINGLE_PROVIDER_VARIABLES) {
    if (valueOf(env, variable) !== undefined) {
      problems.push(
        `${variable}: cannot be combined with AUTH_PROVIDERS; configure each provider with AUTH_<N>_… instead`,
      );
    }
  }
  const providers = [...new Set(names)]
    .filter((name) => PROVIDER_NAME.test(name) && !RESERVED_NAMES.has(name))
    .map((name) => parseProvider(name, env, problems))
    .filter((provider): provider is ProviderConfig => provider !== undefined);
  problems.push(...collisions(providers));
  return { providers, problems };
}

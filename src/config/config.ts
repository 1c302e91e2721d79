import { isIP } from 'node:net';
import { z } from 'zod';
import { cookieNameWarning } from '../auth/cookie-rules';
import { userIdClaimWarning } from '../auth/user-id';
import { resolveSecretFiles } from './secret-files';
import { parseAuthProviders, PROVIDER_VARIABLES } from './auth-providers';

/** JWT algorithms the broker can be told to accept. `none` is never one of them. */
export const KEY_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
] as const;
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
export type JwtAlgorithm = (typeof KEY_ALGORITHMS)[number] | (typeof HMAC_ALGORITHMS)[number];

export const CARDSCAN_SANDBOX_URL = 'https://sandbox.cardscan.ai/v1';
export const CARDSCAN_LIVE_URL = 'https://api.cardscan.ai/v1';
export const CERTISCAN_DEFAULT_URL = 'https://account.app.certiscan.cloud/api/v1';

// Visible ASCII after the prefix: the key goes into an Authorization header as it is.
const TEST_KEY = /^(sk_test_cardscan_ai_|secret_test_)[\x21-\x7E]+$/;
const LIVE_KEY = /^(sk_live_cardscan_ai_|secret_live_)[\x21-\x7E]+$/;

/** Where the broker gets the keys that verify end-user tokens. */
export type KeySource =
  | { kind: 'secret'; secret: string }
  | { kind: 'jwks'; jwksUri: string }
  | { kind: 'discovery'; issuer: string };

/** The one identity provider of the AUTH_ISSUER / AUTH_JWKS_URI / AUTH_JWT_SECRET variables. */
export interface SingleProviderSettings {
  keys: KeySource;
  /** Required `iss`; always set in discovery mode, optional otherwise. */
  issuer?: string;
  /** Accepted audiences; any one must match. Unchecked when empty. */
  audience: string[];
  /** The claim that carries the audience (AUTH_AUDIENCE_CLAIM). Default `aud`. */
  audienceClaim: string;
  algorithms: JwtAlgorithm[];
  /** Top-level claim that becomes the Cardscan user_id. Default `sub`. */
  userIdClaim: string;
  /** Scopes that must all be granted (AUTH_REQUIRED_SCOPE). Default none. */
  requiredScopes: string[];
}

/** One of the AUTH_PROVIDERS, configured by its AUTH_<N>_… variables. */
export interface ProviderConfig {
  /** Its name in AUTH_PROVIDERS; the `provider` label of its metrics. */
  name: string;
  keys: KeySource;
  /** The exact `iss` of its tokens: how a token finds its provider. */
  issuer: string;
  /** Never empty: several providers without an audience would accept each other's apps. */
  audience: string[];
  audienceClaim: string;
  algorithms: JwtAlgorithm[];
  userIdClaim: string;
  /** Put before the claim in user_id. Default `<name>:`; at most one provider has it empty. */
  userIdPrefix: string;
  requiredScopes: string[];
}

interface SharedAuthSettings {
  cookieName?: string;
  userIdHashSecret?: string;
  /** AUTH_MAX_TOKEN_AGE: tokens issued (iat) longer ago are refused. Unset: only exp counts. */
  maxTokenAgeSeconds?: number;
}

/** Single-provider mode: the variables of today, and no `providers`. */
export interface SingleProviderAuth extends SingleProviderSettings, SharedAuthSettings {
  providers?: undefined;
}

/** AUTH_PROVIDERS mode: the single-provider settings do not exist. */
export type MultiProviderAuth = SharedAuthSettings & {
  [K in keyof SingleProviderSettings]?: undefined;
} & { providers: ProviderConfig[] };

export type AuthConfig = SingleProviderAuth | MultiProviderAuth;

export interface AdminKey {
  name: string;
  /** SHA-256 of the key, 32 bytes. */
  sha256: Buffer;
}

export interface Config {
  production: boolean;
  logLevel: string;
  server: {
    port: number;
    host: string;
    trustProxy: boolean | number | string;
    shutdownDelayMs: number;
    shutdownTimeoutMs: number;
    /** MAX_CONNECTIONS; unset: sized from the heap when the listener starts. */
    maxConnections?: number;
  };
  cardscan: { apiKey: string; keyKind: 'test' | 'live'; baseUrl: string };
  auth: AuthConfig;
  cors: { origins: string[] };
  /** Absent when ADMIN_API_KEYS is unset: no admin routes at all. */
  admin?: { keys: AdminKey[]; port?: number };
  certiscan: { baseUrl: string; authToken?: string };
  /**
   * proxyFromEnvironment: an HTTP(S)_PROXY or ALL_PROXY variable is set (any case), so axios
   * resolves a proxy per call as it always does; without one it skips that lookup.
   */
  upstream: { timeoutMs: number; proxyFromEnvironment: boolean };
  rateLimit: { perMinute: number; redisUrl?: string };
  /** The file each secret was read from (`X_FILE`), by variable name (`X`). */
  credentialFiles: Readonly<Record<string, string>>;
  /** Absent unless an OTLP endpoint is set (and OTEL_SDK_DISABLED is not true): no tracing at all. */
  tracing?: TracingConfig;
}

export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];
export const TRACES_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
export type TracesSampler = (typeof TRACES_SAMPLERS)[number];

/** OpenTelemetry traces, from the standard OTEL_* variables. */
export interface TracingConfig {
  /** The full OTLP/HTTP traces URL (OTEL_EXPORTER_OTLP_ENDPOINT + `/v1/traces`, or the TRACES one as is). */
  endpoint: string;
  /** Default `http/protobuf`, as the OpenTelemetry specification says. */
  protocol: OtlpProtocol;
  /** Sent to the collector with every export (e.g. its API key); never logged. */
  headers: Record<string, string>;
  /** One export's deadline. Default 10000. */
  exportTimeoutMs: number;
  /** How long finished spans wait to be sent in one batch. Default 5000. */
  scheduleDelayMs: number;
  /** `service.name` and the other resource attributes. */
  resource: Record<string, string>;
  /** Default `parentbased_always_on`. */
  sampler: TracesSampler;
  /** The ratio of the `…traceidratio` samplers, 0 to 1. Default 1. */
  samplerRatio: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.join('\n')}`);
    this.name = 'ConfigError';
  }
}

function isLoopbackHost(hostname: string): boolean {
  return (
    hostname === 'localhost' ||
    hostname === '[::1]' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
  );
}

/** https://, or http:// to a loopback host (the stand-ins); never credentials in the URL. Kept as written. */
export const secureUrl = z.string().transform((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'is not a valid URL' });
    return z.NEVER;
  }
  const secure = url.protocol === 'https:';
  const loopbackHttp = url.protocol === 'http:' && isLoopbackHost(url.hostname);
  if (!secure && !loopbackHttp) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be an https:// URL (http:// is allowed only for loopback hosts)',
    });
  }
  if (url.username || url.password || url.search || url.hash) {
    ctx.addIssue({
      code: 'custom',
      message: 'must not contain credentials, a query or a fragment',
    });
  }
  return value;
});

/** A base URL that paths are appended to. */
const upstreamUrl = secureUrl.transform((value) => value.replace(/\/+$/, ''));

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, { message: 'must be a whole number' })
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, { message: `must be at least ${min}` })
        .max(max, { message: `must be at most ${max}` }),
    );

export const list = (value: string) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);

export const atLeastBytes = (bytes: number) =>
  z.string().refine((value) => Buffer.byteLength(value, 'utf8') >= bytes, {
    message: `must be at least ${bytes} bytes`,
  });

const origin = z.string().refine(
  (value) => {
    try {
      const url = new URL(value);
      return url.origin === value && (url.protocol === 'https:' || url.protocol === 'http:');
    } catch {
      return false;
    }
  },
  { message: 'must be an origin such as https://app.example.com (scheme, host, optional port)' },
);

/** The name of an admin key: it becomes the actor in audit lines. */
export const ADMIN_KEY_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const ADMIN_KEY_ENTRY = new RegExp(`^(${ADMIN_KEY_NAME.source.slice(1, -1)}):([0-9a-fA-F]{64})$`);

const adminKeys = z.string().transform((value, ctx) => {
  const keys: AdminKey[] = [];
  // Lines too: ADMIN_API_KEYS_FILE is easier to keep with one entry per line.
  const entries = value
    .split(/[,\n]/)
    .map((item) => item.trim())
    .filter(Boolean);
  for (const [index, entry] of entries.entries()) {
    const match = ADMIN_KEY_ENTRY.exec(entry);
    if (!match) {
      ctx.addIssue({
        code: 'custom',
        message: `entry ${index + 1} is not name:sha256hex (name of letters, digits, . _ -; 64 hex digits)`,
      });
      continue;
    }
    const [, name = '', hex = ''] = match;
    if (keys.some((key) => key.name === name)) {
      ctx.addIssue({ code: 'custom', message: `entry ${index + 1} repeats the name "${name}"` });
    }
    keys.push({ name, sha256: Buffer.from(hex, 'hex') });
  }
  if (keys.length === 0 && ctx.issues.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'holds no key' });
  }
  return keys;
});

/** What Express's `trust proxy` accepts besides booleans and hop counts. */
function isTrustedProxyEntry(entry: string): boolean {
  if (['loopback', 'linklocal', 'uniquelocal'].includes(entry)) return true;
  const [address = '', prefix, ...rest] = entry.split('/');
  if (rest.length > 0 || isIP(address) === 0) return false;
  if (prefix === undefined) return true;
  const max = isIP(address) === 4 ? 32 : 128;
  return /^\d{1,3}$/.test(prefix) ? Number(prefix) <= max : isIP(prefix) === 4;
}

const trustProxy = z.string().transform((value, ctx): boolean | number | string => {
  if (value === 'true') return true;
  if (value === 'false') return false;
  if (/^\d+$/.test(value)) return Number(value);
  if (!list(value).every(isTrustedProxyEntry)) {
    ctx.addIssue({
      code: 'custom',
      message:
        'must be true, false, a hop count, or comma-separated addresses/subnets (e.g. loopback, 10.0.0.0/8)',
    });
  }
  return value;
});

/**
 * `key=value,key=value` as W3C Baggage writes it (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS):
 * values percent-decoded. Messages name the entry's position, never its text, which may be a secret.
 */
const keyValueList = z.string().transform((value, ctx) => {
  const pairs: Record<string, string> = {};
  for (const [index, entry] of list(value).entries()) {
    const equals = entry.indexOf('=');
    const key = equals > 0 ? entry.slice(0, equals).trim() : '';
    let decoded: string | undefined;
    try {
      decoded = decodeURIComponent(entry.slice(equals + 1).trim());
    } catch {
      decoded = undefined;
    }
    if (!key || decoded === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `entry ${index + 1} is not key=value (value percent-encoded)`,
      });
      continue;
    }
    pairs[key] = decoded;
  }
  return pairs;
});

/** A collector URL: http:// is fine (spans carry no secret), credentials in it are not (use the headers). */
const collectorUrl = z.string().refine(
  (value) => {
    try {
      const url = new URL(value);
      return (
        (url.protocol === 'https:' || url.protocol === 'http:') && !url.username && !url.password
      );
    } catch {
      return false;
    }
  },
  {
    message:
      'must be an http:// or https:// URL without credentials (put those in OTEL_EXPORTER_OTLP_HEADERS)',
  },
);

const otlpProtocol = z.enum(OTLP_PROTOCOLS, {
  message: `must be http/protobuf or http/json (grpc is not supported)`,
});
// Plain ASCII: the name is echoed in 401 answers and their WWW-Authenticate header.
export const claimName = z.string().regex(/^[A-Za-z0-9_.:/-]{1,128}$/, {
  message: 'must be 1 to 128 letters, digits or _ . : / -',
});

/** Space-separated scope tokens (RFC 6749 §3.3): they are echoed in WWW-Authenticate. */
export const scopes = z
  .string()
  .transform((value) => value.split(' ').filter(Boolean))
  .refine((values) => values.every((scope) => /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/.test(scope)), {
    message: 'must be space-separated scopes of visible ASCII without " or \\',
  });

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const fields = z.object({
  NODE_ENV: z.string().optional(),
  PORT: int(0, 65535).default(8080),
  HOST: z.string().default('0.0.0.0'),
  CARDSCAN_API_KEY: z
    .string({ message: 'is required' })
    .refine((key) => TEST_KEY.test(key) || LIVE_KEY.test(key), {
      message:
        'has no known prefix: expected sk_test_cardscan_ai_…, sk_live_cardscan_ai_…, or the legacy secret_test_… / secret_live_…',
    }),
  CARDSCAN_BASE_URL: upstreamUrl.optional(),
  // Kept exactly as written: `iss` is compared to it character for character.
  AUTH_ISSUER: secureUrl.optional(),
  AUTH_JWKS_URI: secureUrl.optional(),
  AUTH_JWT_SECRET: atLeastBytes(32).optional(),
  AUTH_AUDIENCE: z.string().transform(list).optional(),
  AUTH_ALGORITHMS: z.string().transform(list).optional(),
  AUTH_AUDIENCE_CLAIM: claimName.default('aud'),
  AUTH_USER_ID_CLAIM: claimName.default('sub'),
  AUTH_REQUIRED_SCOPE: scopes.optional(),
  AUTH_COOKIE_NAME: z
    .string()
    .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, { message: 'is not a valid cookie name' })
    .optional(),
  USER_ID_HASH_SECRET: atLeastBytes(32).optional(),
  AUTH_MAX_TOKEN_AGE: int(1, 31_536_000).optional(),
  CORS_ORIGINS: z.string().transform(list).pipe(z.array(origin)).default([]),
  ADMIN_API_KEYS: adminKeys.optional(),
  ADMIN_PORT: int(1, 65535).optional(),
  CERTISCAN_BASE_URL: upstreamUrl.default(CERTISCAN_DEFAULT_URL),
  CERTISCAN_AUTH_TOKEN: z
    .string()
    .transform((token) => token.replace(/^Bearer\s+/i, '').trim())
    // One token of visible ASCII: it goes into an Authorization header, and anything else (two
    // lines, a space, non-ASCII) would fail every admin call with a 502 instead of being refused.
    .pipe(
      z
        .string()
        .regex(/^[\x21-\x7E]+$/, { message: 'must be one token of visible ASCII characters' }),
    )
    .optional(),
  UPSTREAM_TIMEOUT_MS: int(100, 120_000).default(5000),
  RATE_LIMIT_PER_MINUTE: int(1, 1_000_000).default(30),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\/\S+$/, { message: 'must be a redis:// or rediss:// URL' })
    .optional(),
  SHUTDOWN_DELAY_MS: int(0, 600_000).default(5000),
  SHUTDOWN_TIMEOUT_MS: int(1000, 600_000).default(15000),
  TRUST_PROXY: trustProxy.default(false),
  MAX_CONNECTIONS: int(1, 1_000_000).optional(),
  LOG_LEVEL: z
    .enum(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(', ')}` })
    .default('info'),
  // OpenTelemetry's own names and meanings (its "Environment Variable Specification").
  // Case-insensitive, as the specification says for its booleans (TRUE, True).
  OTEL_SDK_DISABLED: z
    .string()
    .transform((value) => value.toLowerCase())
    .pipe(z.enum(['true', 'false'], { message: 'must be true or false' }))
    .optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl.optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: collectorUrl.optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol.optional(),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol.optional(),
  OTEL_EXPORTER_OTLP_HEADERS: keyValueList.optional(),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: keyValueList.optional(),
  OTEL_EXPORTER_OTLP_TIMEOUT: int(1, 600_000).default(10_000),
  OTEL_BSP_SCHEDULE_DELAY: int(1, 600_000).default(5000),
  OTEL_SERVICE_NAME: z.string().optional(),
  OTEL_RESOURCE_ATTRIBUTES: keyValueList.optional(),
  OTEL_TRACES_SAMPLER: z
    .enum(TRACES_SAMPLERS, { message: `must be one of ${TRACES_SAMPLERS.join(', ')}` })
    .default('parentbased_always_on'),
  OTEL_TRACES_SAMPLER_ARG: z
    .string()
    .transform(Number)
    .pipe(
      z
        .number({ message: 'must be a number' })
        .min(0, 'must be at least 0')
        .max(1, 'must be at most 1'),
    )
    .optional(),
});

type Fields = z.infer<typeof fields>;

/**
 * The variables that hold secrets: each may instead be given as `X_FILE`, the path of a file that
 * holds the value (`AUTH_<N>_…` stands for a family).
 */
export const SECRET_VARIABLES = [
  'CARDSCAN_API_KEY',
  'CERTISCAN_AUTH_TOKEN',
  'ADMIN_API_KEYS',
  'AUTH_JWT_SECRET',
  'USER_ID_HASH_SECRET',
  'REDIS_URL',
  'AUTH_<N>_JWT_SECRET',
] as const;

/**
 * The credentials read again while the broker runs when they come from a file. The others are read
 * once: the HMAC secrets because changing one would log every user out or give every user a new
 * Cardscan identity, REDIS_URL because the connection is made once.
 */
export const ROTATABLE_VARIABLES = [
  'CARDSCAN_API_KEY',
  'CERTISCAN_AUTH_TOKEN',
  'ADMIN_API_KEYS',
] as const;
export type RotatableVariable = (typeof ROTATABLE_VARIABLES)[number];

/**
 * Every environment variable the configuration reads (`AUTH_<N>_…` stands for a family). The
 * reference in docs/configuration.md and .env.example are checked against it.
 */
export const CONFIG_VARIABLES: readonly string[] = [
  ...Object.keys(fields.shape),
  ...SECRET_VARIABLES.map((name) => `${name}_FILE`),
  ...PROVIDER_VARIABLES,
];

function keyKind(apiKey: string | undefined): 'test' | 'live' | undefined {
  if (apiKey && TEST_KEY.test(apiKey)) return 'test';
  if (apiKey && LIVE_KEY.test(apiKey)) return 'live';
  return undefined;
}

function hostnameOf(url: string | undefined): string | undefined {
  try {
    return url ? new URL(url).hostname.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

/** Rules that tie several variables together; they read the raw values, so they run even when a field failed. */
function crossChecks(env: Record<string, string>, multiProvider: boolean): string[] {
  const problems: string[] = [];
  const kind = keyKind(env.CARDSCAN_API_KEY);
  const host = hostnameOf(env.CARDSCAN_BASE_URL);
  if (kind === 'live' && host === new URL(CARDSCAN_SANDBOX_URL).hostname) {
    problems.push('CARDSCAN_BASE_URL: a live key cannot be used with the sandbox URL');
  }
  if (kind === 'test' && host === new URL(CARDSCAN_LIVE_URL).hostname) {
    problems.push('CARDSCAN_BASE_URL: a test key cannot be used with the live URL');
  }

  const { AUTH_ISSUER: issuer, AUTH_JWKS_URI: jwks, AUTH_JWT_SECRET: secret } = env;
  // With AUTH_PROVIDERS, auth-providers.ts reports every single-provider variable set beside it.
  if (!multiProvider && !issuer && !jwks && !secret) {
    problems.push('AUTH_ISSUER: set exactly one of AUTH_ISSUER, AUTH_JWKS_URI, AUTH_JWT_SECRET');
  } else if (!multiProvider && secret && (issuer || jwks)) {
    problems.push(
      'AUTH_JWT_SECRET: cannot be combined with AUTH_ISSUER or AUTH_JWKS_URI; choose one way to verify tokens',
    );
  }

  if (env.AUTH_AUDIENCE_CLAIM && env.AUTH_AUDIENCE_CLAIM !== 'aud' && !env.AUTH_AUDIENCE) {
    problems.push('AUTH_AUDIENCE_CLAIM: needs AUTH_AUDIENCE, the values that claim must hold');
  }

  if (env.AUTH_ALGORITHMS !== undefined && !multiProvider) {
    const allowed: readonly string[] = secret ? HMAC_ALGORITHMS : KEY_ALGORITHMS;
    const refused = list(env.AUTH_ALGORITHMS).filter((alg) => !allowed.includes(alg));
    if (refused.length > 0 || list(env.AUTH_ALGORITHMS).length === 0) {
      problems.push(
        `AUTH_ALGORITHMS: with ${secret ? 'AUTH_JWT_SECRET' : 'signing keys'} only ${allowed.join(', ')} are allowed` +
          (refused.length > 0 ? ` (refused: ${refused.join(', ')})` : ''),
      );
    }
  }

  if (env.ADMIN_API_KEYS && !env.CERTISCAN_AUTH_TOKEN) {
    problems.push(
      'CERTISCAN_AUTH_TOKEN: is required when ADMIN_API_KEYS turns the admin routes on',
    );
  }
  if (env.ADMIN_PORT && !env.ADMIN_API_KEYS) {
    problems.push(
      'ADMIN_PORT: is set but ADMIN_API_KEYS is not, so there are no admin routes to serve',
    );
  }
  if (env.ADMIN_PORT && env.ADMIN_PORT === (env.PORT ?? '8080')) {
    problems.push('ADMIN_PORT: must differ from PORT');
  }
  const delay = Number(env.SHUTDOWN_DELAY_MS ?? 5000);
  const timeout = Number(env.SHUTDOWN_TIMEOUT_MS ?? 15000);
  if (delay >= timeout) {
    problems.push('SHUTDOWN_TIMEOUT_MS: must be greater than SHUTDOWN_DELAY_MS');
  }
  return problems;
}

/** Tracing is on when a collector is named, unless OTEL_SDK_DISABLED turns it off. */
function tracingOf(f: Fields): TracingConfig | undefined {
  if (f.OTEL_SDK_DISABLED === 'true') return undefined;
  const endpoint =
    f.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
    (f.OTEL_EXPORTER_OTLP_ENDPOINT &&
      `${f.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`);
  if (!endpoint) return undefined;
  return {
    endpoint,
    protocol:
      f.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? f.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf',
    headers: { ...f.OTEL_EXPORTER_OTLP_HEADERS, ...f.OTEL_EXPORTER_OTLP_TRACES_HEADERS },
    exportTimeoutMs: f.OTEL_EXPORTER_OTLP_TIMEOUT,
    scheduleDelayMs: f.OTEL_BSP_SCHEDULE_DELAY,
    resource: {
      ...f.OTEL_RESOURCE_ATTRIBUTES,
      // OTEL_SERVICE_NAME wins over a service.name in OTEL_RESOURCE_ATTRIBUTES, as the spec says.
      'service.name':
        f.OTEL_SERVICE_NAME ?? f.OTEL_RESOURCE_ATTRIBUTES?.['service.name'] ?? 'cardscan-broker',
    },
    sampler: f.OTEL_TRACES_SAMPLER,
    samplerRatio: f.OTEL_TRACES_SAMPLER_ARG ?? 1,
  };
}

/**
 * Collector headers usually hold its API key: over http:// to another host, anyone on the path
 * reads it. Allowed (a collector in the same private network is common) but said at start.
 */
function cleartextHeadersWarning(
  f: Fields,
  tracing: TracingConfig | undefined,
): string | undefined {
  if (!tracing || Object.keys(tracing.headers).length === 0) return undefined;
  const url = new URL(tracing.endpoint);
  if (url.protocol !== 'http:' || isLoopbackHost(url.hostname)) return undefined;
  const endpoint = f.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'
    : 'OTEL_EXPORTER_OTLP_ENDPOINT';
  const headers = (['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS'] as const)
    .filter((name) => f[name] !== undefined)
    .join(' and ');
  return `${endpoint} is an http:// URL to a host other than this one while ${headers} is set: those headers (usually the collector's API key) are sent in cleartext with every export. Use an https:// endpoint, or a collector on loopback.`;
}

function singleProviderAuth(f: Fields): SingleProviderAuth {
  const keys: KeySource = f.AUTH_JWT_SECRET
    ? { kind: 'secret', secret: f.AUTH_JWT_SECRET }
    : f.AUTH_JWKS_URI
      ? { kind: 'jwks', jwksUri: f.AUTH_JWKS_URI }
      : { kind: 'discovery', issuer: f.AUTH_ISSUER ?? '' };
  const defaultAlgorithms: JwtAlgorithm[] =
    keys.kind === 'secret' ? ['HS256'] : ['RS256', 'ES256', 'PS256'];
  return {
    keys,
    issuer: f.AUTH_ISSUER,
    audience: f.AUTH_AUDIENCE ?? [],
    audienceClaim: f.AUTH_AUDIENCE_CLAIM,
    algorithms: (f.AUTH_ALGORITHMS as JwtAlgorithm[] | undefined) ?? defaultAlgorithms,
    userIdClaim: f.AUTH_USER_ID_CLAIM,
    requiredScopes: f.AUTH_REQUIRED_SCOPE ?? [],
    cookieName: f.AUTH_COOKIE_NAME,
    userIdHashSecret: f.USER_ID_HASH_SECRET,
    maxTokenAgeSeconds: f.AUTH_MAX_TOKEN_AGE,
  };
}

function build(
  f: Fields,
  providers: ProviderConfig[] | undefined,
  proxyFromEnvironment: boolean,
  credentialFiles: Record<string, string>,
): Config {
  const keyKindValue = keyKind(f.CARDSCAN_API_KEY) ?? 'test';
  return {
    production: f.NODE_ENV === 'production',
    logLevel: f.LOG_LEVEL,
    server: {
      port: f.PORT,
      host: f.HOST,
      trustProxy: f.TRUST_PROXY,
      shutdownDelayMs: f.SHUTDOWN_DELAY_MS,
      shutdownTimeoutMs: f.SHUTDOWN_TIMEOUT_MS,
      maxConnections: f.MAX_CONNECTIONS,
    },
    cardscan: {
      apiKey: f.CARDSCAN_API_KEY,
      keyKind: keyKindValue,
      baseUrl:
        f.CARDSCAN_BASE_URL ?? (keyKindValue === 'live' ? CARDSCAN_LIVE_URL : CARDSCAN_SANDBOX_URL),
    },
    auth: providers
      ? {
          providers,
          cookieName: f.AUTH_COOKIE_NAME,
          userIdHashSecret: f.USER_ID_HASH_SECRET,
          maxTokenAgeSeconds: f.AUTH_MAX_TOKEN_AGE,
        }
      : singleProviderAuth(f),
    cors: { origins: f.CORS_ORIGINS },
    admin: f.ADMIN_API_KEYS ? { keys: f.ADMIN_API_KEYS, port: f.ADMIN_PORT } : undefined,
    certiscan: { baseUrl: f.CERTISCAN_BASE_URL, authToken: f.CERTISCAN_AUTH_TOKEN },
    upstream: { timeoutMs: f.UPSTREAM_TIMEOUT_MS, proxyFromEnvironment },
    rateLimit: { perMinute: f.RATE_LIMIT_PER_MINUTE, redisUrl: f.REDIS_URL },
    tracing: tracingOf(f),
    credentialFiles,
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Buffer.isBuffer(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

export interface LoadedConfig {
  config: Config;
  /** Things that are allowed but that an operator must hear about at start. */
  warnings: string[];
}

/** Stands in for the value of a secret that has none; its own rules' problems are dropped. */
const UNRESOLVED = 'unresolved-secret';

/** The variables axios (through proxy-from-env) reads to pick a proxy, lower-cased. */
const PROXY_VARIABLES = new Set(['http_proxy', 'https_proxy', 'all_proxy']);

/**
 * Parses the environment once. Empty values count as unset. Throws ConfigError listing every
 * problem, one line each, naming the variable and never echoing a value.
 */
export function loadConfig(rawEnv: Record<string, string | undefined>): LoadedConfig {
  const secrets = resolveSecretFiles(rawEnv, SECRET_VARIABLES);
  const env: Record<string, string> = {};
  for (const name of Object.keys(fields.shape)) {
    const value = secrets.env[name]?.trim();
    if (value) env[name] = value;
  }
  // A secret without a usable value (both X and X_FILE, or an unreadable file) was set all the
  // same: the other rules must not report it missing, and its own have no value to check. Its one
  // problem names X_FILE.
  for (const name of secrets.unresolved) env[name] = UNRESOLVED;

  const parsed = fields.safeParse(env);
  const problems = [...secrets.problems];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const variable = String(issue.path[0]);
      if (secrets.unresolved.has(variable)) continue;
      const from = secrets.files[variable] ? ` (value read from ${variable}_FILE)` : '';
      problems.push(`${variable}: ${issue.message}${from}`);
    }
  }
  // Read from the resolved environment: a provider's secret may come from AUTH_<N>_JWT_SECRET_FILE.
  const { providers, problems: providerProblems } = parseAuthProviders(secrets.env);
  problems.push(...providerProblems);
  problems.push(...crossChecks(env, providers !== undefined));
  if (!parsed.success || problems.length > 0) {
    throw new ConfigError([...new Set(problems)]);
  }

  const proxyFromEnvironment = Object.keys(rawEnv).some(
    (name) => PROXY_VARIABLES.has(name.toLowerCase()) && Boolean(rawEnv[name]),
  );
  const config = build(parsed.data, providers, proxyFromEnvironment, secrets.files);
  const warnings: string[] = [];
  if (config.auth.audience?.length === 0) {
    warnings.push(
      'AUTH_AUDIENCE is not set: tokens minted for any other application of the same identity provider (or signed with the same secret) are accepted. Set it to the audience your app requests.',
    );
  }
  if (config.auth.keys?.kind === 'jwks' && !config.auth.issuer) {
    warnings.push(
      'AUTH_JWKS_URI without AUTH_ISSUER: tokens of every issuer that shares those keys (e.g. other tenants of a multi-tenant provider) are accepted. Set AUTH_ISSUER.',
    );
  }
  const userIdClaims: [variable: string, claim: string][] = config.auth.providers
    ? config.auth.providers.map((p) => [
        `AUTH_${p.name.toUpperCase()}_USER_ID_CLAIM`,
        p.userIdClaim,
      ])
    : [['AUTH_USER_ID_CLAIM', config.auth.userIdClaim]];
  for (const [variable, claim] of userIdClaims) {
    const claimWarning = userIdClaimWarning(variable, claim);
    if (claimWarning) warnings.push(claimWarning);
  }
  const cookieWarning =
    config.auth.cookieName && cookieNameWarning('AUTH_COOKIE_NAME', config.auth.cookieName);
  if (cookieWarning) warnings.push(cookieWarning);
  const headersWarning = cleartextHeadersWarning(parsed.data, config.tracing);
  if (headersWarning) warnings.push(headersWarning);
  if (config.production && config.cardscan.keyKind === 'test') {
    warnings.push(
      'CARDSCAN_API_KEY is a TEST key while NODE_ENV=production: the Cardscan sandbox returns demo data and is NOT HIPAA compliant. Never send real patient cards (PHI) through it.',
    );
  }
  return { config: deepFreeze(config), warnings };
}

/** A rotatable credential's value once parsed: what the running broker holds. */
export interface RotatedValues {
  CARDSCAN_API_KEY: string;
  CERTISCAN_AUTH_TOKEN: string;
  ADMIN_API_KEYS: AdminKey[];
}

export type RotatedCredential<V extends RotatableVariable> =
  { ok: true; value: RotatedValues[V] } | { ok: false; problems: string[] };

/**
 * Checks a credential read again from its file with the schema's own rules, as at start, and with
 * the one rule a running broker adds: the Cardscan key keeps its mode (test or live), since the
 * base URL and the sandbox warning were settled at start. Problems name the variable, never a value.
 */
export function parseRotatedCredential<V extends RotatableVariable>(
  config: Config,
  variable: V,
  value: string,
): RotatedCredential<V> {
  const trimmed = value.trim();
  if (!trimmed) return { ok: false, problems: [`${variable}: is empty`] };
  const parsed = fields.shape[variable].safeParse(trimmed);
  if (!parsed.success) {
    return {
      ok: false,
      problems: [...new Set(parsed.error.issues.map((issue) => `${variable}: ${issue.message}`))],
    };
  }
  if (variable === 'CARDSCAN_API_KEY' && keyKind(trimmed) !== config.cardscan.keyKind) {
    return {
      ok: false,
      problems: [
        `CARDSCAN_API_KEY: a ${keyKind(trimmed)} key cannot replace the ${config.cardscan.keyKind} key the broker started with (its base URL is for ${config.cardscan.keyKind} keys); restart to change modes`,
      ],
    };
  }
  return { ok: true, value: parsed.data as RotatedValues[V] };
}

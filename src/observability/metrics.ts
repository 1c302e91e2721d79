import type { RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { UpstreamName } from '../errors';

/** How an upstream call ended; a small fixed set, so it is safe as a label. */
const UPSTREAM_OUTCOMES = [
  'success',
  'rejected',
  'credentials',
  'bad-response',
  'timeout',
  'unreachable',
  'circuit-open',
] as const;
export type UpstreamOutcome = (typeof UPSTREAM_OUTCOMES)[number];
const UPSTREAMS: readonly UpstreamName[] = ['cardscan', 'certiscan'];

/** Why a login was refused; a small fixed set, so it is safe as a label. */
export type LoginRefusal =
  | 'no_token'
  | 'forbidden'
  | 'malformed'
  | 'unknown_issuer'
  | 'issuer'
  | 'audience'
  | 'algorithm'
  | 'signature'
  | 'expired'
  | 'not_yet_valid'
  | 'claims'
  | 'scope'
  | 'keys_unavailable'
  | 'invalid_token';

export type CircuitState = 'closed' | 'open' | 'half-open';
const CIRCUIT_STATES: readonly CircuitState[] = ['closed', 'open', 'half-open'];

export interface Metrics {
  registry: Registry;
  /** Counts and times every request by route template (never the raw path) and status. */
  httpMiddleware: RequestHandler;
  observeUpstream(upstream: UpstreamName, outcome: UpstreamOutcome, seconds: number): void;
  /** One series per state, 1 for the current one: `upstream_circuit_state{state="open"} == 1` alerts. */
  setCircuitState(upstream: UpstreamName, state: CircuitState): void;
  /** A rate-limit store (Redis) call failed and the request was served without the limit. */
  countRateLimitStoreError(): void;
  /**
   * Reports `signing_keys_available` from `hasKeys` at each scrape (0 until it is given): a
   * replica without keys answers 503 to every login, and /readyz alone only hides it from traffic.
   */
  watchSigningKeys(hasKeys: () => boolean): void;
  /** A credential file was read again with a new value; `by` 0 only creates the series. */
  countCredentialReload(variable: string, outcome: CredentialReloadOutcome, by?: number): void;
  /** When the credential in use was loaded, in ms since the epoch. */
  setCredentialLoaded(variable: string, atMs: number): void;
  /** The counter of one provider's accepted logins, bound once at start. */
  acceptedLogins(provider: string): () => void;
  /** A login refused, by provider (`unknown` before one was chosen) and reason; never a user id. */
  countRefusedLogin(provider: string, reason: LoginRefusal): void;
}

export type CredentialReloadOutcome = 'applied' | 'refused';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One registry per app, so tests can build several apps in one process. */
export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry });

  const httpRequests = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP requests served, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const upstreamCalls = new Histogram({
    name: 'upstream_request_duration_seconds',
    help: 'Upstream calls (retries included), by upstream and outcome',
    labelNames: ['upstream', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  // Every series exists at 0 from the start: prom-client exports a labelled series only after its
  // first observation, and increase() over a series that appears with 1 sees no increase, so the
  // first refusal (the "credentials refused" alerts) would never fire. 2 × 7 series, once.
  for (const upstream of UPSTREAMS) {
    for (const outcome of UPSTREAM_OUTCOMES) upstreamCalls.zero({ upstream, outcome });
  }

  const circuitState = new Gauge({
    name: 'upstream_circuit_state',
    help: 'Circuit breaker state per upstream: 1 for the current state, 0 for the others',
    labelNames: ['upstream', 'state'] as const,
    registers: [registry],
  });
  const rateLimitStoreErrors = new Counter({
    name: 'rate_limit_store_errors_total',
    help: 'Rate-limit store (Redis) failures; each such request was served without the limit',
    registers: [registry],
  });

  // Read when scraped, not set on each key fetch: the store need not know about metrics.
  let hasSigningKeys = () => false;
  new Gauge({
    name: 'signing_keys_available',
    help: 'Whether the broker holds a key that verifies logins: 1 yes, 0 not yet (every login answers 503)',
    registers: [registry],
    collect() {
      this.set(hasSigningKeys() ? 1 : 0);
    },
  });
  const credentialReloads = new Counter({
    name: 'credential_reloads_total',
    help: 'Credentials read again from their file with a new value, by variable and outcome (applied, or refused and the old one kept)',
    labelNames: ['variable', 'outcome'] as const,
    registers: [registry],
  });
  const credentialLoaded = new Gauge({
    name: 'credential_loaded_timestamp_seconds',
    help: 'When the credential in use was loaded (at start or by a rotation), in seconds since the epoch',
    labelNames: ['variable'] as const,
    registers: [registry],
  });
  const loginsAccepted = new Counter({
    name: 'auth_logins_accepted_total',
    help: 'End-user logins accepted, by identity provider (default in single-provider mode)',
    labelNames: ['provider'] as const,
    registers: [registry],
  });
  const loginsRefused = new Counter({
    name: 'auth_logins_refused_total',
    help: 'End-user logins refused, by identity provider (unknown before one was chosen) and reason',
    labelNames: ['provider', 'reason'] as const,
    registers: [registry],
  });

  const httpMiddleware: RequestHandler = (req, res, next) => {
    const start = process.hrtime.bigint();
    res.once('finish', () => {
      const route = req.route ? req.baseUrl + String(req.route.path) : 'unmatched';
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      httpRequests.observe({ method: req.method, route, status: String(res.statusCode) }, seconds);
    });
    next();
  };

  return {
    registry,
    httpMiddleware,
    observeUpstream(upstream, outcome, seconds) {
      upstreamCalls.observe({ upstream, outcome }, seconds);
    },
    setCircuitState(upstream, state) {
      for (const each of CIRCUIT_STATES) {
        circuitState.set({ upstream, state: each }, each === state ? 1 : 0);
      }
    },
    countRateLimitStoreError() {
      rateLimitStoreErrors.inc();
    },
    watchSigningKeys(hasKeys) {
      hasSigningKeys = hasKeys;
    },
    countCredentialReload(variable, outcome, by = 1) {
      credentialReloads.inc({ variable, outcome }, by);
    },
    setCredentialLoaded(variable, atMs) {
      credentialLoaded.set({ variable }, atMs / 1000);
    },
    acceptedLogins(provider) {
      const child = loginsAccepted.labels({ provider });
      // Present at 0 from the start, so a rate() over a provider nobody used yet is 0, not absent.
      child.inc(0);
      return () => child.inc();
    },
    countRefusedLogin(provider, reason) {
      loginsRefused.inc({ provider, reason });
    },
  };
}

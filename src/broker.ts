import type { Express } from 'express';
import { createApp, type Routes } from './app';
import type { Config } from './config/config';
import { createAuthenticator } from './auth/authenticator';
import {
  createCredentials,
  createCredentialWatcher,
  type Credentials,
} from './config/credential-watcher';
import type { ListenerSpec } from './http/lifecycle';
import type { Logger } from './observability/logger';
import { createMetrics, type Metrics } from './observability/metrics';
import { startTracing, type Tracing } from './observability/tracing';
import { createUserRateLimit } from './limits/rate-limit';
import { createRedisRateLimitStore } from './limits/redis-store';
import { createProviders, type Providers } from './auth/providers';
import { adminRoutes } from './routes/admin';
import { sessionRoutes } from './routes/session';
import { createCardscanClient } from './upstream/cardscan';
import {
  CERTISCAN_PASS_THROUGH_STATUSES,
  createCertiscanClient,
  type CertiscanClient,
} from './upstream/certiscan';
import type { BreakerSettings } from './upstream/circuit-breaker';
import { createUpstreamClient } from './upstream/upstream-client';

export interface Broker {
  /** The public listener's app. */
  app: Express;
  /** What to listen on: the public app, and the admin app when it has a port of its own. */
  listeners: ListenerSpec[];
  /**
   * Closes upstream connections and sends the spans still pending, giving up on those after
   * `timeoutMs` (default 1000); call after the listeners stopped.
   */
  close(timeoutMs?: number): Promise<void>;
  /** Every provider's signing keys: warmUp fetches them all, hasKeys is true while one can verify. */
  keys: Pick<Providers, 'warmUp' | 'hasKeys'>;
  metrics: Metrics;
  /** Turns /readyz to 503 for the drain; requests are still served. */
  startDraining(): void;
  /**
   * Reads the rotatable credential files again at once (SIGHUP); false when no credential comes
   * from a file.
   */
  reloadCredentials(): Promise<boolean>;
}

export interface BrokerOptions {
  logger: Logger;
  /** Process-wide metrics (CPU, memory, event loop); off in tests that build many brokers. */
  defaultMetrics?: boolean;
  /** Circuit breaker numbers for the upstream clients; tests shrink them. Defaults: the contract. */
  breaker?: Partial<BreakerSettings>;
  /** The clock of the signing-key and verified-token caches; tests move it instead of waiting. */
  now?: () => number;
}

interface AdminParts {
  routes: Routes;
  certiscan: CertiscanClient;
}

/** The admin routes and its CertiScan client, or undefined when ADMIN_API_KEYS is unset. */
function createAdmin(
  config: Config,
  credentials: Credentials,
  metrics: Metrics,
  logger: Logger,
  breaker: Partial<BreakerSettings> | undefined,
  tracing: Tracing | undefined,
): AdminParts | undefined {
  const { adminKeys, certiscan: credential } = credentials;
  if (!adminKeys) return undefined;
  // loadConfig already refuses admin without a token; this keeps the types honest.
  if (!credential) throw new Error('admin routes are on but CERTISCAN_AUTH_TOKEN is not set');
  const certiscan = createCertiscanClient(
    createUpstreamClient({
      name: 'certiscan',
      label: 'CertiScan',
      baseUrl: config.certiscan.baseUrl,
      credential,
      timeoutMs: config.upstream.timeoutMs,
      proxyFromEnvironment: config.upstream.proxyFromEnvironment,
      passThroughStatuses: CERTISCAN_PASS_THROUGH_STATUSES,
      breaker,
      metrics,
      logger,
      tracing,
    }),
  );
  return {
    routes: adminRoutes({ keys: adminKeys, certiscan, logger }),
    certiscan,
  };
}

/** How long `close` waits for pending spans by default. */
const SPAN_FLUSH_TIMEOUT_MS = 1000;

/** Wires every part from the config: the one place that knows which concrete pieces are used. */
export function createBroker(config: Config, options: BrokerOptions): Broker {
  // Decided once here: with tracing off every part gets `undefined` and makes no span call.
  const tracing = config.tracing ? startTracing(config.tracing, options.logger) : undefined;
  const logger = tracing ? tracing.withTraceIds(options.logger) : options.logger;
  const metrics = createMetrics({ defaultMetrics: options.defaultMetrics });
  const credentials = createCredentials(config, metrics);
  const credentialWatcher = createCredentialWatcher(config, credentials, { logger, metrics });
  const providers = createProviders(config.auth, {
    fetchTimeoutMs: config.upstream.timeoutMs,
    logger,
    now: options.now,
  });
  metrics.watchSigningKeys(() => providers.hasKeys());
  const cardscan = createCardscanClient(
    createUpstreamClient({
      name: 'cardscan',
      label: 'Cardscan',
      baseUrl: config.cardscan.baseUrl,
      credential: credentials.cardscan,
      timeoutMs: config.upstream.timeoutMs,
      proxyFromEnvironment: config.upstream.proxyFromEnvironment,
      breaker: options.breaker,
      metrics,
      logger,
      tracing,
    }),
  );
  const redis = config.rateLimit.redisUrl
    ? createRedisRateLimitStore({ url: config.rateLimit.redisUrl, logger, metrics })
    : undefined;

  let draining = false;
  const notReadyReason = (): string | undefined => {
    if (draining) return 'shutting down';
    if (providers.single) {
      const { keys } = providers.single;
      if (!keys.hasKeys()) {
        // The probe retries the fetch (at most once per 30 s): a replica that started during an
        // identity-provider outage gets no traffic to trigger it and would never become ready.
        void keys.warmUp();
        return 'no signing keys fetched yet';
      }
      return undefined;
    }
    const unavailable = providers.unavailable();
    // One provider's outage must not take the others' users off this replica.
    return unavailable.length === providers.all.length
      ? `no identity provider can verify logins yet: ${unavailable.join(', ')}`
      : undefined;
  };
  // Several providers: /readyz names those that cannot verify while the others keep it ready.
  const unavailableProviders = providers.single ? undefined : () => providers.unavailable();

  const session = sessionRoutes({
    authenticate: createAuthenticator({
      cookieName: config.auth.cookieName,
      allowedOrigins: config.cors.origins,
      maxTokenAgeSeconds: config.auth.maxTokenAgeSeconds,
      providers,
      logger,
      metrics,
      tracing,
      now: options.now,
    }).authenticate,
    rateLimit: createUserRateLimit({
      perMinute: config.rateLimit.perMinute,
      store: redis?.store,
      logger,
    }),
    cardscan,
  });

  const admin = createAdmin(config, credentials, metrics, logger, options.breaker, tracing);
  // With ADMIN_PORT the admin routes (and /metrics) get a listener of their own and the public one
  // never has them.
  const adminPort = config.admin?.port;
  const adminOnPublic = admin !== undefined && adminPort === undefined;
  const app = createApp({
    config,
    logger,
    metrics,
    notReadyReason,
    unavailableProviders,
    routes: adminOnPublic ? [session, admin.routes] : [session],
    adminRoutes: adminOnPublic,
    // Ops data (Node version, routes, breaker states) stays off the public port when there is another.
    metricsRoute: adminPort === undefined,
    tracing,
  });
  const limits = { maxConnections: config.server.maxConnections };
  const listeners: ListenerSpec[] = [
    { name: 'public', app, port: config.server.port, host: config.server.host, limits },
  ];
  if (admin && adminPort !== undefined) {
    const adminApp = createApp({
      config,
      logger,
      metrics,
      notReadyReason,
      unavailableProviders,
      routes: [admin.routes],
      adminRoutes: true,
      tracing,
    });
    listeners.push({
      name: 'admin',
      app: adminApp,
      port: adminPort,
      host: config.server.host,
      limits,
    });
  }
  return {
    app,
    listeners,
    close: async (timeoutMs = SPAN_FLUSH_TIMEOUT_MS) => {
      credentialWatcher?.close();
      cardscan.close();
      admin?.certiscan.close();
      await Promise.all([redis?.close(), tracing?.shutdown(timeoutMs)]);
    },
    keys: providers,
    metrics,
    startDraining: () => {
      draining = true;
    },
    reloadCredentials: async () => {
      await credentialWatcher?.reload('SIGHUP');
      return credentialWatcher !== undefined;
    },
  };
}

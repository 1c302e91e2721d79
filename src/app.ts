import cors from 'cors';
import express, { type Express, type IRouter, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { Config } from './config/config';
import { ForbiddenError } from './errors';
import type { Logger } from './observability/logger';
import type { Metrics } from './observability/metrics';
import { headersSetBy, setFixedHeaders } from './http/fixed-headers';
import { createProblemHandler, notFound } from './http/problems';
import { createRequestLog } from './observability/request-log';
import type { Tracing } from './observability/tracing';
import { opsRoutes } from './routes/ops';

/**
 * helmet's defaults are a policy for web pages (scripts, styles, fonts and images from 'self').
 * The broker serves only JSON, so nothing may load from it and no page may frame it (OWASP's REST
 * cheat sheet asks for `frame-ancestors 'none'`; `default-src 'none'` is stricter still). helmet's
 * other headers stay as they are.
 */
const API_HEADERS = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
  },
  xFrameOptions: { action: 'deny' },
} as const;

/** Paths a load balancer or scraper polls; logging each would bury the real traffic. */
const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * A feature's routes, registered on the app's own router. A nested express.Router would give every
 * request another dispatch pass (its own `next` loop, URL parse and state restore): 17–41 µs of CPU
 * per request in an A/B of a bare Express 5 app on the bench machine.
 */
export type Routes = (router: IRouter) => void;

export interface AppDeps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  /** Why the broker cannot serve right now, or undefined when it can. */
  notReadyReason: () => string | undefined;
  /** Several identity providers: the names of those that cannot verify logins now. */
  unavailableProviders?: () => string[];
  /** The features this listener serves (session, admin), registered after the shared middleware. */
  routes: Routes[];
  /** Whether one of them is the admin routes, so /openapi.json describes them. Default false. */
  adminRoutes?: boolean;
  /** Whether this listener serves /metrics. Default true. */
  metricsRoute?: boolean;
  /** Present only when tracing is on; without it no tracing middleware is registered at all. */
  tracing?: Tracing;
}

/**
 * Browsers send Origin; apps and curl do not. An origin outside the allowlist is refused outright.
 * Without an Origin, cors sets the same few headers on every request, so those are fixed at start.
 */
function createCors(origins: string[]): RequestHandler {
  const allowed = new Set(origins);
  const corsHeaders = cors({
    origin: origins,
    methods: ['GET', 'POST'],
    allowedHeaders: ['Authorization', 'Content-Type', 'X-Request-Id'],
    exposedHeaders: ['X-Request-Id', 'Retry-After', 'WWW-Authenticate'],
    credentials: true,
    maxAge: 600,
  });
  const withoutOrigin = setFixedHeaders(headersSetBy(corsHeaders, { method: 'GET', headers: {} }));
  return (req, res, next) => {
    const origin = req.headers.origin;
    if (origin === undefined && req.method !== 'OPTIONS') return withoutOrigin(req, res, next);
    if (origin !== undefined && !allowed.has(origin)) {
      return next(new ForbiddenError('this origin is not allowed; add it to CORS_ORIGINS'));
    }
    corsHeaders(req, res, next);
  };
}

/** Builds one listener's app: no listen, no environment, no side effects. */
export function createApp(deps: AppDeps): Express {
  const { config, logger, metrics } = deps;
  const app = express();
  app.disable('x-powered-by');
  // Express's fallback handler shows stack traces unless env is production; ours answers first,
  // but if it ever cannot, no stack may reach a client.
  app.set('env', 'production');
  app.set('etag', false);
  app.set('trust proxy', config.server.trustProxy);

  // First, so that every line logged while serving the request (the request log's own included)
  // runs inside its span and carries its ids.
  if (deps.tracing) app.use(deps.tracing.serverSpans);
  app.use(createRequestLog(logger, QUIET_PATHS));
  app.use(metrics.httpMiddleware);
  // helmet's headers depend only on its options: worked out once here, not on every request.
  app.use(setFixedHeaders(headersSetBy(helmet(API_HEADERS), { method: 'GET', headers: {} })));
  app.use(createCors(config.cors.origins));

  // Feature routes first: a session request, the bulk of the traffic, then never walks the ops
  // routes. Paths do not overlap, so the order changes nothing else.
  for (const routes of deps.routes) routes(app);
  opsRoutes({
    metrics,
    notReadyReason: deps.notReadyReason,
    unavailableProviders: deps.unavailableProviders,
    adminRoutes: deps.adminRoutes,
    metricsRoute: deps.metricsRoute,
  })(app);

  app.use(notFound);
  if (deps.tracing) app.use(deps.tracing.outcomes);
  app.use(createProblemHandler(logger));
  return app;
}

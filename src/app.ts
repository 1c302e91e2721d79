import cors from 'cors';
import express, { type Express, type RequestHandler, type Router } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import type { Config } from './config';
import { ForbiddenError } from './errors';
import type { Logger } from './http/logger';
import type { Metrics } from './http/metrics';
import { createProblemHandler, notFound } from './http/problems';
import { requestIdOf } from './http/request-id';
import { createOpsRouter } from './routes/ops';

/** Paths a load balancer or scraper polls; logging each would bury the real traffic. */
const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

export interface AppDeps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  /** Why the broker cannot serve right now, or undefined when it can. */
  notReadyReason: () => string | undefined;
  /** The feature routers this listener serves (session, admin), mounted after the shared middleware. */
  routers: Router[];
  /** Whether one of the routers is the admin router, so /openapi.json describes it. Default false. */
  adminRoutes?: boolean;
}

/** Browsers send Origin; apps and curl do not. An origin outside the allowlist is refused outright. */
function createCors(origins: string[]): RequestHandler[] {
  const allowed = new Set(origins);
  const refuseForeignOrigin: RequestHandler = (req, _res, next) => {
    const origin = req.headers.origin;
    if (origin !== undefined && !allowed.has(origin)) {
      return next(new ForbiddenError('this origin is not allowed; add it to CORS_ORIGINS'));
    }
    next();
  };
  return [
    refuseForeignOrigin,
    cors({
      origin: origins,
      methods: ['GET', 'POST'],
      allowedHeaders: ['Authorization', 'Content-Type', 'X-Request-Id'],
      exposedHeaders: ['X-Request-Id', 'Retry-After', 'WWW-Authenticate'],
      credentials: true,
      maxAge: 600,
    }),
  ];
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

  app.use(
    pinoHttp({
      logger,
      genReqId: (req, res) => {
        const id = requestIdOf(req);
        res.setHeader('X-Request-Id', id);
        return id;
      },
      autoLogging: { ignore: (req) => QUIET_PATHS.has(req.url?.split('?')[0] ?? '') },
      customLogLevel: (_req, res, error) => (error || res.statusCode >= 500 ? 'error' : 'info'),
      // Only what an operator needs; headers and query strings may hold tokens.
      serializers: {
        req: (req: { id: unknown; method: string; url: string }) => ({
          id: req.id,
          method: req.method,
          path: req.url.split('?')[0],
        }),
        res: (res: { statusCode: number }) => ({ status: res.statusCode }),
        // No stack traces in logs: the request id and the message find the cause.
        err: (err: { type?: string; message?: string }) => ({
          type: err.type,
          message: err.message,
        }),
      },
    }),
  );
  app.use(metrics.httpMiddleware);
  app.use(helmet());
  app.use(createCors(config.cors.origins));
  app.use(express.json({ limit: '100kb' }));

  app.use(
    createOpsRouter({
      metrics,
      notReadyReason: deps.notReadyReason,
      adminRoutes: deps.adminRoutes,
    }),
  );
  for (const router of deps.routers) app.use(router);

  app.use(notFound);
  app.use(createProblemHandler(logger));
  return app;
}

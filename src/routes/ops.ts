import { ServiceUnavailableError } from '../errors';
import type { Metrics } from '../observability/metrics';
import type { Routes } from '../app';
import { openApiDocumentFor } from './openapi';

export interface OpsRouteDeps {
  metrics: Metrics;
  /** Why the broker cannot serve right now, or undefined when it can. */
  notReadyReason: () => string | undefined;
  /** Several identity providers: the names of those that cannot verify logins now. */
  unavailableProviders?: () => string[];
  /** Whether this listener serves the admin routes, so /openapi.json describes them. Default false. */
  adminRoutes?: boolean;
  /**
   * Whether this listener serves /metrics. Default true. With ADMIN_PORT only the admin listener
   * does: the metrics tell anyone the Node version, the routes and each upstream's breaker state.
   */
  metricsRoute?: boolean;
}

export function opsRoutes(deps: OpsRouteDeps): Routes {
  const metricsRoute = deps.metricsRoute ?? true;
  const document = openApiDocumentFor({ admin: deps.adminRoutes ?? false, metrics: metricsRoute });
  return (router) => {
    router.get('/healthz', (_req, res) => {
      res.set('Cache-Control', 'no-store').json({ status: 'ok' });
    });
    router.get('/readyz', (_req, res) => {
      const reason = deps.notReadyReason();
      if (reason) throw new ServiceUnavailableError(`not ready: ${reason}`, 5);
      const unavailable = deps.unavailableProviders?.() ?? [];
      res
        .set('Cache-Control', 'no-store')
        .json(
          unavailable.length > 0
            ? { status: 'ready', unavailable_providers: unavailable }
            : { status: 'ready' },
        );
    });
    if (metricsRoute) {
      router.get('/metrics', async (_req, res) => {
        res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
      });
    }
    router.get('/openapi.json', (_req, res) => {
      res.json(document);
    });
  };
}

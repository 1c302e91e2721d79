import type { RequestHandler } from 'express';
import type { Logger } from './logger';
import { requestIdOf } from '../http/request-id';

declare module 'http' {
  interface IncomingMessage {
    /** This request's id, set by the request log: the caller's sane X-Request-Id or a fresh UUID. */
    id: string;
  }
}

/**
 * Gives every request its id (`req.id`, the X-Request-Id response header) and writes one line when
 * it ends: id, method, path (never the query string or headers, which may hold tokens), status and
 * time. One plain log call per request: no child logger and no serializers per request, which is
 * most of what a general-purpose HTTP logger costs on this hot path.
 */
export function createRequestLog(logger: Logger, quietPaths: ReadonlySet<string>): RequestHandler {
  // The line has a fixed shape built here from scalars, none under a redacted key, so redaction
  // can never change it; pino would still run its redactor (which re-parses every path) on each
  // of its keys. Every other log line keeps the parent's redaction.
  const log = logger.child({}, { redact: { paths: [] } });
  return (req, res, next) => {
    const id = requestIdOf(req);
    req.id = id;
    res.setHeader('X-Request-Id', id);

    const queryAt = req.url.indexOf('?');
    const path = queryAt === -1 ? req.url : req.url.slice(0, queryAt);
    if (!quietPaths.has(path)) {
      const method = req.method;
      const started = performance.now();
      // 'close' always comes, after 'finish' when the answer was sent and alone when the client left.
      res.once('close', () => {
        const status = res.statusCode;
        const line = {
          req: { id, method, path },
          res: { status },
          responseTime: Math.round(performance.now() - started),
        };
        if (status >= 500) log.error(line, 'request errored');
        else if (res.writableEnded && !req.readableAborted) log.info(line, 'request completed');
        else log.info(line, 'request aborted');
      });
    }
    next();
  };
}

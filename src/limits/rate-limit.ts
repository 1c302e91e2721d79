import type { Request, RequestHandler } from 'express';
import {
  rateLimit,
  type Logger as LimiterLogger,
  type RateLimitInfo,
  type Store,
} from 'express-rate-limit';
import { RateLimitedError } from '../errors';
import { userIdOf } from '../auth/authenticator';
import type { Logger } from '../observability/logger';

const WINDOW_MS = 60_000;

export interface UserRateLimitOptions {
  perMinute: number;
  /** A shared store (Redis) for several replicas; each replica counts alone without one. */
  store?: Store;
  logger: Logger;
}

/**
 * express-rate-limit logs to the console by default, and a store failure once per request. The
 * store counts and logs its own failures once per outage, so those lines go to debug here.
 */
function limiterLogger(logger: Logger): LimiterLogger {
  const reason = (error: unknown) => (error instanceof Error ? error.message : 'unknown');
  return {
    warn: (error, message) => logger.warn({ reason: reason(error) }, message ?? 'rate limiter'),
    error: (error, message) => {
      const level = message?.includes('store') ? 'debug' : 'error';
      logger[level]({ reason: reason(error) }, message ?? 'rate limiter');
    },
  };
}

/** Per verified user, so it must run after authentication. */
export function createUserRateLimit(options: UserRateLimitOptions): RequestHandler {
  return rateLimit({
    windowMs: WINDOW_MS,
    limit: options.perMinute,
    store: options.store,
    // A store that fails (Redis unreachable) lets the request through: fail open.
    passOnStoreError: true,
    logger: limiterLogger(options.logger),
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    keyGenerator: (_req, res) => `session:${userIdOf(res)}`,
    handler: (req, _res, next) => {
      const info = (req as Request & { rateLimit?: RateLimitInfo }).rateLimit;
      const retryAfterMs = info?.resetTime ? info.resetTime.getTime() - Date.now() : WINDOW_MS;
      next(
        new RateLimitedError(
          `at most ${options.perMinute} session requests per minute for one user`,
          retryAfterMs / 1000,
        ),
      );
    },
  });
}

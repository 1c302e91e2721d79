import type { Request, RequestHandler } from 'express';
import { rateLimit, type RateLimitInfo, type Store } from 'express-rate-limit';
import { RateLimitedError } from '../errors';
import { userIdOf } from './auth';

const WINDOW_MS = 60_000;

export interface UserRateLimitOptions {
  perMinute: number;
  /** A shared store (Redis) for several replicas; each replica counts alone without one. */
  store?: Store;
}

/** Per verified user, so it must run after authentication. */
export function createUserRateLimit(options: UserRateLimitOptions): RequestHandler {
  return rateLimit({
    windowMs: WINDOW_MS,
    limit: options.perMinute,
    store: options.store,
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

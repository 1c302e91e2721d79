import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import type { AdminKey } from '../config/config';
import { AuthenticationError } from '../errors';
import { auditHead } from '../observability/audit';
import type { Logger } from '../observability/logger';

/** Admin keys are short random strings; anything longer is refused before it is hashed. */
const MAX_KEY_LENGTH = 512;
const BEARER = /^Bearer +(\S+) *$/i;

const ACTOR = Symbol('adminActor');

/** The name of the admin key the caller presented. Only valid after `authenticateAdmin` ran. */
export function adminActorOf(res: Response): string {
  const actor = (res.locals as Record<symbol, string | undefined>)[ACTOR];
  if (!actor) throw new Error('adminActorOf called before the admin authenticator');
  return actor;
}

/** The admin keys in use; ADMIN_API_KEYS_FILE may replace them while the broker runs. */
export interface AdminKeys {
  readonly current: readonly AdminKey[];
}

/**
 * `Authorization: Bearer <admin key>`: the key is hashed and compared with every configured hash
 * in constant time, all of them every time, so neither the answer time nor the order of
 * ADMIN_API_KEYS tells a caller how close a guess came. The keys are read per request, so a key
 * removed by a rotation stops working at the next one.
 */
export function createAdminAuthenticator(keys: AdminKeys, logger: Logger): RequestHandler {
  /** Refused attempts are audited too: someone guessing admin keys must show up in the audit trail. */
  const refuse = (req: Request, error: AuthenticationError): AuthenticationError => {
    logger.warn(
      {
        ...auditHead(req, null),
        action: 'admin.authenticate',
        method: req.method,
        path: (req.baseUrl + req.path).slice(0, 256),
        outcome: error.bearerError ?? 'no_credentials',
        status: 401,
      },
      'audit: admin authentication refused',
    );
    return error;
  };

  return (req, res, next) => {
    const header = req.headers.authorization;
    if (header === undefined) {
      throw refuse(
        req,
        new AuthenticationError('send an admin key: Authorization: Bearer <admin key>'),
      );
    }
    const key = BEARER.exec(header)?.[1];
    if (!key || key.length > MAX_KEY_LENGTH) {
      throw refuse(
        req,
        new AuthenticationError(
          'the Authorization header must be "Bearer <admin key>"',
          'invalid_request',
        ),
      );
    }
    const presented = createHash('sha256').update(key, 'utf8').digest();
    let actor: string | undefined;
    for (const candidate of keys.current) {
      const matches = timingSafeEqual(presented, candidate.sha256);
      if (matches && actor === undefined) actor = candidate.name;
    }
    if (actor === undefined) {
      throw refuse(req, new AuthenticationError('the admin key is not valid', 'invalid_token'));
    }
    (res.locals as Record<symbol, string>)[ACTOR] = actor;
    next();
  };
}

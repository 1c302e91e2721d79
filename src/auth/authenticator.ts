import { createHmac } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { expressjwt, UnauthorizedError as JwtLibraryError } from 'express-jwt';
import jwt, { type JwtPayload } from 'jsonwebtoken';
import type { AuthConfig } from '../config/config';
import { AppError, AuthenticationError } from '../errors';
import type { SigningKeyStore } from './signing-keys';
import { checkCookieRequest } from './cookie-rules';
import { checkCritical, checkTimeClaims, type TimeRules } from './token-rules';
import { checkEmailVerified, checkUserIdForm } from './user-id';

/** Clock skew tolerated on `exp` and `nbf`, in seconds. */
export const CLOCK_TOLERANCE_SECONDS = 30;
/** Real ID and access tokens are a few kB; anything longer is refused before it is parsed. */
export const MAX_TOKEN_LENGTH = 8192;
const MAX_USER_ID_LENGTH = 256;
const BEARER = /^Bearer +([A-Za-z0-9._~+/=-]+) *$/i;

/** Every value of the named cookie: a name sent twice is a sign of cookie tossing. */
function cookieValues(header: string | undefined, name: string): string[] {
  const values: string[] = [];
  for (const part of header?.split(';') ?? []) {
    const index = part.indexOf('=');
    if (index > 0 && part.slice(0, index).trim() === name) {
      try {
        values.push(decodeURIComponent(part.slice(index + 1).trim()));
      } catch {
        values.push('');
      }
    }
  }
  return values;
}

function tokenFromCookie(
  req: Request,
  cookieName: string,
  allowedOrigins: ReadonlySet<string>,
): string | undefined {
  const values = cookieValues(req.headers.cookie, cookieName);
  if (values.length === 0) return undefined;
  // Another site (e.g. a sibling subdomain) may plant a second cookie of the same name, hoping
  // the victim's card lands in the attacker's Cardscan identity: refuse the ambiguity.
  if (values.length > 1) {
    throw new AuthenticationError(
      `the ${cookieName} cookie is sent more than once`,
      'invalid_request',
    );
  }
  checkCookieRequest(req.headers, allowedOrigins);
  return values[0];
}

function tokenFrom(
  req: Request,
  cookieName: string | undefined,
  allowedOrigins: ReadonlySet<string>,
): string {
  const header = req.headers.authorization;
  let token: string | undefined;
  if (header !== undefined) {
    token = BEARER.exec(header)?.[1];
    if (!token) {
      throw new AuthenticationError(
        'the Authorization header must be "Bearer <token>"',
        'invalid_request',
      );
    }
  } else if (cookieName) {
    token = tokenFromCookie(req, cookieName, allowedOrigins);
  }
  if (!token) {
    throw new AuthenticationError(
      cookieName ? `no bearer token and no ${cookieName} cookie` : 'no bearer token',
      'invalid_request',
    );
  }
  if (token.length > MAX_TOKEN_LENGTH) {
    throw new AuthenticationError(
      `the token is longer than ${MAX_TOKEN_LENGTH} characters`,
      'invalid_token',
    );
  }
  return token;
}

/** jsonwebtoken's own messages may echo expected values; callers get a fixed sentence instead. */
function explain(error: unknown): string {
  if (error instanceof jwt.TokenExpiredError) return 'the token has expired';
  if (error instanceof jwt.NotBeforeError) return 'the token is not valid yet';
  const message = error instanceof Error ? error.message : '';
  if (message.startsWith('jwt audience invalid'))
    return 'the token is not meant for this service (audience)';
  if (message.startsWith('jwt issuer invalid'))
    return 'the token comes from an issuer that is not accepted';
  if (message === 'invalid algorithm')
    return 'the token is signed with an algorithm that is not accepted';
  if (message === 'invalid signature') return 'the token signature is invalid';
  if (message.includes('malformed') || message === 'invalid token') return 'the token is malformed';
  return 'the token is invalid';
}

export interface Authenticator {
  /** Verifies the caller's JWT and stores its user id; every failure goes to next() as an AppError. */
  authenticate: RequestHandler;
}

const USER_ID = Symbol('userId');

/** The Cardscan user_id of the verified caller. Only valid after `authenticate` ran. */
export function userIdOf(res: Response): string {
  const userId = (res.locals as Record<symbol, string | undefined>)[USER_ID];
  if (!userId) throw new Error('userIdOf called before authenticate');
  return userId;
}

/** `allowedOrigins`: CORS_ORIGINS, the pages whose fetch may carry a cookie login. */
export function createAuthenticator(
  config: AuthConfig,
  keys: SigningKeyStore,
  allowedOrigins: readonly string[],
): Authenticator {
  const cookieOrigins: ReadonlySet<string> = new Set(allowedOrigins);
  const timeRules: TimeRules = {
    maxAgeSeconds: config.maxTokenAgeSeconds,
    toleranceSeconds: CLOCK_TOLERANCE_SECONDS,
  };
  const verifier = expressjwt({
    algorithms: config.algorithms,
    issuer: config.issuer,
    audience: config.audience.length > 0 ? (config.audience as [string, ...string[]]) : undefined,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    getToken: (req) => tokenFrom(req, config.cookieName, cookieOrigins),
    secret: async (_req, token) => {
      if (!token || typeof token.payload !== 'object') {
        throw new AuthenticationError('the token is malformed', 'invalid_token');
      }
      // Checked before any key lookup, so a junk algorithm never triggers a JWKS fetch.
      if (!(config.algorithms as string[]).includes(token.header.alg)) {
        throw new AuthenticationError(explain(new Error('invalid algorithm')), 'invalid_token');
      }
      checkCritical(token.header);
      return keys.keyFor(token.header.kid, token.header.alg);
    },
  });

  function userIdFrom(payload: JwtPayload): string {
    checkTimeClaims(payload, Date.now() / 1000, timeRules);
    const claim: unknown = payload[config.userIdClaim];
    if (typeof claim !== 'string' || claim.length === 0 || claim.length > MAX_USER_ID_LENGTH) {
      throw new AuthenticationError(
        `the token's ${config.userIdClaim} claim must be a non-empty string of at most ${MAX_USER_ID_LENGTH} characters`,
        'invalid_token',
      );
    }
    checkUserIdForm(claim, config.userIdClaim);
    checkEmailVerified(payload, config.userIdClaim);
    if (!config.userIdHashSecret) return claim;
    // Issuer and claim together, unambiguously joined: the same sub at two issuers stays two users.
    return createHmac('sha256', config.userIdHashSecret)
      .update(JSON.stringify([payload.iss ?? '', claim]))
      .digest('hex');
  }

  const authenticate: RequestHandler = (req, res, next) => {
    void verifier(req, res, (error?: unknown) => {
      if (error instanceof AppError) return next(error);
      if (error instanceof JwtLibraryError) {
        return next(
          new AuthenticationError(explain(error.inner), 'invalid_token', { cause: error }),
        );
      }
      if (error) return next(error);
      try {
        const payload = (req as Request & { auth: JwtPayload }).auth;
        (res.locals as Record<symbol, string>)[USER_ID] = userIdFrom(payload);
        next();
      } catch (failure) {
        next(failure);
      }
    });
  };

  return { authenticate };
}

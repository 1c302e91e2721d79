import { createHmac } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { expressjwt, UnauthorizedError as JwtLibraryError } from 'express-jwt';
import jwt, { type JwtPayload } from 'jsonwebtoken';
import { AppError, AuthenticationError, ForbiddenError, ServiceUnavailableError } from '../errors';
import type { Logger } from '../observability/logger';
import type { LoginRefusal, Metrics } from '../observability/metrics';
import type { Tracing } from '../observability/tracing';
import { lookAlike, type Provider, type Providers } from './providers';
import { checkCookieRequest } from './cookie-rules';
import { checkCritical, checkTimeClaims, type TimeRules } from './token-rules';
import { checkEmailVerified, checkUserIdForm } from './user-id';
import { createVerifiedTokenCache } from './verified-tokens';

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

/** The `provider` label of a refusal before any provider was chosen (no token, unknown issuer). */
const UNKNOWN_PROVIDER = 'unknown';

/** Why a login was refused, for the metrics; set where the broker itself refuses. */
const REFUSALS = new WeakMap<Error, LoginRefusal>();

function refused<E extends Error>(reason: LoginRefusal, error: E): E {
  REFUSALS.set(error, reason);
  return error;
}

/** The refusal reason of an error that was not tagged where it was thrown. */
function reasonOf(error: AppError): LoginRefusal {
  const tagged = REFUSALS.get(error);
  if (tagged) return tagged;
  if (error instanceof ServiceUnavailableError) return 'keys_unavailable';
  if (error instanceof ForbiddenError) return 'forbidden';
  if (error instanceof AuthenticationError && error.bearerError === 'invalid_request') {
    return 'no_token';
  }
  return 'invalid_token';
}

const expectedList = (values: readonly string[]) => values.join(', ');

/**
 * jsonwebtoken's own messages may echo expected values; callers get a fixed sentence instead,
 * naming the expected issuer or audience, which is configuration and not a secret.
 */
function explain(
  error: unknown,
  provider: Provider | undefined,
): { detail: string; reason: LoginRefusal } {
  if (error instanceof jwt.TokenExpiredError) {
    return { detail: 'the token has expired', reason: 'expired' };
  }
  if (error instanceof jwt.NotBeforeError) {
    return { detail: 'the token is not valid yet', reason: 'not_yet_valid' };
  }
  const message = error instanceof Error ? error.message : '';
  if (message.startsWith('jwt audience invalid')) {
    return {
      detail: provider
        ? audienceDetail(provider)
        : 'the token is not meant for this service (audience)',
      reason: 'audience',
    };
  }
  if (message.startsWith('jwt issuer invalid')) {
    return {
      detail: `the token comes from an issuer that is not accepted (expected ${provider?.issuer ?? 'another'})`,
      reason: 'issuer',
    };
  }
  if (message === 'invalid algorithm') {
    return {
      detail: 'the token is signed with an algorithm that is not accepted',
      reason: 'algorithm',
    };
  }
  if (message === 'invalid signature') {
    return { detail: 'the token signature is invalid', reason: 'signature' };
  }
  if (message.includes('malformed') || message === 'invalid token') {
    return { detail: 'the token is malformed', reason: 'malformed' };
  }
  return { detail: 'the token is invalid', reason: 'invalid_token' };
}

function audienceDetail(provider: Provider): string {
  return `the token is not meant for this service (audience; expected ${provider.audienceClaim} to hold one of: ${expectedList(provider.audience)})`;
}

/** A claim value as it may appear in a log line: short, and never more than a value. */
function forLog(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? 'absent');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** `aud` (or the configured claim) holds one accepted value, as a string or in an array. */
function checkAudience(provider: Provider, payload: JwtPayload): void {
  const value: unknown = payload[provider.audienceClaim];
  const values: unknown[] = Array.isArray(value) ? value : [value];
  if (!values.some((each) => typeof each === 'string' && provider.audience.includes(each))) {
    throw refused('audience', new AuthenticationError(audienceDetail(provider), 'invalid_token'));
  }
}

/** `scope` is a space-separated string; `scp` a string (Entra ID) or an array (Okta). */
function grantedScopes(payload: JwtPayload): Set<string> {
  const granted = new Set<string>();
  for (const value of [payload.scope, payload.scp]) {
    const items: unknown[] = Array.isArray(value) ? value : [value];
    for (const item of items) {
      if (typeof item === 'string') for (const scope of item.split(' ')) granted.add(scope);
    }
  }
  return granted;
}

function checkScopes(provider: Provider, payload: JwtPayload): void {
  const granted = grantedScopes(payload);
  const missing = provider.requiredScopes.filter((scope) => !granted.has(scope));
  if (missing.length === 0) return;
  const error = new ForbiddenError(
    `the token does not grant the scope this service requires: ${missing.join(' ')}`,
  );
  // RFC 6750 §3.1: the scope the client must ask its provider for.
  error.headers['WWW-Authenticate'] =
    `Bearer error="insufficient_scope", scope="${provider.requiredScopes.join(' ')}"`;
  throw refused('scope', error);
}

/** The Cardscan user_id for a verified payload of this provider: the one place it is derived. */
export function userIdFrom(provider: Provider, payload: JwtPayload): string {
  const claim: unknown = payload[provider.userIdClaim];
  if (typeof claim !== 'string' || claim.length === 0 || claim.length > MAX_USER_ID_LENGTH) {
    throw refused(
      'claims',
      new AuthenticationError(
        `the token's ${provider.userIdClaim} claim must be a non-empty string of at most ${MAX_USER_ID_LENGTH} characters`,
        'invalid_token',
      ),
    );
  }
  checkUserIdForm(claim, provider.userIdClaim);
  checkEmailVerified(payload, provider.userIdClaim);
  if (provider.userIdHashSecret) {
    // Issuer and claim together, unambiguously joined: the same sub at two issuers stays two users.
    return createHmac('sha256', provider.userIdHashSecret)
      .update(JSON.stringify([payload.iss ?? '', claim]))
      .digest('hex');
  }
  if (provider.userIdPrefix) return provider.userIdPrefix + claim;
  // The prefix keeps the same sub of two providers two Cardscan users. Without one (kept for the
  // users of a deployment that had one provider), a claim must not look like another's user id.
  if (
    provider.foreignPrefixes.length > 0 &&
    provider.foreignPrefixes.some((prefix) => lookAlike(claim).startsWith(prefix))
  ) {
    throw refused(
      'claims',
      new AuthenticationError(
        `the token's ${provider.userIdClaim} claim starts like a user id of another identity provider`,
        'invalid_token',
      ),
    );
  }
  return claim;
}

export interface Authenticator {
  /** Verifies the caller's JWT and stores its user id; every failure goes to next() as an AppError. */
  authenticate: RequestHandler;
}

const USER_ID = Symbol('userId');
/** The provider chosen for the request's token by its `iss` (several providers only). */
const PROVIDER = Symbol('provider');
type WithProvider = Request & { [PROVIDER]?: Provider };
/** The request's token, read once by `authenticate` and handed to express-jwt. */
const TOKEN = Symbol('token');
type WithToken = Request & { [TOKEN]?: string };

/** The Cardscan user_id of the verified caller. Only valid after `authenticate` ran. */
export function userIdOf(res: Response): string {
  const userId = (res.locals as Record<symbol, string | undefined>)[USER_ID];
  if (!userId) throw new Error('userIdOf called before authenticate');
  return userId;
}

export interface AuthenticatorDeps {
  cookieName?: string;
  /** CORS_ORIGINS: the pages whose fetch may carry a cookie login. */
  allowedOrigins: readonly string[];
  /** AUTH_MAX_TOKEN_AGE, for every provider. */
  maxTokenAgeSeconds?: number;
  providers: Providers;
  logger: Logger;
  metrics: Metrics;
  /** Present only when tracing is on: the request's span then names the provider. */
  tracing?: Tracing;
  /** The clock of the verified-token cache, in ms; tests move it with the key stores'. */
  now?: () => number;
}

export function createAuthenticator(deps: AuthenticatorDeps): Authenticator {
  const { cookieName, providers, logger, metrics } = deps;
  const cookieOrigins: ReadonlySet<string> = new Set(deps.allowedOrigins);
  const timeRules: TimeRules = {
    maxAgeSeconds: deps.maxTokenAgeSeconds,
    toleranceSeconds: CLOCK_TOLERANCE_SECONDS,
  };
  const { single, byIssuer } = providers;
  const expectedIssuers = expectedList([...byIssuer.keys()]);
  // Bound once: counting an accepted login is then one increment, not a label lookup.
  const countAccepted = new Map(
    providers.all.map((provider) => [provider, metrics.acceptedLogins(provider.name)]),
  );

  /** Several providers: the token's `iss` chooses one, before any key is looked up. */
  function providerOf(req: WithProvider, payload: JwtPayload): Provider {
    const iss: unknown = payload.iss;
    const provider = typeof iss === 'string' ? byIssuer.get(iss) : undefined;
    if (!provider) {
      logger.warn(
        { expected_issuers: [...byIssuer.keys()], received_issuer: forLog(iss) },
        'login refused: the token comes from no configured provider',
      );
      throw refused(
        'unknown_issuer',
        new AuthenticationError(
          `the token comes from an issuer that is not accepted (expected one of: ${expectedIssuers})`,
          'invalid_token',
        ),
      );
    }
    req[PROVIDER] = provider;
    return provider;
  }

  const verifier = expressjwt({
    algorithms: single ? [...single.algorithms] : providers.algorithms,
    issuer: single?.issuer,
    audience:
      single && !single.checksAudience && single.audience.length > 0
        ? (single.audience as [string, ...string[]])
        : undefined,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    // authenticate has read it already, and checked the cache with it.
    getToken: (req) => (req as WithToken)[TOKEN] as string,
    secret: async (req, token) => {
      if (!token || typeof token.payload !== 'object') {
        throw refused(
          'malformed',
          new AuthenticationError('the token is malformed', 'invalid_token'),
        );
      }
      const provider = single ?? providerOf(req, token.payload);
      // Checked before any key lookup, so a junk algorithm never triggers a JWKS fetch, and a
      // token can never pick an algorithm its provider does not use (RFC 8725 §3.1).
      if (!provider.algorithms.includes(token.header.alg as never)) {
        throw refused(
          'algorithm',
          new AuthenticationError(
            'the token is signed with an algorithm that is not accepted',
            'invalid_token',
          ),
        );
      }
      checkCritical(token.header);
      return provider.keys.keyFor(token.header.kid, token.header.alg);
    },
  });

  /** Logs what was expected and what arrived for an issuer or audience refusal; never the token. */
  function logMismatch(req: Request, provider: Provider, reason: LoginRefusal): void {
    let payload: JwtPayload | undefined;
    try {
      const decoded = jwt.decode(tokenFrom(req, cookieName, cookieOrigins), { json: true });
      payload = decoded ?? undefined;
    } catch {
      payload = undefined;
    }
    if (reason === 'issuer') {
      logger.warn(
        {
          provider: provider.name,
          expected_issuer: provider.issuer,
          received_issuer: forLog(payload?.iss),
        },
        'login refused: issuer not accepted',
      );
    } else {
      logger.warn(
        {
          provider: provider.name,
          audience_claim: provider.audienceClaim,
          expected_audience: provider.audience,
          received_audience: forLog(payload?.[provider.audienceClaim]),
        },
        'login refused: audience not accepted',
      );
    }
  }

  function refuse(req: WithProvider, error: AppError, next: (error: unknown) => void): void {
    const provider = single ?? req[PROVIDER];
    const reason = reasonOf(error);
    if (provider && (reason === 'issuer' || reason === 'audience')) {
      logMismatch(req, provider, reason);
    }
    metrics.countRefusedLogin(provider?.name ?? UNKNOWN_PROVIDER, reason);
    next(error);
  }

  /** The checks after the signature: audience (when not jsonwebtoken's), scopes, user id. */
  function accept(provider: Provider, payload: JwtPayload): string {
    checkTimeClaims(payload, Date.now() / 1000, timeRules);
    if (provider.checksAudience) checkAudience(provider, payload);
    if (provider.requiredScopes.length > 0) checkScopes(provider, payload);
    return userIdFrom(provider, payload);
  }

  /** What a verified token proved: kept so its next requests skip the signature check. */
  interface Login {
    provider: Provider;
    userId: string;
  }
  const verified = createVerifiedTokenCache<Login>();
  const now = deps.now ?? Date.now;

  /** The caller is `login`: the user id for the route, the metric, the span's provider. */
  function admit(res: Response, login: Login): void {
    (res.locals as Record<symbol, string>)[USER_ID] = login.userId;
    countAccepted.get(login.provider)?.();
    deps.tracing?.annotate('provider', login.provider.name);
  }

  const authenticate: RequestHandler = (req, res, next) => {
    let token: string;
    try {
      token = tokenFrom(req, cookieName, cookieOrigins);
    } catch (failure) {
      if (failure instanceof AppError) return refuse(req, failure, next);
      throw failure;
    }
    const nowSeconds = now() / 1000;
    const known = verified.get(token, nowSeconds);
    if (known) {
      admit(res, known);
      return next();
    }
    (req as WithToken)[TOKEN] = token;
    void verifier(req, res, (error?: unknown) => {
      if (error instanceof AppError) return refuse(req, error, next);
      const provider = single ?? (req as WithProvider)[PROVIDER];
      if (error instanceof JwtLibraryError) {
        const { detail, reason } = explain(error.inner, provider);
        return refuse(
          req,
          refused(reason, new AuthenticationError(detail, 'invalid_token', { cause: error })),
          next,
        );
      }
      if (error) return next(error);
      try {
        const payload = (req as Request & { auth: JwtPayload }).auth;
        // Set by the secret callback whenever verification succeeded.
        const login = {
          provider: provider as Provider,
          userId: accept(provider as Provider, payload),
        };
        admit(res, login);
        verified.set(token, login, validUntil(payload), nowSeconds);
        next();
      } catch (failure) {
        if (failure instanceof AppError) return refuse(req, failure, next);
        next(failure);
      }
    });
  };

  /**
   * Until when a verified token may be taken from the cache: its `exp`, and with a maximum token
   * age the end of that age, both without the clock tolerance (a token in its tolerance is
   * verified again in full, as without the cache).
   */
  function validUntil(payload: JwtPayload): number {
    const exp = payload.exp as number;
    const { maxAgeSeconds } = timeRules;
    return maxAgeSeconds === undefined
      ? exp
      : Math.min(exp, (payload.iat as number) + maxAgeSeconds);
  }

  return { authenticate };
}

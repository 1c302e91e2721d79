import type { RequestHandler } from 'express';
import type { Routes } from '../app';
import { BadRequestError, UnsupportedMediaTypeError } from '../errors';
import { userIdOf } from '../auth/authenticator';
import { jsonBody } from '../http/json-body';
import type { CardscanClient } from '../upstream/cardscan';

export interface SessionRouteDeps {
  authenticate: RequestHandler;
  rateLimit: RequestHandler;
  cardscan: CardscanClient;
}

/** Any spelling of a user id a client might try to smuggle in. */
const CLIENT_USER_ID = /^user[_-]?id$/i;

/** The `exp` of Cardscan's Token as ISO-8601, or undefined when it cannot be read. */
export function expiryOf(token: string): string | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const exp: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')).exp;
    return typeof exp === 'number' && Number.isFinite(exp)
      ? new Date(exp * 1000).toISOString()
      : undefined;
  } catch {
    return undefined;
  }
}

/** The session route takes no input: refuse a client-chosen user id, and bodies that are not JSON. */
const refuseClientInput: RequestHandler = (req, _res, next) => {
  // Express parses the query string anew on every read of req.query; most calls have none.
  const queryKey = req.url.includes('?')
    ? Object.keys(req.query).find((key) => CLIENT_USER_ID.test(key))
    : undefined;
  if (queryKey) {
    throw new BadRequestError(
      `query parameter "${queryKey}" is not accepted: the user id comes from the verified login`,
    );
  }
  const hasBody =
    req.headers['transfer-encoding'] !== undefined ||
    Number(req.headers['content-length'] ?? 0) > 0;
  if (hasBody && !req.is('application/json')) {
    throw new UnsupportedMediaTypeError(
      'send no body, or a JSON object with Content-Type: application/json',
    );
  }
  const body: unknown = req.body;
  if (body !== undefined) {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new BadRequestError('the body must be empty or a JSON object');
    }
    const bodyKey = Object.keys(body).find((key) => CLIENT_USER_ID.test(key));
    if (bodyKey) {
      throw new BadRequestError(
        `body field "${bodyKey}" is not accepted: the user id comes from the verified login`,
      );
    }
  }
  next();
};

export function sessionRoutes(deps: SessionRouteDeps): Routes {
  const mint: RequestHandler = async (req, res) => {
    const session = await deps.cardscan.getAccessToken(userIdOf(res), String(req.id));
    const body: Record<string, string> = {
      session: session.token,
      identity_id: session.identityId,
    };
    if (session.sessionId) body.session_id = session.sessionId;
    const expiresAt = expiryOf(session.token);
    if (expiresAt) body.expires_at = expiresAt;
    // What res.json would send, without its per-call settings lookups and content-type parsing.
    const text = JSON.stringify(body);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(text));
    res.end(text);
  };

  return (router) => {
    router
      .route('/cardscan-session')
      .get(deps.authenticate, jsonBody, refuseClientInput, deps.rateLimit, mint)
      .post(deps.authenticate, jsonBody, refuseClientInput, deps.rateLimit, mint);
  };
}

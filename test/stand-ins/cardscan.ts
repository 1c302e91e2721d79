import { createHash, randomBytes, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { startStandIn, type StandIn } from './stand-in-server';

export interface CardscanStandIn extends StandIn {
  /** Base URL with the version, as CARDSCAN_BASE_URL wants it. */
  baseUrl: string;
  /** Verifies a Token this stand-in issued and returns the user_id it carries. */
  userIdInToken(token: string): string;
}

/** Cardscan's identity ids look like Cognito ones: region, colon, uuid; stable per user. */
export function identityIdFor(userId: string): string {
  const hex = createHash('sha256').update(userId).digest('hex');
  return `us-east-1:${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * Cardscan.ai `GET /v1/access-token?user_id=…` as its public docs describe it: checks the secret
 * key, answers a real signed JWT carrying the user_id, errors in the vendor's shape.
 */
export async function startCardscanStandIn(options: {
  apiKey: string;
  port?: number;
  tokenLifetimeSeconds?: number;
}): Promise<CardscanStandIn> {
  const signingSecret = randomBytes(32);
  const lifetime = options.tokenLifetimeSeconds ?? 3600;
  const standIn = await startStandIn({
    bearerToken: options.apiKey,
    port: options.port,
    unauthorizedBody: { message: 'Unauthorized', type: 'AuthenticationError', code: 401 },
    serverErrorBody: { message: 'Internal server error' },
    handle: (request) => {
      if (request.method !== 'GET' || request.path !== '/v1/access-token') {
        return { status: 404, body: { message: 'Not Found', type: 'NotFound', code: 404 } };
      }
      const userId = request.query.user_id;
      if (!userId) {
        return {
          status: 400,
          body: { message: 'user_id is required', type: 'ValidationError', code: 400 },
        };
      }
      const Token = jwt.sign({ user_id: userId }, signingSecret, {
        algorithm: 'HS256',
        expiresIn: lifetime,
        issuer: 'cardscan-stand-in',
      });
      return {
        status: 200,
        body: { Token, IdentityId: identityIdFor(userId), session_id: randomUUID() },
      };
    },
  });
  return {
    ...standIn,
    baseUrl: `${standIn.origin}/v1`,
    userIdInToken: (token) => (jwt.verify(token, signingSecret) as { user_id: string }).user_id,
  };
}

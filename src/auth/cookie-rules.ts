import type { IncomingHttpHeaders } from 'node:http';
import { ForbiddenError } from '../errors';

/**
 * Rules for logins carried by a cookie. A browser attaches a cookie to every request for its site,
 * whoever asked: an `<img>` or a link on a sibling subdomain (`same-site`, no Origin) would spend
 * the user's rate limit, and a cookie planted there would log the user into someone else's
 * Cardscan identity. Only a page's own fetch is proof of intent.
 */

const REFUSED =
  'a cookie login is not accepted on a request from another site or without fetch metadata: ' +
  'call from a page whose origin is in CORS_ORIGINS, or from the same origin';

/**
 * Accepted only with an `Origin` in `allowedOrigins` (a page's CORS fetch) or
 * `Sec-Fetch-Site: same-origin`; anything else that carries the cookie is a 403.
 */
export function checkCookieRequest(
  headers: IncomingHttpHeaders,
  allowedOrigins: ReadonlySet<string>,
): void {
  const origin = headers.origin;
  if (
    origin !== undefined ? allowedOrigins.has(origin) : headers['sec-fetch-site'] === 'same-origin'
  ) {
    return;
  }
  throw new ForbiddenError(REFUSED);
}

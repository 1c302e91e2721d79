import type { IncomingHttpHeaders } from 'node:http';
import { ForbiddenError } from '../errors';

/**
 * Rules for logins carried by a cookie. A browser attaches a cookie to every request for its site,
 * whoever asked: an `<img>` or a link on a sibling subdomain (`same-site`, no Origin) would spend
 * the user's rate limit, and a cookie planted there would log the user into someone else's
 * Cardscan identity. Only a page's own fetch is proof of intent.
 */

/**
 * The start-up warning for a cookie name without the `__Host-` prefix, or undefined. Browsers
 * accept a `__Host-` cookie only from the exact host, with Secure, Path=/ and no Domain, so a
 * sibling subdomain cannot set or overwrite it.
 */
export function cookieNameWarning(variable: string, name: string): string | undefined {
  if (name.startsWith('__Host-')) return undefined;
  return (
    `${variable}=${name}: the name has no __Host- prefix, so any subdomain of the site can plant a ` +
    'cookie of that name (cookie tossing). Name it __Host-…, set it with Secure; Path=/ and never Domain=.'
  );
}

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

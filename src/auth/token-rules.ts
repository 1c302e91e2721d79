import type { JwtHeader, JwtPayload } from 'jsonwebtoken';
import { AuthenticationError } from '../errors';

/**
 * Rules on a token's header and time claims that jsonwebtoken leaves open. Pure functions that
 * throw an AuthenticationError (401 invalid_token); each identity provider calls them with its own
 * settings.
 */

/**
 * RFC 7515 §4.1.11: a recipient that does not understand every extension listed in `crit` must
 * refuse the token. The broker implements none (e.g. `b64: false` would change what was signed).
 */
export function checkCritical(header: JwtHeader, understood: readonly string[] = []): void {
  const crit = (header as { crit?: unknown }).crit;
  if (crit === undefined) return;
  const names = Array.isArray(crit) ? crit : [crit];
  if (names.length === 0 || names.some((name) => !understood.includes(name as string))) {
    throw new AuthenticationError(
      'the token header lists critical extensions (crit) this service does not understand',
      'invalid_token',
    );
  }
}

/** Built once per identity provider, not per request. */
export interface TimeRules {
  /** When set, a token issued (iat) longer ago than this many seconds is refused, as is one without iat. */
  maxAgeSeconds?: number;
  /** Clock skew tolerated between the identity provider and the broker, in seconds. */
  toleranceSeconds: number;
}

const TIME_CLAIMS = ['exp', 'nbf', 'iat'] as const;

/**
 * `exp` is required; `exp`, `nbf` and `iat` must be finite numbers when present: JSON's `1e309`
 * parses to Infinity, a token that never expires, and jsonwebtoken checks iat's type only when
 * asked for a maximum age.
 */
export function checkTimeClaims(payload: JwtPayload, nowSeconds: number, rules: TimeRules): void {
  if (payload.exp === undefined) {
    throw new AuthenticationError('the token has no expiry (exp)', 'invalid_token');
  }
  for (const claim of TIME_CLAIMS) {
    const value: unknown = payload[claim];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
      throw new AuthenticationError(
        `the token's ${claim} claim must be a finite number of seconds`,
        'invalid_token',
      );
    }
  }
  if (rules.maxAgeSeconds === undefined) return;
  const { iat } = payload;
  if (iat === undefined) {
    throw new AuthenticationError(
      'the token has no issue time (iat), and this service accepts tokens only up to a maximum age',
      'invalid_token',
    );
  }
  // An iat in the future would stretch the maximum age by as much.
  const age = nowSeconds - iat;
  if (age > rules.maxAgeSeconds + rules.toleranceSeconds || age < -rules.toleranceSeconds) {
    throw new AuthenticationError(
      'the token was issued too long ago; log in again',
      'invalid_token',
    );
  }
}

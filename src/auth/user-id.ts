import type { JwtPayload } from 'jsonwebtoken';
import { AuthenticationError } from '../errors';

/**
 * Rules on the claim that becomes the Cardscan user_id. Pure functions that throw an
 * AuthenticationError (401 invalid_token) before any upstream call; each identity provider calls
 * them with its own claim name.
 */

/** Claims an identity provider does not let a user edit or reassign; others start with a warning. */
export const STABLE_USER_ID_CLAIMS: readonly string[] = ['sub', 'oid'];

/**
 * The start-up warning for a user-id claim other than `sub` or `oid`, or undefined. `variable`
 * names the setting, e.g. `AUTH_USER_ID_CLAIM`.
 */
export function userIdClaimWarning(variable: string, claim: string): string | undefined {
  if (STABLE_USER_ID_CLAIMS.includes(claim)) return undefined;
  return (
    `${variable}=${claim}: the user id comes from a claim other than sub or oid. Identity providers let ` +
    'users edit or reassign such claims (an e-mail address changes hands, a username is reused), and ' +
    "whoever holds the value later receives the earlier user's cards. Prefer sub, with " +
    'USER_ID_HASH_SECRET when the value must not reach Cardscan.' +
    (claim === 'email' ? ' With email, tokens are accepted only when email_verified is true.' : '')
  );
}

/**
 * An e-mail address is anyone's until the provider verified it: a user who signs up with the
 * victim's address (unverified) would otherwise receive the victim's cards. Only the boolean true
 * counts.
 */
export function checkEmailVerified(payload: JwtPayload, userIdClaim: string): void {
  if (userIdClaim === 'email' && payload.email_verified !== true) {
    throw new AuthenticationError(
      "the token's email is not verified (email_verified is not true)",
      'invalid_token',
    );
  }
}

/** Printable ASCII: well-formed and NFC by construction, so most ids skip the costlier checks. */
const PLAIN = /^[\x20-\x7E]*$/;
/**
 * Control characters (C0, DEL, C1), lone surrogates (not well-formed UTF-16), and the invisible
 * ones: format characters (zero-width space, bidi overrides) and line or paragraph separators. An
 * invisible character makes an id that reads like another user's.
 */
const ILL_FORMED = /[\p{Cc}\p{Cs}\p{Cf}\p{Zl}\p{Zp}]/u;

/**
 * A user id is one exact string forever: a lone surrogate cannot be percent-encoded (it made
 * `encodeURIComponent` throw, a 500), control characters break logs and the vendor's storage, and
 * two Unicode forms of one name (NFC and NFD "é") would be two Cardscan users.
 */
export function checkUserIdForm(userId: string, userIdClaim: string): void {
  if (PLAIN.test(userId)) return;
  if (ILL_FORMED.test(userId)) {
    throw new AuthenticationError(
      `the token's ${userIdClaim} claim holds a control character (or an invisible format or separator character) or is not well-formed Unicode`,
      'invalid_token',
    );
  }
  if (userId.normalize('NFC') !== userId) {
    throw new AuthenticationError(
      `the token's ${userIdClaim} claim is not in Unicode normalization form C (NFC)`,
      'invalid_token',
    );
  }
}

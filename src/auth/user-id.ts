import { AuthenticationError } from '../errors';

/**
 * Rules on the claim that becomes the Cardscan user_id. Pure functions that throw an
 * AuthenticationError (401 invalid_token) before any upstream call; each identity provider calls
 * them with its own claim name.
 */

/** Printable ASCII: well-formed and NFC by construction, so most ids skip the costlier checks. */
const PLAIN = /^[\x20-\x7E]*$/;
/** Control characters (C0, DEL, C1) and lone surrogates (not well-formed UTF-16). */
const ILL_FORMED = /[\p{Cc}\p{Cs}]/u;

/**
 * A user id is one exact string forever: a lone surrogate cannot be percent-encoded (it made
 * `encodeURIComponent` throw, a 500), control characters break logs and the vendor's storage, and
 * two Unicode forms of one name (NFC and NFD "é") would be two Cardscan users.
 */
export function checkUserIdForm(userId: string, userIdClaim: string): void {
  if (PLAIN.test(userId)) return;
  if (ILL_FORMED.test(userId)) {
    throw new AuthenticationError(
      `the token's ${userIdClaim} claim holds a control character or is not well-formed Unicode`,
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

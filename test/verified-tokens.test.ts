import {
  createVerifiedTokenCache,
  VERIFIED_TOKEN_MAX_AGE_SECONDS,
} from '../src/auth/verified-tokens';

describe('the verified-token cache', () => {
  const now = 1_800_000_000;

  it('when a token was verified, then the same token gives the same result until its limit', () => {
    const cache = createVerifiedTokenCache<string>();
    cache.set('token-a', 'user-a', now + 60, now);

    expect(cache.get('token-a', now)).toBe('user-a');
    expect(cache.get('token-a', now + 59)).toBe('user-a');
    expect(cache.get('token-a', now + 60)).toBeUndefined();
    // Gone for good: the entry was dropped, not only hidden.
    expect(cache.get('token-a', now)).toBeUndefined();
  });

  it('when another token arrives, even one differing in a single character, then it is a miss', () => {
    const cache = createVerifiedTokenCache<string>();
    cache.set('header.payload.signature', 'user-a', now + 60, now);

    expect(cache.get('header.payload.signaturE', now)).toBeUndefined();
    expect(cache.get('header.payload.signature ', now)).toBeUndefined();
  });

  it('when a token is valid for hours, then the cache keeps it no longer than its own maximum', () => {
    const cache = createVerifiedTokenCache<string>();
    cache.set('token-a', 'user-a', now + 3600, now);

    expect(cache.get('token-a', now + VERIFIED_TOKEN_MAX_AGE_SECONDS - 1)).toBe('user-a');
    expect(cache.get('token-a', now + VERIFIED_TOKEN_MAX_AGE_SECONDS)).toBeUndefined();
  });

  it('when a token is already past its limit, then it is not kept', () => {
    const cache = createVerifiedTokenCache<string>();
    cache.set('token-a', 'user-a', now, now);
    cache.set('token-b', 'user-b', Number.NaN, now);

    expect(cache.get('token-a', now - 1)).toBeUndefined();
    expect(cache.get('token-b', now - 1)).toBeUndefined();
  });

  it('when the cache is full, then the oldest entry makes room', () => {
    const cache = createVerifiedTokenCache<string>(2);
    cache.set('token-a', 'user-a', now + 60, now);
    cache.set('token-b', 'user-b', now + 60, now);
    cache.set('token-c', 'user-c', now + 60, now);

    expect(cache.get('token-a', now)).toBeUndefined();
    expect(cache.get('token-b', now)).toBe('user-b');
    expect(cache.get('token-c', now)).toBe('user-c');
  });
});

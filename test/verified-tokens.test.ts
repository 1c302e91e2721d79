import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import {
  createVerifiedTokenCache,
  VERIFIED_TOKEN_MAX_AGE_SECONDS,
} from '../src/auth/verified-tokens';
import { startHarness, type Harness } from './helpers/harness';

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

describe('the verified-token cache in front of the signature check', () => {
  /** The key and token caches' clock: moved instead of waiting (tokens keep the real time). */
  let clock: number;
  let h: Harness;
  const PAGE = 'https://app.example.com';

  beforeEach(async () => {
    clock = Date.now();
    h = await startHarness({
      broker: { now: () => clock },
      env: { AUTH_COOKIE_NAME: '__Host-login', CORS_ORIGINS: PAGE },
    });
  });
  afterEach(() => h.close());

  const withBearer = (token: string) =>
    request(h.app).get('/cardscan-session').set('Authorization', `Bearer ${token}`);

  test('when the provider withdraws the key of a token already accepted, then the token is refused at most a minute after the key store drops the key', async () => {
    // Valid for an hour: the cache's clock moves ahead of the token's by ten minutes below.
    const token = h.idp.sign({ sub: 'patient-cached' }, { expiresIn: 3600 });
    expect((await withBearer(token)).status).toBe(200);
    h.idp.rotate();

    // Past the key store's refresh age: the next use verifies with the old key still held, and
    // starts the refresh that drops it.
    clock += 10 * 60_000 + 1000;
    expect((await withBearer(token)).status).toBe(200);
    for (let i = 0; i < 100 && h.idp.jwksFetches() < 2; i++) await sleep(10);
    expect(h.idp.jwksFetches()).toBe(2);
    // The token verified just before stays accepted for the cache's bound, no longer.
    expect((await withBearer(token)).status).toBe(200);
    clock += (VERIFIED_TOKEN_MAX_AGE_SECONDS + 1) * 1000;
    const refused = await withBearer(token);
    expect(refused.status).toBe(401);
    expect(refused.body.detail).toBe('the token names an unknown signing key');
  });

  test('when a cached token arrives as a cookie from a page that may not use it, then 403 before any upstream call', async () => {
    const token = h.tokenFor('cookie-cached');
    expect((await withBearer(token)).status).toBe(200);

    const res = await request(h.app)
      .get('/cardscan-session')
      .set('Cookie', `__Host-login=${token}`)
      .set('Sec-Fetch-Site', 'same-site');
    expect(res.status).toBe(403);
    expect(h.cardscan.requests).toHaveLength(1);
  });

  test('when the same token comes again, then it is the same user, counted as an accepted login each time', async () => {
    const token = h.tokenFor('patient-twice');
    const first = await withBearer(token);
    const second = await withBearer(token);
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(h.cardscan.requests.map((r) => r.query.user_id)).toEqual([
      'patient-twice',
      'patient-twice',
    ]);
    const metrics = await request(h.app).get('/metrics');
    expect(metrics.text).toMatch(/^auth_logins_accepted_total\{provider="default"\} 2$/m);
  });
});

import { createHmac } from 'node:crypto';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { MAX_TOKEN_LENGTH } from '../src/auth/authenticator';
import { AUDIENCE, startHarness, TEST_HMAC_SECRET, type Harness } from './helpers/harness';
import { createSigningKey } from './stand-ins/identity-provider';

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function session(h: Harness, token?: string) {
  const call = request(h.app).get('/cardscan-session');
  return token === undefined ? call : call.set('Authorization', `Bearer ${token}`);
}

function expectUnauthorized(res: request.Response, detail: RegExp) {
  expect(res.status).toBe(401);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.headers['www-authenticate']).toMatch(
    /^Bearer realm="cardscan-broker", error="invalid_(token|request)"/,
  );
  expect(res.body).toMatchObject({ status: 401, title: 'Authentication required' });
  expect(res.body.detail).toMatch(detail);
  expect(res.body.request_id).toEqual(res.headers['x-request-id']);
}

describe('JWKS keys and their alg', () => {
  const signWith = (h: Harness, algorithm: 'RS256' | 'PS256') =>
    jwt.sign(
      { sub: `${algorithm}-user`, iss: h.idp.issuer, aud: AUDIENCE },
      h.idp.currentKey.privateKey,
      {
        algorithm,
        expiresIn: 300,
        keyid: h.idp.currentKey.kid,
      },
    );

  test.each([
    ['a JWK without alg', [undefined]],
    ['one kid published for RS256 and for PS256', ['RS256', 'PS256']],
  ])('when the JWKS has %s, then tokens of either algorithm are accepted', async (_, jwkAlgs) => {
    const h = await startHarness({ jwkAlgs });
    try {
      for (const algorithm of ['RS256', 'PS256'] as const) {
        const res = await session(h, signWith(h, algorithm));
        expect(res.status).toBe(200);
        expect(h.cardscan.userIdInToken(res.body.session)).toBe(`${algorithm}-user`);
      }
    } finally {
      await h.close();
    }
  });
});

describe('JWKS mode (AUTH_JWKS_URI with AUTH_ISSUER)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ auth: 'jwks' });
  });
  afterAll(() => h.close());

  test('when the token is valid, then the session is minted for its sub', async () => {
    const res = await session(h, h.tokenFor('jwks-user'));
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('jwks-user');
  });

  test('when no credentials are sent, then 401 names the missing bearer token', async () => {
    expectUnauthorized(await session(h), /no bearer token/);
  });

  test('when the Authorization scheme is not Bearer, then 401 invalid_request', async () => {
    const res = await request(h.app)
      .get('/cardscan-session')
      .set('Authorization', 'Basic dXNlcjpwYXNz');
    expectUnauthorized(res, /must be "Bearer <token>"/);
    expect(res.headers['www-authenticate']).toContain('error="invalid_request"');
  });

  test('when the token is not a JWT, then 401 malformed', async () => {
    expectUnauthorized(await session(h, 'not-a-jwt'), /malformed/);
  });

  test('when the token uses alg none, then 401 and no key is fetched', async () => {
    const fetches = h.idp.jwksFetches();
    const unsigned = `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({
      sub: 'mallory',
      iss: h.idp.issuer,
      aud: AUDIENCE,
      exp: Math.floor(Date.now() / 1000) + 300,
    })}.`;
    expectUnauthorized(await session(h, unsigned), /algorithm that is not accepted/);
    expect(h.idp.jwksFetches()).toBe(fetches);
  });

  test('when an HS256 token is signed with the RSA public key as secret, then 401', async () => {
    const publicPem = h.idp.currentKey.publicKey.export({ format: 'pem', type: 'spki' });
    const forged = jwt.sign(
      { sub: 'mallory', iss: h.idp.issuer, aud: AUDIENCE },
      Buffer.from(publicPem),
      { algorithm: 'HS256', expiresIn: 300, keyid: h.idp.currentKey.kid },
    );
    expectUnauthorized(await session(h, forged), /algorithm that is not accepted/);
  });

  test('when a token uses an accepted algorithm other than its JWK names, then 401', async () => {
    // PS256 is in the default allowlist and verifies with the very same RSA key; only the JWK's
    // "alg": "RS256" says the key is not for it.
    const otherAlgorithm = jwt.sign(
      { sub: 'pss-user', iss: h.idp.issuer, aud: AUDIENCE },
      h.idp.currentKey.privateKey,
      { algorithm: 'PS256', expiresIn: 300, keyid: h.idp.currentKey.kid },
    );
    expectUnauthorized(await session(h, otherAlgorithm), /signing key is not published for/);
  });

  test('when a token without kid uses another algorithm than the only JWK names, then 401', async () => {
    const otherAlgorithm = jwt.sign(
      { sub: 'pss-user', iss: h.idp.issuer, aud: AUDIENCE },
      h.idp.currentKey.privateKey,
      { algorithm: 'PS256', expiresIn: 300 },
    );
    expectUnauthorized(await session(h, otherAlgorithm), /signing key is not published for/);
  });

  test('when the token has expired (beyond the clock tolerance), then 401 expired', async () => {
    expectUnauthorized(
      await session(h, h.idp.sign({ sub: 'late' }, { expiresIn: -120 })),
      /expired/,
    );
  });

  test('when the token is not valid yet (nbf in the future), then 401', async () => {
    expectUnauthorized(
      await session(h, h.idp.sign({ sub: 'early' }, { notBefore: 600 })),
      /not valid yet/,
    );
  });

  test('when the token has no exp, then 401', async () => {
    const noExp = jwt.sign(
      { sub: 'forever', iss: h.idp.issuer, aud: AUDIENCE },
      h.idp.currentKey.privateKey,
      {
        algorithm: 'RS256',
        keyid: h.idp.currentKey.kid,
      },
    );
    expectUnauthorized(await session(h, noExp), /no expiry/);
  });

  test('when the issuer is wrong, then 401 names the issuer', async () => {
    expectUnauthorized(
      await session(h, h.idp.sign({ sub: 'x' }, { issuer: 'https://evil.example.com' })),
      /issuer/,
    );
  });

  test('when the audience is wrong, then 401 names the audience', async () => {
    expectUnauthorized(
      await session(h, h.idp.sign({ sub: 'x' }, { audience: 'another-api' })),
      /audience/,
    );
  });

  test('when the signature does not match, then 401', async () => {
    const [header, payload] = h.tokenFor('x').split('.');
    const other = h.idp.sign({ sub: 'y' }).split('.')[2];
    expectUnauthorized(await session(h, `${header}.${payload}.${other}`), /signature/);
  });

  test('when the user claim is missing, then 401 names the claim', async () => {
    expectUnauthorized(await session(h, h.idp.sign({})), /sub claim must be a non-empty string/);
  });

  test('when the user claim is not a string, then 401', async () => {
    expectUnauthorized(await session(h, h.idp.sign({ sub: 12345 })), /sub claim/);
  });

  test('when the user claim is longer than 256 characters, then 401', async () => {
    expectUnauthorized(await session(h, h.idp.sign({ sub: 'u'.repeat(257) })), /at most 256/);
  });

  test('when the token is oversized, then 401 before it is parsed', async () => {
    const huge = h.idp.sign({ sub: 'big', padding: 'p'.repeat(MAX_TOKEN_LENGTH) });
    expectUnauthorized(await session(h, huge), /longer than 8192/);
  });

  test('when a token names an unknown kid, then 401, and junk kids do not hammer the JWKS', async () => {
    const stranger = createSigningKey();
    const fetches = h.idp.jwksFetches();
    h.advanceClock(31_000);
    for (let i = 0; i < 5; i++) {
      expectUnauthorized(
        await session(h, h.idp.sign({ sub: 'x' }, { key: stranger })),
        /unknown signing key/,
      );
    }
    expect(h.idp.jwksFetches()).toBe(fetches + 1);
  });

  test('when the provider rotates its key, then new tokens verify after one refetch', async () => {
    h.idp.rotate();
    h.advanceClock(31_000);
    const res = await session(h, h.tokenFor('after-rotation'));
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('after-rotation');
  });
});

describe('issuer mode (AUTH_ISSUER, keys through the discovery document)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ auth: 'issuer' });
  });
  afterAll(() => h.close());

  test('when the token comes from the issuer, then the session is minted', async () => {
    const res = await session(h, h.tokenFor('oidc-user'));
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('oidc-user');
  });

  test('when the token names another issuer, then 401', async () => {
    expectUnauthorized(
      await session(h, h.idp.sign({ sub: 'x' }, { issuer: `${h.idp.issuer}/other` })),
      /issuer/,
    );
  });
});

describe('shared-secret mode (AUTH_JWT_SECRET, HS256)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ auth: 'secret' });
  });
  afterAll(() => h.close());

  const hs256 = (claims: object, secret = TEST_HMAC_SECRET) =>
    jwt.sign({ aud: AUDIENCE, ...claims }, secret, { algorithm: 'HS256', expiresIn: 300 });

  test('when the token is signed with the secret, then the session is minted', async () => {
    const res = await session(h, hs256({ sub: 'hmac-user' }));
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('hmac-user');
  });

  test('when the token is signed with another secret, then 401', async () => {
    expectUnauthorized(
      await session(h, hs256({ sub: 'x' }, 'secret_test_wrong_wrong_wrong_wrong_wrong')),
      /signature/,
    );
  });

  test('when an RS256 token arrives, then 401 (algorithms are pinned)', async () => {
    expectUnauthorized(await session(h, h.tokenFor('x')), /algorithm that is not accepted/);
  });

  test('when the token is HS512 while only HS256 is allowed, then 401', async () => {
    const hs512 = jwt.sign({ sub: 'x', aud: AUDIENCE }, TEST_HMAC_SECRET, {
      algorithm: 'HS512',
      expiresIn: 300,
    });
    expectUnauthorized(await session(h, hs512), /algorithm that is not accepted/);
  });
});

describe('user id options', () => {
  test('when AUTH_USER_ID_CLAIM names another claim, then that claim becomes the user_id', async () => {
    const h = await startHarness({ env: { AUTH_USER_ID_CLAIM: 'patient_id' } });
    try {
      const res = await session(h, h.idp.sign({ sub: 'ignored', patient_id: 'p-77' }));
      expect(res.status).toBe(200);
      expect(h.cardscan.requests.at(-1)?.query.user_id).toBe('p-77');
    } finally {
      await h.close();
    }
  });

  test('when USER_ID_HASH_SECRET is set, then Cardscan receives the HMAC of issuer and claim', async () => {
    const hashSecret = 'secret_test_user_id_hash_0123456789abcdef';
    const h = await startHarness({ env: { USER_ID_HASH_SECRET: hashSecret } });
    try {
      const res = await session(h, h.tokenFor('alice@example.com'));
      expect(res.status).toBe(200);
      const expected = createHmac('sha256', hashSecret)
        .update(JSON.stringify([h.idp.issuer, 'alice@example.com']))
        .digest('hex');
      expect(h.cardscan.requests.at(-1)?.query.user_id).toBe(expected);
      expect(h.cardscan.userIdInToken(res.body.session)).toBe(expected);
    } finally {
      await h.close();
    }
  });

  test('when AUTH_COOKIE_NAME is set, then a cookie carries the login and a header still wins', async () => {
    const h = await startHarness({ env: { AUTH_COOKIE_NAME: 'app_session' } });
    try {
      // A page's same-origin fetch: since issue 18, a cookie login needs that (or an allowed Origin).
      const viaCookie = await request(h.app)
        .post('/cardscan-session')
        .set('Sec-Fetch-Site', 'same-origin')
        .set('Cookie', `theme=dark; app_session=${h.tokenFor('cookie-user')}`);
      expect(viaCookie.status).toBe(200);
      expect(h.cardscan.userIdInToken(viaCookie.body.session)).toBe('cookie-user');

      const both = await request(h.app)
        .get('/cardscan-session')
        .set('Cookie', `app_session=${h.tokenFor('cookie-user')}`)
        .set('Authorization', `Bearer ${h.tokenFor('header-user')}`);
      expect(h.cardscan.userIdInToken(both.body.session)).toBe('header-user');

      expectUnauthorized(
        await request(h.app).get('/cardscan-session'),
        /no bearer token and no app_session cookie/,
      );

      const tossed = await request(h.app)
        .get('/cardscan-session')
        .set(
          'Cookie',
          `app_session=${h.tokenFor('attacker')}; app_session=${h.tokenFor('victim')}`,
        );
      expectUnauthorized(tossed, /app_session cookie is sent more than once/);

      const before = h.cardscan.requests.length;
      const crossSite = await request(h.app)
        .get('/cardscan-session')
        .set('Sec-Fetch-Site', 'cross-site')
        .set('Cookie', `app_session=${h.tokenFor('cookie-user')}`);
      expect(crossSite.status).toBe(403);
      expect(crossSite.body.detail).toMatch(
        /cookie login is not accepted on a request from another site/,
      );
      expect(h.cardscan.requests.length).toBe(before);
    } finally {
      await h.close();
    }
  });
});

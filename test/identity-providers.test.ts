import { createHmac } from 'node:crypto';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { startHarness, TEST_HMAC_SECRET, type Harness } from './helpers/harness';
import { metricValue } from './helpers/metrics';
import {
  createSigningKey,
  startIdentityProvider,
  type IdentityProvider,
} from './stand-ins/identity-provider';

const PATIENT_APP = 'patient-app';
const STAFF_APP = 'staff-app';
const PARTNER_ISSUER = 'https://partners.example.com';

interface TwoProviders {
  h: Harness;
  patients: IdentityProvider;
  staff: IdentityProvider;
  close(): Promise<void>;
}

/**
 * Two stand-in identity providers: `patients` (keys from its JWKS URL) and `staff` (keys through
 * OIDC discovery), and a broker configured with AUTH_PROVIDERS. The harness's own provider is
 * left unused: its single-provider variables are removed.
 */
async function startTwoProviders(
  options: {
    env?: Record<string, string | undefined>;
    staffDown?: boolean;
    patientsDown?: boolean;
    broker?: { now: () => number };
    /** One `kid` for both providers' keys, as two unrelated issuers may well publish. */
    kid?: string;
  } = {},
): Promise<TwoProviders> {
  const patients = await startIdentityProvider({ audience: PATIENT_APP, kid: options.kid });
  const staff = await startIdentityProvider({ audience: STAFF_APP, kid: options.kid });
  staff.setDown(options.staffDown ?? false);
  patients.setDown(options.patientsDown ?? false);
  let h: Harness;
  try {
    h = await startHarness({
      broker: options.broker,
      env: {
        AUTH_ISSUER: undefined,
        AUTH_JWKS_URI: undefined,
        AUTH_AUDIENCE: undefined,
        AUTH_PROVIDERS: 'patients,staff',
        AUTH_PATIENTS_ISSUER: patients.issuer,
        AUTH_PATIENTS_JWKS_URI: patients.jwksUri,
        AUTH_PATIENTS_AUDIENCE: PATIENT_APP,
        AUTH_STAFF_ISSUER: staff.issuer,
        AUTH_STAFF_AUDIENCE: STAFF_APP,
        ...options.env,
      },
    });
  } catch (error) {
    await Promise.all([patients.close(), staff.close()]);
    throw error;
  }
  return {
    h,
    patients,
    staff,
    close: async () => {
      await h.close();
      await Promise.all([patients.close(), staff.close()]);
    },
  };
}

const session = (h: Harness, token: string) =>
  request(h.app).get('/cardscan-session').set('Authorization', `Bearer ${token}`);

function expectUnauthorized(res: request.Response, detail: RegExp) {
  expect(res.status).toBe(401);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="cardscan-broker", error=/);
  expect(res.body.detail).toMatch(detail);
}

const accepted = (provider: string) => `auth_logins_accepted_total{provider="${provider}"}`;
const refusedFor = (provider: string, reason: string) =>
  `auth_logins_refused_total{provider="${provider}",reason="${reason}"}`;

describe('two providers, each with its own keys, audience and user ids', () => {
  let two: TwoProviders;
  beforeAll(async () => {
    two = await startTwoProviders();
  });
  afterAll(() => two.close());

  test('when both providers log in the same sub, then Cardscan sees two different user ids', async () => {
    const { h, patients, staff } = two;
    const fromPatients = await session(h, patients.sign({ sub: '42' }));
    const fromStaff = await session(h, staff.sign({ sub: '42' }));
    expect(fromPatients.status).toBe(200);
    expect(fromStaff.status).toBe(200);
    expect(h.cardscan.userIdInToken(fromPatients.body.session)).toBe('patients:42');
    expect(h.cardscan.userIdInToken(fromStaff.body.session)).toBe('staff:42');
    expect(await metricValue(h.app, accepted('patients'))).toBeGreaterThanOrEqual(1);
    expect(await metricValue(h.app, accepted('staff'))).toBeGreaterThanOrEqual(1);
  });

  test("when a patients' token carries the staff audience, then 401 names the expected audience", async () => {
    const token = two.patients.sign({ sub: 'x' }, { audience: STAFF_APP });
    const { h } = two;
    const res = await session(h, token);
    expectUnauthorized(res, /expected aud to hold one of: patient-app/);
  });

  test('when the token comes from an issuer no provider has, then 401 and no identity provider is asked for keys', async () => {
    const { h, patients, staff } = two;
    // Past the refetch interval: a token of a known issuer with an unknown kid would refetch now.
    h.advanceClock(31_000);
    const before = [patients.jwksFetches(), staff.jwksFetches()];
    const stranger = createSigningKey();
    const refusedBefore = (await metricValue(h.app, refusedFor('unknown', 'unknown_issuer'))) ?? 0;

    const res = await session(
      h,
      patients.sign({ sub: 'x' }, { issuer: 'https://evil.example.com', key: stranger }),
    );
    expectUnauthorized(res, /issuer that is not accepted \(expected one of: /);
    expect(res.body.detail).toContain(patients.issuer);
    expect([patients.jwksFetches(), staff.jwksFetches()]).toEqual(before);
    expect(await metricValue(h.app, refusedFor('unknown', 'unknown_issuer'))).toBe(
      refusedBefore + 1,
    );
    const line = h.logs
      .entries()
      .find((entry) => entry.received_issuer === 'https://evil.example.com');
    expect(line).toMatchObject({
      level: 'warn',
      expected_issuers: [patients.issuer, staff.issuer],
    });

    // The same unknown kid under a known issuer does reach that provider: the count above can move.
    expect((await session(h, patients.sign({ sub: 'x' }, { key: stranger }))).status).toBe(401);
    expect(patients.jwksFetches()).toBe(before[0]! + 1);
  });

  test('when the issuer carries an extra trailing slash, then 401: iss is compared byte for byte', async () => {
    const { h, patients } = two;
    const res = await session(h, patients.sign({ sub: 'x' }, { issuer: `${patients.issuer}/` }));
    expectUnauthorized(res, /issuer that is not accepted/);
  });

  test("when a token of one provider is signed with the other's key, then 401", async () => {
    const { h, patients, staff } = two;
    const forged = staff.sign({ sub: 'x' }, { issuer: patients.issuer, audience: PATIENT_APP });
    expectUnauthorized(await session(h, forged), /signature is invalid|unknown signing key/);
  });

  test('when a refusal happens, then the log has no token and the metric names the provider and the reason', async () => {
    const { h, patients } = two;
    const token = patients.sign({ sub: 'x' }, { audience: 'another-app' });
    const res = await session(h, token);
    expectUnauthorized(res, /audience/);
    const line = h.logs.entries().find((entry) => entry.received_audience === 'another-app');
    expect(line).toMatchObject({
      level: 'warn',
      provider: 'patients',
      expected_audience: [PATIENT_APP],
    });
    expect(h.logs.text()).not.toContain(token);
    expect(await metricValue(h.app, refusedFor('patients', 'audience'))).toBeGreaterThanOrEqual(1);
    expect((await request(h.app).get('/metrics')).text).not.toMatch(/patients:42/);
  });
});

test('when two providers publish the same kid, then the key of one never verifies a token of the other', async () => {
  const two = await startTwoProviders({ kid: 'shared-kid' });
  try {
    const { h, patients, staff } = two;
    expect(patients.currentKey.kid).toBe(staff.currentKey.kid);
    const signedByStaff = staff.sign(
      { sub: 'x' },
      { issuer: patients.issuer, audience: PATIENT_APP },
    );
    expectUnauthorized(await session(h, signedByStaff), /signature is invalid/);
    const signedByPatients = patients.sign(
      { sub: 'x' },
      { issuer: staff.issuer, audience: STAFF_APP },
    );
    expectUnauthorized(await session(h, signedByPatients), /signature is invalid/);
    expect((await session(h, patients.sign({ sub: 'p' }))).status).toBe(200);
    expect((await session(h, staff.sign({ sub: 's' }))).status).toBe(200);
  } finally {
    await two.close();
  }
});

describe('a key provider beside a shared-secret (HS256) provider', () => {
  let two: TwoProviders;
  beforeAll(async () => {
    two = await startTwoProviders({
      env: {
        AUTH_PROVIDERS: 'patients,partners',
        AUTH_STAFF_ISSUER: undefined,
        AUTH_STAFF_AUDIENCE: undefined,
        AUTH_PARTNERS_ISSUER: PARTNER_ISSUER,
        AUTH_PARTNERS_JWT_SECRET: TEST_HMAC_SECRET,
        AUTH_PARTNERS_AUDIENCE: 'partner-app',
      },
    });
  });
  afterAll(() => two.close());

  const hs256 = (claims: Record<string, unknown>, secret: string | Buffer) =>
    jwt.sign(claims, secret, { algorithm: 'HS256', expiresIn: 300 });

  test('when the secret provider signs its own token, then it is accepted', async () => {
    const res = await session(
      two.h,
      hs256({ sub: 'p1', iss: PARTNER_ISSUER, aud: 'partner-app' }, TEST_HMAC_SECRET),
    );
    expect(res.status).toBe(200);
    expect(two.h.cardscan.userIdInToken(res.body.session)).toBe('partners:p1');
  });

  test("when an HS256 token claims the key provider's issuer, then 401 (algorithm confusion)", async () => {
    const { h, patients } = two;
    const withSecret = hs256(
      { sub: 'x', iss: patients.issuer, aud: PATIENT_APP },
      TEST_HMAC_SECRET,
    );
    expectUnauthorized(await session(h, withSecret), /algorithm that is not accepted/);
    const publicPem = patients.currentKey.publicKey.export({ format: 'pem', type: 'spki' });
    const withPublicKey = hs256(
      { sub: 'x', iss: patients.issuer, aud: PATIENT_APP },
      Buffer.from(publicPem),
    );
    expectUnauthorized(await session(h, withPublicKey), /algorithm that is not accepted/);
    expect(await metricValue(h.app, refusedFor('patients', 'algorithm'))).toBeGreaterThanOrEqual(2);
  });

  test("when an RS256 token claims the secret provider's issuer, then 401", async () => {
    const { h, patients } = two;
    const token = patients.sign({ sub: 'x' }, { issuer: PARTNER_ISSUER, audience: 'partner-app' });
    expectUnauthorized(await session(h, token), /algorithm that is not accepted/);
  });
});

describe('audiences and scopes per provider', () => {
  let two: TwoProviders;
  beforeAll(async () => {
    two = await startTwoProviders({
      env: {
        AUTH_PATIENTS_AUDIENCE: `${PATIENT_APP},patient-web`,
        AUTH_PATIENTS_REQUIRED_SCOPE: 'cards:write',
        AUTH_STAFF_AUDIENCE_CLAIM: 'client_id',
      },
    });
  });
  afterAll(() => two.close());

  test('when aud is an array holding one of the listed audiences, then it is accepted', async () => {
    const token = two.patients.sign({
      sub: 'a',
      aud: ['https://other.example.com', 'patient-web'],
      scope: 'openid cards:write',
    });
    expect((await session(two.h, token)).status).toBe(200);
  });

  test('when the audience claim is client_id (Cognito access tokens), then client_id is checked and aud is not', async () => {
    const { h, staff } = two;
    const good = staff.sign({ sub: 'c', client_id: STAFF_APP }, { audience: 'ignored' });
    expect((await session(h, good)).status).toBe(200);
    const onlyAud = staff.sign({ sub: 'c' }, { audience: STAFF_APP });
    expectUnauthorized(await session(h, onlyAud), /expected client_id to hold one of: staff-app/);
  });

  test.each([
    ['scope as a space-separated string', { scope: 'openid cards:write profile' }],
    ['scp as a string', { scp: 'cards:write' }],
    ['scp as an array', { scp: ['openid', 'cards:write'] }],
  ])('when the token grants the scope in %s, then it is accepted', async (_, grant) => {
    const res = await session(two.h, two.patients.sign({ sub: 'scoped', ...grant }));
    expect(res.status).toBe(200);
  });

  test('when the required scope is missing, then 403 insufficient_scope and Cardscan is not called', async () => {
    const { h, patients } = two;
    const calls = h.cardscan.requests.length;
    for (const grant of [{}, { scope: 'openid cards:read' }, { scp: ['cards:writer'] }]) {
      const res = await session(h, patients.sign({ sub: 'unscoped', ...grant }));
      expect(res.status).toBe(403);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.headers['www-authenticate']).toBe(
        'Bearer error="insufficient_scope", scope="cards:write"',
      );
      expect(res.body.detail).toMatch(/cards:write/);
    }
    expect(h.cardscan.requests.length).toBe(calls);
    expect(await metricValue(h.app, refusedFor('patients', 'scope'))).toBe(3);
  });
});

describe('outages', () => {
  test('when one provider is down at start, then the other one serves, /readyz is 200 naming it, and it recovers', async () => {
    let clock = Date.now();
    const two = await startTwoProviders({ staffDown: true, broker: { now: () => clock } });
    try {
      const { h, patients, staff } = two;
      expect((await session(h, patients.sign({ sub: 'p' }))).status).toBe(200);
      const staffUser = await session(h, staff.sign({ sub: 's' }));
      expect(staffUser.status).toBe(503);
      const ready = await request(h.app).get('/readyz');
      expect(ready.status).toBe(200);
      expect(ready.body).toEqual({ status: 'ready', unavailable_providers: ['staff'] });

      staff.setDown(false);
      clock += 31_000;
      await request(h.app).get('/readyz');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect((await request(h.app).get('/readyz')).body).toEqual({ status: 'ready' });
      expect((await session(h, staff.sign({ sub: 's' }))).status).toBe(200);
    } finally {
      await two.close();
    }
  });

  test('when every provider is down at start, then /readyz is 503 naming them', async () => {
    const two = await startTwoProviders({ staffDown: true, patientsDown: true });
    try {
      const ready = await request(two.h.app).get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.detail).toMatch(/patients, staff/);
    } finally {
      await two.close();
    }
  });

  test('when a provider goes down after start, then the other one keeps serving and its own users too', async () => {
    const two = await startTwoProviders();
    try {
      two.staff.setDown(true);
      two.h.advanceClock(25 * 3_600_000);
      expect((await session(two.h, two.patients.sign({ sub: 'p' }))).status).toBe(200);
      expect((await session(two.h, two.staff.sign({ sub: 's' }))).status).toBe(200);
    } finally {
      await two.close();
    }
  });
});

describe('user ids', () => {
  test('when the old provider keeps an empty prefix, then its users keep the ids they had with one provider', async () => {
    const single = await startHarness();
    const before = await session(single, single.tokenFor('alice'));
    const oldId = single.cardscan.userIdInToken(before.body.session);
    await single.close();

    const two = await startTwoProviders({ env: { AUTH_PATIENTS_USER_ID_PREFIX: '' } });
    try {
      const { h, patients, staff } = two;
      const alice = await session(h, patients.sign({ sub: 'alice' }));
      expect(h.cardscan.userIdInToken(alice.body.session)).toBe(oldId);
      expect(oldId).toBe('alice');
      const staffAlice = await session(h, staff.sign({ sub: 'alice' }));
      expect(h.cardscan.userIdInToken(staffAlice.body.session)).toBe('staff:alice');
      // Otherwise this patient would share staff member alice's Cardscan identity.
      const lookalike = await session(h, patients.sign({ sub: 'staff:alice' }));
      expectUnauthorized(lookalike, /starts like a user id of another identity provider/);
      // Nor in another case or a compatibility form of the colon, nor with an invisible character.
      for (const sub of ['STAFF:alice', 'staff\uFF1Aalice']) {
        const folded = await session(h, patients.sign({ sub }));
        expectUnauthorized(folded, /starts like a user id of another identity provider/);
      }
      const invisible = await session(h, patients.sign({ sub: 'staff\u200b:alice' }));
      expectUnauthorized(invisible, /invisible format or separator character/);
    } finally {
      await two.close();
    }
  });

  test('when USER_ID_HASH_SECRET is set, then each user id is the HMAC of its issuer and claim', async () => {
    const two = await startTwoProviders({ env: { USER_ID_HASH_SECRET: TEST_HMAC_SECRET } });
    try {
      const { h, patients, staff } = two;
      const hmac = (issuer: string) =>
        createHmac('sha256', TEST_HMAC_SECRET)
          .update(JSON.stringify([issuer, '7']))
          .digest('hex');
      const fromPatients = await session(h, patients.sign({ sub: '7' }));
      const fromStaff = await session(h, staff.sign({ sub: '7' }));
      expect(h.cardscan.userIdInToken(fromPatients.body.session)).toBe(hmac(patients.issuer));
      expect(h.cardscan.userIdInToken(fromStaff.body.session)).toBe(hmac(staff.issuer));
    } finally {
      await two.close();
    }
  });
});

describe('the security rules hold for every provider', () => {
  test('when a provider takes the user id from email, then an unverified address is 401 and Cardscan is not called', async () => {
    const two = await startTwoProviders({ env: { AUTH_STAFF_USER_ID_CLAIM: 'email' } });
    try {
      const { h, staff } = two;
      const unverified = await session(
        h,
        staff.sign({ sub: 'a-9', email: 'victim@example.com', email_verified: false }),
      );
      expectUnauthorized(unverified, /email is not verified/);
      const verified = await session(
        h,
        staff.sign({ sub: 'b-1', email: 'nurse@example.com', email_verified: true }),
      );
      expect(verified.status).toBe(200);
      expect(h.cardscan.requests).toHaveLength(1);
      expect(h.cardscan.userIdInToken(verified.body.session)).toBe('staff:nurse@example.com');
    } finally {
      await two.close();
    }
  });

  test("when a provider's token holds a control character in sub, then 401 before any upstream call", async () => {
    const two = await startTwoProviders();
    try {
      const { h, patients } = two;
      expectUnauthorized(await session(h, patients.sign({ sub: 'a\u0000b' })), /control character/);
      expect(h.cardscan.requests).toHaveLength(0);
    } finally {
      await two.close();
    }
  });

  test('when AUTH_MAX_TOKEN_AGE is set, then it holds for every provider', async () => {
    const two = await startTwoProviders({ env: { AUTH_MAX_TOKEN_AGE: '600' } });
    try {
      const { h, patients, staff } = two;
      const hourAgo = Math.floor(Date.now() / 1000) - 3600;
      expectUnauthorized(
        await session(h, staff.sign({ sub: 'old-1', iat: hourAgo })),
        /issued too long ago/,
      );
      expectUnauthorized(
        await session(h, patients.sign({ sub: 'old-2', iat: hourAgo })),
        /issued too long ago/,
      );
      expect((await session(h, patients.sign({ sub: 'new-1' }))).status).toBe(200);
    } finally {
      await two.close();
    }
  });
});

describe('single-provider mode: audience claim, scopes and metrics', () => {
  test('when AUTH_AUDIENCE_CLAIM=azp, then azp is checked instead of aud', async () => {
    const h = await startHarness({
      env: { AUTH_AUDIENCE_CLAIM: 'azp', AUTH_AUDIENCE: 'https://app.example.com' },
    });
    try {
      const good = h.idp.sign({ sub: 'u', azp: 'https://app.example.com' });
      expect((await session(h, good)).status).toBe(200);
      const other = h.idp.sign({ sub: 'u', azp: 'https://evil.example.com' });
      expectUnauthorized(await session(h, other), /expected azp to hold one of: https:\/\/app/);
    } finally {
      await h.close();
    }
  });

  test('when AUTH_REQUIRED_SCOPE is set, then a token without it gets 403 insufficient_scope', async () => {
    const h = await startHarness({ env: { AUTH_REQUIRED_SCOPE: 'cards' } });
    try {
      expect((await session(h, h.idp.sign({ sub: 'u', scp: ['cards'] }))).status).toBe(200);
      const res = await session(h, h.idp.sign({ sub: 'u', scope: 'openid' }));
      expect(res.status).toBe(403);
      expect(res.headers['www-authenticate']).toBe(
        'Bearer error="insufficient_scope", scope="cards"',
      );
    } finally {
      await h.close();
    }
  });

  test('when logins are accepted and refused, then the metrics count them under provider="default"', async () => {
    const h = await startHarness();
    try {
      expect(await metricValue(h.app, accepted('default'))).toBe(0);
      expect((await session(h, h.tokenFor('u'))).status).toBe(200);
      const wrongIssuer = h.idp.sign({ sub: 'u' }, { issuer: 'https://evil.example.com' });
      const res = await session(h, wrongIssuer);
      expectUnauthorized(res, new RegExp(`expected ${h.idp.issuer.replace(/\./g, '\\.')}`));
      expect(await metricValue(h.app, accepted('default'))).toBe(1);
      expect(await metricValue(h.app, refusedFor('default', 'issuer'))).toBe(1);
      const line = h.logs
        .entries()
        .find((entry) => entry.msg === 'login refused: issuer not accepted');
      expect(line).toMatchObject({
        level: 'warn',
        expected_issuer: h.idp.issuer,
        received_issuer: 'https://evil.example.com',
      });
      expect(h.logs.text()).not.toContain(wrongIssuer);
    } finally {
      await h.close();
    }
  });
});

import jwt from 'jsonwebtoken';
import request from 'supertest';
import { startHarness, type Harness } from './helpers/harness';
import { startIdentityProvider, type IdentityProvider } from './stand-ins/identity-provider';

/**
 * Each recipe of docs/identity-providers.md, with the provider's host replaced by a stand-in on
 * 127.0.0.1 and everything else as the provider has it: the issuer's path (and trailing slash),
 * where the keys are, the algorithm, the audience (string, array, another claim or absent) and
 * the claims its tokens carry. Each proves the recipe accepts a real-shaped token and refuses a
 * near miss.
 */

const SUPABASE_JWT_SECRET = 'secret_test_supabase_jwt_secret_placeholder_0123';
const now = () => Math.floor(Date.now() / 1000);

interface NearMiss {
  what: string;
  token(idp: IdentityProvider): string;
  status: 401 | 403;
  detail: RegExp;
}

interface Recipe {
  title: string;
  /** Its name in AUTH_PROVIDERS. */
  name: string;
  idp: { issuerPath: string; keyAlg?: 'ES256' };
  /** The recipe's variables, with the stand-in's origin instead of the provider's host. */
  env(idp: IdentityProvider): Record<string, string>;
  token(idp: IdentityProvider): string;
  userId: string;
  nearMisses: NearMiss[];
}

const originOf = (idp: IdentityProvider) => new URL(idp.issuer).origin;

const RECIPES: Recipe[] = [
  {
    title: 'Firebase Auth',
    name: 'patients',
    idp: { issuerPath: '/cardscan-demo' },
    env: (idp) => ({
      AUTH_PATIENTS_ISSUER: idp.issuer,
      AUTH_PATIENTS_JWKS_URI: idp.jwksUri,
      AUTH_PATIENTS_AUDIENCE: 'cardscan-demo',
      AUTH_PATIENTS_ALGORITHMS: 'RS256',
    }),
    token: (idp) =>
      idp.sign({
        aud: 'cardscan-demo',
        sub: 'Kx3mFirebaseUid01',
        user_id: 'Kx3mFirebaseUid01',
        auth_time: now(),
        firebase: { identities: {}, sign_in_provider: 'password' },
      }),
    userId: 'patients:Kx3mFirebaseUid01',
    nearMisses: [
      {
        // Google signs every Firebase project's tokens with the same keys.
        what: 'a token of another Firebase project, signed with the same keys',
        token: (idp) =>
          idp.sign(
            { aud: 'other-project', sub: 'u' },
            { issuer: `${originOf(idp)}/other-project` },
          ),
        status: 401,
        detail: /issuer that is not accepted/,
      },
      {
        what: 'the right issuer with another project as audience',
        token: (idp) => idp.sign({ aud: 'other-project', sub: 'u' }),
        status: 401,
        detail: /expected aud to hold one of: cardscan-demo/,
      },
    ],
  },
  {
    title: 'Auth0 (access token for an API)',
    name: 'patients',
    idp: { issuerPath: '/' },
    env: (idp) => ({
      AUTH_PATIENTS_ISSUER: idp.issuer,
      AUTH_PATIENTS_AUDIENCE: 'https://cardscan-broker.example.com',
      AUTH_PATIENTS_ALGORITHMS: 'RS256',
    }),
    token: (idp) =>
      idp.sign({
        sub: 'auth0|65f1c0ffee',
        aud: ['https://cardscan-broker.example.com', `${idp.issuer}userinfo`],
        azp: 'spa-client-id',
        scope: 'openid profile email',
      }),
    userId: 'patients:auth0|65f1c0ffee',
    nearMisses: [
      {
        what: 'the issuer without its trailing slash',
        token: (idp) =>
          idp.sign(
            { sub: 'auth0|x', aud: 'https://cardscan-broker.example.com' },
            { issuer: idp.issuer.replace(/\/$/, '') },
          ),
        status: 401,
        detail: /issuer that is not accepted/,
      },
      {
        what: 'an ID token (audience: the client id)',
        token: (idp) => idp.sign({ sub: 'auth0|x', aud: 'spa-client-id' }),
        status: 401,
        detail: /audience/,
      },
    ],
  },
  {
    title: 'Amazon Cognito (ID token)',
    name: 'patients',
    idp: { issuerPath: '/us-east-1_AbCdEf123' },
    env: (idp) => ({
      AUTH_PATIENTS_ISSUER: idp.issuer,
      AUTH_PATIENTS_JWKS_URI: `${idp.issuer}/.well-known/jwks.json`,
      AUTH_PATIENTS_AUDIENCE: '1example23456789',
      AUTH_PATIENTS_ALGORITHMS: 'RS256',
    }),
    token: (idp) =>
      idp.sign({
        sub: 'aaaaaaaa-bbbb-cccc-dddd-example',
        aud: '1example23456789',
        token_use: 'id',
        'cognito:username': 'jane',
        email: 'jane@example.com',
        auth_time: now(),
      }),
    userId: 'patients:aaaaaaaa-bbbb-cccc-dddd-example',
    nearMisses: [
      {
        what: 'an access token of the same pool (client_id, no aud)',
        token: (idp) =>
          idp.sign({
            sub: 'x',
            client_id: '1example23456789',
            token_use: 'access',
            scope: 'openid',
          }),
        status: 401,
        detail: /expected aud to hold one of: 1example23456789/,
      },
      {
        what: 'an ID token of another user pool',
        token: (idp) =>
          idp.sign(
            { sub: 'x', aud: '1example23456789', token_use: 'id' },
            { issuer: `${originOf(idp)}/us-east-1_Other9999` },
          ),
        status: 401,
        detail: /issuer that is not accepted/,
      },
    ],
  },
  {
    title: 'Amazon Cognito (access token)',
    name: 'patients',
    idp: { issuerPath: '/us-east-1_AbCdEf123' },
    env: (idp) => ({
      AUTH_PATIENTS_ISSUER: idp.issuer,
      AUTH_PATIENTS_JWKS_URI: `${idp.issuer}/.well-known/jwks.json`,
      AUTH_PATIENTS_AUDIENCE_CLAIM: 'client_id',
      AUTH_PATIENTS_AUDIENCE: '1example23456789',
      AUTH_PATIENTS_ALGORITHMS: 'RS256',
    }),
    token: (idp) =>
      idp.sign({
        sub: 'aaaaaaaa-bbbb-cccc-dddd-example',
        client_id: '1example23456789',
        token_use: 'access',
        scope: 'openid email',
        username: 'jane',
      }),
    userId: 'patients:aaaaaaaa-bbbb-cccc-dddd-example',
    nearMisses: [
      {
        what: 'an ID token of the same pool (aud, no client_id)',
        token: (idp) => idp.sign({ sub: 'x', aud: '1example23456789', token_use: 'id' }),
        status: 401,
        detail: /expected client_id to hold one of: 1example23456789/,
      },
      {
        what: 'an access token of another app client of the pool',
        token: (idp) => idp.sign({ sub: 'x', client_id: 'otherclient999', token_use: 'access' }),
        status: 401,
        detail: /audience/,
      },
    ],
  },
  {
    title: 'Okta (custom authorization server)',
    name: 'staff',
    idp: { issuerPath: '/oauth2/default' },
    env: (idp) => ({
      AUTH_STAFF_ISSUER: idp.issuer,
      AUTH_STAFF_AUDIENCE: 'api://default',
      AUTH_STAFF_ALGORITHMS: 'RS256',
      AUTH_STAFF_USER_ID_CLAIM: 'uid',
      AUTH_STAFF_REQUIRED_SCOPE: 'cardscan',
    }),
    token: (idp) =>
      idp.sign({
        ver: 1,
        jti: 'AT.example',
        aud: 'api://default',
        cid: '0oaexampleclient',
        uid: '00uexampleuser',
        sub: 'nurse@example.com',
        scp: ['openid', 'cardscan'],
      }),
    userId: 'staff:00uexampleuser',
    nearMisses: [
      {
        what: 'a token of another authorization server of the same org',
        token: (idp) =>
          idp.sign(
            { aud: 'api://default', uid: 'u', scp: ['cardscan'] },
            { issuer: `${originOf(idp)}/oauth2/aus-other` },
          ),
        status: 401,
        detail: /issuer that is not accepted/,
      },
      {
        what: 'a token without the cardscan scope',
        token: (idp) => idp.sign({ aud: 'api://default', uid: 'u', scp: ['openid'] }),
        status: 403,
        detail: /cardscan/,
      },
    ],
  },
  {
    title: 'Microsoft Entra ID (v2 tokens)',
    name: 'staff',
    idp: { issuerPath: '/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0' },
    env: (idp) => ({
      AUTH_STAFF_ISSUER: idp.issuer,
      AUTH_STAFF_AUDIENCE: '6e74172b-be56-4843-9ff4-e66a39bb12e3',
      AUTH_STAFF_ALGORITHMS: 'RS256',
      AUTH_STAFF_USER_ID_CLAIM: 'oid',
    }),
    token: (idp) =>
      idp.sign({
        ver: '2.0',
        aud: '6e74172b-be56-4843-9ff4-e66a39bb12e3',
        tid: '9188040d-6c67-4c5b-b112-36a304b66dad',
        oid: '00000000-0000-0000-66f3-3332eca7ea81',
        sub: 'AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ',
        azp: 'client-app-id',
        scp: 'Cards.Read',
      }),
    userId: 'staff:00000000-0000-0000-66f3-3332eca7ea81',
    nearMisses: [
      {
        what: 'a token of another tenant',
        token: (idp) =>
          idp.sign(
            { aud: '6e74172b-be56-4843-9ff4-e66a39bb12e3', oid: 'o' },
            { issuer: `${originOf(idp)}/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0` },
          ),
        status: 401,
        detail: /issuer that is not accepted/,
      },
      {
        // v1 access tokens name https://sts.windows.net/<tenant>/ as their issuer.
        what: 'a v1 token of the same tenant',
        token: (idp) =>
          idp.sign(
            { aud: 'api://cardscan', oid: 'o', ver: '1.0' },
            { issuer: `${originOf(idp)}/9188040d-6c67-4c5b-b112-36a304b66dad/` },
          ),
        status: 401,
        detail: /issuer that is not accepted/,
      },
    ],
  },
  {
    title: 'Supabase (asymmetric ES256 keys)',
    name: 'patients',
    idp: { issuerPath: '/auth/v1', keyAlg: 'ES256' },
    env: (idp) => ({
      AUTH_PATIENTS_ISSUER: idp.issuer,
      AUTH_PATIENTS_JWKS_URI: `${idp.issuer}/.well-known/jwks.json`,
      AUTH_PATIENTS_AUDIENCE: 'authenticated',
      AUTH_PATIENTS_ALGORITHMS: 'ES256',
    }),
    token: (idp) =>
      idp.sign({
        aud: 'authenticated',
        role: 'authenticated',
        sub: '8ccaa7af-909f-44e7-84cb-67cdccb56be6',
        email: 'jane@example.com',
        aal: 'aal1',
        session_id: 's-1',
        is_anonymous: false,
      }),
    userId: 'patients:8ccaa7af-909f-44e7-84cb-67cdccb56be6',
    nearMisses: [
      {
        what: 'a token of the anon role (no aud: authenticated)',
        token: (idp) => idp.sign({ role: 'anon', sub: 'x' }),
        status: 401,
        detail: /expected aud to hold one of: authenticated/,
      },
    ],
  },
  {
    title: 'Supabase (legacy HS256 JWT secret)',
    name: 'patients',
    idp: { issuerPath: '/auth/v1' },
    env: (idp) => ({
      AUTH_PATIENTS_ISSUER: idp.issuer,
      AUTH_PATIENTS_JWT_SECRET: SUPABASE_JWT_SECRET,
      AUTH_PATIENTS_AUDIENCE: 'authenticated',
    }),
    token: (idp) =>
      jwt.sign(
        {
          iss: idp.issuer,
          aud: 'authenticated',
          role: 'authenticated',
          sub: '8ccaa7af-909f-44e7-84cb-67cdccb56be6',
        },
        SUPABASE_JWT_SECRET,
        { algorithm: 'HS256', expiresIn: 300 },
      ),
    userId: 'patients:8ccaa7af-909f-44e7-84cb-67cdccb56be6',
    nearMisses: [
      {
        // The anon key ships inside every app and is signed with the same secret.
        what: 'the public anon key',
        token: () =>
          jwt.sign({ iss: 'supabase', ref: 'abcdefghij', role: 'anon' }, SUPABASE_JWT_SECRET, {
            algorithm: 'HS256',
            expiresIn: 300,
          }),
        status: 401,
        detail: /issuer that is not accepted/,
      },
      {
        what: 'an anon-role token with the project issuer',
        token: (idp) =>
          jwt.sign({ iss: idp.issuer, role: 'anon', sub: 'x' }, SUPABASE_JWT_SECRET, {
            algorithm: 'HS256',
            expiresIn: 300,
          }),
        status: 401,
        detail: /expected aud to hold one of: authenticated/,
      },
    ],
  },
  {
    title: 'Clerk (session token, azp)',
    name: 'patients',
    idp: { issuerPath: '' },
    env: (idp) => ({
      AUTH_PATIENTS_ISSUER: idp.issuer,
      AUTH_PATIENTS_JWKS_URI: `${idp.issuer}/.well-known/jwks.json`,
      AUTH_PATIENTS_AUDIENCE_CLAIM: 'azp',
      AUTH_PATIENTS_AUDIENCE: 'https://app.example.com',
      AUTH_PATIENTS_ALGORITHMS: 'RS256',
    }),
    token: (idp) =>
      idp.sign({
        azp: 'https://app.example.com',
        sid: 'sess_2abc',
        sub: 'user_2NNEqL2nrIRdJ194ndJqAHwEfxC',
        v: 2,
      }),
    userId: 'patients:user_2NNEqL2nrIRdJ194ndJqAHwEfxC',
    nearMisses: [
      {
        what: 'a session token minted for another origin',
        token: (idp) => idp.sign({ azp: 'https://evil.example.com', sub: 'user_x' }),
        status: 401,
        detail: /expected azp to hold one of: https:\/\/app\.example\.com/,
      },
    ],
  },
];

describe.each(RECIPES)('recipe: $title', (recipe) => {
  let idp: IdentityProvider;
  let h: Harness;
  beforeAll(async () => {
    // No default audience: each token carries exactly what the provider puts in it.
    idp = await startIdentityProvider(recipe.idp);
    h = await startHarness({
      env: {
        AUTH_ISSUER: undefined,
        AUTH_JWKS_URI: undefined,
        AUTH_AUDIENCE: undefined,
        AUTH_PROVIDERS: recipe.name,
        ...recipe.env(idp),
      },
    });
  });
  afterAll(async () => {
    await h?.close();
    await idp.close();
  });

  test('when a token of the provider’s shape arrives, then the session is minted for the recipe’s user id', async () => {
    const res = await request(h.app)
      .get('/cardscan-session')
      .set('Authorization', `Bearer ${recipe.token(idp)}`);
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe(recipe.userId);
  });

  test.each(recipe.nearMisses)('when $what arrives, then it is refused', async (miss) => {
    const calls = h.cardscan.requests.length;
    const res = await request(h.app)
      .get('/cardscan-session')
      .set('Authorization', `Bearer ${miss.token(idp)}`);
    expect(res.status).toBe(miss.status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body.detail).toMatch(miss.detail);
    expect(h.cardscan.requests.length).toBe(calls);
  });
});

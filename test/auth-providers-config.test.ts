import { CONFIG_VARIABLES, loadConfig } from '../src/config/config';
import { problemsOf } from './helpers/config-problems';

const SECRET = 'secret_test_hmac_placeholder_0123456789abcdef';
const KEY = { CARDSCAN_API_KEY: 'sk_test_cardscan_ai_placeholder' };
const twoProviders = {
  ...KEY,
  AUTH_PROVIDERS: 'patients,staff',
  AUTH_PATIENTS_ISSUER: 'https://patients.example.com/',
  AUTH_PATIENTS_AUDIENCE: 'patient-app',
  AUTH_STAFF_ISSUER: 'https://login.microsoftonline.com/tenant-id/v2.0',
  AUTH_STAFF_AUDIENCE: 'staff-app',
};

const variablesOf = (problems: string[]) => problems.map((line) => line.split(':')[0]).sort();

describe('AUTH_PROVIDERS: what a valid configuration gives', () => {
  test('when two providers are configured, then each has its defaults: discovery, key algorithms, sub, the name as prefix', () => {
    const { config } = loadConfig(twoProviders);
    expect(config.auth.providers).toEqual([
      {
        name: 'patients',
        keys: { kind: 'discovery', issuer: 'https://patients.example.com/' },
        issuer: 'https://patients.example.com/',
        audience: ['patient-app'],
        audienceClaim: 'aud',
        algorithms: ['RS256', 'ES256', 'PS256'],
        userIdClaim: 'sub',
        userIdPrefix: 'patients:',
        requiredScopes: [],
      },
      expect.objectContaining({ name: 'staff', userIdPrefix: 'staff:' }),
    ]);
    expect(config.auth.keys).toBeUndefined();
  });

  test('when every setting of a provider is given, then each is kept', () => {
    const { config } = loadConfig({
      ...twoProviders,
      AUTH_STAFF_JWT_SECRET: SECRET,
      AUTH_STAFF_ALGORITHMS: 'HS256,HS512',
      AUTH_STAFF_AUDIENCE: 'a, b',
      AUTH_STAFF_AUDIENCE_CLAIM: 'client_id',
      AUTH_STAFF_USER_ID_CLAIM: 'oid',
      AUTH_STAFF_USER_ID_PREFIX: 'clinician/',
      AUTH_STAFF_REQUIRED_SCOPE: 'cards:write  openid',
    });
    expect(config.auth.providers?.[1]).toEqual({
      name: 'staff',
      keys: { kind: 'secret', secret: SECRET },
      issuer: 'https://login.microsoftonline.com/tenant-id/v2.0',
      audience: ['a', 'b'],
      audienceClaim: 'client_id',
      algorithms: ['HS256', 'HS512'],
      userIdClaim: 'oid',
      userIdPrefix: 'clinician/',
      requiredScopes: ['cards:write', 'openid'],
    });
  });

  test('when one provider sets an empty prefix (to keep the ids of a one-provider deployment), then it is allowed', () => {
    const { config } = loadConfig({ ...twoProviders, AUTH_PATIENTS_USER_ID_PREFIX: '' });
    expect(config.auth.providers?.map((provider) => provider.userIdPrefix)).toEqual(['', 'staff:']);
  });

  test('when the docs list the variables, then the provider family is among them as AUTH_<N>_…', () => {
    expect(CONFIG_VARIABLES).toEqual(
      expect.arrayContaining([
        'AUTH_PROVIDERS',
        'AUTH_<N>_ISSUER',
        'AUTH_<N>_AUDIENCE_CLAIM',
        'AUTH_<N>_USER_ID_PREFIX',
        'AUTH_<N>_REQUIRED_SCOPE',
        'AUTH_AUDIENCE_CLAIM',
        'AUTH_REQUIRED_SCOPE',
      ]),
    );
  });
});

describe('AUTH_PROVIDERS: every problem at once, naming the variable', () => {
  test('when a provider has no issuer and no audience, then both are reported', () => {
    const problems = problemsOf({
      ...KEY,
      AUTH_PROVIDERS: 'patients',
      AUTH_PATIENTS_JWKS_URI: 'https://patients.example.com/jwks.json',
    });
    expect(variablesOf(problems)).toEqual(['AUTH_PATIENTS_AUDIENCE', 'AUTH_PATIENTS_ISSUER']);
  });

  test('when a provider has both a JWKS URI and a secret, then it is refused without printing the secret', () => {
    const problems = problemsOf({
      ...twoProviders,
      AUTH_STAFF_JWKS_URI: 'https://staff.example.com/jwks.json',
      AUTH_STAFF_JWT_SECRET: SECRET,
    });
    expect(variablesOf(problems)).toEqual(['AUTH_STAFF_JWT_SECRET']);
    expect(problems.join('\n')).not.toContain(SECRET);
  });

  test('when algorithms are unknown or do not fit the key source, then each provider is reported', () => {
    const problems = problemsOf({
      ...twoProviders,
      AUTH_PATIENTS_ALGORITHMS: 'RS256,HS256',
      AUTH_STAFF_JWT_SECRET: SECRET,
      AUTH_STAFF_ALGORITHMS: 'RS256',
    });
    expect(variablesOf(problems)).toEqual(['AUTH_PATIENTS_ALGORITHMS', 'AUTH_STAFF_ALGORITHMS']);
    expect(problemsOf({ ...twoProviders, AUTH_STAFF_ALGORITHMS: 'none' })).toEqual([
      expect.stringMatching(/^AUTH_STAFF_ALGORITHMS: .*\(refused: none\)$/),
    ]);
  });

  test('when two providers have the same issuer, then it is refused', () => {
    const problems = problemsOf({
      ...twoProviders,
      AUTH_STAFF_ISSUER: twoProviders.AUTH_PATIENTS_ISSUER,
    });
    expect(problems).toEqual([
      expect.stringMatching(/^AUTH_STAFF_ISSUER: is the same issuer as AUTH_PATIENTS_ISSUER/),
    ]);
  });

  test('when user ids of two providers could collide, then it is refused', () => {
    expect(
      variablesOf(
        problemsOf({
          ...twoProviders,
          AUTH_PATIENTS_USER_ID_PREFIX: '',
          AUTH_STAFF_USER_ID_PREFIX: '',
        }),
      ),
    ).toEqual(['AUTH_STAFF_USER_ID_PREFIX']);
    expect(
      problemsOf({
        ...twoProviders,
        AUTH_PATIENTS_USER_ID_PREFIX: 'p',
        AUTH_STAFF_USER_ID_PREFIX: 'p:',
      }),
    ).toEqual([
      expect.stringMatching(
        /^AUTH_STAFF_USER_ID_PREFIX: starts with the prefix of AUTH_PATIENTS_USER_ID_PREFIX/,
      ),
    ]);
    expect(
      variablesOf(
        problemsOf({
          ...twoProviders,
          AUTH_PATIENTS_USER_ID_PREFIX: 'same:',
          AUTH_STAFF_USER_ID_PREFIX: 'same:',
        }),
      ),
    ).toEqual(['AUTH_STAFF_USER_ID_PREFIX']);
  });

  test('when AUTH_PROVIDERS is combined with single-provider variables, then each of them is reported', () => {
    const problems = problemsOf({
      ...twoProviders,
      AUTH_ISSUER: 'https://login.example.com/',
      AUTH_AUDIENCE: 'app',
      AUTH_USER_ID_CLAIM: 'email',
      AUTH_REQUIRED_SCOPE: 'cards',
    });
    expect(variablesOf(problems)).toEqual([
      'AUTH_AUDIENCE',
      'AUTH_ISSUER',
      'AUTH_REQUIRED_SCOPE',
      'AUTH_USER_ID_CLAIM',
    ]);
  });

  test('when a provider variable names a provider not in the list (a typo), then it is reported, also without AUTH_PROVIDERS', () => {
    expect(
      problemsOf({
        ...twoProviders,
        AUTH_PATIENT_REQUIRED_SCOPE: 'cards',
        AUTH_STAF_AUDIENCE: 'x',
      }),
    ).toEqual([
      'AUTH_PATIENT_REQUIRED_SCOPE: names no provider in AUTH_PROVIDERS, so this setting would be ignored',
      'AUTH_STAF_AUDIENCE: names no provider in AUTH_PROVIDERS, so this setting would be ignored',
    ]);
    expect(
      problemsOf({ ...KEY, AUTH_JWT_SECRET: SECRET, AUTH_STAFF_ISSUER: 'https://x.example.com' }),
    ).toEqual(['AUTH_STAFF_ISSUER: AUTH_PROVIDERS is not set, so this setting would be ignored']);
  });

  test('when provider names are malformed, repeated or reserved, then AUTH_PROVIDERS is reported', () => {
    const problems = problemsOf({ ...KEY, AUTH_PROVIDERS: 'Patients,staff,staff,default' });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^AUTH_PROVIDERS: entry 1 is not a name/),
        'AUTH_PROVIDERS: "staff" is listed twice',
        expect.stringMatching(/^AUTH_PROVIDERS: "default" is reserved/),
        'AUTH_STAFF_ISSUER: is required',
      ]),
    );
  });

  test('when many things are wrong at once, then every one is reported in one go', () => {
    const problems = problemsOf({
      ...twoProviders,
      AUTH_ISSUER: 'https://login.example.com/',
      AUTH_PATIENTS_ISSUER: 'http://patients.example.com',
      AUTH_PATIENTS_JWT_SECRET: 'too-short',
      AUTH_STAFF_AUDIENCE: undefined,
      AUTH_STAFF_REQUIRED_SCOPE: 'bad"scope',
      AUTH_NURSES_ISSUER: 'https://nurses.example.com',
    });
    expect(variablesOf(problems)).toEqual([
      'AUTH_ISSUER',
      'AUTH_NURSES_ISSUER',
      'AUTH_PATIENTS_ISSUER',
      'AUTH_PATIENTS_JWT_SECRET',
      'AUTH_STAFF_AUDIENCE',
      'AUTH_STAFF_REQUIRED_SCOPE',
    ]);
    expect(problems.join('\n')).not.toContain('too-short');
  });
});

describe('single-provider additions', () => {
  test('when AUTH_AUDIENCE_CLAIM and AUTH_REQUIRED_SCOPE are set, then they are kept; by default aud and none', () => {
    const base = { ...KEY, AUTH_JWT_SECRET: SECRET, AUTH_AUDIENCE: 'app' };
    expect(loadConfig(base).config.auth).toMatchObject({
      audienceClaim: 'aud',
      requiredScopes: [],
    });
    expect(
      loadConfig({ ...base, AUTH_AUDIENCE_CLAIM: 'azp', AUTH_REQUIRED_SCOPE: 'a b' }).config.auth,
    ).toMatchObject({ audienceClaim: 'azp', requiredScopes: ['a', 'b'] });
  });

  test('when AUTH_AUDIENCE_CLAIM is set without AUTH_AUDIENCE, then it is refused', () => {
    expect(problemsOf({ ...KEY, AUTH_JWT_SECRET: SECRET, AUTH_AUDIENCE_CLAIM: 'azp' })).toEqual([
      'AUTH_AUDIENCE_CLAIM: needs AUTH_AUDIENCE, the values that claim must hold',
    ]);
  });
});

describe('AUTH_PROVIDERS: start-up warnings', () => {
  test('when a provider takes the user id from a claim other than sub or oid, then the warning names its variable', () => {
    const { warnings } = loadConfig({
      ...twoProviders,
      AUTH_STAFF_USER_ID_CLAIM: 'email',
      AUTH_PATIENTS_USER_ID_CLAIM: 'oid',
    });
    const claimWarnings = warnings.filter((line) => line.includes('_USER_ID_CLAIM='));
    expect(claimWarnings).toHaveLength(1);
    expect(claimWarnings[0]).toMatch(/^AUTH_STAFF_USER_ID_CLAIM=email: /);
    expect(claimWarnings[0]).toContain('email_verified is true');
  });
});

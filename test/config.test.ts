import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import {
  CARDSCAN_LIVE_URL,
  CARDSCAN_SANDBOX_URL,
  CERTISCAN_DEFAULT_URL,
  loadConfig,
  parseRotatedCredential,
} from '../src/config/config';
import { problemsOf } from './helpers/config-problems';

const HMAC = 'secret_test_hmac_placeholder_0123456789abcdef';
const minimal = { CARDSCAN_API_KEY: 'sk_test_cardscan_ai_placeholder', AUTH_JWT_SECRET: HMAC };

describe('defaults', () => {
  test('when only the required variables are set, then every default of the interface page applies', () => {
    const { config, warnings } = loadConfig(minimal);
    expect(config.server).toEqual({
      port: 8080,
      host: '0.0.0.0',
      trustProxy: false,
      shutdownDelayMs: 5000,
      shutdownTimeoutMs: 15000,
    });
    expect(config.cardscan).toMatchObject({ keyKind: 'test', baseUrl: CARDSCAN_SANDBOX_URL });
    expect(config.auth).toMatchObject({ algorithms: ['HS256'], userIdClaim: 'sub', audience: [] });
    expect(config.cors.origins).toEqual([]);
    expect(config.admin).toBeUndefined();
    expect(config.certiscan.baseUrl).toBe(CERTISCAN_DEFAULT_URL);
    expect(config.upstream.timeoutMs).toBe(5000);
    expect(config.rateLimit).toEqual({ perMinute: 30, redisUrl: undefined });
    expect(config.logLevel).toBe('info');
    expect(warnings).toEqual([expect.stringMatching(/^AUTH_AUDIENCE is not set/)]);
    expect(Object.isFrozen(config.auth)).toBe(true);
  });

  test('when the key is live, then the live URL is the default', () => {
    const { config } = loadConfig({
      ...minimal,
      CARDSCAN_API_KEY: 'sk_live_cardscan_ai_placeholder',
    });
    expect(config.cardscan).toMatchObject({ keyKind: 'live', baseUrl: CARDSCAN_LIVE_URL });
  });

  test('when the legacy key forms are used, then both are accepted', () => {
    expect(
      loadConfig({ ...minimal, CARDSCAN_API_KEY: 'secret_test_legacy' }).config.cardscan.keyKind,
    ).toBe('test');
    expect(
      loadConfig({ ...minimal, CARDSCAN_API_KEY: 'secret_live_old' }).config.cardscan.keyKind,
    ).toBe('live');
  });

  test('when keys come from a JWKS, then the key algorithms are the default', () => {
    const { config } = loadConfig({
      CARDSCAN_API_KEY: minimal.CARDSCAN_API_KEY,
      AUTH_JWKS_URI: 'https://login.example.com/jwks.json',
    });
    expect(config.auth.algorithms).toEqual(['RS256', 'ES256', 'PS256']);
    expect(config.auth.keys).toEqual({
      kind: 'jwks',
      jwksUri: 'https://login.example.com/jwks.json',
    });
  });

  test('when AUTH_ISSUER has a trailing slash, then it is kept exactly (iss is compared as is)', () => {
    const { config } = loadConfig({
      CARDSCAN_API_KEY: minimal.CARDSCAN_API_KEY,
      AUTH_ISSUER: 'https://tenant.auth0.com/',
    });
    expect(config.auth.issuer).toBe('https://tenant.auth0.com/');
    expect(config.auth.keys).toEqual({ kind: 'discovery', issuer: 'https://tenant.auth0.com/' });
  });

  test('when values are empty strings, then they count as unset', () => {
    const { config } = loadConfig({ ...minimal, PORT: '', CORS_ORIGINS: ' ', ADMIN_API_KEYS: '' });
    expect(config.server.port).toBe(8080);
    expect(config.admin).toBeUndefined();
  });

  test('when the admin key list and token are set, then admin is on with the hashes and a bare token', () => {
    const hash = 'a'.repeat(64);
    const { config } = loadConfig({
      ...minimal,
      ADMIN_API_KEYS: `alice:${hash}, bob:${'B'.repeat(64)}`,
      CERTISCAN_AUTH_TOKEN: 'Bearer secret_test_certiscan',
      ADMIN_PORT: '9090',
    });
    expect(config.admin?.keys.map((key) => key.name)).toEqual(['alice', 'bob']);
    expect(config.admin?.keys[0]?.sha256.toString('hex')).toBe(hash);
    expect(config.admin?.port).toBe(9090);
    expect(config.certiscan.authToken).toBe('secret_test_certiscan');
  });

  test('when JWKS keys come without AUTH_ISSUER or AUTH_AUDIENCE, then both gaps are warned about', () => {
    const { warnings } = loadConfig({
      CARDSCAN_API_KEY: minimal.CARDSCAN_API_KEY,
      AUTH_JWKS_URI: 'https://login.example.com/jwks.json',
    });
    expect(warnings).toEqual([
      expect.stringMatching(/^AUTH_AUDIENCE is not set/),
      expect.stringMatching(/^AUTH_JWKS_URI without AUTH_ISSUER/),
    ]);
    const pinned = loadConfig({
      CARDSCAN_API_KEY: minimal.CARDSCAN_API_KEY,
      AUTH_JWKS_URI: 'https://login.example.com/jwks.json',
      AUTH_ISSUER: 'https://login.example.com/',
      AUTH_AUDIENCE: 'my-app',
    });
    expect(pinned.warnings).toEqual([]);
  });

  test('when TRUST_PROXY is a hop count, a boolean or a subnet list, then it is kept for Express', () => {
    expect(loadConfig({ ...minimal, TRUST_PROXY: '2' }).config.server.trustProxy).toBe(2);
    expect(loadConfig({ ...minimal, TRUST_PROXY: 'true' }).config.server.trustProxy).toBe(true);
    expect(
      loadConfig({ ...minimal, TRUST_PROXY: 'loopback, 10.0.0.0/8, ::1' }).config.server.trustProxy,
    ).toBe('loopback, 10.0.0.0/8, ::1');
  });

  test('when a proxy variable is set in any case, then upstream calls look for a proxy; otherwise not', () => {
    expect(loadConfig(minimal).config.upstream.proxyFromEnvironment).toBe(false);
    for (const name of ['HTTPS_PROXY', 'http_proxy', 'ALL_PROXY']) {
      const env = { ...minimal, [name]: 'http://127.0.0.1:3128' };
      expect(loadConfig(env).config.upstream.proxyFromEnvironment).toBe(true);
    }
    expect(loadConfig({ ...minimal, HTTPS_PROXY: '' }).config.upstream.proxyFromEnvironment).toBe(
      false,
    );
  });

  test('when NODE_ENV=production with a test key, then a loud warning says the sandbox is not for PHI', () => {
    const { warnings } = loadConfig({ ...minimal, NODE_ENV: 'production' });
    expect(warnings.join('\n')).toMatch(/TEST key.*NOT HIPAA compliant/);
  });
});

describe('problems', () => {
  test('when nothing is set, then the key and the auth mode are both reported', () => {
    const problems = problemsOf({});
    expect(problems).toEqual(
      expect.arrayContaining([
        'CARDSCAN_API_KEY: is required',
        'AUTH_ISSUER: set exactly one of AUTH_ISSUER, AUTH_JWKS_URI, AUTH_JWT_SECRET',
      ]),
    );
  });

  test('when many things are wrong, then every problem is reported at once, one line each, naming the variable', () => {
    const problems = problemsOf({
      CARDSCAN_API_KEY: 'sk_prod_unknown_form_secret_value',
      AUTH_JWT_SECRET: 'too-short-secret-value',
      PORT: 'eighty',
      UPSTREAM_TIMEOUT_MS: '5',
      CORS_ORIGINS: 'https://ok.example.com,https://bad.example.com/path',
      ADMIN_API_KEYS: 'alice:nothex',
      LOG_LEVEL: 'loud',
      REDIS_URL: 'http://redis',
    });
    const variables = problems.map((line) => line.split(':')[0]);
    expect(variables).toEqual(
      expect.arrayContaining([
        'CARDSCAN_API_KEY',
        'AUTH_JWT_SECRET',
        'PORT',
        'UPSTREAM_TIMEOUT_MS',
        'CORS_ORIGINS',
        'ADMIN_API_KEYS',
        'LOG_LEVEL',
        'REDIS_URL',
        'CERTISCAN_AUTH_TOKEN',
      ]),
    );
    const text = problems.join('\n');
    expect(text).not.toContain('sk_prod_unknown_form_secret_value');
    expect(text).not.toContain('too-short-secret-value');
  });

  test('when a live key is used with the sandbox URL, then it is refused', () => {
    expect(
      problemsOf({
        ...minimal,
        CARDSCAN_API_KEY: 'sk_live_cardscan_ai_x',
        CARDSCAN_BASE_URL: CARDSCAN_SANDBOX_URL,
      }),
    ).toEqual(['CARDSCAN_BASE_URL: a live key cannot be used with the sandbox URL']);
  });

  test('when a test key is used with the live URL, then it is refused', () => {
    expect(problemsOf({ ...minimal, CARDSCAN_BASE_URL: CARDSCAN_LIVE_URL })).toEqual([
      'CARDSCAN_BASE_URL: a test key cannot be used with the live URL',
    ]);
  });

  test('when an upstream or issuer URL is http:// to a non-loopback host, then it is refused', () => {
    const problems = problemsOf({
      CARDSCAN_API_KEY: minimal.CARDSCAN_API_KEY,
      CARDSCAN_BASE_URL: 'http://cardscan.internal/v1',
      AUTH_ISSUER: 'http://login.example.com',
      CERTISCAN_BASE_URL: 'http://certiscan.example.com/api/v1',
    });
    expect(problems.map((line) => line.split(':')[0]).sort()).toEqual([
      'AUTH_ISSUER',
      'CARDSCAN_BASE_URL',
      'CERTISCAN_BASE_URL',
    ]);
    expect(problems[0]).toMatch(/https:\/\/ URL \(http:\/\/ is allowed only for loopback hosts\)/);
  });

  test('when http:// points at loopback, then it is allowed (the stand-ins)', () => {
    const { config } = loadConfig({ ...minimal, CARDSCAN_BASE_URL: 'http://127.0.0.1:9999/v1/' });
    expect(config.cardscan.baseUrl).toBe('http://127.0.0.1:9999/v1');
  });

  test('when the key and URL mismatch only in letter case, then it is still refused', () => {
    expect(problemsOf({ ...minimal, CARDSCAN_BASE_URL: 'https://API.cardscan.ai/v1' })).toEqual([
      'CARDSCAN_BASE_URL: a test key cannot be used with the live URL',
    ]);
  });

  test('when TRUST_PROXY is not something Express understands, then it is a config problem, not a crash', () => {
    expect(problemsOf({ ...minimal, TRUST_PROXY: 'garbage' })).toEqual([
      'TRUST_PROXY: must be true, false, a hop count, or comma-separated addresses/subnets (e.g. loopback, 10.0.0.0/8)',
    ]);
  });

  test('when AUTH_USER_ID_CLAIM holds characters unfit for a header, then it is refused', () => {
    expect(problemsOf({ ...minimal, AUTH_USER_ID_CLAIM: '患者_id' })).toEqual([
      'AUTH_USER_ID_CLAIM: must be 1 to 128 letters, digits or _ . : / -',
    ]);
  });

  test('when the HMAC secret is shorter than 32 bytes, then it is refused', () => {
    expect(problemsOf({ ...minimal, AUTH_JWT_SECRET: 'x'.repeat(31) })).toEqual([
      'AUTH_JWT_SECRET: must be at least 32 bytes',
    ]);
  });

  test('when a secret and a JWKS are both set, then it is refused', () => {
    expect(problemsOf({ ...minimal, AUTH_JWKS_URI: 'https://login.example.com/jwks' })).toEqual([
      'AUTH_JWT_SECRET: cannot be combined with AUTH_ISSUER or AUTH_JWKS_URI; choose one way to verify tokens',
    ]);
  });

  test('when algorithms do not fit the key source (or say none), then they are refused', () => {
    expect(problemsOf({ ...minimal, AUTH_ALGORITHMS: 'HS256,RS256' })[0]).toMatch(
      /^AUTH_ALGORITHMS: .*only HS256, HS384, HS512 .*refused: RS256/,
    );
    expect(
      problemsOf({
        CARDSCAN_API_KEY: minimal.CARDSCAN_API_KEY,
        AUTH_JWKS_URI: 'https://login.example.com/jwks',
        AUTH_ALGORITHMS: 'none,HS256',
      })[0],
    ).toMatch(/refused: none, HS256/);
  });

  test('when ADMIN_API_KEYS is malformed or repeats a name, then each entry is reported', () => {
    const problems = problemsOf({
      ...minimal,
      CERTISCAN_AUTH_TOKEN: 'secret_test_x',
      ADMIN_API_KEYS: `alice:${'a'.repeat(64)},alice:${'b'.repeat(64)},bob`,
    });
    expect(problems).toEqual([
      'ADMIN_API_KEYS: entry 2 repeats the name "alice"',
      'ADMIN_API_KEYS: entry 3 is not name:sha256hex (name of letters, digits, . _ -; 64 hex digits)',
    ]);
  });

  test('when admin is on without a CertiScan token, then it is refused', () => {
    expect(problemsOf({ ...minimal, ADMIN_API_KEYS: `ops:${'a'.repeat(64)}` })).toEqual([
      'CERTISCAN_AUTH_TOKEN: is required when ADMIN_API_KEYS turns the admin routes on',
    ]);
  });

  test('when the shutdown timeout does not exceed the delay, then it is refused', () => {
    expect(problemsOf({ ...minimal, SHUTDOWN_DELAY_MS: '20000' })).toEqual([
      'SHUTDOWN_TIMEOUT_MS: must be greater than SHUTDOWN_DELAY_MS',
    ]);
  });
});

describe('credentials that go into an Authorization header', () => {
  const admin = { ADMIN_API_KEYS: `ops:${'a'.repeat(64)}` };

  test.each([
    ['two lines', 'token-one\ntoken-two'],
    ['a header injection', 'token\r\nX-Evil: 1'],
    ['non-ASCII', 'tökén€'],
  ])(
    'when CERTISCAN_AUTH_TOKEN holds %s, then it is refused by name, at start and on rotation',
    (_, value) => {
      const problems = problemsOf({ ...minimal, ...admin, CERTISCAN_AUTH_TOKEN: value });
      expect(problems.some((line) => line.startsWith('CERTISCAN_AUTH_TOKEN: '))).toBe(true);
      expect(problems.join('\n')).not.toContain(value.trim());
      const { config } = loadConfig({ ...minimal, ...admin, CERTISCAN_AUTH_TOKEN: 'good-token-1' });
      expect(parseRotatedCredential(config, 'CERTISCAN_AUTH_TOKEN', value)).toMatchObject({
        ok: false,
      });
    },
  );

  test('when a Cardscan key has a non-ASCII character after its prefix, then it has no known form', () => {
    expect(problemsOf({ ...minimal, CARDSCAN_API_KEY: 'sk_test_cardscan_ai_tökén' })).toEqual([
      expect.stringMatching(/^CARDSCAN_API_KEY: has no known prefix/),
    ]);
  });
});

describe('the server at start', () => {
  test('when the configuration is invalid, then it exits non-zero with one line per problem and no secret', () => {
    const result = spawnSync(
      process.execPath,
      ['-r', 'tsx/cjs', path.join(__dirname, '../src/server.ts')],
      {
        env: {
          PATH: process.env.PATH,
          CARDSCAN_API_KEY: 'pk_wrong_secret_value_123',
          AUTH_JWT_SECRET: 'short_secret_value',
          DOTENV_CONFIG_PATH: '/nonexistent',
        },
        cwd: path.join(__dirname, '..', 'test'),
        encoding: 'utf8',
        timeout: 15_000,
      },
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('cardscan-broker: invalid configuration');
    expect(result.stderr).toMatch(/^ {2}CARDSCAN_API_KEY: has no known prefix/m);
    expect(result.stderr).toMatch(/^ {2}AUTH_JWT_SECRET: must be at least 32 bytes/m);
    expect(result.stderr).not.toContain('pk_wrong_secret_value_123');
    expect(result.stderr).not.toContain('short_secret_value');
  });

  test('when the port is taken, then it exits 1 with one line, not a stack trace', async () => {
    const occupier = net.createServer().listen(0, '127.0.0.1');
    await once(occupier, 'listening');
    const { port } = occupier.address() as net.AddressInfo;
    try {
      const child = spawn(
        process.execPath,
        ['-r', 'tsx/cjs', path.join(__dirname, '../src/server.ts')],
        {
          env: {
            PATH: process.env.PATH,
            PORT: String(port),
            HOST: '127.0.0.1',
            CARDSCAN_API_KEY: 'secret_test_port_taken',
            AUTH_JWT_SECRET: HMAC,
            AUTH_AUDIENCE: 'tests',
            DOTENV_CONFIG_PATH: '/nonexistent',
          },
          cwd: path.join(__dirname, '..', 'test'),
          stdio: ['ignore', 'ignore', 'pipe'],
          timeout: 15_000,
        },
      );
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const [code] = await once(child, 'exit');
      expect(code).toBe(1);
      expect(stderr).toBe(
        `cardscan-broker: cannot start: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`,
      );
    } finally {
      occupier.close();
    }
  });
});

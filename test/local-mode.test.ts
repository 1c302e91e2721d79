/**
 * `npm run local` for a developer trying their own app: the variables they set reach the broker
 * (their page's origin, their audience, their rate limit), and the start-up text says what runs.
 */
import { ConfigError } from '../src/config/config';
import { describeLocalStack, localOptions } from '../scripts/local';
import { startLocalStack, type LocalStack } from '../scripts/local-stack';

const DEV_ORIGIN = 'http://localhost:5173';

async function devLogin(stack: LocalStack, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${stack.idp.issuer}/dev/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

function audienceOf(token: string): unknown {
  const payload = token.split('.')[1] ?? '';
  return (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { aud?: unknown }).aud;
}

function session(stack: LocalStack, token: string, origin?: string): Promise<Response> {
  return fetch(`${stack.brokerUrl}/cardscan-session`, {
    headers: { Authorization: `Bearer ${token}`, ...(origin ? { Origin: origin } : {}) },
    signal: AbortSignal.timeout(5000),
  });
}

describe('npm run local with the variables a developer sets', () => {
  let stack: LocalStack;

  beforeAll(async () => {
    stack = await startLocalStack({
      ...localOptions({
        PORT: '0',
        DEMO_PORT: '0',
        LOG_LEVEL: 'silent',
        CORS_ORIGINS: DEV_ORIGIN,
        AUTH_AUDIENCE: 'my-app',
        RATE_LIMIT_PER_MINUTE: '2',
        // Not one local mode honours: the stand-in's key must stay what the stand-in accepts.
        CARDSCAN_API_KEY: 'secret_live_from_a_production_env',
      }),
      defaultMetrics: false,
    });
  }, 30_000);

  afterAll(async () => {
    await stack?.close();
  });

  test("when a developer's page and the demo page call, then both origins are allowed, tokens are minted for their audience, and their rate limit applies", async () => {
    const token = await devLogin(stack, { sub: 'dev-1' });
    expect(audienceOf(token)).toBe('my-app');

    const fromDevPage = await session(stack, token, DEV_ORIGIN);
    expect(fromDevPage.status).toBe(200);
    expect(fromDevPage.headers.get('access-control-allow-origin')).toBe(DEV_ORIGIN);
    const { session: token1 } = (await fromDevPage.json()) as { session: string };
    expect(stack.cardscan.userIdInToken(token1)).toBe('dev-1');

    const demoOrigin = new URL(stack.demoUrl).origin;
    const fromDemoPage = await session(stack, token, demoOrigin);
    expect(fromDemoPage.status).toBe(200);
    expect(fromDemoPage.headers.get('access-control-allow-origin')).toBe(demoOrigin);

    const third = await session(stack, token);
    expect(third.status).toBe(429);
    expect(stack.cardscan.requests).toHaveLength(2);
  });

  test('when the dev login is asked for another audience, then the broker refuses that token with 401', async () => {
    const token = await devLogin(stack, { sub: 'dev-2', aud: 'other-app' });
    expect(audienceOf(token)).toBe('other-app');
    const res = await session(stack, token);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/audience/);
  });

  test('when local mode starts, then it prints the stand-ins, their placeholder credentials and the settings in force', () => {
    const text = describeLocalStack(stack, 'the-user-token', 'the-staff-token');
    expect(text).toContain(stack.brokerUrl);
    expect(text).toContain(stack.demoUrl);
    expect(text).toContain(`${stack.cardscan.baseUrl}   CARDSCAN_API_KEY=secret_test_local_`);
    expect(text).toContain(`${stack.certiscanUrl}   CERTISCAN_AUTH_TOKEN=secret_test_local_`);
    expect(text).toContain(stack.idp.issuer);
    expect(text).toContain(stack.staffIdp.issuer);
    expect(text).toContain(`CORS_ORIGINS=${new URL(stack.demoUrl).origin},${DEV_ORIGIN}`);
    expect(text).toContain('AUTH_AUDIENCE=my-app');
    expect(text).toContain('RATE_LIMIT_PER_MINUTE=2');
    expect(text).toContain(`export BROKER=${stack.brokerUrl} ADMIN_KEY=${stack.adminKey}`);
    expect(text).toContain("-H 'Authorization: Bearer the-user-token'");
    expect(text).toContain("-H 'Authorization: Bearer the-staff-token'");
  });
});

describe('npm run local with a bad variable', () => {
  test('when CORS_ORIGINS is not an origin, then it is reported by name as the broker would', async () => {
    const starting = startLocalStack({
      ...localOptions({ PORT: '0', DEMO_PORT: '0', CORS_ORIGINS: 'localhost:5173/app' }),
      defaultMetrics: false,
    });
    await expect(starting).rejects.toThrow(ConfigError);
    await expect(starting).rejects.toMatchObject({
      problems: [expect.stringMatching(/^CORS_ORIGINS: /)],
    });
  });
});

/**
 * The edges an outside security review found (issue 18), each written as the attack: real HTTP on
 * 127.0.0.1, real signed tokens, and what the client, the upstreams and the logs saw.
 */
import { createHash, createSign } from 'node:crypto';
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import request, { type Response } from 'supertest';
import { loadConfig } from '../src/config/config';
import { defaultMaxConnections, startListeners, type ServerLimits } from '../src/http/lifecycle';
import { createLogger } from '../src/observability/logger';
import { codeOf } from './helpers/http-get';
import { AUDIENCE, startHarness, TEST_CERTISCAN_TOKEN, type Harness } from './helpers/harness';

const ALICE_KEY = 'secret_test_admin_key_alice_0001';
const sha256 = (key: string) => createHash('sha256').update(key).digest('hex');
const ADMIN_ENV = {
  ADMIN_API_KEYS: `alice:${sha256(ALICE_KEY)}`,
  CERTISCAN_AUTH_TOKEN: TEST_CERTISCAN_TOKEN,
};

function expectProblem(res: Response, status: number, detail: RegExp): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(Object.keys(res.body).sort()).toEqual(['detail', 'request_id', 'status', 'title', 'type']);
  expect(res.body.status).toBe(status);
  expect(res.body.detail).toMatch(detail);
  expect(res.body.request_id).toBe(res.headers['x-request-id']);
  expect(JSON.stringify(res.body)).not.toMatch(/at .*\.ts:\d+|secret_test_|Bearer [A-Za-z0-9]/);
}

/** Client errors are the client's business: nothing at error level (or above) may be logged. */
function expectNoErrorLines(h: Harness): void {
  const errors = h.logs
    .entries()
    .filter((entry) => ['error', 'fatal'].includes(String(entry.level)));
  expect(errors).toEqual([]);
}

/**
 * One harness for a describe block; before each test, what its stand-ins received and the log are
 * emptied, so every assertion sees only its own test's traffic.
 */
function useHarness(options: Parameters<typeof startHarness>[0], set: (h: Harness) => void): void {
  let h: Harness | undefined;
  beforeAll(async () => {
    h = await startHarness(options);
    set(h);
  });
  afterAll(() => h?.close());
  beforeEach(() => {
    if (!h) return;
    h.cardscan.requests.length = 0;
    h.certiscan.requests.length = 0;
    h.certiscan.worktokens.clear();
    h.logs.lines.length = 0;
  });
}

describe('admin input and audit', () => {
  let h: Harness;
  useHarness({ env: ADMIN_ENV }, (started) => (h = started));

  const admin = (method: 'post' | 'put' | 'delete', path: string) =>
    request(h.app)[method](path).set('Authorization', `Bearer ${ALICE_KEY}`);

  test('when a caller sends the same X-Request-Id for two actions, then each audit line carries its own broker-generated audit_id', async () => {
    const requestId = 'replayed-request-id-0001';
    const created = await admin('post', '/admin/worktokens')
      .set('X-Request-Id', requestId)
      .send({ name: 'Front desk', subject: 'front-desk-1' });
    expect(created.status).toBe(201);
    const deleted = await admin('delete', '/admin/worktokens/front-desk-1').set(
      'X-Request-Id',
      requestId,
    );
    expect(deleted.status).toBe(200);
    const refused = await request(h.app)
      .delete('/admin/worktokens/front-desk-1')
      .set('X-Request-Id', requestId);
    expectProblem(refused, 401, /send an admin key/);

    const audit = h.logs.entries().filter((entry) => entry.audit === true);
    expect(audit.map((entry) => entry.action)).toEqual([
      'worktoken.create',
      'worktoken.delete',
      'admin.authenticate',
    ]);
    for (const entry of audit) {
      expect(entry.requestId).toBe(requestId);
      expect(entry.audit_id).toMatch(
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
    }
    expect(new Set(audit.map((entry) => entry.audit_id)).size).toBe(3);
    expectNoErrorLines(h);
  });

  test.each([
    ['a CR/LF (a forged second line)', 'Front desk\r\nadmin: granted'],
    ['a NUL', 'Front\u0000desk'],
    ['a right-to-left override (U+202E)', 'Front desk \u202Egnp.exe'],
    ['a zero-width joiner', 'Front\u200Ddesk'],
    ['129 characters', 'n'.repeat(129)],
  ])(
    'when an admin name holds %s, then 400 names the field and CertiScan stores nothing',
    async (_, name) => {
      const created = await admin('post', '/admin/worktokens').send({
        name,
        subject: 'desk-1',
      });
      expectProblem(created, 400, /body field "name"/);
      h.certiscan.worktokens.set('desk-2', {
        name: 'Old name',
        secret: 'secret_test_old_0001',
      });
      const updated = await admin('put', '/admin/worktokens/desk-2').send({
        name,
      });
      expectProblem(updated, 400, /body field "name"/);
      expect(h.certiscan.requests).toHaveLength(0);
      expectNoErrorLines(h);
    },
  );

  test('when an admin name is 128 printable characters with accents and spaces, then it is accepted', async () => {
    const name = 'Réception Zürich – scanner 1 '.padEnd(128, 'x');
    const created = await admin('post', '/admin/worktokens').send({
      name,
      subject: 'desk-3',
    });
    expect(created.status).toBe(201);
    expect(created.body.name).toBe(name);
  });
});

/**
 * An RS256 token signed with the identity provider's current key, its payload given as JSON text:
 * jsonwebtoken cannot write `1e309` (it would become null) or a header with `crit`.
 */
function signRaw(h: Harness, payloadJson: string, header: Record<string, unknown> = {}): string {
  const head = Buffer.from(
    JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: h.idp.currentKey.kid, ...header }),
  ).toString('base64url');
  const body = Buffer.from(payloadJson).toString('base64url');
  const signature = createSign('RSA-SHA256')
    .update(`${head}.${body}`)
    .sign(h.idp.currentKey.privateKey)
    .toString('base64url');
  return `${head}.${body}.${signature}`;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** The standard claims of a valid token, as JSON members, for signRaw. */
function claimsJson(h: Harness, sub: string): string {
  return `"sub":${JSON.stringify(sub)},"iss":${JSON.stringify(h.idp.issuer)},"aud":"${AUDIENCE}"`;
}

function expectRefusedLogin(h: Harness, res: Response, detail: RegExp, cardscanCalls: number) {
  expectProblem(res, 401, detail);
  expect(res.headers['www-authenticate']).toMatch(/error="invalid_token"/);
  expect(h.cardscan.requests).toHaveLength(cardscanCalls);
  expectNoErrorLines(h);
}

describe('token fields', () => {
  let h: Harness;
  useHarness({ env: { AUTH_MAX_TOKEN_AGE: '600' } }, (started) => (h = started));

  const session = (token: string) =>
    request(h.app).get('/cardscan-session').set('Authorization', `Bearer ${token}`);

  test('when the header lists a critical extension the broker does not understand, then 401 and Cardscan is not called', async () => {
    const token = signRaw(
      h,
      `{${claimsJson(h, 'crit-user')},"iat":${nowSeconds()},"exp":${nowSeconds() + 300}}`,
      { crit: ['https://example.com/must-check'], 'https://example.com/must-check': true },
    );
    expectRefusedLogin(h, await session(token), /critical extensions \(crit\)/, 0);
  });

  test.each([
    [
      'exp is 1e309 (Infinity: never expires)',
      () => `"iat":${nowSeconds()},"exp":1e309`,
      /exp claim must be a finite number/,
    ],
    [
      'nbf is -1e309',
      () => `"iat":${nowSeconds()},"nbf":-1e309,"exp":${nowSeconds() + 300}`,
      /nbf claim must be a finite number/,
    ],
    [
      'iat is a string',
      () => `"iat":"${nowSeconds()}","exp":${nowSeconds() + 300}`,
      /iat claim must be a finite number/,
    ],
    // jsonwebtoken refused this one already; kept so the rule stays whole.
    [
      'exp is a string',
      () => `"iat":${nowSeconds()},"exp":"${nowSeconds() + 300}"`,
      /the token is invalid/,
    ],
  ])('when %s, then 401 and Cardscan is not called', async (_, times, detail) => {
    const token = signRaw(h, `{${claimsJson(h, 'time-user')},${times()}}`);
    expectRefusedLogin(h, await session(token), detail, 0);
  });

  test('when AUTH_MAX_TOKEN_AGE is 600 and the token was issued an hour ago (still unexpired), then 401', async () => {
    const iat = nowSeconds() - 3600;
    const token = signRaw(h, `{${claimsJson(h, 'old-user')},"iat":${iat},"exp":${iat + 7200}}`);
    expectRefusedLogin(h, await session(token), /issued too long ago/, 0);
  });

  test('when AUTH_MAX_TOKEN_AGE is set and the token has no iat, then 401', async () => {
    const token = signRaw(h, `{${claimsJson(h, 'no-iat-user')},"exp":${nowSeconds() + 300}}`);
    expectRefusedLogin(h, await session(token), /no issue time \(iat\)/, 0);
  });

  test('when AUTH_MAX_TOKEN_AGE is set and the token was issued a minute ago, then it is served', async () => {
    const iat = nowSeconds() - 60;
    const token = signRaw(h, `{${claimsJson(h, 'fresh-user')},"iat":${iat},"exp":${iat + 600}}`);
    const res = await session(token);
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('fresh-user');
  });
});

describe('user ids', () => {
  let h: Harness;
  useHarness({}, (started) => (h = started));

  const sessionFor = (claims: Record<string, unknown>) =>
    request(h.app)
      .get('/cardscan-session')
      .set('Authorization', `Bearer ${h.idp.sign(claims)}`);

  test.each([
    ['a lone surrogate (once a 500)', 'user-\uD800'],
    ['a NUL', 'user\u0000admin'],
    ['a line feed', 'user\nforged'],
    ['a C1 control (U+0085)', 'user\u0085x'],
    ['DEL', 'user\u007F'],
    ['an NFD form (e + combining acute)', 'Jose\u0301'],
  ])('when sub holds %s, then 401 before any upstream call', async (_, sub) => {
    const res = await sessionFor({ sub });
    expectRefusedLogin(h, res, /sub claim (holds a control character|is not in Unicode)/, 0);
  });

  test('when sub is the NFC form with accents and emoji, then Cardscan receives it intact', async () => {
    const sub = 'José-Zoë-🩺';
    const res = await sessionFor({ sub });
    expect(res.status).toBe(200);
    expect(h.cardscan.requests.at(-1)?.query.user_id).toBe(sub);
  });
});

describe('user id from an e-mail claim', () => {
  let h: Harness;
  useHarness({ env: { AUTH_USER_ID_CLAIM: 'email' } }, (started) => (h = started));

  const sessionFor = (claims: Record<string, unknown>) =>
    request(h.app)
      .get('/cardscan-session')
      .set('Authorization', `Bearer ${h.idp.sign(claims)}`);

  test.each([
    ['false', { email_verified: false }],
    ['missing', {}],
    ['the string "true"', { email_verified: 'true' }],
  ])(
    "when an attacker's token carries the victim's e-mail with email_verified %s, then 401 and Cardscan never sees the victim's id",
    async (_, verified) => {
      const res = await sessionFor({ sub: 'a-9', email: 'victim@example.com', ...verified });
      expectRefusedLogin(h, res, /email is not verified/, 0);
    },
  );

  test('when the e-mail is verified, then it becomes the user id', async () => {
    const res = await sessionFor({ sub: 'v-1', email: 'victim@example.com', email_verified: true });
    expect(res.status).toBe(200);
    expect(h.cardscan.requests.at(-1)?.query.user_id).toBe('victim@example.com');
  });
});

describe('start-up warnings for the user-id claim', () => {
  const env = {
    CARDSCAN_API_KEY: 'sk_test_cardscan_ai_placeholder',
    AUTH_ISSUER: 'https://login.example.com/',
    AUTH_AUDIENCE: AUDIENCE,
  };
  const claimWarnings = (claim: string | undefined) =>
    loadConfig({ ...env, AUTH_USER_ID_CLAIM: claim }).warnings.filter((w) =>
      w.startsWith('AUTH_USER_ID_CLAIM'),
    );

  test.each(['email', 'preferred_username', 'patient_id'])(
    'when AUTH_USER_ID_CLAIM is %s, then the broker starts with a warning that recommends sub',
    (claim) => {
      const [warning, ...others] = claimWarnings(claim);
      expect(others).toEqual([]);
      expect(warning).toMatch(new RegExp(`^AUTH_USER_ID_CLAIM=${claim}: .*Prefer sub`));
    },
  );

  test.each([undefined, 'sub', 'oid'])(
    'when AUTH_USER_ID_CLAIM is %s, then no warning',
    (claim) => {
      expect(claimWarnings(claim)).toEqual([]);
    },
  );
});

describe('cookie logins', () => {
  const PAGE = 'https://app.example.com';
  let h: Harness;
  useHarness(
    { env: { AUTH_COOKIE_NAME: '__Host-login', CORS_ORIGINS: PAGE } },
    (started) => (h = started),
  );

  const withCookie = (method: 'get' | 'post', headers: Record<string, string>) =>
    request(h.app)
      [method]('/cardscan-session')
      .set(headers)
      .set('Cookie', `__Host-login=${h.tokenFor('cookie-victim')}`);

  test.each<[string, 'get' | 'post', Record<string, string>]>([
    [
      'an <img> on a sibling subdomain (same-site, no Origin)',
      'get',
      { 'Sec-Fetch-Site': 'same-site' },
    ],
    ['a link from another site (cross-site, no Origin)', 'get', { 'Sec-Fetch-Site': 'cross-site' }],
    ['a typed URL or bookmark (Sec-Fetch-Site none)', 'get', { 'Sec-Fetch-Site': 'none' }],
    ['a client sending no fetch metadata at all', 'get', {}],
    ['a POST without Origin from a sibling subdomain', 'post', { 'Sec-Fetch-Site': 'same-site' }],
  ])(
    'when the cookie comes with %s, then 403 before any upstream call',
    async (_, method, headers) => {
      const res = await withCookie(method, headers);
      expectProblem(res, 403, /cookie login is not accepted on a request from another site/);
      expect(h.cardscan.requests).toHaveLength(0);
      expectNoErrorLines(h);
    },
  );

  test.each<[string, Record<string, string>]>([
    ['an Origin in CORS_ORIGINS', { Origin: PAGE, 'Sec-Fetch-Site': 'same-site' }],
    ['Sec-Fetch-Site: same-origin', { 'Sec-Fetch-Site': 'same-origin' }],
  ])('when a page fetches with %s, then the cookie login is served', async (_, headers) => {
    const res = await withCookie('get', headers);
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('cookie-victim');
  });

  test('when the login is a Bearer header (an app, curl), then fetch metadata does not matter', async () => {
    const res = await request(h.app)
      .get('/cardscan-session')
      .set('Authorization', `Bearer ${h.tokenFor('app-user')}`);
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('app-user');
  });
});

describe('start-up warning for the cookie name', () => {
  const env = {
    CARDSCAN_API_KEY: 'sk_test_cardscan_ai_placeholder',
    AUTH_ISSUER: 'https://login.example.com/',
    AUTH_AUDIENCE: AUDIENCE,
  };
  const cookieWarnings = (name: string) =>
    loadConfig({ ...env, AUTH_COOKIE_NAME: name }).warnings.filter((w) =>
      w.startsWith('AUTH_COOKIE_NAME'),
    );

  test('when AUTH_COOKIE_NAME has no __Host- prefix, then the broker starts with a warning about planted cookies', () => {
    expect(cookieWarnings('app_session')).toEqual([
      expect.stringMatching(/^AUTH_COOKIE_NAME=app_session: .*__Host-.*never Domain=/),
    ]);
  });

  test('when AUTH_COOKIE_NAME starts with __Host-, then no warning', () => {
    expect(cookieWarnings('__Host-login')).toEqual([]);
  });
});

/** One raw HTTP/1.1 exchange on a fresh connection: what the client sends is exactly `head` + `body`. */
function rawExchange(
  url: string,
  head: string[],
  body: Buffer,
  options: { abortAfterBody?: boolean } = {},
): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.setTimeout(3000, () => socket.destroy(new Error('no answer within 3 s')));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.write(`${head.join('\r\n')}\r\n\r\n`);
    // Without abortAfterBody the caller sends Connection: close, so the server ends the exchange.
    socket.write(body, () => {
      if (options.abortAfterBody) setTimeout(() => socket.destroy(), 50);
    });
  });
}

describe('bodies', () => {
  let h: Harness;
  useHarness({ env: ADMIN_ENV }, (started) => (h = started));

  const gzipHeaders = { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' };

  test("when anyone POSTs a corrupt gzip body to /healthz (the review's curl), then a 4xx problem and no error log line", async () => {
    const res = await request(h.app).post('/healthz').set(gzipHeaders).send('x');
    expectProblem(res, 404, /no route for POST \/healthz/);
    expectNoErrorLines(h);
  });

  test('when a logged-in app POSTs a corrupt gzip body to the session route, then 400 and Cardscan is not called', async () => {
    const res = await request(h.app)
      .post('/cardscan-session')
      .set('Authorization', `Bearer ${h.tokenFor('gzip-user')}`)
      .set(gzipHeaders)
      .send('x');
    expectProblem(res, 400, /cannot be decoded/);
    expect(h.cardscan.requests).toHaveLength(0);
    expectNoErrorLines(h);
  });

  test('when an admin PUTs a truncated gzip body, then 400 and CertiScan is not called', async () => {
    const truncated = gzipSync(JSON.stringify({ name: 'Front desk' })).subarray(0, 12);
    const answer = await rawExchange(
      h.app,
      [
        'PUT /admin/worktokens/desk-1 HTTP/1.1',
        'Host: 127.0.0.1',
        'Connection: close',
        `Authorization: Bearer ${ALICE_KEY}`,
        'Content-Type: application/json',
        'Content-Encoding: gzip',
        `Content-Length: ${truncated.length}`,
      ],
      truncated,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 [^]*application\/problem\+json[^]*cannot be decoded/);
    expect(h.certiscan.requests).toHaveLength(0);
    expectNoErrorLines(h);
  });

  test('when an admin POSTs a well-formed gzip JSON body, then it is decoded and served', async () => {
    // Raw bytes: superagent would serialize a Buffer as JSON instead of sending it.
    const body = gzipSync(JSON.stringify({ name: 'Front desk', subject: 'gzip-desk' }));
    const answer = await rawExchange(
      h.app,
      [
        'POST /admin/worktokens HTTP/1.1',
        'Host: 127.0.0.1',
        'Connection: close',
        `Authorization: Bearer ${ALICE_KEY}`,
        'Content-Type: application/json',
        'Content-Encoding: gzip',
        `Content-Length: ${body.length}`,
      ],
      body,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 201 /);
    expect(h.certiscan.requests).toHaveLength(1);
  });

  test('when the Content-Encoding is one the broker does not decode, then 415', async () => {
    const res = await request(h.app)
      .post('/cardscan-session')
      .set('Authorization', `Bearer ${h.tokenFor('compress-user')}`)
      .set({ 'Content-Type': 'application/json', 'Content-Encoding': 'compress' })
      .send('{}');
    expectProblem(res, 415, /encoding is not supported/);
    expect(h.cardscan.requests).toHaveLength(0);
    expectNoErrorLines(h);
  });

  test('when a client aborts its body halfway, then the request ends as a 400 without an error log line', async () => {
    const path = '/admin/worktokens';
    await rawExchange(
      h.app,
      [
        `POST ${path} HTTP/1.1`,
        `Host: 127.0.0.1`,
        `Authorization: Bearer ${ALICE_KEY}`,
        'Content-Type: application/json',
        'Content-Length: 1000',
      ],
      Buffer.from('{"name":"Front'),
      { abortAfterBody: true },
    );
    const requestLine = async () => {
      for (let i = 0; i < 40; i++) {
        const line = h.logs
          .entries()
          .find((entry) => (entry.req as { path?: string })?.path === path);
        if (line) return line;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return undefined;
    };
    expect(await requestLine()).toMatchObject({ res: { status: 400 }, msg: 'request aborted' });
    expect(h.certiscan.requests).toHaveLength(0);
    expectNoErrorLines(h);
  });

  test('when ops routes or unknown paths get a large body, then it is never parsed (404/200, not 413)', async () => {
    const large = JSON.stringify({ padding: 'x'.repeat(200_000) });
    const unknown = await request(h.app).post('/nowhere').type('json').send(large);
    expectProblem(unknown, 404, /no route/);
    const health = await request(h.app).get('/healthz').type('json').send(large);
    expect(health.status).toBe(200);
    expectNoErrorLines(h);
  });
});

describe('ops routes with ADMIN_PORT', () => {
  test('when ADMIN_PORT is set, then /metrics answers on the admin listener only and the public /openapi.json lists public routes only', async () => {
    const h = await startHarness({ env: { ...ADMIN_ENV, PORT: '18090', ADMIN_PORT: '18091' } });
    const logger = createLogger('silent');
    const running = await startListeners(
      h.broker.listeners.map((spec) => ({ ...spec, port: 0, host: '127.0.0.1' })),
      logger,
    );
    try {
      const { public: publicUrl = '', admin: adminUrl = '' } = running.urls;
      const publicMetrics = await request(publicUrl).get('/metrics');
      expectProblem(publicMetrics, 404, /no route for GET \/metrics/);
      expect(publicMetrics.text).not.toMatch(/nodejs_version_info|circuit/);

      const adminMetrics = await request(adminUrl).get('/metrics');
      expect(adminMetrics.status).toBe(200);
      expect(adminMetrics.text).toContain('http_request_duration_seconds');

      const publicDoc = await request(publicUrl).get('/openapi.json');
      expect(Object.keys(publicDoc.body.paths).sort()).toEqual([
        '/cardscan-session',
        '/healthz',
        '/openapi.json',
        '/readyz',
      ]);
      const adminDoc = await request(adminUrl).get('/openapi.json');
      expect(Object.keys(adminDoc.body.paths)).toEqual(
        expect.arrayContaining(['/admin/worktokens', '/admin/worktokens/{subject}', '/metrics']),
      );
    } finally {
      await running.shutdown({ delayMs: 0, timeoutMs: 300, startDraining: () => undefined });
      await h.close();
    }
  });

  test('when ADMIN_PORT is not set, then /metrics and the admin paths stay on the one listener, as before', async () => {
    const h = await startHarness({ env: ADMIN_ENV });
    try {
      expect((await request(h.app).get('/metrics')).status).toBe(200);
      const doc = await request(h.app).get('/openapi.json');
      expect(Object.keys(doc.body.paths)).toEqual(
        expect.arrayContaining(['/metrics', '/admin/worktokens', '/cardscan-session']),
      );
    } finally {
      await h.close();
    }
  });
});

/** A keep-alive connection that got one answer to GET /healthz; left open for the caller. */
function openConnection(url: string): Promise<{ socket: net.Socket; answer: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer within 3 s'));
    }, 3000);
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('utf8');
      if (answer.includes('\r\n\r\n')) {
        clearTimeout(timer);
        resolve({ socket, answer });
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ socket, answer });
    });
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  });
}

describe('slow clients', () => {
  let h: Harness;
  useHarness({}, (started) => (h = started));

  async function listenWith(limits: Partial<ServerLimits>) {
    const running = await startListeners(
      [{ name: 'public', app: h.broker.app, port: 0, host: '127.0.0.1', limits }],
      createLogger('silent'),
    );
    return {
      url: running.urls.public ?? '',
      close: () => running.shutdown({ delayMs: 0, timeoutMs: 300, startDraining: () => undefined }),
    };
  }

  test('when a client trickles its body one byte every 100 ms, then the connection is cut at the request timeout', async () => {
    const listener = await listenWith({ requestTimeoutMs: 1000, headersTimeoutMs: 1000 });
    const { hostname, port } = new URL(listener.url);
    const socket = net.connect(Number(port), hostname);
    const started = Date.now();
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    // The server may reset the connection while a byte is on its way: that is the cut too, and the
    // 'close' below still comes.
    socket.on('error', () => undefined);
    const trickle = setInterval(() => socket.write(' '), 100);
    try {
      socket.write(
        [
          'POST /cardscan-session HTTP/1.1',
          'Host: 127.0.0.1',
          `Authorization: Bearer ${h.tokenFor('slow-user')}`,
          'Content-Type: application/json',
          'Content-Length: 1000',
          '',
          '{',
        ].join('\r\n'),
      );
      const closed = await Promise.race([
        new Promise<'closed'>((resolve) => socket.on('close', () => resolve('closed'))),
        new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), 5000)),
      ]);
      const heldMs = Date.now() - started;
      expect(closed).toBe('closed');
      // The timeout is checked every quarter of it: cut within 1 s + 250 ms, plus scheduling slack.
      expect(heldMs).toBeGreaterThanOrEqual(900);
      expect(heldMs).toBeLessThan(3000);
      expect(answer === '' || answer.startsWith('HTTP/1.1 408')).toBe(true);
      expect(h.cardscan.requests).toHaveLength(0);
      expectNoErrorLines(h);
    } finally {
      clearInterval(trickle);
      socket.destroy();
      await listener.close();
    }
  });

  test('when MAX_CONNECTIONS connections are open, then the next one is refused and a freed slot serves again', async () => {
    const listener = await listenWith({ maxConnections: 2 });
    const open: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const { socket, answer } = await openConnection(listener.url);
        open.push(socket);
        expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      }
      const refused = await openConnection(listener.url).catch((error: unknown) => ({
        socket: undefined,
        answer: `error ${codeOf(error)}`,
      }));
      expect(refused.answer).not.toMatch(/^HTTP/);
      refused.socket?.destroy();

      const freed = new Promise((resolve) => open[0]?.once('close', resolve));
      open[0]?.destroy();
      await freed;
      // The server counts the freed connection once it has seen it close.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const again = await openConnection(listener.url);
      open.push(again.socket);
      expect(again.answer).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      for (const socket of open) socket.destroy();
      await listener.close();
    }
  });

  test('when MAX_CONNECTIONS is not set, then the cap is sized from the heap: half of it, 128 KiB per connection', () => {
    expect(defaultMaxConnections(280 * 2 ** 20)).toBe(1120);
    expect(defaultMaxConnections(4288 * 2 ** 20)).toBe(17152);
    expect(defaultMaxConnections(8 * 2 ** 20)).toBe(64);
  });

  test('when MAX_CONNECTIONS is set, then the config carries it; 0 or junk is refused naming the variable', () => {
    const env = {
      CARDSCAN_API_KEY: 'sk_test_cardscan_ai_placeholder',
      AUTH_ISSUER: 'https://login.example.com/',
      AUTH_AUDIENCE: AUDIENCE,
    };
    expect(loadConfig({ ...env, MAX_CONNECTIONS: '500' }).config.server.maxConnections).toBe(500);
    expect(loadConfig(env).config.server.maxConnections).toBeUndefined();
    for (const value of ['0', 'many']) {
      expect(() => loadConfig({ ...env, MAX_CONNECTIONS: value })).toThrow(/MAX_CONNECTIONS: must/);
    }
  });
});

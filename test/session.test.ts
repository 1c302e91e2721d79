import request from 'supertest';
import { startHarness, TEST_CARDSCAN_KEY, type Harness } from './helpers/harness';
import { identityIdFor } from './stand-ins/cardscan';
import { metricValue } from './helpers/metrics';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterEach(() => {
  h.cardscan.setMode('ok');
  h.cardscan.setDelay(0);
});
afterAll(() => h.close());

const get = (sub = 'patient-42') =>
  request(h.app)
    .get('/cardscan-session')
    .set('Authorization', `Bearer ${h.tokenFor(sub)}`);
const post = (sub = 'patient-42') =>
  request(h.app)
    .post('/cardscan-session')
    .set('Authorization', `Bearer ${h.tokenFor(sub)}`);

function expectProblem(res: request.Response, status: number, detail: RegExp) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(Object.keys(res.body).sort()).toEqual(['detail', 'request_id', 'status', 'title', 'type']);
  expect(res.body.status).toBe(status);
  expect(res.body.detail).toMatch(detail);
  expect(JSON.stringify(res.body)).not.toMatch(/at .*\.ts:\d+|secret_test_|Bearer /);
}

describe('minting a session', () => {
  test('when a verified user asks with GET, then they get a flat all-string session', async () => {
    const res = await get('patient-42');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(Object.keys(res.body).sort()).toEqual([
      'expires_at',
      'identity_id',
      'session',
      'session_id',
    ]);
    for (const value of Object.values(res.body)) expect(typeof value).toBe('string');
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('patient-42');
    expect(res.body.identity_id).toBe(identityIdFor('patient-42'));
    expect(Date.parse(res.body.expires_at)).toBeGreaterThan(Date.now());
  });

  test('when the app POSTs with no body and no Content-Type, then it gets a session', async () => {
    const res = await post('android-user');
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('android-user');
  });

  test('when the app POSTs an empty JSON object, then it gets a session', async () => {
    const res = await post().send({});
    expect(res.status).toBe(200);
  });

  test('when Cardscan is asked, then it receives the secret key, the user id and the request id', async () => {
    const res = await get('patient-7').set('X-Request-Id', 'trace-abc-123456');
    expect(res.headers['x-request-id']).toBe('trace-abc-123456');
    const seen = h.cardscan.requests.at(-1);
    expect(seen).toMatchObject({
      method: 'GET',
      path: '/v1/access-token',
      query: { user_id: 'patient-7' },
    });
    expect(seen?.headers.authorization).toBe(`Bearer ${TEST_CARDSCAN_KEY}`);
    expect(seen?.headers['x-request-id']).toBe('trace-abc-123456');
  });

  test('when the incoming X-Request-Id is not sane, then a fresh one is used', async () => {
    const res = await get().set('X-Request-Id', 'forged" id {"level":"fatal"}');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('when Cardscan sends no session_id and an unreadable Token, then both optional fields are omitted', async () => {
    h.cardscan.queue({ status: 200, body: { Token: 'opaque-token', IdentityId: 'us-east-1:abc' } });
    const res = await get('no-session-id');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ session: 'opaque-token', identity_id: 'us-east-1:abc' });
  });

  test('when Cardscan sends session_id null or empty, then the field is omitted', async () => {
    for (const sessionId of [null, '']) {
      h.cardscan.queue({
        status: 200,
        body: { Token: 't', IdentityId: 'i', session_id: sessionId },
      });
      const res = await get('nullable-session-id');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ session: 't', identity_id: 'i' });
    }
  });

  test('when the user id holds a space or a plus, then each reaches Cardscan percent-encoded, never as "+"', async () => {
    await get('a b');
    expect(h.cardscan.requests.at(-1)?.rawQuery).toBe('?user_id=a%20b');
    await get('a+b');
    expect(h.cardscan.requests.at(-1)?.rawQuery).toBe('?user_id=a%2Bb');
  });

  test('when 20 users ask in parallel, then each gets a token carrying their own id', async () => {
    const users = Array.from({ length: 20 }, (_, i) => `parallel-user-${i}`);
    const answers = await Promise.all(users.map((user) => get(user)));
    answers.forEach((res, i) => {
      expect(res.status).toBe(200);
      expect(h.cardscan.userIdInToken(res.body.session)).toBe(users[i]);
      expect(res.body.identity_id).toBe(identityIdFor(users[i] as string));
    });
  });
});

describe('client-supplied input', () => {
  test('when the query carries user_id, then 400 and Cardscan is not called', async () => {
    const before = h.cardscan.requests.length;
    expectProblem(await get().query({ user_id: 'someone-else' }), 400, /"user_id" is not accepted/);
    expect(h.cardscan.requests.length).toBe(before);
  });

  test('when the query carries another spelling (userId), then 400', async () => {
    expectProblem(await get().query({ userId: 'someone-else' }), 400, /"userId" is not accepted/);
  });

  test('when the JSON body carries user_id, then 400 and Cardscan is not called', async () => {
    const before = h.cardscan.requests.length;
    expectProblem(await post().send({ user_id: 'someone-else' }), 400, /body field "user_id"/);
    expect(h.cardscan.requests.length).toBe(before);
  });

  test('when the body is not valid JSON, then 400', async () => {
    const res = await post().set('Content-Type', 'application/json').send('{"user_id":');
    expectProblem(res, 400, /not valid JSON/);
  });

  test('when the body is a JSON array, then 400', async () => {
    expectProblem(await post().send([1, 2]), 400, /empty or a JSON object/);
  });

  test('when the body is form-encoded, then 415 (it could hide a user_id)', async () => {
    const res = await post().type('form').send('user_id=someone-else');
    expectProblem(res, 415, /no body, or a JSON object/);
  });

  test('when the body is larger than 100 kB, then 413', async () => {
    expectProblem(await post().send({ padding: 'x'.repeat(110_000) }), 413, /100 kB/);
  });
});

describe('Cardscan failures', () => {
  test('when Cardscan refuses the key (401), then 502, never 401, and an error log names CARDSCAN_API_KEY', async () => {
    h.cardscan.setMode('unauthorized');
    const res = await get();
    expectProblem(res, 502, /refused the broker's credentials/);
    expect(res.headers['www-authenticate']).toBeUndefined();
    const line = h.logs
      .entries()
      .find((entry) => String(entry.msg).includes('check CARDSCAN_API_KEY'));
    expect(line).toMatchObject({ level: 'error', upstream: 'cardscan', upstreamStatus: 401 });
  });

  test('when Cardscan keeps failing with 500, then 502 after two retries', async () => {
    h.cardscan.setMode('server-error');
    const before = h.cardscan.requests.length;
    expectProblem(await get(), 502, /Cardscan failed \(500\)/);
    expect(h.cardscan.requests.length - before).toBe(3);
  });

  test('when Cardscan fails once then recovers, then the retry serves the session', async () => {
    h.cardscan.queue('server-error');
    const res = await get('retry-user');
    expect(res.status).toBe(200);
    expect(h.cardscan.userIdInToken(res.body.session)).toBe('retry-user');
  });

  test('when Cardscan answers a body that is not JSON, then 502', async () => {
    h.cardscan.setMode('malformed');
    expectProblem(await get(), 502, /not JSON/);
  });

  test('when Cardscan answers 200 without a Token, then 502, counted as a bad response', async () => {
    const series =
      'upstream_request_duration_seconds_count{upstream="cardscan",outcome="bad-response"}';
    const before = (await metricValue(h.app, series)) ?? 0;
    h.cardscan.queue({ status: 200, body: { IdentityId: 'us-east-1:abc' } });
    expectProblem(await get(), 502, /without a usable Token/);
    expect(await metricValue(h.app, series)).toBe(before + 1);
  });

  test('when Cardscan answers a value that is not a string (number Token), then 502', async () => {
    h.cardscan.queue({ status: 200, body: { Token: 42, IdentityId: 'us-east-1:abc' } });
    expectProblem(await get(), 502, /without a usable Token/);
  });

  test('when Cardscan answers 400 about the request, then 502 (the app cannot fix it) and no retry', async () => {
    const before = h.cardscan.requests.length;
    h.cardscan.queue({
      status: 400,
      body: { message: 'user_id is invalid', type: 'ValidationError', code: 400 },
    });
    expectProblem(await get(), 502, /unexpected status 400/);
    expect(h.cardscan.requests.length - before).toBe(1);
  });

  test('when Cardscan is unreachable, then 503', async () => {
    const gone = await startHarness();
    try {
      await gone.cardscan.close();
      const res = await request(gone.app)
        .get('/cardscan-session')
        .set('Authorization', `Bearer ${gone.tokenFor('u')}`);
      expectProblem(res, 503, /unreachable/);
    } finally {
      await gone.close();
    }
  });

  test('when Cardscan drops the connection, then 502 after retries', async () => {
    h.cardscan.setMode('drop');
    expectProblem(await get(), 502, /dropped the connection/);
  });

  test('when Cardscan hangs, then 504 within the deadline', async () => {
    h.cardscan.setMode('hang');
    const started = Date.now();
    const res = await get();
    expectProblem(res, 504, /did not answer within 1500 ms/);
    // A bound, not a benchmark: one deadline of 1.5 s, not one per attempt (3 × 1.5 s).
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe('rate limit', () => {
  test('when one user exceeds RATE_LIMIT_PER_MINUTE, then 429 with Retry-After, and other users still pass', async () => {
    const limited = await startHarness({ env: { RATE_LIMIT_PER_MINUTE: '3' } });
    try {
      const ask = (sub: string) =>
        request(limited.app)
          .get('/cardscan-session')
          .set('Authorization', `Bearer ${limited.tokenFor(sub)}`);
      for (let i = 0; i < 3; i++) expect((await ask('busy-user')).status).toBe(200);
      const res = await ask('busy-user');
      expectProblem(res, 429, /at most 3 session requests per minute/);
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect(limited.cardscan.requests.length).toBe(3);
      expect((await ask('calm-user')).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});

describe('logs', () => {
  test('when all of the above ran, then no log line holds a key, token or secret', () => {
    const text = h.logs.text();
    expect(h.logs.lines.length).toBeGreaterThan(10);
    expect(text).not.toContain(TEST_CARDSCAN_KEY);
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/); // no JWT, neither the user's nor Cardscan's
    expect(text).not.toMatch(/Bearer /);
    expect(text).not.toContain('"stack"');
  });
});

test('when the user id needs escaping in a URL, then Cardscan receives it intact', async () => {
  const sub = 'patient+1 ü&x=@example.com';
  const res = await request(h.app)
    .post('/cardscan-session')
    .set('Authorization', `Bearer ${h.tokenFor(sub)}`);
  expect(res.status).toBe(200);
  expect(h.cardscan.requests.at(-1)?.query).toEqual({ user_id: sub });
  expect(h.cardscan.userIdInToken(res.body.session)).toBe(sub);
});

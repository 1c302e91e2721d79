import cors from 'cors';
import express, { type RequestHandler } from 'express';
import helmet from 'helmet';
import request from 'supertest';
import { headersSetBy, setFixedHeaders } from '../src/http/fixed-headers';
import { startHarness, type Harness } from './helpers/harness';

const ALLOWED_ORIGIN = 'https://app.example.com';
/** Headers every response has for reasons of its own; not what helmet or cors decide. */
const TRANSPORT = new Set(['date', 'connection', 'keep-alive', 'content-length', 'content-type']);

function appWith(headers: RequestHandler) {
  const app = express();
  app.disable('x-powered-by');
  app.use(headers);
  app.get('/thing', (_req, res) => {
    res.json({ ok: true });
  });
  return app;
}

async function headersOf(app: express.Express): Promise<Record<string, unknown>> {
  const res = await request(app).get('/thing');
  expect(res.status).toBe(200);
  return Object.fromEntries(Object.entries(res.headers).filter(([name]) => !TRANSPORT.has(name)));
}

test('when helmet is fixed at start, then every answer carries exactly the headers helmet sets', async () => {
  const live = await headersOf(appWith(helmet()));
  const fixed = await headersOf(
    appWith(setFixedHeaders(headersSetBy(helmet(), { method: 'GET', headers: {} }))),
  );
  expect(Object.keys(live).length).toBeGreaterThan(5);
  expect(fixed).toEqual(live);
});

test('when cors is fixed for requests without an Origin, then they get what cors would set', async () => {
  const options = { origin: [ALLOWED_ORIGIN], credentials: true, exposedHeaders: ['X-Request-Id'] };
  const live = await headersOf(appWith(cors(options)));
  const fixed = await headersOf(
    appWith(setFixedHeaders(headersSetBy(cors(options), { method: 'GET', headers: {} }))),
  );
  expect(live.vary).toBe('Origin');
  expect(fixed).toEqual(live);
});

test('when a header middleware does not pass the request on at once, then fixing it fails at start', () => {
  const deferred: RequestHandler = (_req, _res, next) => {
    setImmediate(next);
  };
  expect(() => headersSetBy(deferred, { method: 'GET', headers: {} })).toThrow(/cannot be fixed/);
});

describe('the broker', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { CORS_ORIGINS: ALLOWED_ORIGIN } });
  });
  afterAll(() => h.close());

  test('when an app without an Origin asks, then the answer has the security headers and Vary: Origin', async () => {
    const res = await request(h.app).get('/healthz');
    expect(res.status).toBe(200);
    // A policy for an API, not helmet's page policy: nothing loads from it, nothing frames it.
    expect(res.headers['content-security-policy']).toBe(
      "default-src 'none';frame-ancestors 'none'",
    );
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['strict-transport-security']).toMatch(/max-age=/);
    expect(res.headers.vary).toBe('Origin');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  test('when an allowed browser origin asks, then the answer allows it and exposes X-Request-Id', async () => {
    const res = await request(h.app).get('/healthz').set('Origin', ALLOWED_ORIGIN);
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe(ALLOWED_ORIGIN);
    expect(res.headers['access-control-expose-headers']).toContain('X-Request-Id');
    expect(res.headers['x-frame-options']).toBe('DENY');
  });

  test('when a browser preflights without being allowed, then it is refused with problem+json', async () => {
    const res = await request(h.app)
      .options('/cardscan-session')
      .set('Origin', 'https://evil.example.com')
      .set('Access-Control-Request-Method', 'POST');
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  test('when an allowed browser preflights, then it learns the methods and headers it may use', async () => {
    const res = await request(h.app)
      .options('/cardscan-session')
      .set('Origin', ALLOWED_ORIGIN)
      .set('Access-Control-Request-Method', 'POST');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-methods']).toBe('GET,POST');
    expect(res.headers['access-control-allow-headers']).toContain('Authorization');
  });
});

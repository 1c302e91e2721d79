import net from 'node:net';
import type { IRouter } from 'express';
import request from 'supertest';
import { createApp } from '../src/app';
import { createLogger } from '../src/observability/logger';
import { createMetrics } from '../src/observability/metrics';
import { startListeners } from '../src/http/lifecycle';
import { startHarness, type Harness } from './helpers/harness';
import { LogCapture } from './helpers/log-capture';
import { metricValue } from './helpers/metrics';

const APP_ORIGIN = 'https://app.example.com';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ env: { CORS_ORIGINS: `${APP_ORIGIN},https://admin.example.com` } });
});
afterAll(() => h.close());

describe('health, readiness, metrics, OpenAPI', () => {
  test('when /healthz is asked, then 200', async () => {
    const res = await request(h.app).get('/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  test('when signing keys are loaded, then /readyz is 200', async () => {
    expect((await request(h.app).get('/readyz')).status).toBe(200);
  });

  test('when the identity provider was never reachable, then /readyz is 503 and sessions 503, not 401', async () => {
    // Port 1 on loopback refuses connections: the very first key fetch fails.
    const cold = await startHarness({ env: { AUTH_JWKS_URI: 'http://127.0.0.1:1/jwks.json' } });
    try {
      const ready = await request(cold.app).get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(ready.body.detail).toBe('not ready: no signing keys fetched yet');
      const res = await request(cold.app)
        .get('/cardscan-session')
        .set('Authorization', `Bearer ${cold.tokenFor('u')}`);
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('30');
      expect(cold.cardscan.requests).toHaveLength(0);
      expect(await metricValue(cold.app, 'signing_keys_available')).toBe(0);
    } finally {
      await cold.close();
    }
  });

  test('when signing keys are loaded, then /metrics reports signing_keys_available 1', async () => {
    expect(await metricValue(h.app, 'signing_keys_available')).toBe(1);
  });

  test('when sessions were served, then /metrics shows requests by route template and upstream calls by outcome', async () => {
    await request(h.app)
      .get('/cardscan-session')
      .set('Authorization', `Bearer ${h.tokenFor('metrics-user')}`);
    await request(h.app).get('/no/such/path/12345');
    const res = await request(h.app).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.text).toMatch(
      /http_request_duration_seconds_count\{method="GET",route="\/cardscan-session",status="200"\} \d+/,
    );
    expect(res.text).toMatch(
      /http_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} \d+/,
    );
    expect(res.text).toMatch(
      /upstream_request_duration_seconds_count\{upstream="cardscan",outcome="success"\} [1-9]\d*/,
    );
    expect(res.text).not.toContain('12345');
  });

  test('when /openapi.json is asked, then it is an OpenAPI 3.1 document describing every route', async () => {
    const res = await request(h.app).get('/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    expect(Object.keys(res.body.paths)).toEqual(
      expect.arrayContaining([
        '/cardscan-session',
        '/healthz',
        '/readyz',
        '/metrics',
        '/openapi.json',
      ]),
    );
    expect(Object.keys(res.body.paths['/cardscan-session'])).toEqual(['get', 'post']);
  });

  test('when a route does not exist, then 404 problem+json', async () => {
    const res = await request(h.app).delete('/cardscan-session');
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({
      status: 404,
      title: 'Not found',
      detail: 'no route for DELETE /cardscan-session',
    });
  });

  test('when any answer goes out, then helmet headers are set and Express is not advertised', async () => {
    const res = await request(h.app).get('/healthz');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['strict-transport-security']).toBeDefined();
    expect(res.headers['x-powered-by']).toBeUndefined();
  });
});

describe('unexpected errors', () => {
  test('when a route fails unexpectedly, then a bare 500 problem, and neither body nor log holds a stack', async () => {
    const logs = new LogCapture();
    const failing = (router: IRouter) =>
      router.get('/explode', () => {
        throw new TypeError('cannot read properties of undefined');
      });
    const app = createApp({
      config: h.config,
      logger: createLogger('info', logs),
      metrics: createMetrics(),
      notReadyReason: () => undefined,
      routes: [failing],
    });
    const res = await request(app).get('/explode');
    expect(res.status).toBe(500);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toEqual({
      type: 'urn:cardscan-broker:problem:internal',
      title: 'Internal server error',
      status: 500,
      detail: 'the broker failed unexpectedly; the request id identifies it in the logs',
      request_id: res.headers['x-request-id'],
    });
    const line = logs.entries().find((entry) => entry.msg === 'unexpected error');
    expect(line).toMatchObject({
      error: { name: 'TypeError', message: 'cannot read properties of undefined' },
      requestId: res.headers['x-request-id'],
    });
    expect(logs.text()).not.toMatch(/"stack"|at .*\.ts:\d+/);
  });
});

describe('CORS', () => {
  test('when an allowed origin preflights, then Authorization is allowed and credentials too', async () => {
    const res = await request(h.app)
      .options('/cardscan-session')
      .set('Origin', APP_ORIGIN)
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'authorization');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe(APP_ORIGIN);
    expect(res.headers['access-control-allow-headers']).toMatch(/Authorization/);
    expect(res.headers['access-control-allow-credentials']).toBe('true');
  });

  test('when an allowed origin calls, then the answer carries its CORS headers', async () => {
    const res = await request(h.app)
      .get('/cardscan-session')
      .set('Origin', APP_ORIGIN)
      .set('Authorization', `Bearer ${h.tokenFor('web-user')}`);
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe(APP_ORIGIN);
    expect(res.headers['access-control-expose-headers']).toBe(
      'X-Request-Id,Retry-After,WWW-Authenticate',
    );
  });

  test('when an origin outside CORS_ORIGINS calls or preflights, then 403 and Cardscan is not called', async () => {
    const before = h.cardscan.requests.length;
    const call = await request(h.app)
      .get('/cardscan-session')
      .set('Origin', 'https://evil.example.net')
      .set('Authorization', `Bearer ${h.tokenFor('web-user')}`);
    expect(call.status).toBe(403);
    expect(call.headers['access-control-allow-origin']).toBeUndefined();
    expect(call.body.detail).toMatch(/CORS_ORIGINS/);
    const preflight = await request(h.app)
      .options('/cardscan-session')
      .set('Origin', 'https://evil.example.net')
      .set('Access-Control-Request-Method', 'GET');
    expect(preflight.status).toBe(403);
    expect(h.cardscan.requests.length).toBe(before);
  });
});

describe('graceful shutdown', () => {
  test('when draining starts, then /readyz turns 503 at once, the in-flight request finishes, and the listener closes', async () => {
    const logs = new LogCapture();
    const drainH = await startHarness();
    const listeners = await startListeners(
      [{ name: 'public', app: drainH.broker.app, port: 0, host: '127.0.0.1' }],
      createLogger('info', logs),
    );
    const url = listeners.urls.public as string;
    try {
      drainH.cardscan.setDelay(400);
      const inFlight = fetch(`${url}/cardscan-session`, {
        headers: { Authorization: `Bearer ${drainH.tokenFor('draining-user')}` },
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const shutdown = listeners.shutdown({
        delayMs: 150,
        timeoutMs: 5000,
        startDraining: drainH.broker.startDraining,
      });

      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { detail: string }).detail).toBe('not ready: shutting down');

      const res = await inFlight;
      expect(res.status).toBe(200);
      const body = (await res.json()) as { session: string };
      expect(drainH.cardscan.userIdInToken(body.session)).toBe('draining-user');

      await shutdown;
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
      expect(logs.text()).toContain('stopped');
    } finally {
      await drainH.close();
    }
  });

  test('when a request arrives on a busy keep-alive connection during the drain, then it is answered and nothing throws', async () => {
    const uncaught: Error[] = [];
    const onUncaught = (error: Error) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    const drainH = await startHarness();
    const listeners = await startListeners(
      [{ name: 'public', app: drainH.broker.app, port: 0, host: '127.0.0.1' }],
      createLogger('silent'),
    );
    const socket = net.connect(Number(new URL(listeners.urls.public as string).port), '127.0.0.1');
    try {
      let received = '';
      socket.on('data', (chunk) => (received += chunk.toString()));
      await new Promise((resolve) => socket.once('connect', resolve));
      drainH.cardscan.setDelay(300);
      socket.write(
        `GET /cardscan-session HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${drainH.tokenFor('u')}\r\n\r\n`,
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      const shutdown = listeners.shutdown({
        delayMs: 0,
        timeoutMs: 3000,
        startDraining: drainH.broker.startDraining,
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      // Pipelined behind the busy request: it reaches Express only after the listener closed.
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      await shutdown;
      await new Promise((resolve) => socket.once('close', resolve));
      expect(received).toMatch(/^HTTP\/1\.1 200 OK/);
      expect(received).toMatch(/Connection: close/i);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      socket.destroy();
      await drainH.close();
    }
  });
});

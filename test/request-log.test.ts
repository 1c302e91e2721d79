import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { startHarness, type Harness } from './helpers/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

function requestLines(): Record<string, unknown>[] {
  return h.logs.entries().filter((entry) => typeof entry.req === 'object');
}

beforeEach(() => {
  h.logs.lines.length = 0;
});

test('when a session is served, then one line says which request, which path and what status', async () => {
  const res = await request(h.app)
    .get('/cardscan-session?utm_source=app')
    .set('Authorization', `Bearer ${h.tokenFor('patient-7')}`);
  expect(res.status).toBe(200);

  const lines = requestLines();
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({
    level: 'info',
    msg: 'request completed',
    req: { id: res.headers['x-request-id'], method: 'GET', path: '/cardscan-session' },
    res: { status: 200 },
  });
  expect(typeof lines[0]?.responseTime).toBe('number');
  // Neither the query string nor any header reaches the line.
  expect(h.logs.text()).not.toContain('utm_source');
  expect(h.logs.text()).not.toContain(h.tokenFor('patient-7').split('.')[2]);
});

test('when the caller sends a sane X-Request-Id, then the answer and the log line keep it', async () => {
  const res = await request(h.app)
    .get('/cardscan-session')
    .set('X-Request-Id', 'caller-id-12345')
    .set('Authorization', 'Bearer not.a.jwt');
  expect(res.status).toBe(401);
  expect(res.headers['x-request-id']).toBe('caller-id-12345');
  expect(res.body.request_id).toBe('caller-id-12345');
  expect(requestLines()[0]).toMatchObject({ req: { id: 'caller-id-12345' }, res: { status: 401 } });
});

test('when the caller sends an X-Request-Id that could forge log lines, then a fresh one is used', async () => {
  const res = await request(h.app).get('/nowhere').set('X-Request-Id', 'bad id {"level":"error"}');
  expect(res.status).toBe(404);
  expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(requestLines()[0]).toMatchObject({ req: { id: res.headers['x-request-id'] } });
});

test('when the upstream fails, then the request line is logged as an error', async () => {
  h.cardscan.queue('server-error', 'server-error', 'server-error');
  const res = await request(h.app)
    .get('/cardscan-session')
    .set('Authorization', `Bearer ${h.tokenFor('patient-8')}`);
  expect(res.status).toBe(502);
  expect(requestLines()[0]).toMatchObject({ level: 'error', msg: 'request errored' });
});

test('when a probe or scraper polls, then no request line is written', async () => {
  await request(h.app).get('/healthz').expect(200);
  await request(h.app).get('/metrics').expect(200);
  expect(requestLines()).toHaveLength(0);
});

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await sleep(10);
  expect(condition()).toBe(true);
}

test('when the client leaves before the answer, then the line says the request was aborted', async () => {
  h.cardscan.queue('hang');
  const calls = h.cardscan.requests.length;
  const { port } = new URL(h.app);
  const client = http.get({
    host: '127.0.0.1',
    port,
    path: '/cardscan-session',
    headers: { authorization: `Bearer ${h.tokenFor('patient-9')}` },
  });
  client.on('error', () => undefined);
  await until(() => h.cardscan.requests.length > calls);
  client.destroy();
  await until(() => requestLines().length === 1);
  expect(requestLines()[0]).toMatchObject({
    level: 'info',
    msg: 'request aborted',
    req: { path: '/cardscan-session' },
  });
});

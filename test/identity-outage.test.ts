import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { createBroker } from '../src/broker';
import { createLogger } from '../src/observability/logger';
import { startHarness, type Harness } from './helpers/harness';
import { LogCapture } from './helpers/log-capture';
import { createSigningKey } from './stand-ins/identity-provider';

const HOUR = 3_600_000;
const OUTAGE_LOG = 'cannot fetch signing keys; keys already held stay in use';

/** The key cache's clock: tests move it instead of waiting (tokens still use the real time). */
let clock: number;
let h: Harness;

beforeEach(async () => {
  clock = Date.now();
  h = await startHarness({ broker: { now: () => clock } });
});
afterEach(() => h.close());

const sessionWith = (token: string) =>
  request(h.app).get('/cardscan-session').set('Authorization', `Bearer ${token}`);

const outageLines = () => h.logs.entries().filter((entry) => entry.msg === OUTAGE_LOG);

test('when the provider goes down after keys were fetched, then tokens keep verifying beyond 24 h and the outage is logged once', async () => {
  expect(h.idp.jwksFetches()).toBe(1);
  h.idp.setDown(true);
  const token = h.tokenFor('patient-7');
  for (const hours of [0, 1, 12, 25]) {
    clock += hours * HOUR;
    const answers = await Promise.all(Array.from({ length: 5 }, () => sessionWith(token)));
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 200, 200]);
  }
  expect(outageLines()).toHaveLength(1);
  // Background refreshes of stale keys: at most one per clock step, never one per request.
  expect(h.idp.jwksFetches()).toBeLessThanOrEqual(1 + 3);
  expect(h.logs.text()).not.toContain(token);
});

test('when tokens name an unknown kid during the outage, then they get 401 and the JWKS is asked at most once per 30 s', async () => {
  h.idp.setDown(true);
  const stranger = createSigningKey();
  const burst = async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        sessionWith(h.idp.sign({ sub: `user-${index}` }, { key: stranger })),
      ),
    );
    for (const res of answers) {
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toMatch(/^Bearer .*error="invalid_token"/);
      expect(res.body.type).toBe('urn:cardscan-broker:problem:unauthenticated');
    }
  };

  // The warm-up fetch was just now: no refetch yet.
  await burst();
  expect(h.idp.jwksFetches()).toBe(1);
  clock += 31_000;
  await burst();
  expect(h.idp.jwksFetches()).toBe(2);
  clock += 10_000;
  await burst();
  expect(h.idp.jwksFetches()).toBe(2);
  clock += 21_000;
  await burst();
  expect(h.idp.jwksFetches()).toBe(3);

  expect((await sessionWith(h.tokenFor('still-known'))).status).toBe(200);
  expect(outageLines()).toHaveLength(1);
});

test('when the provider rotates its key, then the new key is picked up once 30 s passed since the last fetch', async () => {
  h.idp.rotate();
  const rotated = h.tokenFor('patient-rotated');
  expect((await sessionWith(rotated)).status).toBe(401);
  clock += 31_000;
  expect((await sessionWith(rotated)).status).toBe(200);
  expect(h.idp.jwksFetches()).toBe(2);
});

test('when the provider comes back after an outage, then its rotated key is picked up and the recovery is logged', async () => {
  h.idp.setDown(true);
  clock += 31_000;
  expect((await sessionWith(h.idp.sign({ sub: 'x' }, { key: createSigningKey() }))).status).toBe(
    401,
  );
  h.idp.rotate();
  h.idp.setDown(false);
  clock += 31_000;
  expect((await sessionWith(h.tokenFor('patient-back'))).status).toBe(200);
  const messages = h.logs.entries().map((entry) => entry.msg);
  expect(messages).toContain(OUTAGE_LOG);
  expect(messages).toContain('signing keys fetched again; the identity provider is back');
});

test('when the broker starts while the provider is down, then /readyz and sessions answer 503 until a key is obtained, then both recover', async () => {
  h.idp.setDown(true);
  const logs = new LogCapture();
  const broker = createBroker(h.config, {
    logger: createLogger('debug', logs),
    now: () => clock,
  });
  try {
    await broker.keys.warmUp();
    const notReady = await request(broker.app).get('/readyz');
    expect(notReady.status).toBe(503);
    expect(notReady.headers['retry-after']).toBeDefined();

    const refused = await request(broker.app)
      .get('/cardscan-session')
      .set('Authorization', `Bearer ${h.tokenFor('early-bird')}`);
    expect(refused.status).toBe(503);
    expect(refused.body.type).toBe('urn:cardscan-broker:problem:unavailable');

    h.idp.setDown(false);
    clock += 31_000;
    // With no user traffic, the probe itself retries the fetch and turns ready soon after.
    let probes = 0;
    while ((await request(broker.app).get('/readyz')).status !== 200) {
      expect(++probes).toBeLessThan(50);
      await sleep(20);
    }
    expect(broker.keys.hasKeys()).toBe(true);
    const served = await request(broker.app)
      .get('/cardscan-session')
      .set('Authorization', `Bearer ${h.tokenFor('early-bird')}`);
    expect(served.status).toBe(200);
  } finally {
    await broker.close();
  }
});

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from '@redis/client';
import type { Express } from 'express';
import request from 'supertest';
import { createBroker, type Broker } from '../src/broker';
import { createLogger } from '../src/observability/logger';
import { startHarness, type Harness } from './helpers/harness';
import { LogCapture } from './helpers/log-capture';
import { metricValue } from './helpers/metrics';
import {
  anyRedis,
  freePort,
  REDIS_SERVER_BINARY,
  redisAvailable,
  startRedisServer,
  warnWhenRedisMissing,
  type RedisServer,
} from './helpers/redis-server';

warnWhenRedisMissing();

const FAILING =
  'Redis rate-limit store failing: requests are served without the shared rate limit until it answers again';
const BACK = 'Redis rate-limit store answers again: the shared rate limit applies again';
const STORE_ERRORS = 'rate_limit_store_errors_total';
const LIMIT = 3;

/** Fresh ids per run: the CI Redis is shared by every test file. */
const userId = (name: string) => `${name}-${randomUUID()}`;

let h: Harness;
const extraBrokers: Broker[] = [];
afterEach(async () => {
  await Promise.all(extraBrokers.splice(0).map((broker) => broker.close()));
  await h?.close();
});

function secondBroker(): { broker: Broker; logs: LogCapture } {
  const logs = new LogCapture();
  const broker = createBroker(h.config, { logger: createLogger('debug', logs) });
  extraBrokers.push(broker);
  return { broker, logs };
}

const session = (app: Express | string, token: string) =>
  request(app).get('/cardscan-session').set('Authorization', `Bearer ${token}`).timeout(3000);

/** Polls until the limit applies again (the answer carries RateLimit headers), bounded. */
async function untilLimited(app: Express | string, token: string): Promise<void> {
  for (let polls = 0; ; polls++) {
    const res = await session(app, token);
    expect(res.status).toBe(200);
    if (res.headers.ratelimit !== undefined) return;
    expect(polls).toBeLessThan(100);
    await sleep(50);
  }
}

const count = (logs: LogCapture, msg: string) =>
  logs.entries().filter((entry) => entry.msg === msg).length;

(redisAvailable ? describe : describe.skip)('sharing one Redis', () => {
  let redis: { url: string; stop(): Promise<void> };
  beforeAll(async () => {
    redis = await anyRedis();
  });
  afterAll(() => redis.stop());

  test('when two brokers share one Redis, then together they allow the per-user limit, not each', async () => {
    h = await startHarness({
      env: { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: String(LIMIT) },
    });
    const other = secondBroker().broker.app;
    const token = h.tokenFor(userId('shared'));
    await untilLimited(h.app, token);
    await untilLimited(other, token);
    // The two requests above counted; one more on either broker is the last allowed.
    expect((await session(h.app, token)).status).toBe(200);

    const refused = await session(other, token);
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBeDefined();
    expect(refused.body.type).toBe('urn:cardscan-broker:problem:rate-limited');
    expect((await session(h.app, token)).status).toBe(429);
    // Another user is counted apart.
    expect((await session(other, h.tokenFor(userId('neighbour')))).status).toBe(200);
  });

  test('when the broker closes, then its Redis connection closes too', async () => {
    const probe = createClient({ url: redis.url });
    await probe.connect();
    try {
      const clients = async () =>
        (await probe.sendCommand<string>(['CLIENT', 'LIST'])).trim().split('\n').length;
      const before = await clients();
      h = await startHarness({ env: { REDIS_URL: redis.url } });
      await untilLimited(h.app, h.tokenFor(userId('closing')));
      expect(await clients()).toBe(before + 1);
      await h.broker.close();
      for (let polls = 0; (await clients()) !== before; polls++) {
        expect(polls).toBeLessThan(50);
        await sleep(20);
      }
    } finally {
      probe.destroy();
    }
  });
});

test('when there is no REDIS_URL, then two brokers each limit alone, as before', async () => {
  h = await startHarness({ env: { RATE_LIMIT_PER_MINUTE: String(LIMIT) } });
  const other = secondBroker().broker.app;
  const token = h.tokenFor('alone');
  for (let call = 0; call < LIMIT; call++) {
    expect((await session(h.app, token)).status).toBe(200);
    expect((await session(other, token)).status).toBe(200);
  }
  expect((await session(h.app, token)).status).toBe(429);
});

(REDIS_SERVER_BINARY ? describe : describe.skip)('when Redis fails', () => {
  let redis: RedisServer;
  beforeEach(async () => {
    redis = await startRedisServer();
    h = await startHarness({
      env: { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: String(LIMIT) },
    });
  });
  afterEach(() => redis.stop());

  test('when Redis is killed mid-run, then requests are served unlimited, the outage is logged once and counted, and limiting resumes when it returns', async () => {
    const token = h.tokenFor(userId('patient'));
    await untilLimited(h.app, token);
    for (let call = 1; call < LIMIT; call++) await session(h.app, token);
    expect((await session(h.app, token)).status).toBe(429);

    // Counted from here: a request that beat the very first connection is an outage of its own.
    const failingBefore = count(h.logs, FAILING);
    const backBefore = count(h.logs, BACK);
    await redis.kill();
    for (let call = 0; call < 6; call++) {
      const res = await session(h.app, token);
      expect(res.status).toBe(200);
      expect(res.headers.ratelimit).toBeUndefined();
    }
    expect(await metricValue(h.app, STORE_ERRORS)).toBeGreaterThanOrEqual(6);
    expect(count(h.logs, FAILING) - failingBefore).toBe(1);

    await redis.restart();
    // A restarted Redis is empty: the user starts a fresh window.
    await untilLimited(h.app, token);
    for (let call = 1; call < LIMIT; call++) await session(h.app, token);
    expect((await session(h.app, token)).status).toBe(429);
    expect(count(h.logs, FAILING) - failingBefore).toBe(1);
    expect(count(h.logs, BACK) - backBefore).toBe(1);
    expect(h.logs.text()).not.toContain(token);
  });

  test('when Redis stops answering without closing connections, then requests are served unlimited after the command timeout', async () => {
    const token = h.tokenFor(userId('frozen'));
    await untilLimited(h.app, token);
    redis.freeze();
    try {
      const res = await session(h.app, token);
      expect(res.status).toBe(200);
      expect(res.headers.ratelimit).toBeUndefined();
    } finally {
      redis.thaw();
    }
    await untilLimited(h.app, token);
  });
});

(REDIS_SERVER_BINARY ? test : test.skip)(
  'when Redis is down at start, then the broker starts and serves at once, and limits once Redis comes up',
  async () => {
    const port = await freePort();
    h = await startHarness({
      env: { REDIS_URL: `redis://127.0.0.1:${port}`, RATE_LIMIT_PER_MINUTE: String(LIMIT) },
    });
    const token = h.tokenFor(userId('early'));
    for (let call = 0; call < LIMIT + 2; call++) {
      expect((await session(h.app, token)).status).toBe(200);
    }
    expect(count(h.logs, FAILING)).toBe(1);
    expect((await request(h.app).get('/readyz')).status).toBe(200);

    // On exactly that port: the broker's client keeps retrying it.
    const late = await startRedisServer(port);
    try {
      await untilLimited(h.app, token);
      for (let call = 1; call < LIMIT; call++) await session(h.app, token);
      expect((await session(h.app, token)).status).toBe(429);
    } finally {
      await late.stop();
    }
  },
);

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnBroker, type BrokerProcess } from './helpers/broker-process';
import { AUDIENCE, TEST_CARDSCAN_KEY } from './helpers/harness';
import { codeOf, httpGet, type Answer } from './helpers/http-get';
import { anyRedis, redisAvailable, warnWhenRedisMissing } from './helpers/redis-server';
import { startCardscanStandIn, type CardscanStandIn } from './stand-ins/cardscan';
import { startIdentityProvider, type IdentityProvider } from './stand-ins/identity-provider';

/**
 * Drills against the real server process (src/server.ts), signalled like an orchestrator does.
 * Every wait is bounded; a process that hangs fails the test and is killed in afterEach.
 */
warnWhenRedisMissing();

let idp: IdentityProvider;
let cardscan: CardscanStandIn;
const processes: BrokerProcess[] = [];

beforeAll(async () => {
  idp = await startIdentityProvider({ audience: AUDIENCE });
  cardscan = await startCardscanStandIn({ apiKey: TEST_CARDSCAN_KEY });
});
afterEach(async () => {
  await Promise.all(processes.splice(0).map((broker) => broker.stop()));
  cardscan.setDelay(0);
  cardscan.setMode('ok');
});
afterAll(async () => {
  await Promise.all([idp.close(), cardscan.close()]);
});

async function start(env: Record<string, string> = {}): Promise<BrokerProcess> {
  const broker = await spawnBroker({
    CARDSCAN_API_KEY: TEST_CARDSCAN_KEY,
    CARDSCAN_BASE_URL: cardscan.baseUrl,
    AUTH_JWKS_URI: idp.jwksUri,
    AUTH_ISSUER: idp.issuer,
    AUTH_AUDIENCE: AUDIENCE,
    LOG_LEVEL: 'info',
    ...env,
  });
  processes.push(broker);
  return broker;
}

const session = (broker: BrokerProcess, user: string, timeoutMs: number, agent?: http.Agent) =>
  httpGet(`${broker.url}/cardscan-session`, {
    headers: { Authorization: `Bearer ${idp.sign({ sub: user })}` },
    timeoutMs,
    agent,
  });

/** Nothing that identifies a credential or a user's token may reach the process output. */
function expectNoSecrets(broker: BrokerProcess): void {
  const output = broker.output.join('\n');
  expect(output).not.toContain(TEST_CARDSCAN_KEY);
  expect(output).not.toMatch(/Bearer\s+ey/);
  expect(output).not.toMatch(/unhandled/i);
}

test('when SIGTERM arrives during load, then /readyz turns 503, requests are still served during the delay, in-flight ones finish, and the process exits 0 before SHUTDOWN_TIMEOUT_MS', async () => {
  const delayMs = 1000;
  const timeoutMs = 6000;
  const upstreamMs = 1200;
  const broker = await start({
    SHUTDOWN_DELAY_MS: String(delayMs),
    SHUTDOWN_TIMEOUT_MS: String(timeoutMs),
    UPSTREAM_TIMEOUT_MS: '4000',
  });
  expect((await session(broker, 'warm-up', 4000)).status).toBe(200);
  cardscan.setDelay(upstreamMs);

  // Load: 4 users asking again and again, each request on its own connection.
  let loading = true;
  const served: Answer[] = [];
  const refused: string[] = [];
  const failed: string[] = [];
  const workers = Array.from({ length: 4 }, async (_, worker) => {
    while (loading) {
      try {
        served.push(await session(broker, `load-${worker}-${randomUUID()}`, 4000 + upstreamMs));
      } catch (error) {
        // Refused: the listener had closed, the request never reached the broker.
        if (codeOf(error) === 'ECONNREFUSED') refused.push(codeOf(error));
        else failed.push(codeOf(error));
        loading = false;
      }
    }
  });
  // A keep-alive client whose request is in flight when the listener closes.
  const keepAlive = new http.Agent({ keepAlive: true });
  await sleep(300);

  const signalledAt = performance.now();
  broker.child.kill('SIGTERM');
  const inFlight = session(broker, 'in-flight', 4000 + upstreamMs, keepAlive);
  let readyz: Answer;
  for (let polls = 0; ; polls++) {
    readyz = await httpGet(`${broker.url}/readyz`, { timeoutMs: 1000 });
    if (readyz.status === 503) break;
    expect(polls).toBeLessThan(20);
    await sleep(10);
  }
  expect(readyz.headers['content-type']).toMatch(/^application\/problem\+json/);
  // Still served after /readyz went 503: the delay keeps the listener open.
  const duringDelay = await session(broker, 'during-delay', 4000 + upstreamMs);
  expect(duringDelay.status).toBe(200);

  const exitCode = await broker.exited;
  const exitedAfterMs = performance.now() - signalledAt;
  loading = false;
  await Promise.all(workers);

  expect(exitCode).toBe(0);
  expect(exitedAfterMs).toBeLessThan(timeoutMs);
  const last = await inFlight;
  expect(last.status).toBe(200);
  expect(last.headers.connection).toBe('close');
  expect(failed).toEqual([]);
  expect(served.length).toBeGreaterThan(0);
  for (const answer of served) expect(answer.status).toBe(200);
  expect(refused.length).toBeGreaterThan(0);
  expectNoSecrets(broker);
  keepAlive.destroy();
});

test('when a request outlives the drain, then it is cut and the process still exits before SHUTDOWN_TIMEOUT_MS', async () => {
  const timeoutMs = 2000;
  const broker = await start({
    SHUTDOWN_DELAY_MS: '200',
    SHUTDOWN_TIMEOUT_MS: String(timeoutMs),
    UPSTREAM_TIMEOUT_MS: '10000',
  });
  expect((await session(broker, 'warm-up', 4000)).status).toBe(200);
  cardscan.setMode('hang');
  const stuck = session(broker, 'stuck', 10_000).then(
    () => 'answered',
    (error: unknown) => codeOf(error),
  );
  await sleep(200);
  const signalledAt = performance.now();
  broker.child.kill('SIGTERM');
  expect(await broker.exited).toBe(0);
  expect(performance.now() - signalledAt).toBeLessThan(timeoutMs);
  expect(await stuck).not.toBe('answered');
  expect(broker.output.join('\n')).toContain('drain timed out');
  expectNoSecrets(broker);
});

test('when a second signal arrives during the drain, then the process exits at once', async () => {
  const delayMs = 10_000;
  const broker = await start({
    SHUTDOWN_DELAY_MS: String(delayMs),
    SHUTDOWN_TIMEOUT_MS: '20000',
  });
  broker.child.kill('SIGTERM');
  await broker.logged('draining: /readyz answers 503, still serving');
  const secondAt = performance.now();
  broker.child.kill('SIGTERM');
  await broker.exited;
  expect(performance.now() - secondAt).toBeLessThan(delayMs / 2);
  expect(broker.output.join('\n')).toContain('second signal: exiting at once');
});

(redisAvailable ? test : test.skip)(
  'when two broker processes share one Redis, then they hold the per-user limit together, and both drain and exit 0',
  async () => {
    const redis = await anyRedis();
    try {
      const env = { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '3', SHUTDOWN_DELAY_MS: '0' };
      const [a, b] = await Promise.all([start(env), start(env)]);
      // Each process connects to Redis on its own time: wait until both count in it.
      for (const broker of [a, b] as BrokerProcess[]) {
        for (let polls = 0; ; polls++) {
          const probe = await session(broker, `probe-${randomUUID()}`, 4000);
          if (probe.headers.ratelimit !== undefined) break;
          expect(polls).toBeLessThan(100);
          await sleep(50);
        }
      }
      const user = `shared-${randomUUID()}`;
      const statuses = [];
      for (const broker of [a, b, a, b, a] as BrokerProcess[]) {
        statuses.push((await session(broker, user, 4000)).status);
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429]);

      a?.child.kill('SIGTERM');
      b?.child.kill('SIGTERM');
      expect(await a?.exited).toBe(0);
      expect(await b?.exited).toBe(0);
    } finally {
      await redis.stop();
    }
  },
);

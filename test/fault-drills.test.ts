import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHarness, TEST_CARDSCAN_KEY, type Harness } from './helpers/harness';
import { httpGet, type Answer } from './helpers/http-get';
import { circuitState, metricValue } from './helpers/metrics';
import { createSigningKey } from './stand-ins/identity-provider';

/**
 * Cardscan and the identity provider misbehave while traffic flows through a real listener.
 * For every drill: each request is answered within its deadline (the client gives up at the
 * deadline plus a margin, which fails the drill), no 500, the listener still serves afterwards,
 * and no key or token reaches the logs. An unhandled rejection fails the test by itself (Jest).
 */
const DEADLINE_MS = 600;
const CLIENT_LIMIT_MS = DEADLINE_MS + 1500;
/** The contract's numbers, except a short open time so recovery fits in a test. */
const BREAKER = { openMs: 500 };

let h: Harness;
let agent: http.Agent;
let clock: number;
const tokens: string[] = [];

beforeEach(async () => {
  clock = Date.now();
  h = await startHarness({
    env: { UPSTREAM_TIMEOUT_MS: String(DEADLINE_MS) },
    broker: { breaker: BREAKER, now: () => clock },
  });
  agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
});
afterEach(async () => {
  agent.destroy();
  await h.close();
  tokens.length = 0;
});

function tokenFor(user: string): string {
  const token = h.tokenFor(user);
  tokens.push(token);
  return token;
}

/** `count` session requests of distinct users, `concurrency` at a time. */
async function drive(count: number, options: { token?: (index: number) => string } = {}) {
  const answers: Answer[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < count; index = next++) {
      const token = options.token?.(index) ?? tokenFor(`drill-user-${index}`);
      answers[index] = await httpGet(`${h.app}/cardscan-session`, {
        headers: { Authorization: `Bearer ${token}` },
        timeoutMs: CLIENT_LIMIT_MS,
        agent,
      });
    }
  };
  await Promise.all(Array.from({ length: 10 }, worker));
  return answers;
}

const statusesOf = (answers: Answer[]) =>
  [...new Set(answers.map((answer) => answer.status))].sort();
const typesOf = (answers: Answer[]) =>
  [...new Set(answers.map((answer) => (JSON.parse(answer.body) as { type: string }).type))].sort();
const problem = (code: string) => `urn:cardscan-broker:problem:${code}`;

async function expectStillServingAndNothingLeaked(): Promise<void> {
  expect((await httpGet(`${h.app}/healthz`, { timeoutMs: 1000 })).status).toBe(200);
  const logs = h.logs.text();
  expect(logs).not.toContain(TEST_CARDSCAN_KEY);
  for (const token of tokens) expect(logs).not.toContain(token);
  expect(logs).not.toContain('"msg":"unexpected error"');
}

test('when Cardscan hangs, then callers get 504 at the deadline, then 503 once the breaker opens', async () => {
  h.cardscan.setMode('hang');
  const answers = await drive(30);
  expect(statusesOf(answers)).toEqual([503, 504]);
  expect(typesOf(answers)).toEqual([problem('upstream-circuit-open'), problem('upstream-timeout')]);
  await expectStillServingAndNothingLeaked();
});

test('when Cardscan refuses connections, then callers get 503, and the breaker stops the retries', async () => {
  await h.cardscan.close();
  const answers = await drive(30);
  expect(statusesOf(answers)).toEqual([503]);
  expect(typesOf(answers)).toEqual([
    problem('upstream-circuit-open'),
    problem('upstream-unreachable'),
  ]);
  await expectStillServingAndNothingLeaked();
});

test('when Cardscan answers garbage, then callers get 502, then 503 once the breaker opens', async () => {
  h.cardscan.setMode('malformed');
  const answers = await drive(30);
  expect(statusesOf(answers)).toEqual([502, 503]);
  expect(typesOf(answers)).toEqual([
    problem('upstream-bad-response'),
    problem('upstream-circuit-open'),
  ]);
  await expectStillServingAndNothingLeaked();
});

test('when Cardscan drops connections, then callers get 502, then 503 once the breaker opens', async () => {
  h.cardscan.setMode('drop');
  const answers = await drive(30);
  expect(statusesOf(answers)).toEqual([502, 503]);
  await expectStillServingAndNothingLeaked();
});

test('when Cardscan refuses the broker key (401), then every caller gets 502 and the log names the variable to fix', async () => {
  h.cardscan.setMode('unauthorized');
  const answers = await drive(30);
  expect(statusesOf(answers)).toEqual([502]);
  expect(typesOf(answers)).toEqual([problem('upstream-credentials')]);
  expect(h.logs.text()).toContain('check CARDSCAN_API_KEY');
  expect(await metricValue(h.app, circuitState('cardscan', 'closed'))).toBe(1);
  await expectStillServingAndNothingLeaked();
});

test('when Cardscan answers a burst of 5xx, then the breaker opens (503 with Retry-After, Cardscan not called) and closes once Cardscan recovers', async () => {
  h.cardscan.setMode('server-error');
  const burst = await drive(30);
  expect(statusesOf(burst)).toEqual([502, 503]);
  const fastFails = burst.filter((answer) => answer.status === 503);
  for (const answer of fastFails) expect(Number(answer.headers['retry-after'])).toBeGreaterThan(0);

  const seen = h.cardscan.requests.length;
  expect(statusesOf(await drive(10))).toEqual([503]);
  expect(h.cardscan.requests.length).toBe(seen);

  h.cardscan.setMode('ok');
  await sleep(BREAKER.openMs + 200);
  // One trial call goes through and closes the breaker; then everyone is served again.
  expect(statusesOf(await drive(1))).toEqual([200]);
  const recovered = await drive(20);
  expect(statusesOf(recovered)).toEqual([200]);
  expect(await metricValue(h.app, circuitState('cardscan', 'closed'))).toBe(1);
  await expectStillServingAndNothingLeaked();
});

test('when the JWKS endpoint goes down mid-run, then valid tokens keep working, strangers get 401, and the outage is logged once', async () => {
  const users = Array.from({ length: 10 }, (_, index) => tokenFor(`steady-${index}`));
  const stranger = createSigningKey();
  const mixed = (index: number) =>
    index % 5 === 4
      ? h.idp.sign({ sub: `stranger-${index}` }, { key: stranger })
      : users[index % 10]!;

  expect(statusesOf(await drive(20, { token: mixed }))).toEqual([200, 401]);
  h.idp.setDown(true);
  // Keys get old (a background refresh is due) and unknown kids may refetch again: both fail now.
  clock += 11 * 60_000;
  const during = await drive(60, { token: mixed });
  expect(statusesOf(during)).toEqual([200, 401]);
  expect(during.filter((answer) => answer.status === 200)).toHaveLength(48);
  const outage = h.logs
    .entries()
    .filter((entry) => entry.msg === 'cannot fetch signing keys; keys already held stay in use');
  expect(outage).toHaveLength(1);
  await expectStillServingAndNothingLeaked();
});

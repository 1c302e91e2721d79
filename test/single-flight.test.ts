import { setTimeout as sleep } from 'node:timers/promises';
import { startHarness, type Harness } from './helpers/harness';
import { listen, type Listening } from './helpers/listen';

let h: Harness;
let broker: Listening;
beforeAll(async () => {
  h = await startHarness();
  broker = await listen(h.broker.app);
});
afterAll(async () => {
  await broker.close();
  await h.close();
});

async function session(token: string): Promise<{ status: number; user?: string }> {
  const res = await fetch(`${broker.url}/cardscan-session`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  if (res.status !== 200) return { status: res.status };
  const body = (await res.json()) as { session: string };
  return { status: res.status, user: h.cardscan.userIdInToken(body.session) };
}

test('when 20 users each send 5 requests at once, then each user causes one Cardscan call and every token carries its own user', async () => {
  // Names an object's prototype also has: the pending calls are kept per user id.
  const users = [
    '__proto__',
    'constructor',
    'toString',
    ...Array.from({ length: 17 }, (_, index) => `patient-${index}`),
  ];
  const asked = users.flatMap((user) => Array.from({ length: 5 }, () => user));
  const tokens = asked.map((user) => h.tokenFor(user));
  let arrived = 0;
  const countArrival = () => arrived++;
  broker.server.on('request', countArrival);
  const seen = h.cardscan.requests.length;

  // Cardscan holds its answers until every request is in, so all of them overlap for sure.
  const release = h.cardscan.hold();
  const answers = Promise.all(tokens.map(session));
  for (let polls = 0; arrived < asked.length || h.cardscan.requests.length - seen < 20; polls++) {
    expect(polls).toBeLessThan(500);
    await sleep(10);
  }
  await sleep(100);
  release();
  broker.server.off('request', countArrival);

  (await answers).forEach((got, index) => {
    expect(got).toEqual({ status: 200, user: asked[index] });
  });
  const calls = h.cardscan.requests.slice(seen).map((received) => received.query.user_id);
  expect(calls.sort()).toEqual([...users].sort());
});

test('when a user asks again after the first call finished, then a fresh Cardscan call is made', async () => {
  const seen = h.cardscan.requests.length;
  const token = h.tokenFor('patient-again');
  expect(await session(token)).toEqual({ status: 200, user: 'patient-again' });
  expect(await session(token)).toEqual({ status: 200, user: 'patient-again' });
  expect(h.cardscan.requests.length - seen).toBe(2);
});

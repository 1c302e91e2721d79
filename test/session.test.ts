import request from 'supertest';
import { startHarness, type Harness } from './helpers/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

test('when a verified user asks for a session, then they get a flat all-string session', async () => {
  const res = await request(h.app)
    .get('/cardscan-session')
    .set('Authorization', `Bearer ${h.tokenFor('patient-42')}`);
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

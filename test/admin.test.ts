import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import request, { type Response } from 'supertest';
import type { Express } from 'express';
import { createAdminKey, runAdminKey } from '../scripts/admin-key';
import { createLogger } from '../src/observability/logger';
import { startListeners } from '../src/http/lifecycle';
import { SUBJECT_PATTERN } from '../src/routes/admin';
import { startHarness, TEST_CERTISCAN_TOKEN, type Harness } from './helpers/harness';
import { metricValue } from './helpers/metrics';

const BAD_RESPONSES =
  'upstream_request_duration_seconds_count{upstream="certiscan",outcome="bad-response"}';
const SUCCESSES = 'upstream_request_duration_seconds_count{upstream="certiscan",outcome="success"}';

/** Placeholder admin keys; the broker only ever sees their SHA-256 in ADMIN_API_KEYS. */
const ALICE_KEY = 'secret_test_admin_key_alice_0001';
const BOB_KEY = 'secret_test_admin_key_bob_0002';
const sha256 = (key: string) => createHash('sha256').update(key).digest('hex');
const ADMIN_ENV = {
  ADMIN_API_KEYS: `alice:${sha256(ALICE_KEY)},bob:${sha256(BOB_KEY)}`,
  CERTISCAN_AUTH_TOKEN: TEST_CERTISCAN_TOKEN,
};
const SUPPLIED_SECRET = 'secret_test_worktoken_supplied_0001';
const WORKTOKEN_PATH = '/api/v1/account/worktoken/';

type Method = 'post' | 'put' | 'delete';

function call(app: Express | string, method: Method, path: string, key: string | null = ALICE_KEY) {
  const req = request(app)[method](path);
  return key === null ? req : req.set('Authorization', `Bearer ${key}`);
}

function expectProblem(res: Response, status: number): void {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.body).toMatchObject({ status, request_id: res.headers['x-request-id'] });
  expect(JSON.stringify(res.body)).not.toMatch(/stack|at .*\.ts:\d+/);
}

function auditLines(h: Harness): Record<string, unknown>[] {
  return h.logs.entries().filter((entry) => entry.audit === true);
}

describe('admin routes enabled on the main port', () => {
  let h: Harness;
  beforeAll(async () => {
    // Configured with the "Bearer " prefix, as ops often paste it: CertiScan must still get one.
    h = await startHarness({
      env: { ...ADMIN_ENV, CERTISCAN_AUTH_TOKEN: `Bearer ${TEST_CERTISCAN_TOKEN}` },
    });
  });
  afterAll(() => h.close());
  beforeEach(() => {
    h.certiscan.requests.length = 0;
    h.certiscan.worktokens.clear();
    h.certiscan.setMode('ok');
    h.logs.lines.length = 0;
  });

  const seed = (subject: string) =>
    h.certiscan.worktokens.set(subject, { name: 'Old name', secret: 'secret_test_old_0001' });

  describe('authentication', () => {
    test.each<[Method, string]>([
      ['post', '/admin/worktokens'],
      ['put', '/admin/worktokens/front-desk-1'],
      ['delete', '/admin/worktokens/front-desk-1'],
    ])(
      'when %s %s comes without an Authorization header, then it is a 401 with WWW-Authenticate',
      async (method, path) => {
        const res = await call(h.app, method, path, null).send({ name: 'x', subject: 'y' });
        expectProblem(res, 401);
        expect(res.headers['www-authenticate']).toBe('Bearer realm="cardscan-broker"');
        expect(h.certiscan.requests).toHaveLength(0);
        expect(auditLines(h)).toEqual([
          expect.objectContaining({
            audit: true,
            actor: null,
            action: 'admin.authenticate',
            outcome: 'no_credentials',
            status: 401,
            requestId: res.headers['x-request-id'],
          }),
        ]);
      },
    );

    test.each<[Method, string]>([
      ['post', '/admin/worktokens'],
      ['put', '/admin/worktokens/front-desk-1'],
      ['delete', '/admin/worktokens/front-desk-1'],
    ])('when %s %s comes with a wrong key, then it is a 401', async (method, path) => {
      const res = await call(h.app, method, path, 'secret_test_admin_key_wrong_0003').send({
        name: 'x',
        subject: 'y',
      });
      expectProblem(res, 401);
      expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
      expect(h.certiscan.requests).toHaveLength(0);
      expect(auditLines(h)).toEqual([
        expect.objectContaining({ actor: null, outcome: 'invalid_token', path: path }),
      ]);
      expect(h.logs.text()).not.toContain('secret_test_admin_key_wrong_0003');
    });

    test('when the Authorization header is not Bearer, then it is a 401 invalid_request', async () => {
      const res = await request(h.app)
        .delete('/admin/worktokens/front-desk-1')
        .set('Authorization', `Basic ${Buffer.from(`alice:${ALICE_KEY}`).toString('base64')}`);
      expectProblem(res, 401);
      expect(res.headers['www-authenticate']).toContain('error="invalid_request"');
      expect(h.certiscan.requests).toHaveLength(0);
    });

    test('when the second configured key is used, then its name is the actor', async () => {
      seed('front-desk-1');
      const res = await call(h.app, 'delete', '/admin/worktokens/front-desk-1', BOB_KEY);
      expect(res.status).toBe(200);
      expect(auditLines(h)).toEqual([expect.objectContaining({ actor: 'bob' })]);
    });
  });

  describe('create', () => {
    test('when ops create a worktoken with a secret, then CertiScan gets exactly that POST and the secret is not echoed', async () => {
      const res = await call(h.app, 'post', '/admin/worktokens').send({
        name: 'Front desk scanner',
        subject: 'front-desk-1',
        secret: SUPPLIED_SECRET,
      });
      expect(res.status).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.body).toEqual({ subject: 'front-desk-1', name: 'Front desk scanner' });

      expect(h.certiscan.requests).toHaveLength(1);
      const [sent] = h.certiscan.requests;
      expect(sent?.method).toBe('POST');
      expect(sent?.path).toBe(WORKTOKEN_PATH);
      expect(sent?.headers.authorization).toBe(`Bearer ${TEST_CERTISCAN_TOKEN}`);
      expect(sent?.headers['content-type']).toMatch(/^application\/json/);
      expect(sent?.headers['x-request-id']).toBe(res.headers['x-request-id']);
      expect(sent?.body).toEqual({
        name: 'Front desk scanner',
        subject: 'front-desk-1',
        secret: SUPPLIED_SECRET,
      });
    });

    test('when ops create a worktoken without a secret, then a strong one is generated, stored and shown once', async () => {
      const first = await call(h.app, 'post', '/admin/worktokens').send({
        name: 'Scanner A',
        subject: 'scanner-a',
      });
      const second = await call(h.app, 'post', '/admin/worktokens').send({
        name: 'Scanner B',
        subject: 'scanner-b',
      });
      expect(first.status).toBe(201);
      expect(first.headers['cache-control']).toBe('no-store');
      expect(first.body).toEqual({
        subject: 'scanner-a',
        name: 'Scanner A',
        secret: expect.stringMatching(/^[A-Za-z0-9_-]{32,}$/),
      });
      expect(h.certiscan.worktokens.get('scanner-a')?.secret).toBe(first.body.secret);
      expect(second.body.secret).not.toBe(first.body.secret);
    });

    test('when the name has spaces around it, then they are trimmed before CertiScan sees it', async () => {
      const res = await call(h.app, 'post', '/admin/worktokens').send({
        name: '  Front desk  ',
        subject: 'front-desk-1',
      });
      expect(res.status).toBe(201);
      expect(h.certiscan.requests[0]?.body).toMatchObject({ name: 'Front desk' });
    });

    test('when the subject already exists, then it is a 409 with CertiScan message in detail', async () => {
      seed('front-desk-1');
      const res = await call(h.app, 'post', '/admin/worktokens').send({
        name: 'Front desk scanner',
        subject: 'front-desk-1',
      });
      expectProblem(res, 409);
      expect(res.body.detail).toBe('A worktoken with subject front-desk-1 already exists.');
      expect(res.body.type).toBe('urn:cardscan-broker:problem:upstream-rejected');
    });

    test('when a subject has exactly 128 characters, then it is accepted', async () => {
      const subject = 'a'.repeat(128);
      const res = await call(h.app, 'post', '/admin/worktokens').send({ name: 'Long', subject });
      expect(res.status).toBe(201);
      expect(h.certiscan.worktokens.has(subject)).toBe(true);
    });
  });

  describe('update', () => {
    test('when ops rename and set a secret, then CertiScan gets exactly that PUT with a trailing slash', async () => {
      seed('front-desk-1');
      const res = await call(h.app, 'put', '/admin/worktokens/front-desk-1').send({
        name: 'Front desk (lobby)',
        secret: SUPPLIED_SECRET,
      });
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.body).toEqual({ subject: 'front-desk-1', name: 'Front desk (lobby)' });

      expect(h.certiscan.requests).toHaveLength(1);
      const [sent] = h.certiscan.requests;
      expect(sent?.method).toBe('PUT');
      expect(sent?.path).toBe(`${WORKTOKEN_PATH}front-desk-1/`);
      expect(sent?.headers.authorization).toBe(`Bearer ${TEST_CERTISCAN_TOKEN}`);
      expect(sent?.body).toEqual({
        name: 'Front desk (lobby)',
        subject: 'front-desk-1',
        secret: SUPPLIED_SECRET,
      });
    });

    test('when ops update without a secret, then a new one is generated, set and shown once', async () => {
      seed('front-desk-1');
      const res = await call(h.app, 'put', '/admin/worktokens/front-desk-1').send({
        name: 'Front desk',
      });
      expect(res.status).toBe(200);
      expect(res.body.secret).toMatch(/^[A-Za-z0-9_-]{32,}$/);
      expect(h.certiscan.worktokens.get('front-desk-1')).toEqual({
        name: 'Front desk',
        secret: res.body.secret,
      });
    });

    test('when the subject is unknown, then it is a 404 with CertiScan message in detail', async () => {
      const res = await call(h.app, 'put', '/admin/worktokens/ghost').send({ name: 'Ghost' });
      expectProblem(res, 404);
      expect(res.body.detail).toBe('No worktoken with subject ghost.');
    });

    test('when the body names the subject again, then it is a 400 naming that field', async () => {
      seed('front-desk-1');
      const res = await call(h.app, 'put', '/admin/worktokens/front-desk-1').send({
        name: 'Front desk',
        subject: 'other',
      });
      expectProblem(res, 400);
      expect(res.body.detail).toContain('"subject" is not accepted');
      expect(h.certiscan.requests).toHaveLength(0);
    });
  });

  describe('delete', () => {
    test('when ops delete a worktoken, then CertiScan gets that DELETE and the answer warns about the 5 minutes', async () => {
      seed('front-desk-1');
      const res = await call(h.app, 'delete', '/admin/worktokens/front-desk-1');
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.body).toEqual({
        subject: 'front-desk-1',
        deleted: true,
        note: expect.stringContaining('stop working within about 5 minutes'),
      });
      expect(h.certiscan.requests).toHaveLength(1);
      const [sent] = h.certiscan.requests;
      expect(sent?.method).toBe('DELETE');
      expect(sent?.path).toBe(`${WORKTOKEN_PATH}front-desk-1/`);
      expect(sent?.headers.authorization).toBe(`Bearer ${TEST_CERTISCAN_TOKEN}`);
      expect(sent?.body).toBeUndefined();
      expect(h.certiscan.worktokens.has('front-desk-1')).toBe(false);
    });

    test('when the subject is unknown, then it is a 404 with CertiScan message in detail', async () => {
      const res = await call(h.app, 'delete', '/admin/worktokens/ghost');
      expectProblem(res, 404);
      expect(res.body.detail).toBe('No worktoken with subject ghost.');
    });
  });

  describe('bad input never reaches CertiScan', () => {
    afterEach(() => {
      expect(h.certiscan.requests).toHaveLength(0);
    });

    test.each([
      ['a secret shorter than 16 characters', { secret: 'short_secret_15' }, 'secret'],
      ['an unknown field', { secrte: SUPPLIED_SECRET }, '"secrte" is not accepted'],
      ['an empty name', { name: '   ' }, '"name" must not be empty'],
      ['a name that is not a string', { name: 42 }, '"name" must be a string'],
    ])(
      'when the create body has %s, then it is a 400 naming the field',
      async (_, change, says) => {
        const res = await call(h.app, 'post', '/admin/worktokens').send({
          name: 'Front desk',
          subject: 'front-desk-1',
          ...change,
        });
        expectProblem(res, 400);
        expect(res.body.detail).toContain(says);
      },
    );

    test('when a supplied secret is too short, then the answer says 16 and does not echo it', async () => {
      const res = await call(h.app, 'put', '/admin/worktokens/front-desk-1').send({
        name: 'Front desk',
        secret: 'short_secret_15',
      });
      expectProblem(res, 400);
      expect(res.body.detail).toBe('body field "secret" must be at least 16 characters');
    });

    test('when the name is missing, then it is a 400 saying it is required', async () => {
      const res = await call(h.app, 'post', '/admin/worktokens').send({ subject: 'front-desk-1' });
      expectProblem(res, 400);
      expect(res.body.detail).toBe('body field "name" is required');
    });

    test('when there is no body, then it is a 400', async () => {
      const res = await call(h.app, 'post', '/admin/worktokens');
      expectProblem(res, 400);
      expect(res.body.detail).toBe('the body must be a JSON object');
    });

    test('when the body is a JSON array, then it is a 400', async () => {
      const res = await call(h.app, 'post', '/admin/worktokens').send([{ name: 'x' }]);
      expectProblem(res, 400);
      expect(res.body.detail).toBe('the body must be a JSON object');
    });

    test('when the body is not JSON, then it is a 415', async () => {
      const res = await call(h.app, 'post', '/admin/worktokens')
        .set('Content-Type', 'text/plain')
        .send('name=x&subject=y');
      expectProblem(res, 415);
    });

    test.each(['../x', 'a/b', 'a?b', '%2e%2e', '..', '.x', 'a#b', 'a b', 'a'.repeat(129), ''])(
      'when the create body holds the subject %j, then it is a 400',
      async (subject) => {
        const res = await call(h.app, 'post', '/admin/worktokens').send({ name: 'x', subject });
        expectProblem(res, 400);
        expect(res.body.detail).toMatch(/^body field "subject" must be 1 to 128 letters/);
      },
    );

    // Express decodes path parameters, so each of these reaches the route as the bad subject.
    test.each([
      ['%2e%2e', '..'],
      ['%2E%2E', '..'],
      ['..%2fx', '../x'],
      ['%2e%2e%2fx', '../x'],
      ['a%2Fb', 'a/b'],
      ['a%3Fb', 'a?b'],
      ['a%23b', 'a#b'],
      ['.x', '.x'],
      ['a%00b', 'a\\0b'],
      ['a'.repeat(129), '129 characters'],
    ])(
      'when the path subject is %s (decoded: %s), then PUT and DELETE are a 400',
      async (encoded) => {
        for (const method of ['put', 'delete'] as const) {
          const res = await call(h.app, method, `/admin/worktokens/${encoded}`).send(
            method === 'put' ? { name: 'x' } : undefined,
          );
          expectProblem(res, 400);
          expect(res.body.detail).toMatch(/^the subject must be 1 to 128 letters/);
        }
      },
    );

    test('when the subject is written with a literal "?", then the query is refused with a 400 (it must not update "a")', async () => {
      seed('a');
      for (const method of ['put', 'delete'] as const) {
        const res = await call(h.app, method, '/admin/worktokens/a?b').send(
          method === 'put' ? { name: 'x' } : undefined,
        );
        expectProblem(res, 400);
        expect(res.body.detail).toContain('no query string');
      }
    });

    test('when the subject is empty, then PUT and DELETE are a 400', async () => {
      for (const path of ['/admin/worktokens/', '/admin/worktokens']) {
        for (const method of ['put', 'delete'] as const) {
          const res = await call(h.app, method, path).send(
            method === 'put' ? { name: 'x' } : undefined,
          );
          expectProblem(res, 400);
          expect(res.body.detail).toContain('the subject is missing');
        }
      }
    });

    // These never match the one-segment route: Express has no route for them, so they are a 404.
    test.each(['../x', 'a/b', '..%2F..%2Fx/y'])(
      'when the path subject is the literal %s, then there is no such route (404)',
      async (subject) => {
        for (const method of ['put', 'delete'] as const) {
          const res = await call(h.app, method, `/admin/worktokens/${subject}`).send(
            method === 'put' ? { name: 'x' } : undefined,
          );
          expectProblem(res, 404);
        }
      },
    );

    test('when the path holds a broken percent-encoding, then it is a 400, not a 500', async () => {
      const res = await call(h.app, 'delete', '/admin/worktokens/a%zzb');
      expectProblem(res, 400);
      expect(res.body.detail).toBe('the URL holds an invalid percent-encoding');
    });
  });

  describe('CertiScan failures', () => {
    test('when CertiScan refuses the account token, then it is a 502 and the error log names CERTISCAN_AUTH_TOKEN', async () => {
      h.certiscan.queue('unauthorized');
      const res = await call(h.app, 'post', '/admin/worktokens').send({
        name: 'Front desk',
        subject: 'front-desk-1',
      });
      expectProblem(res, 502);
      expect(res.headers['www-authenticate']).toBeUndefined();
      const errors = h.logs.entries().filter((entry) => entry.level === 'error');
      expect(errors).toContainEqual(
        expect.objectContaining({
          upstream: 'certiscan',
          upstreamStatus: 401,
          msg: expect.stringContaining('CERTISCAN_AUTH_TOKEN'),
        }),
      );
    });

    test('when CertiScan answers success: false, then it is a 502', async () => {
      const badBefore = (await metricValue(h.app, BAD_RESPONSES)) ?? 0;
      const successesBefore = (await metricValue(h.app, SUCCESSES)) ?? 0;
      h.certiscan.refuseNext('Quota exceeded.');
      const res = await call(h.app, 'post', '/admin/worktokens').send({
        name: 'Front desk',
        subject: 'front-desk-1',
      });
      expectProblem(res, 502);
      expect(res.body.detail).toBe('CertiScan answered success: false: Quota exceeded.');
      // Counted as what it is, not as a successful call.
      expect(await metricValue(h.app, BAD_RESPONSES)).toBe(badBefore + 1);
      expect((await metricValue(h.app, SUCCESSES)) ?? 0).toBe(successesBefore);
    });

    test('when CertiScan answers a body that is not JSON, then it is a 502', async () => {
      seed('front-desk-1');
      h.certiscan.queue('malformed');
      const res = await call(h.app, 'delete', '/admin/worktokens/front-desk-1');
      expectProblem(res, 502);
    });

    test('when CertiScan fails with a 500, then POST is not retried', async () => {
      h.certiscan.queue('server-error');
      const res = await call(h.app, 'post', '/admin/worktokens').send({
        name: 'Front desk',
        subject: 'front-desk-1',
      });
      expectProblem(res, 502);
      expect(h.certiscan.requests.map((r) => r.method)).toEqual(['POST']);
      expect(h.certiscan.worktokens.has('front-desk-1')).toBe(false);
    });

    test('when CertiScan fails once with a 500, then PUT and DELETE are retried and succeed', async () => {
      seed('front-desk-1');
      h.certiscan.queue('server-error');
      const put = await call(h.app, 'put', '/admin/worktokens/front-desk-1').send({
        name: 'Front desk',
      });
      expect(put.status).toBe(200);
      h.certiscan.queue('server-error');
      const del = await call(h.app, 'delete', '/admin/worktokens/front-desk-1');
      expect(del.status).toBe(200);
      expect(h.certiscan.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
        `PUT ${WORKTOKEN_PATH}front-desk-1/`,
        `PUT ${WORKTOKEN_PATH}front-desk-1/`,
        `DELETE ${WORKTOKEN_PATH}front-desk-1/`,
        `DELETE ${WORKTOKEN_PATH}front-desk-1/`,
      ]);
    });
  });

  describe('audit', () => {
    test('when a create succeeds, then exactly one audit line carries who, what, which, outcome and request id', async () => {
      const res = await call(h.app, 'post', '/admin/worktokens').send({
        name: 'Front desk',
        subject: 'front-desk-1',
      });
      expect(res.status).toBe(201);
      const lines = auditLines(h);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        level: 'info',
        audit: true,
        actor: 'alice',
        action: 'worktoken.create',
        subject: 'front-desk-1',
        outcome: 'success',
        status: 201,
        upstreamStatus: 201,
        requestId: res.headers['x-request-id'],
      });
      expect(lines[0]?.durationMs).toEqual(expect.any(Number));
    });

    test('when CertiScan refuses an update, then the audit line records the failure and its status', async () => {
      const res = await call(h.app, 'put', '/admin/worktokens/ghost').send({ name: 'Ghost' });
      expect(res.status).toBe(404);
      expect(auditLines(h)).toEqual([
        expect.objectContaining({
          level: 'warn',
          actor: 'alice',
          action: 'worktoken.update',
          subject: 'ghost',
          outcome: 'upstream-rejected',
          status: 404,
          upstreamStatus: 404,
          requestId: res.headers['x-request-id'],
          durationMs: expect.any(Number),
        }),
      ]);
    });

    test('when a delete is refused for a bad subject, then the audit line records it without an upstream status', async () => {
      const res = await call(h.app, 'delete', '/admin/worktokens/%2e%2e');
      expect(res.status).toBe(400);
      const [line] = auditLines(h);
      expect(line).toMatchObject({
        action: 'worktoken.delete',
        subject: '..',
        outcome: 'bad-request',
        status: 400,
      });
      expect(line).not.toHaveProperty('upstreamStatus');
    });

    test('when CertiScan refuses the broker, then the audit line says upstream-credentials', async () => {
      h.certiscan.queue('unauthorized');
      await call(h.app, 'delete', '/admin/worktokens/front-desk-1');
      expect(auditLines(h)).toEqual([
        expect.objectContaining({
          outcome: 'upstream-credentials',
          status: 502,
          upstreamStatus: 401,
        }),
      ]);
    });
  });

  test('when admin calls of every kind ran, then no log line and no error body holds a secret or a key', async () => {
    const bodies: string[] = [];
    const secrets = [SUPPLIED_SECRET, ALICE_KEY, BOB_KEY, TEST_CERTISCAN_TOKEN];
    const keep = (res: Response) => {
      bodies.push(res.status >= 400 ? JSON.stringify(res.body) : '');
      if (typeof res.body.secret === 'string') secrets.push(res.body.secret);
    };
    const body = { name: 'Front desk', subject: 'front-desk-1', secret: SUPPLIED_SECRET };
    keep(await call(h.app, 'post', '/admin/worktokens').send(body));
    keep(await call(h.app, 'post', '/admin/worktokens', BOB_KEY).send(body));
    keep(await call(h.app, 'post', '/admin/worktokens').send({ name: 'B', subject: 'b' }));
    keep(await call(h.app, 'put', '/admin/worktokens/b').send({ name: 'B2' }));
    keep(
      await call(h.app, 'put', '/admin/worktokens/b').send({ name: 'B3', secret: 'short_secret' }),
    );
    keep(await call(h.app, 'put', '/admin/worktokens/b').send({ name: 'B3', oops: ALICE_KEY }));
    keep(await call(h.app, 'post', '/admin/worktokens', `${ALICE_KEY}x`).send(body));
    h.certiscan.queue('unauthorized');
    keep(
      await call(h.app, 'put', '/admin/worktokens/b').send({ name: 'B4', secret: SUPPLIED_SECRET }),
    );
    h.certiscan.queue('server-error', 'server-error', 'server-error');
    keep(
      await call(h.app, 'put', '/admin/worktokens/b').send({ name: 'B5', secret: SUPPLIED_SECRET }),
    );
    keep(await call(h.app, 'delete', '/admin/worktokens/b'));

    expect(secrets.length).toBeGreaterThanOrEqual(6);
    expect(auditLines(h).length).toBeGreaterThanOrEqual(8);
    const logged = h.logs.text();
    for (const secret of secrets) {
      expect(logged).not.toContain(secret);
      for (const text of bodies) expect(text).not.toContain(secret);
    }
    const metrics = await request(h.app).get('/metrics');
    for (const secret of secrets) expect(metrics.text).not.toContain(secret);
  });

  test('when /openapi.json is read, then it describes the admin routes with the subject rule they enforce', async () => {
    const res = await request(h.app).get('/openapi.json');
    const paths = res.body.paths as Record<string, Record<string, unknown>>;
    expect(Object.keys(paths['/admin/worktokens'] ?? {})).toEqual(['post']);
    expect(Object.keys(paths['/admin/worktokens/{subject}'] ?? {}).sort()).toEqual([
      'delete',
      'parameters',
      'put',
    ]);
    const parameter = (paths['/admin/worktokens/{subject}']?.parameters as { schema: object }[])[0];
    expect(parameter?.schema).toEqual({ type: 'string', pattern: SUBJECT_PATTERN.source });
  });
});

describe('admin routes turned off', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());

  test('when ADMIN_API_KEYS is unset, then the admin routes do not exist (404) and are not described', async () => {
    expect(h.config.admin).toBeUndefined();
    for (const [method, path] of [
      ['post', '/admin/worktokens'],
      ['put', '/admin/worktokens/front-desk-1'],
      ['delete', '/admin/worktokens/front-desk-1'],
    ] as const) {
      const res = await call(h.app, method, path).send({ name: 'x', subject: 'y' });
      expectProblem(res, 404);
    }
    expect(h.certiscan.requests).toHaveLength(0);
    const openApi = await request(h.app).get('/openapi.json');
    expect(Object.keys(openApi.body.paths).filter((path) => path.startsWith('/admin'))).toEqual([]);
  });
});

describe('CertiScan too slow or unreachable', () => {
  test('when CertiScan never answers, then it is a 504', async () => {
    const h = await startHarness({ env: { ...ADMIN_ENV, UPSTREAM_TIMEOUT_MS: '300' } });
    try {
      h.certiscan.queue('hang');
      const res = await call(h.app, 'post', '/admin/worktokens').send({
        name: 'Front desk',
        subject: 'front-desk-1',
      });
      expectProblem(res, 504);
      expect(auditLines(h)).toEqual([
        expect.objectContaining({ outcome: 'upstream-timeout', status: 504 }),
      ]);
    } finally {
      await h.close();
    }
  });

  test('when CertiScan refuses the connection, then it is a 503', async () => {
    // Port 1 on loopback has no listener: the connection is refused at once.
    const h = await startHarness({
      env: { ...ADMIN_ENV, CERTISCAN_BASE_URL: 'http://127.0.0.1:1/api/v1' },
    });
    try {
      const res = await call(h.app, 'delete', '/admin/worktokens/front-desk-1');
      expectProblem(res, 503);
    } finally {
      await h.close();
    }
  });
});

describe('ADMIN_PORT', () => {
  test('when ADMIN_PORT is set, then admin routes answer only there, public routes only on PORT, /healthz on both', async () => {
    const h = await startHarness({ env: { ...ADMIN_ENV, PORT: '18080', ADMIN_PORT: '18081' } });
    expect(h.broker.listeners.map(({ name, port }) => ({ name, port }))).toEqual([
      { name: 'public', port: 18080 },
      { name: 'admin', port: 18081 },
    ]);
    // The configured ports prove the wiring; the test binds the same apps to free loopback ports.
    const running = await startListeners(
      h.broker.listeners.map((spec) => ({ ...spec, port: 0, host: '127.0.0.1' })),
      createLogger('silent'),
    );
    try {
      const { public: publicUrl = '', admin: adminUrl = '' } = running.urls;
      const body = { name: 'Front desk', subject: 'front-desk-1' };

      expectProblem(await call(publicUrl, 'post', '/admin/worktokens').send(body), 404);
      expectProblem(await call(publicUrl, 'delete', '/admin/worktokens/front-desk-1'), 404);
      expect(h.certiscan.requests).toHaveLength(0);
      const created = await call(adminUrl, 'post', '/admin/worktokens').send(body);
      expect(created.status).toBe(201);

      const session = await request(publicUrl)
        .post('/cardscan-session')
        .set('Authorization', `Bearer ${h.tokenFor('patient-1')}`);
      expect(session.status).toBe(200);
      expectProblem(
        await request(adminUrl)
          .post('/cardscan-session')
          .set('Authorization', `Bearer ${h.tokenFor('patient-1')}`),
        404,
      );

      for (const url of [publicUrl, adminUrl]) {
        expect((await request(url).get('/healthz')).status).toBe(200);
      }
      const publicDoc = await request(publicUrl).get('/openapi.json');
      const adminDoc = await request(adminUrl).get('/openapi.json');
      expect(Object.keys(publicDoc.body.paths)).not.toContain('/admin/worktokens');
      expect(Object.keys(adminDoc.body.paths)).toContain('/admin/worktokens');
    } finally {
      // shutdown() leaves its hard-stop timer pending after a clean close; keep it short.
      await running.shutdown({ delayMs: 0, timeoutMs: 300, startDraining: () => undefined });
      await h.close();
    }
  });
});

describe('npm run admin-key', () => {
  test('when a key is made for a name, then its entry configures the broker and the key logs in as that name', async () => {
    const created = createAdminKey('ops.alice-1');
    expect(created.key).toMatch(/^adm_[A-Za-z0-9_-]{43}$/);
    expect(created.entry).toBe(`ops.alice-1:${sha256(created.key)}`);

    const h = await startHarness({
      env: { ADMIN_API_KEYS: created.entry, CERTISCAN_AUTH_TOKEN: TEST_CERTISCAN_TOKEN },
    });
    try {
      const res = await call(h.app, 'post', '/admin/worktokens', created.key).send({
        name: 'Front desk',
        subject: 'front-desk-1',
      });
      expect(res.status).toBe(201);
      expect(auditLines(h)).toEqual([expect.objectContaining({ actor: 'ops.alice-1' })]);
      expect(h.logs.text()).not.toContain(created.key);
    } finally {
      await h.close();
    }
  });

  test('when a key is made with the openssl recipe in docs/admin.md, then it has the form of npm run admin-key and logs in as that name', async () => {
    const page = readFileSync(path.join(__dirname, '..', 'docs', 'admin.md'), 'utf8');
    const recipe = /<!-- admin-key-recipe -->\s*```sh\n([\s\S]*?)```/.exec(page)?.[1] ?? '';
    expect(recipe).toContain('openssl rand 32');
    const out = execFileSync('bash', ['-euo', 'pipefail', '-c', recipe], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    const key = /adm_[A-Za-z0-9_-]+/.exec(out)?.[0] ?? '';
    expect(key).toMatch(/^adm_[A-Za-z0-9_-]{43}$/);
    const entry = /alice:[0-9a-f]+/.exec(out)?.[0] ?? '';
    expect(entry).toBe(`alice:${sha256(key)}`);

    const h = await startHarness({
      env: { ADMIN_API_KEYS: entry, CERTISCAN_AUTH_TOKEN: TEST_CERTISCAN_TOKEN },
    });
    try {
      const res = await call(h.app, 'delete', '/admin/worktokens/front-desk-1', key);
      expect(res.status).not.toBe(401);
      expect(auditLines(h)).toEqual([expect.objectContaining({ actor: 'alice' })]);
    } finally {
      await h.close();
    }
  });

  test('when the script runs with a name, then it prints the key once and the entry to paste', () => {
    let out = '';
    const code = runAdminKey(['alice'], { out: (text) => (out += text), error: () => undefined });
    expect(code).toBe(0);
    const key = /adm_[A-Za-z0-9_-]{43}/.exec(out)?.[0] ?? '';
    expect(out.split(key)).toHaveLength(2);
    expect(out).toContain(`\n  alice:${sha256(key)}\n`);
    expect(createAdminKey('alice').key).not.toBe(key);
  });

  test.each([[['bad name']], [['']], [['a'.repeat(65)]], [[]], [['alice', 'bob']]])(
    'when the script runs with %j, then it refuses with exit code 2 and prints no key',
    (args) => {
      let out = '';
      let error = '';
      const code = runAdminKey(args, {
        out: (text) => (out += text),
        error: (text) => (error += text),
      });
      expect(code).toBe(2);
      expect(out).toBe('');
      expect(error).not.toBe('');
    },
  );
});

describe('the curl lines of docs/admin.md', () => {
  const CURRENT_SECRET = 'secret_test_worktoken_current_0001';

  /** Runs a shell block as a user would paste it, with stdin and without blocking this process. */
  function runBash(block: string, env: NodeJS.ProcessEnv, input: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn('bash', ['-euo', 'pipefail', '-c', block], { env, timeout: 10_000 });
      let out = '';
      let err = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${err}`)),
      );
      child.stdin.end(input);
    });
  }

  test('when the curl lines run in order against a broker, then each call succeeds and neither the admin key nor the worktoken secret is on a curl command line', async () => {
    const page = readFileSync(path.join(__dirname, '..', 'docs', 'admin.md'), 'utf8');
    const section = page.slice(
      page.indexOf('<!-- admin-curl-lines -->'),
      page.indexOf('## When it goes wrong'),
    );
    const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map(([, block]) => block ?? '');
    expect(blocks).toHaveLength(4);

    // A curl ahead of the real one on PATH: it records its arguments, what `ps` would show.
    const realCurl = execFileSync('bash', ['-c', 'command -v curl'], { encoding: 'utf8' }).trim();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'admin-curl-'));
    const argvFile = path.join(dir, 'argv');
    writeFileSync(
      path.join(dir, 'curl'),
      `#!/usr/bin/env bash\nprintf '%s\\n' "$*" >> '${argvFile}'\nexec '${realCurl}' "$@"\n`,
      { mode: 0o755 },
    );
    const h = await startHarness({ env: ADMIN_ENV });
    try {
      const env = { PATH: `${dir}:${process.env.PATH}`, BROKER: h.app, ADMIN_KEY: ALICE_KEY };
      const answers = [];
      for (const block of blocks) {
        answers.push(JSON.parse(await runBash(block, env, `${CURRENT_SECRET}\n`)) as unknown);
      }
      const generated = expect.stringMatching(/^[A-Za-z0-9_-]{43}$/);
      expect(answers).toEqual([
        { subject: 'front-desk-1', name: 'Front desk scanner', secret: generated },
        { subject: 'front-desk-1', name: 'Front desk scanner', secret: generated },
        { subject: 'front-desk-1', name: 'Front desk (lobby)' },
        { subject: 'front-desk-1', deleted: true, note: expect.any(String) },
      ]);
      expect(auditLines(h).map((line) => [line.actor, line.action, line.outcome])).toEqual([
        ['alice', 'worktoken.create', 'success'],
        ['alice', 'worktoken.update', 'success'],
        ['alice', 'worktoken.update', 'success'],
        ['alice', 'worktoken.delete', 'success'],
      ]);
      // The rename kept the secret it was given: it reached CertiScan, but not through argv.
      expect(JSON.stringify(h.certiscan.requests.map((each) => each.body))).toContain(
        CURRENT_SECRET,
      );
      const argv = readFileSync(argvFile, 'utf8').trim().split('\n');
      expect(argv).toHaveLength(4);
      for (const line of argv) {
        expect(line).toMatch(/-H @\/dev\/fd\/\d+/);
        expect(line).not.toContain(ALICE_KEY);
        expect(line).not.toContain(CURRENT_SECRET);
      }
    } finally {
      await h.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { UpstreamError } from '../src/errors';
import { createLogger } from '../src/observability/logger';
import { createMetrics } from '../src/observability/metrics';
import { createUpstreamClient, type UpstreamClient } from '../src/upstream/upstream-client';
import { startHarness, TEST_CERTISCAN_TOKEN, type Harness } from './helpers/harness';
import { LogCapture } from './helpers/log-capture';
import { circuitState, metricValue } from './helpers/metrics';
import { startCertiscanStandIn, type CertiscanStandIn } from './stand-ins/certiscan';
import { BearerCredential } from '../src/config/credential-watcher';

/** Small numbers for the tests that wait for the breaker; the contract's defaults are tested too. */
const QUICK = { volumeThreshold: 4, windowMs: 2000, openMs: 300 };

let h: Harness;

const session = (user: string) =>
  request(h.app)
    .get('/cardscan-session')
    .set('Authorization', `Bearer ${h.tokenFor(user)}`);

describe('with the contract numbers (10 calls, more than 50 %, open 30 s)', () => {
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(() => h.close());

  test('when 10 calls in a row fail, then the breaker opens only after the 10th and answers 503 with Retry-After without calling Cardscan', async () => {
    h.cardscan.setMode('server-error');
    for (let call = 1; call <= 9; call++) {
      expect((await session(`user-${call}`)).status).toBe(502);
    }
    expect(await metricValue(h.app, circuitState('cardscan', 'closed'))).toBe(1);

    expect((await session('user-10')).status).toBe(502);
    expect(await metricValue(h.app, circuitState('cardscan', 'open'))).toBe(1);

    // If the broker called Cardscan now it would wait out its deadline; it must not call at all.
    h.cardscan.setMode('hang');
    const seen = h.cardscan.requests.length;
    const res = await session('user-11');
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({
      type: 'urn:cardscan-broker:problem:upstream-circuit-open',
      status: 503,
    });
    const retryAfter = Number(res.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(20);
    expect(retryAfter).toBeLessThanOrEqual(30);
    expect(h.cardscan.requests.length).toBe(seen);

    const opened = h.logs.entries().filter((entry) => entry.circuit === 'open');
    expect(opened).toHaveLength(1);
    expect(opened[0]).toMatchObject({ level: 'error', upstream: 'cardscan' });
  });

  test('when exactly half of 10 calls fail, then it stays closed, and one more failure opens it', async () => {
    for (let call = 1; call <= 10; call++) {
      h.cardscan.setMode(call % 2 === 0 ? 'server-error' : 'ok');
      expect((await session(`user-${call}`)).status).toBe(call % 2 === 0 ? 502 : 200);
    }
    expect(await metricValue(h.app, circuitState('cardscan', 'closed'))).toBe(1);

    h.cardscan.setMode('server-error');
    expect((await session('user-11')).status).toBe(502);
    expect(await metricValue(h.app, circuitState('cardscan', 'open'))).toBe(1);
  });

  test('when Cardscan refuses the broker key again and again, then every caller gets the credential 502 and the breaker stays closed', async () => {
    h.cardscan.setMode('unauthorized');
    for (let call = 1; call <= 12; call++) {
      const res = await session(`user-${call}`);
      expect(res.status).toBe(502);
      expect(res.body.type).toBe('urn:cardscan-broker:problem:upstream-credentials');
    }
    expect(h.cardscan.requests).toHaveLength(12);
    expect(await metricValue(h.app, circuitState('cardscan', 'closed'))).toBe(1);
  });

  test('when the breaker is open, then /readyz still answers 200', async () => {
    h.cardscan.setMode('drop');
    for (let call = 1; call <= 10; call++) await session(`user-${call}`);
    expect((await session('user-11')).status).toBe(503);
    expect((await request(h.app).get('/readyz')).status).toBe(200);
  });
});

describe('with quick numbers', () => {
  beforeEach(async () => {
    h = await startHarness({ broker: { breaker: QUICK } });
  });
  afterEach(() => h.close());

  async function openTheBreaker(): Promise<void> {
    h.cardscan.setMode('server-error');
    for (let call = 1; call <= QUICK.volumeThreshold; call++) await session(`opener-${call}`);
    expect((await session('opener-check')).body.type).toBe(
      'urn:cardscan-broker:problem:upstream-circuit-open',
    );
  }

  test('when the open time has passed, then exactly one trial call reaches Cardscan, and its success closes the breaker', async () => {
    await openTheBreaker();
    await sleep(QUICK.openMs + 100);
    expect(await metricValue(h.app, circuitState('cardscan', 'half-open'))).toBe(1);

    h.cardscan.setMode('ok');
    h.cardscan.setDelay(200);
    const seen = h.cardscan.requests.length;
    const answers = await Promise.all(
      ['a', 'b', 'c', 'd', 'e'].map((user) => session(`trial-${user}`)),
    );
    expect(h.cardscan.requests.length - seen).toBe(1);
    const statuses = answers.map((res) => res.status).sort();
    expect(statuses).toEqual([200, 503, 503, 503, 503]);
    for (const res of answers.filter((each) => each.status === 503)) {
      expect(res.headers['retry-after']).toBe('1');
    }

    h.cardscan.setDelay(0);
    expect((await session('after-trial')).status).toBe(200);
    expect(await metricValue(h.app, circuitState('cardscan', 'closed'))).toBe(1);
    const transitions = h.logs
      .entries()
      .filter((entry) => entry.circuit !== undefined)
      .map((entry) => entry.circuit);
    expect(transitions).toEqual(['open', 'half-open', 'closed']);
  });

  test('when the trial call fails, then the breaker opens again without further calls', async () => {
    await openTheBreaker();
    await sleep(QUICK.openMs + 100);
    expect((await session('trial')).status).toBe(502);
    const seen = h.cardscan.requests.length;
    expect((await session('after-trial')).status).toBe(503);
    expect(h.cardscan.requests.length).toBe(seen);
  });

  test('when failures are older than the window, then they no longer count', async () => {
    h.cardscan.setMode('server-error');
    for (let call = 1; call < QUICK.volumeThreshold; call++) await session(`old-${call}`);
    await sleep(QUICK.windowMs + 300);
    expect((await session('new-1')).status).toBe(502);
    // With the old failures still counted this would be the fifth failure in the window.
    const seen = h.cardscan.requests.length;
    expect((await session('new-2')).status).toBe(502);
    expect(h.cardscan.requests.length).toBeGreaterThan(seen);
  });
});

describe('on the CertiScan client, through the same upstream client', () => {
  let certiscan: CertiscanStandIn;
  let client: UpstreamClient;
  let logs: LogCapture;

  beforeEach(async () => {
    certiscan = await startCertiscanStandIn({ authToken: TEST_CERTISCAN_TOKEN });
    logs = new LogCapture();
    client = createUpstreamClient({
      name: 'certiscan',
      label: 'CertiScan',
      baseUrl: certiscan.baseUrl,
      credential: new BearerCredential('CERTISCAN_AUTH_TOKEN', TEST_CERTISCAN_TOKEN, undefined),
      timeoutMs: 1500,
      passThroughStatuses: [400, 404, 409, 422],
      breaker: QUICK,
      metrics: createMetrics(),
      logger: createLogger('debug', logs),
    });
  });
  afterEach(async () => {
    client.close();
    await certiscan.close();
  });

  const deleteUnknown = (subject: string) =>
    client.send({
      method: 'DELETE',
      path: `/account/worktoken/${subject}/`,
      requestId: `req-${subject}`,
      retry: false,
      read: (body) => body,
    });

  test('when CertiScan answers 404 to every call, then those are answers, not failures, and every call reaches it', async () => {
    for (let call = 1; call <= 12; call++) {
      await expect(deleteUnknown(`unknown-${call}`)).rejects.toMatchObject({
        failure: 'rejected',
        status: 404,
      });
    }
    expect(certiscan.requests).toHaveLength(12);
  });

  test('when CertiScan keeps failing, then its breaker opens and calls fail with circuit-open without reaching it', async () => {
    certiscan.setMode('server-error');
    for (let call = 1; call <= QUICK.volumeThreshold; call++) {
      await expect(deleteUnknown(`subject-${call}`)).rejects.toMatchObject({ status: 502 });
    }
    const error: unknown = await deleteUnknown('subject-x').catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ failure: 'circuit-open', status: 503 });
    expect((error as UpstreamError).headers['Retry-After']).toBeDefined();
    expect(certiscan.requests).toHaveLength(QUICK.volumeThreshold);
    expect(logs.text()).toContain('CertiScan circuit opened');
  });
});

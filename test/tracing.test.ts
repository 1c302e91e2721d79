import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, loadConfig } from '../src/config/config';
import { spawnBroker, type BrokerProcess } from './helpers/broker-process';
import { httpGet } from './helpers/http-get';
import {
  AUDIENCE,
  TEST_CARDSCAN_KEY,
  TEST_CERTISCAN_TOKEN,
  TEST_HMAC_SECRET,
} from './helpers/harness';
import { startCardscanStandIn, type CardscanStandIn } from './stand-ins/cardscan';
import { startCertiscanStandIn, type CertiscanStandIn } from './stand-ins/certiscan';
import { startIdentityProvider, type IdentityProvider } from './stand-ins/identity-provider';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './stand-ins/otlp-receiver';
import type { RecordedRequest } from './stand-ins/stand-in-server';

const ADMIN_KEY = 'secret_test_admin_key_tracing_0001';
const WORKTOKEN_SECRET = 'secret_test_worktoken_tracing_0001';
const ADMIN_ENV = {
  ADMIN_API_KEYS: `ops:${createHash('sha256').update(ADMIN_KEY).digest('hex')}`,
  CERTISCAN_AUTH_TOKEN: TEST_CERTISCAN_TOKEN,
};
/** Batches leave within 20 ms instead of 5 s, so the tests wait for spans, not for a timer. */
const QUICK_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '20' };

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_SPAN_ID = '00f067aa0ba902b7';

let receiver: OtlpReceiver;
let idp: IdentityProvider;
let cardscan: CardscanStandIn;
let certiscan: CertiscanStandIn;
/** The broker a test talks to: its own, or the one the tests with the common settings share. */
let broker: BrokerProcess | undefined;
let shared: BrokerProcess | undefined;

/**
 * The broker runs as the real server process (src/server.ts), as in production: the exporter
 * loads node:http with a dynamic import(), which jest's module sandbox cannot run in-process.
 * Tests with the common settings share one process, so the file starts few of them.
 */
beforeAll(async () => {
  [receiver, idp, cardscan, certiscan] = await Promise.all([
    startOtlpReceiver(),
    startIdentityProvider({ audience: AUDIENCE }),
    startCardscanStandIn({ apiKey: TEST_CARDSCAN_KEY }),
    startCertiscanStandIn({ authToken: TEST_CERTISCAN_TOKEN }),
  ]);
});
afterEach(async () => {
  if (broker !== shared) await broker?.stop();
  broker = undefined;
  receiver.clear();
  cardscan.setMode('ok');
  cardscan.requests.length = 0;
  certiscan.requests.length = 0;
});
afterAll(async () => {
  await shared?.stop();
  await Promise.all([receiver.close(), idp.close(), cardscan.close(), certiscan.close()]);
});

async function spawnTraced(env: Record<string, string>): Promise<BrokerProcess> {
  return spawnBroker({
    CARDSCAN_API_KEY: TEST_CARDSCAN_KEY,
    CARDSCAN_BASE_URL: cardscan.baseUrl,
    CERTISCAN_BASE_URL: certiscan.baseUrl,
    AUTH_JWKS_URI: idp.jwksUri,
    AUTH_ISSUER: idp.issuer,
    AUTH_AUDIENCE: AUDIENCE,
    LOG_LEVEL: 'debug',
    SHUTDOWN_DELAY_MS: '0',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.origin,
    ...QUICK_EXPORT,
    ...ADMIN_ENV,
    ...env,
  });
}

/** A broker of this test's own, stopped after it. */
async function startBroker(env: Record<string, string> = {}): Promise<BrokerProcess> {
  broker = await spawnTraced(env);
  return broker;
}

/** The shared broker: protobuf, admin routes on, the default limits. */
async function sharedBroker(): Promise<BrokerProcess> {
  shared ??= await spawnTraced({});
  broker = shared;
  return shared;
}

async function call(
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${broker?.url}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...init.headers,
    },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const session = (sub: string, headers: Record<string, string> = {}, method = 'GET') =>
  call('/cardscan-session', {
    method,
    headers: { Authorization: `Bearer ${idp.sign({ sub })}`, ...headers },
  });

const admin = (method: string, path: string, body: unknown) =>
  call(path, { method, headers: { Authorization: `Bearer ${ADMIN_KEY}` }, body });

const serverSpans = (spans: ReceivedSpan[]) => spans.filter((span) => span.kind === 'server');
const childrenOf = (parent: ReceivedSpan, spans: ReceivedSpan[]) =>
  spans.filter((span) => span.parentSpanId === parent.spanId && span.traceId === parent.traceId);

/** The trace and span id of the traceparent an upstream received. */
function traceparentOf(recorded: RecordedRequest | undefined): { traceId: string; spanId: string } {
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(
    String(recorded?.headers.traceparent),
  );
  if (!match) throw new Error(`no valid traceparent: ${String(recorded?.headers.traceparent)}`);
  return { traceId: match[1] ?? '', spanId: match[2] ?? '' };
}

/** Not one exported byte may hold any of these. */
function expectExportsFree(...secrets: string[]): void {
  const exported = Buffer.concat(receiver.bodies);
  expect(exported.length).toBeGreaterThan(0);
  for (const secret of secrets) {
    expect({ secret, found: exported.includes(Buffer.from(secret, 'utf8')) }).toEqual({
      secret,
      found: false,
    });
  }
}

/** The broker's JSON log lines. */
const logLines = (process: BrokerProcess) =>
  process.output.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });

describe('tracing on', () => {
  test('when a session is minted, then one SERVER span and its CLIENT child reach the collector in protobuf, Cardscan got the child as its traceparent, and the log lines carry the ids', async () => {
    const b = await sharedBroker();
    const userId = 'patient-trace-0001';
    const token = idp.sign({ sub: userId });
    const res = await call('/cardscan-session', { headers: { Authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const spans = await receiver.waitFor((all) => all.length >= 2);

    expect(receiver.contentTypes[0]).toBe('application/x-protobuf');
    const [server] = serverSpans(spans);
    expect(server).toMatchObject({
      name: 'GET /cardscan-session',
      status: 'unset',
      attributes: {
        'http.request.method': 'GET',
        'http.route': '/cardscan-session',
        'http.response.status_code': 200,
        'url.scheme': 'http',
        'cardscan_broker.provider': 'default',
      },
      resource: { 'service.name': 'cardscan-broker' },
    });
    expect(server?.parentSpanId).toBeUndefined();
    const [client] = childrenOf(server!, spans);
    expect(client).toMatchObject({
      kind: 'client',
      name: 'GET /access-token',
      status: 'unset',
      attributes: {
        'http.request.method': 'GET',
        'server.address': '127.0.0.1',
        'http.response.status_code': 200,
        'url.template': '/access-token',
      },
    });
    expect(traceparentOf(cardscan.requests[0])).toEqual({
      traceId: client!.traceId,
      spanId: client!.spanId,
    });

    const traced = logLines(b).filter((line) => line.trace_id === server!.traceId);
    expect(traced.map((line) => line.msg)).toContain('request completed');
    for (const line of traced) {
      expect(line).toMatchObject({ trace_id: server!.traceId, span_id: server!.spanId });
    }
    expectExportsFree(userId, token, String(res.body.session), TEST_CARDSCAN_KEY, 'user_id');
  });

  test('when the app leaves before the answer, then the request log line still carries the span ids', async () => {
    const b = await sharedBroker();
    const release = cardscan.hold();
    await expect(
      httpGet(`${b.url}/cardscan-session`, {
        headers: { Authorization: `Bearer ${idp.sign({ sub: 'patient-trace-0011' })}` },
        timeoutMs: 300,
      }),
    ).rejects.toThrow();
    await b.logged('request aborted');
    release();
    // The Cardscan call goes on and ends too: its span is in before the next test.
    const spans = await receiver.waitFor((all) => all.length >= 2);
    const aborted = logLines(b).find((line) => line.msg === 'request aborted');
    expect(aborted).toMatchObject({
      trace_id: serverSpans(spans)[0]?.traceId,
      span_id: serverSpans(spans)[0]?.spanId,
    });
  });

  test('when the app sends a traceparent, then the request continues its trace, and a malformed one starts a new trace (over http/json)', async () => {
    await startBroker({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' });
    const res = await session(
      'patient-trace-0002',
      { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` },
      'POST',
    );
    expect(res.status).toBe(200);
    const spans = await receiver.waitFor((all) => all.length >= 2);

    expect(receiver.contentTypes[0]).toMatch(/^application\/json/);
    expect(serverSpans(spans)[0]).toMatchObject({
      name: 'POST /cardscan-session',
      traceId: TRACE_ID,
      parentSpanId: PARENT_SPAN_ID,
    });
    expect(traceparentOf(cardscan.requests[0]).traceId).toBe(TRACE_ID);

    // A malformed one is ignored: the request starts a trace of its own.
    await session('patient-trace-0012', { traceparent: `00-${TRACE_ID}-zz-01` });
    const fresh = await receiver.waitFor((all) => serverSpans(all).length >= 2);
    expect(serverSpans(fresh)[1]?.traceId).not.toBe(TRACE_ID);
    expect(serverSpans(fresh)[1]?.parentSpanId).toBeUndefined();
  });

  test('when the app sends a tracestate and a forged X-Forwarded-Proto, then neither reaches a span: only the traceparent is continued, and url.scheme is http or https', async () => {
    await startBroker({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', TRUST_PROXY: 'true' });
    const res = await session('patient-trace-0013', {
      traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`,
      tracestate: 'leak=patient-jane-doe-state',
      'X-Forwarded-Proto': 'forged-scheme-value',
    });
    expect(res.status).toBe(200);
    const spans = await receiver.waitFor((all) => all.length >= 2);
    expect(serverSpans(spans)[0]).toMatchObject({
      traceId: TRACE_ID,
      attributes: { 'url.scheme': 'http' },
    });
    expectExportsFree('patient-jane-doe-state', 'forged-scheme-value');
  });

  test('when Cardscan fails once with a 500, then each attempt is a CLIENT span of its own: the first an error, the second a success', async () => {
    await sharedBroker();
    cardscan.queue('server-error');
    expect((await session('patient-trace-0003')).status).toBe(200);
    const spans = await receiver.waitFor((all) => all.length >= 3);

    const [server] = serverSpans(spans);
    const attempts = childrenOf(server!, spans);
    expect(attempts).toHaveLength(2);
    expect(attempts[0]).toMatchObject({
      status: 'error',
      statusMessage: '',
      attributes: { 'http.response.status_code': 500, 'error.type': '500' },
    });
    expect(attempts[0]?.attributes['http.request.resend_count']).toBeUndefined();
    expect(attempts[1]).toMatchObject({
      status: 'unset',
      attributes: { 'http.response.status_code': 200, 'http.request.resend_count': 1 },
    });
    expect(cardscan.requests.map((each) => traceparentOf(each))).toEqual(
      attempts.map((span) => ({ traceId: span.traceId, spanId: span.spanId })),
    );
    // Cardscan's own error message never reaches a span.
    expectExportsFree('Internal server error');
  });

  test('when the Cardscan breaker is open, then the 503 span says circuit_open, is an error, and has no CLIENT child', async () => {
    await startBroker({ RATE_LIMIT_PER_MINUTE: '1000' });
    cardscan.setMode('server-error');
    const CIRCUIT_OPEN = 'urn:cardscan-broker:problem:upstream-circuit-open';
    let res = await session('patient-trace-0004');
    // The breaker opens after 10 failed calls within 10 s (the contract's numbers).
    for (let tries = 0; tries < 15 && res.body.type !== CIRCUIT_OPEN; tries++) {
      res = await session('patient-trace-0004');
    }
    expect(res.body.type).toBe(CIRCUIT_OPEN);
    const spans = await receiver.waitFor((all) =>
      serverSpans(all).some(
        (span) => span.attributes['cardscan_broker.outcome'] === 'circuit_open',
      ),
    );
    const open = serverSpans(spans).find(
      (span) => span.attributes['cardscan_broker.outcome'] === 'circuit_open',
    );
    expect(open).toMatchObject({
      status: 'error',
      attributes: { 'http.response.status_code': 503, 'error.type': '503' },
    });
    expect(childrenOf(open!, spans)).toEqual([]);
    expect(serverSpans(spans)[0]?.attributes['cardscan_broker.outcome']).toBe(
      'upstream_bad_response',
    );
  });

  test('when a user is rate limited, then the 429 span says rate_limited and is not an error', async () => {
    await startBroker({ RATE_LIMIT_PER_MINUTE: '1' });
    await session('patient-trace-0005');
    expect((await session('patient-trace-0005')).status).toBe(429);
    const spans = await receiver.waitFor((all) => serverSpans(all).length >= 2);
    const limited = serverSpans(spans).find(
      (span) => span.attributes['http.response.status_code'] === 429,
    );
    expect(limited).toMatchObject({
      name: 'GET /cardscan-session',
      status: 'unset',
      attributes: { 'cardscan_broker.outcome': 'rate_limited' },
    });
    expect(childrenOf(limited!, spans)).toEqual([]);
  });

  test('when Cardscan refuses the broker key, then the span says upstream_unauthorized and neither key nor message is exported', async () => {
    await sharedBroker();
    cardscan.setMode('unauthorized');
    expect((await session('patient-trace-0006')).status).toBe(502);
    const spans = await receiver.waitFor((all) => all.length >= 2);
    const [server] = serverSpans(spans);
    expect(server).toMatchObject({
      status: 'error',
      attributes: { 'cardscan_broker.outcome': 'upstream_unauthorized' },
    });
    expect(childrenOf(server!, spans)[0]).toMatchObject({
      status: 'error',
      attributes: { 'http.response.status_code': 401, 'error.type': '401' },
    });
    expectExportsFree(TEST_CARDSCAN_KEY, 'Unauthorized', 'AuthenticationError');
  });

  test('when an admin creates a worktoken, then POST spans reach the collector and CertiScan got the traceparent, with no key, secret or subject exported', async () => {
    await sharedBroker();
    const res = await admin('POST', '/admin/worktokens', {
      name: 'Front desk',
      subject: 'front-desk-trace',
      secret: WORKTOKEN_SECRET,
    });
    expect(res.status).toBe(201);
    const spans = await receiver.waitFor((all) => all.length >= 2);
    const [server] = serverSpans(spans);
    expect(server).toMatchObject({
      name: 'POST /admin/worktokens',
      attributes: { 'http.route': '/admin/worktokens', 'http.response.status_code': 201 },
    });
    const [client] = childrenOf(server!, spans);
    expect(client).toMatchObject({
      name: 'POST /account/worktoken/',
      attributes: { 'http.response.status_code': 201 },
    });
    expect(traceparentOf(certiscan.requests[0])).toEqual({
      traceId: client!.traceId,
      spanId: client!.spanId,
    });
    expectExportsFree(ADMIN_KEY, WORKTOKEN_SECRET, TEST_CERTISCAN_TOKEN, 'front-desk-trace');
  });

  test('when an admin updates an unknown subject, then the spans carry the route templates and the 404, never the subject', async () => {
    await sharedBroker();
    const res = await admin('PUT', '/admin/worktokens/front-desk-trace-2', { name: 'Desk' });
    // CertiScan knows no such subject: its 404 reaches the caller.
    expect(res.status).toBe(404);
    const spans = await receiver.waitFor((all) => all.length >= 2);
    const [server] = serverSpans(spans);
    expect(server).toMatchObject({
      name: 'PUT /admin/worktokens/:subject',
      status: 'unset',
      attributes: {
        'http.route': '/admin/worktokens/:subject',
        'http.response.status_code': 404,
        'cardscan_broker.outcome': 'upstream_rejected',
      },
    });
    expect(childrenOf(server!, spans)[0]).toMatchObject({
      name: 'PUT /account/worktoken/{subject}/',
      status: 'error',
      attributes: { 'http.response.status_code': 404, 'error.type': '404' },
    });
    expectExportsFree('front-desk-trace-2', ADMIN_KEY, String(res.body.detail));
  });

  test('when the ops routes are polled, then they are not traced', async () => {
    await sharedBroker();
    for (const route of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      const res = await fetch(`${broker?.url}${route}`, { signal: AbortSignal.timeout(5000) });
      expect(res.status).toBe(200);
      await res.text();
    }
    await session('patient-trace-0007');
    const spans = await receiver.waitFor((all) => all.length >= 2);
    expect(serverSpans(spans).map((span) => span.name)).toEqual(['GET /cardscan-session']);
  });

  test('when the sampler is always_off, then nothing is exported but an unsampled traceparent still goes upstream', async () => {
    const b = await startBroker({ OTEL_TRACES_SAMPLER: 'always_off' });
    expect((await session('patient-trace-0008')).status).toBe(200);
    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
    expect(receiver.spans).toEqual([]);
    expect(String(cardscan.requests[0]?.headers.traceparent)).toMatch(
      /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/,
    );
  });

  test('when a caller sends an unsampled traceparent, then the broker’s own sampler still traces the request, in the caller’s trace', async () => {
    await sharedBroker();
    const res = await session('patient-trace-0013', {
      traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-00`,
    });
    expect(res.status).toBe(200);
    const spans = await receiver.waitFor((all) => all.length >= 2);
    expect(serverSpans(spans)[0]).toMatchObject({
      name: 'GET /cardscan-session',
      traceId: TRACE_ID,
      parentSpanId: PARENT_SPAN_ID,
    });
    expect(String(cardscan.requests[0]?.headers.traceparent)).toMatch(
      new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`),
    );
  });

  test('when a caller sends a sampled traceparent to a broker whose sampler says no, then nothing is exported and the trace id still goes upstream, unsampled', async () => {
    const b = await startBroker({ OTEL_TRACES_SAMPLER: 'parentbased_always_off' });
    const res = await session('patient-trace-0014', {
      traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`,
    });
    expect(res.status).toBe(200);
    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
    expect(receiver.spans).toEqual([]);
    expect(String(cardscan.requests[0]?.headers.traceparent)).toMatch(
      new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-00$`),
    );
  });

  test('when a path matches no route, then its 404 is not exported, while routed requests are', async () => {
    await sharedBroker();
    for (const scan of ['/wp-login.php', '/.env', '/no/such/path?x=1']) {
      expect(
        (await call(scan, { headers: { traceparent: `00-${TRACE_ID}-${PARENT_SPAN_ID}-01` } }))
          .status,
      ).toBe(404);
    }
    expect((await session('patient-trace-0015')).status).toBe(200);
    // Spans leave in the order they ended: once the session's arrive, the scans' would have too.
    const spans = await receiver.waitFor((all) => all.length >= 2);
    expect(serverSpans(spans).map((span) => span.name)).toEqual(['GET /cardscan-session']);
    expect(spans.filter((span) => span.traceId === TRACE_ID)).toEqual([]);
  });

  test('when a span is pending at SIGTERM, then the drain sends it before the exit', async () => {
    const b = await startBroker({ OTEL_BSP_SCHEDULE_DELAY: '60000' });
    expect((await session('patient-trace-0009')).status).toBe(200);
    expect(receiver.spans).toEqual([]);
    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
    expect(serverSpans(receiver.spans).map((span) => span.name)).toEqual(['GET /cardscan-session']);
  });

  test('when the drain times out and cuts a request in flight, then its SERVER span is still sent before the exit', async () => {
    const b = await startBroker({
      OTEL_BSP_SCHEDULE_DELAY: '60000',
      SHUTDOWN_DELAY_MS: '0',
      SHUTDOWN_TIMEOUT_MS: '2000',
      UPSTREAM_TIMEOUT_MS: '10000',
    });
    cardscan.setMode('hang');
    const stuck = session('patient-trace-0016').then(
      () => 'answered',
      () => 'cut',
    );
    for (let i = 0; i < 100 && cardscan.requests.length === 0; i++) await sleep(20);
    expect(cardscan.requests).toHaveLength(1);
    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
    expect(await stuck).toBe('cut');
    expect(b.output.join('\n')).toContain('drain timed out');
    const [server] = serverSpans(receiver.spans);
    expect(server).toMatchObject({ name: 'GET /cardscan-session' });
    // Cut before an answer: no status code to report.
    expect(server?.attributes['http.response.status_code']).toBeUndefined();
  });

  test('when the collector accepts but never answers, then requests are served as usual and SIGTERM still exits 0 within SHUTDOWN_TIMEOUT_MS', async () => {
    const sockets: net.Socket[] = [];
    const blackHole = net.createServer((socket) => sockets.push(socket)).listen(0, '127.0.0.1');
    await once(blackHole, 'listening');
    const { port } = blackHole.address() as net.AddressInfo;
    try {
      const b = await startBroker({
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
        OTEL_EXPORTER_OTLP_TIMEOUT: '60000',
        SHUTDOWN_TIMEOUT_MS: '2000',
      });
      for (let index = 0; index < 5; index++) {
        const started = performance.now();
        expect((await session(`patient-trace-001${index}`)).status).toBe(200);
        expect(performance.now() - started).toBeLessThan(1000);
        await sleep(30); // each batch leaves and hangs at the collector
      }
      expect(sockets.length).toBeGreaterThan(0);
      const signalled = performance.now();
      b.child.kill('SIGTERM');
      expect(await b.exited).toBe(0);
      expect(performance.now() - signalled).toBeLessThan(2000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => blackHole.close(resolve));
    }
  });
});

describe('tracing off', () => {
  /** Builds a broker in a fresh process and lists the OpenTelemetry packages it loaded. */
  function openTelemetryPackagesLoaded(env: Record<string, string>): string[] {
    const script = `
      const { loadConfig } = require('./src/config/config');
      const { createBroker } = require('./src/broker');
      const { createLogger } = require('./src/observability/logger');
      const { config } = loadConfig(${JSON.stringify({
        CARDSCAN_API_KEY: TEST_CARDSCAN_KEY,
        AUTH_JWT_SECRET: TEST_HMAC_SECRET,
        ...env,
      })});
      const broker = createBroker(config, { logger: createLogger('silent') });
      const names = Object.keys(require.cache)
        .map((file) => /node_modules\\/(@opentelemetry\\/[^/]+)\\//.exec(file)?.[1])
        .filter(Boolean);
      process.stdout.write(JSON.stringify([...new Set(names)].sort()));
      broker.close(100).then(() => process.exit(0));
    `;
    const run = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
      cwd: path.resolve(__dirname, '..'),
      env: { PATH: process.env.PATH ?? '' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    if (run.status !== 0) throw new Error(`the probe failed: ${run.stderr}`);
    return JSON.parse(run.stdout) as string[];
  }

  test('when no OTLP endpoint is set, then building a broker loads no OpenTelemetry SDK or exporter module', () => {
    // prom-client has always loaded the (no-op) API for its exemplars; nothing else may come.
    expect(openTelemetryPackagesLoaded({})).toEqual(['@opentelemetry/api']);
    expect(
      openTelemetryPackagesLoaded({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' }),
    ).toEqual(
      expect.arrayContaining([
        '@opentelemetry/sdk-trace',
        '@opentelemetry/exporter-trace-otlp-proto',
      ]),
    );
  });
});

describe('tracing configuration', () => {
  const minimal = { CARDSCAN_API_KEY: TEST_CARDSCAN_KEY, AUTH_JWT_SECRET: TEST_HMAC_SECRET };
  function problemsOf(env: Record<string, string>): string[] {
    try {
      loadConfig({ ...minimal, ...env });
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    throw new Error('expected a ConfigError');
  }

  test('when no endpoint is set, then tracing is off whatever else is set', () => {
    expect(loadConfig({ ...minimal, OTEL_SERVICE_NAME: 'x' }).config.tracing).toBeUndefined();
    expect(
      loadConfig({
        ...minimal,
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_SDK_DISABLED: 'true',
      }).config.tracing,
    ).toBeUndefined();
  });

  test('when the base endpoint is set, then the defaults of the OpenTelemetry specification apply', () => {
    expect(
      loadConfig({ ...minimal, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).config
        .tracing,
    ).toEqual({
      endpoint: 'http://collector:4318/v1/traces',
      protocol: 'http/protobuf',
      headers: {},
      exportTimeoutMs: 10_000,
      scheduleDelayMs: 5000,
      resource: { 'service.name': 'cardscan-broker' },
      sampler: 'parentbased_always_on',
      samplerRatio: 1,
    });
  });

  test('when the traces-specific variables are set, then they win over the general ones', () => {
    const { config } = loadConfig({
      ...minimal,
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example.com/otlp/spans',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=secret_test_a,x-team=ops',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-api-key=secret_test_b%3D%3D',
      OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attributes,deployment.environment.name=prod',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
    });
    expect(config.tracing).toMatchObject({
      endpoint: 'https://traces.example.com/otlp/spans',
      protocol: 'http/json',
      headers: { 'x-api-key': 'secret_test_b==', 'x-team': 'ops' },
      resource: { 'service.name': 'from-attributes', 'deployment.environment.name': 'prod' },
      sampler: 'parentbased_traceidratio',
      samplerRatio: 0.25,
    });
    expect(
      loadConfig({
        ...minimal,
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_SERVICE_NAME: 'broker-eu',
        OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attributes',
      }).config.tracing?.resource['service.name'],
    ).toBe('broker-eu');
  });

  test('when OTEL_SDK_DISABLED is TRUE or True, then tracing is off, as the specification reads booleans', () => {
    for (const disabled of ['TRUE', 'True', 'true']) {
      const { config } = loadConfig({
        ...minimal,
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_SDK_DISABLED: disabled,
      });
      expect([disabled, config.tracing]).toEqual([disabled, undefined]);
    }
    expect(
      loadConfig({
        ...minimal,
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_SDK_DISABLED: 'FALSE',
      }).config.tracing,
    ).toBeDefined();
  });

  test('when collector headers go to a non-loopback http:// endpoint, then a warning names the variables, never the value', () => {
    const key = 'secret_test_collector_api_key_0001';
    const { warnings } = loadConfig({
      ...minimal,
      AUTH_AUDIENCE: AUDIENCE,
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector.observability:4318',
      OTEL_EXPORTER_OTLP_HEADERS: `x-api-key=${key}`,
    });
    expect(warnings).toEqual([
      expect.stringMatching(
        /^OTEL_EXPORTER_OTLP_ENDPOINT is an http:\/\/ URL .* OTEL_EXPORTER_OTLP_HEADERS is set: .* cleartext/,
      ),
    ]);
    expect(warnings.join('\n')).not.toContain(key);

    const traces = loadConfig({
      ...minimal,
      AUTH_AUDIENCE: AUDIENCE,
      OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector.example.com',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://10.0.0.7:4318/v1/traces',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: `x-api-key=${key}`,
    }).warnings;
    expect(traces).toEqual([
      expect.stringMatching(
        /^OTEL_EXPORTER_OTLP_TRACES_ENDPOINT .* OTEL_EXPORTER_OTLP_TRACES_HEADERS is set/,
      ),
    ]);

    // https://, loopback, no headers, or tracing off: nothing to say.
    for (const env of [
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector:4318',
        OTEL_EXPORTER_OTLP_HEADERS: `k=${key}`,
      },
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318',
        OTEL_EXPORTER_OTLP_HEADERS: `k=${key}`,
      },
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://localhost:4318',
        OTEL_EXPORTER_OTLP_HEADERS: `k=${key}`,
      },
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_HEADERS: `k=${key}`,
        OTEL_SDK_DISABLED: 'true',
      },
    ]) {
      expect([env, loadConfig({ ...minimal, AUTH_AUDIENCE: AUDIENCE, ...env }).warnings]).toEqual([
        env,
        [],
      ]);
    }
  });

  test('when OTEL variables are wrong, then each is one problem naming it and never its value', () => {
    const problems = problemsOf({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://user:secret_test_pw@collector:4318',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_EXPORTER_OTLP_HEADERS: 'secret_test_no_equals_sign',
      OTEL_TRACES_SAMPLER: 'jaeger_remote',
      OTEL_TRACES_SAMPLER_ARG: '1.5',
      OTEL_SDK_DISABLED: 'yes',
    });
    expect(problems.map((problem) => problem.split(':')[0]).sort()).toEqual([
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_EXPORTER_OTLP_HEADERS',
      'OTEL_EXPORTER_OTLP_PROTOCOL',
      'OTEL_SDK_DISABLED',
      'OTEL_TRACES_SAMPLER',
      'OTEL_TRACES_SAMPLER_ARG',
    ]);
    expect(problems.join('\n')).not.toContain('secret_test');
  });
});

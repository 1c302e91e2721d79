/**
 * `npm run load [-- --duration 60 --concurrency 32 --no-redis]`: mixed traffic on loopback
 * against the real server process (src/server.ts) wired to the stand-ins, for DURATION seconds.
 * Reports counts by status, latency percentiles and the broker's RSS over time, and exits
 * non-zero on any unexpected status, network error or unexpected log line. Not part of npm test.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { spawnBroker, type BrokerProcess } from '../test/helpers/broker-process';
import {
  REDIS_SERVER_BINARY,
  startRedisServer,
  type RedisServer,
} from '../test/helpers/redis-server';
import { startCardscanStandIn } from '../test/stand-ins/cardscan';
import { startCertiscanStandIn } from '../test/stand-ins/certiscan';
import { createSigningKey, startIdentityProvider } from '../test/stand-ins/identity-provider';

const CARDSCAN_KEY = 'secret_test_load_placeholder_key';
const CERTISCAN_TOKEN = 'secret_test_load_certiscan_token';
const AUDIENCE = 'cardscan-broker-load';
/** Ordinary users stay far below the limit; the hot one crosses it. */
const NORMAL_USERS = 1000;
const RATE_LIMIT_PER_MINUTE = 300;
const CLIENT_TIMEOUT_MS = 10_000;

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: process.env.LOAD_DURATION_S ?? '60' },
    concurrency: { type: 'string', default: process.env.LOAD_CONCURRENCY ?? '32' },
    'no-redis': { type: 'boolean', default: false },
  },
});
const durationMs = Number(args.duration) * 1000;
const concurrency = Number(args.concurrency);
if (!(durationMs > 0) || !(concurrency > 0)) {
  process.stderr.write(
    'usage: npm run load -- [--duration SECONDS] [--concurrency N] [--no-redis]\n',
  );
  process.exit(2);
}

interface Call {
  kind: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  headers?: Record<string, string>;
  body?: unknown;
  expected: readonly number[];
}

interface Outcome {
  kind: string;
  status: number | string;
  ms: number;
  unexpected: boolean;
}

function send(agent: http.Agent, origin: string, call: Call): Promise<Outcome> {
  const started = performance.now();
  const body = call.body === undefined ? undefined : JSON.stringify(call.body);
  return new Promise((resolve) => {
    const done = (status: number | string) =>
      resolve({
        kind: call.kind,
        status,
        ms: performance.now() - started,
        unexpected: typeof status !== 'number' || !call.expected.includes(status),
      });
    const req = http.request(
      `${origin}${call.path}`,
      {
        method: call.method,
        agent,
        headers: {
          ...call.headers,
          ...(body === undefined
            ? {}
            : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }),
        },
        signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
      },
      (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode ?? 0));
        res.on('error', (error: NodeJS.ErrnoException) => done(error.code ?? 'response-error'));
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.name));
    req.end(body);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function rssOf(origin: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${origin}/metrics`, { signal: AbortSignal.timeout(2000) });
    const line = (await res.text())
      .split('\n')
      .find((each) => each.startsWith('process_resident_memory_bytes '));
    return line ? Number(line.split(' ')[1]) : undefined;
  } catch {
    return undefined;
  }
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function main(): Promise<void> {
  const idp = await startIdentityProvider({ audience: AUDIENCE });
  const cardscan = await startCardscanStandIn({ apiKey: CARDSCAN_KEY });
  const certiscan = await startCertiscanStandIn({ authToken: CERTISCAN_TOKEN });
  const adminKey = `adm_${randomBytes(24).toString('base64url')}`;
  let redis: RedisServer | undefined;
  if (!args['no-redis'] && REDIS_SERVER_BINARY) redis = await startRedisServer();

  let broker: BrokerProcess | undefined;
  try {
    broker = await spawnBroker(
      {
        CARDSCAN_API_KEY: CARDSCAN_KEY,
        CARDSCAN_BASE_URL: cardscan.baseUrl,
        AUTH_ISSUER: idp.issuer,
        AUTH_AUDIENCE: AUDIENCE,
        ADMIN_API_KEYS: `load-ops:${createHash('sha256').update(adminKey).digest('hex')}`,
        CERTISCAN_BASE_URL: certiscan.baseUrl,
        CERTISCAN_AUTH_TOKEN: CERTISCAN_TOKEN,
        RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT_PER_MINUTE),
        SHUTDOWN_DELAY_MS: '0',
        LOG_LEVEL: 'info',
        ...(redis ? { REDIS_URL: redis.url } : {}),
      },
      // Keep everything but the one line per request, to check for errors and leaks.
      { retain: (line) => !line.includes('"msg":"request completed"') },
    );
    const origin = broker.url;
    const lifetime = Math.ceil(durationMs / 1000) + 600;
    const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
    const normalTokens = Array.from({ length: NORMAL_USERS }, (_, index) =>
      idp.sign({ sub: `load-user-${index}` }, { expiresIn: lifetime }),
    );
    const hotToken = idp.sign({ sub: 'load-hot-user' }, { expiresIn: lifetime });
    const badTokens = [
      'not-a-jwt',
      idp.sign({ sub: 'expired' }, { expiresIn: -120 }),
      idp.sign({ sub: 'wrong-audience' }, { audience: 'someone-else', expiresIn: lifetime }),
      idp.sign({ sub: 'stranger' }, { key: createSigningKey(), expiresIn: lifetime }),
    ];

    // Admin routes may not exist on this branch yet: a 404 means skip them, not fail.
    const adminProbe = await send(new http.Agent(), origin, {
      kind: 'admin-probe',
      method: 'POST',
      path: '/admin/worktokens',
      headers: bearer(adminKey),
      body: { name: 'Load probe', subject: `load-probe-${randomUUID()}` },
      expected: [201],
    });
    const admin = adminProbe.status === 201;
    if (!admin) {
      process.stdout.write(
        `admin routes not available (POST /admin/worktokens answered ${adminProbe.status}): admin calls skipped\n`,
      );
    }

    let counter = 0;
    const next = (): Call[] => {
      const slot = counter++ % 20;
      const normal = normalTokens[counter % NORMAL_USERS] as string;
      switch (slot) {
        case 10:
        case 11:
          return [
            {
              kind: 'session POST',
              method: 'POST',
              path: '/cardscan-session',
              headers: bearer(normal),
              expected: [200],
            },
          ];
        case 12:
          return [
            {
              kind: 'hot user',
              method: 'GET',
              path: '/cardscan-session',
              headers: bearer(hotToken),
              expected: [200, 429],
            },
          ];
        case 13:
          return [
            {
              kind: 'bad token',
              method: 'GET',
              path: '/cardscan-session',
              headers: bearer(badTokens[counter % badTokens.length] as string),
              expected: [401],
            },
          ];
        case 14:
          return [
            {
              kind: 'client user_id (query)',
              method: 'GET',
              path: '/cardscan-session?user_id=someone-else',
              headers: bearer(normal),
              expected: [400],
            },
          ];
        case 15:
          return [
            {
              kind: 'client user_id (body)',
              method: 'POST',
              path: '/cardscan-session',
              headers: bearer(normal),
              body: { user_id: 'someone-else' },
              expected: [400],
            },
          ];
        case 16:
          return [{ kind: 'healthz', method: 'GET', path: '/healthz', expected: [200] }];
        case 17:
          return [{ kind: 'readyz', method: 'GET', path: '/readyz', expected: [200] }];
        case 18: {
          if (!admin) {
            return [
              { kind: 'unknown route', method: 'GET', path: '/nothing-here', expected: [404] },
            ];
          }
          const subject = `load-${randomUUID()}`;
          const path = `/admin/worktokens/${subject}`;
          return [
            {
              kind: 'admin create',
              method: 'POST',
              path: '/admin/worktokens',
              headers: bearer(adminKey),
              body: { name: 'Load scanner', subject },
              expected: [201],
            },
            {
              kind: 'admin update',
              method: 'PUT',
              path,
              headers: bearer(adminKey),
              body: { name: 'Load scanner 2' },
              expected: [200],
            },
            {
              kind: 'admin delete',
              method: 'DELETE',
              path,
              headers: bearer(adminKey),
              expected: [200],
            },
          ];
        }
        case 19:
          return admin
            ? [
                {
                  kind: 'admin bad key',
                  method: 'DELETE',
                  path: '/admin/worktokens/x',
                  headers: bearer('adm_wrong'),
                  expected: [401],
                },
              ]
            : [{ kind: 'openapi', method: 'GET', path: '/openapi.json', expected: [200] }];
        default:
          return [
            {
              kind: 'session GET',
              method: 'GET',
              path: '/cardscan-session',
              headers: bearer(normal),
              expected: [200],
            },
          ];
      }
    };

    const rss: { at: number; bytes: number }[] = [];
    const startedAt = performance.now();
    const endAt = startedAt + durationMs;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const bytes = await rssOf(origin);
        if (bytes !== undefined) rss.push({ at: performance.now() - startedAt, bytes });
        await sleep(1000);
      }
    })();

    process.stdout.write(
      `load: ${durationMs / 1000} s, ${concurrency} connections, rate-limit store: ${redis ? 'redis' : 'memory'}, broker ${origin}\n`,
    );
    const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
    const outcomes: Outcome[] = [];
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < endAt) {
          for (const call of next()) outcomes.push(await send(agent, origin, call));
        }
      }),
    );
    sampling = false;
    await sampler;
    agent.destroy();

    // Report.
    const elapsedS = (performance.now() - startedAt) / 1000;
    const byStatus = new Map<string, number>();
    const byKind = new Map<string, Map<string, number>>();
    for (const outcome of outcomes) {
      const status = String(outcome.status);
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
      const kind = byKind.get(outcome.kind) ?? new Map<string, number>();
      kind.set(status, (kind.get(status) ?? 0) + 1);
      byKind.set(outcome.kind, kind);
    }
    const latencies = outcomes.map((outcome) => outcome.ms).sort((a, b) => a - b);
    const unexpected = outcomes.filter((outcome) => outcome.unexpected);
    const third = durationMs / 3000;
    const peak = (from: number, to: number) =>
      Math.max(
        0,
        ...rss.filter((s) => s.at / 1000 >= from && s.at / 1000 <= to).map((s) => s.bytes),
      );
    const startPeak = peak(0, third);
    const endPeak = peak(2 * third, Infinity);
    const brokerErrors = broker.output.filter((line) => /"level":"(error|fatal)"/.test(line));
    const leaks = broker.output.filter(
      (line) => line.includes(CARDSCAN_KEY) || line.includes(adminKey) || /Bearer\s+ey/.test(line),
    );

    const lines = [
      '',
      `requests: ${outcomes.length} in ${elapsedS.toFixed(1)} s (${(outcomes.length / elapsedS).toFixed(0)}/s)`,
      `by status: ${[...byStatus]
        .sort()
        .map(([status, n]) => `${status}=${n}`)
        .join('  ')}`,
      'by kind:',
      ...[...byKind].sort().map(
        ([kind, statuses]) =>
          `  ${kind.padEnd(24)} ${[...statuses]
            .sort()
            .map(([s, n]) => `${s}=${n}`)
            .join('  ')}`,
      ),
      `latency ms: p50 ${percentile(latencies, 50).toFixed(1)}  p99 ${percentile(latencies, 99).toFixed(1)}  max ${(latencies.at(-1) ?? 0).toFixed(1)}`,
      `broker RSS: first sample ${mb(rss[0]?.bytes ?? 0)}, peak in first third ${mb(startPeak)}, peak in last third ${mb(endPeak)} (${startPeak ? (((endPeak - startPeak) / startPeak) * 100).toFixed(1) : '?'} %)`,
      `broker error log lines: ${brokerErrors.length}; lines with a secret: ${leaks.length}`,
      `unexpected statuses: ${unexpected.length}`,
    ];
    for (const outcome of unexpected.slice(0, 10))
      lines.push(`  ${outcome.kind}: ${outcome.status}`);
    for (const line of brokerErrors.slice(0, 5)) lines.push(`  broker: ${line.slice(0, 300)}`);
    process.stdout.write(`${lines.join('\n')}\n`);

    broker.child.kill('SIGTERM');
    const exitCode = await broker.exited;
    process.stdout.write(`broker exit code after SIGTERM: ${exitCode}\n`);
    const failed =
      unexpected.length > 0 || brokerErrors.length > 0 || leaks.length > 0 || exitCode !== 0;
    process.exitCode = failed ? 1 : 0;
  } finally {
    await broker?.stop();
    await redis?.stop();
    await Promise.all([idp.close(), cardscan.close(), certiscan.close()]);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`load failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});

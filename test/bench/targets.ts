import path from 'node:path';
import jwt from 'jsonwebtoken';
import type { IdentityProvider } from '../stand-ins/identity-provider';
import type { UserRequest } from './load';
import type { TargetName } from './options';
import { freePort, startServer, type ServerProcess } from './processes';

/** Placeholders in the vendors' formats; none is a real credential. */
export const BENCH_CARDSCAN_KEY = 'secret_test_bench_placeholder_0001';
export const BENCH_HMAC_SECRET = 'secret_test_bench_hmac_placeholder_0123456789';
export const BENCH_AUDIENCE = 'cardscan-broker-bench';
/** High enough that the per-user limit never answers 429 during a run: the bench measures serving. */
export const BENCH_RATE_LIMIT_PER_MINUTE = '1000000';

const SERVERS = path.join(__dirname, 'servers');

export interface BenchContext {
  idp: IdentityProvider;
  /** One per user: `user-0` … */
  userIds: string[];
  rsTokens: string[];
  hsTokens: string[];
  /** Working directory of every spawned process: empty, so no stray .env is read. */
  cwd: string;
  /** The broker's entry point: `dist/server.js` of this checkout, built by `npm run bench`. */
  brokerScript: string;
  /** Where processes run (see cpuPlan); unset: anywhere. */
  cpus?: { served: string; others: string };
  profileDir?: string;
  /** Node flags for the broker targets only: those of `npm start`, then BenchOptions.brokerNodeOptions. */
  brokerNodeOptions: string[];
  /** A cgroup the broker targets start in (BenchOptions.brokerCgroup). */
  brokerCgroup?: string;
}

export interface TargetRun {
  /** The process measured: the target itself, or the stand-in for `direct`. */
  served: ServerProcess;
  /** The requests, one per user, each valid for this target. */
  requests: UserRequest[];
  /** A key every 200 answer of this target carries, for the smoke check. */
  answerKey: string;
}

export function signBenchTokens(idp: IdentityProvider, userIds: string[]) {
  return {
    rsTokens: userIds.map((sub) => idp.sign({ sub }, { expiresIn: 3600 })),
    hsTokens: userIds.map((sub) =>
      jwt.sign({ sub, aud: BENCH_AUDIENCE, iss: 'bench-login' }, BENCH_HMAC_SECRET, {
        algorithm: 'HS256',
        expiresIn: 3600,
      }),
    ),
  };
}

function nodeArgs(context: BenchContext, script: string, ...rest: string[]): string[] {
  const profile = context.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${context.profileDir}`] : [];
  const flags = script === context.brokerScript ? context.brokerNodeOptions : [];
  return [...profile, ...flags, script, ...rest];
}

/** `measured`: this stand-in is the target (`direct`), so it gets the measured process's CPU. */
export async function startCardscanFast(context: BenchContext, delayMs: number, measured: boolean) {
  return startServer({
    name: 'cardscan-fast',
    cpus: measured ? context.cpus?.served : context.cpus?.others,
    args: [path.join(SERVERS, 'cardscan-fast.cjs')],
    cwd: context.cwd,
    port: await freePort(),
    env: {
      PATH: process.env.PATH ?? '',
      CARDSCAN_API_KEY: BENCH_CARDSCAN_KEY,
      BENCH_UPSTREAM_DELAY_MS: String(delayMs),
    },
  });
}

/** Starts the target (the stand-in is already up) and says what to send it. */
export async function startTarget(
  name: TargetName,
  context: BenchContext,
  cardscan: ServerProcess,
): Promise<TargetRun> {
  const { userIds } = context;
  const port = await freePort();
  const common = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'production',
  };
  const cardscanBase = `${cardscan.origin}/v1`;
  const sampleRequests = (tokens?: string[]): UserRequest[] =>
    userIds.map((userId, index) => ({
      path: `/cardscan-session?user_id=${encodeURIComponent(userId)}`,
      headers: tokens
        ? { authorization: `Bearer ${tokens[index]}` }
        : ({} as Record<string, string>),
    }));
  const brokerRequests = (tokens: string[]) =>
    userIds.map((_, index) => ({
      path: '/cardscan-session',
      headers: { authorization: `Bearer ${tokens[index]}` },
    }));
  const brokerEnv = {
    ...common,
    HOST: '127.0.0.1',
    CARDSCAN_API_KEY: BENCH_CARDSCAN_KEY,
    CARDSCAN_BASE_URL: cardscanBase,
    AUTH_AUDIENCE: BENCH_AUDIENCE,
    RATE_LIMIT_PER_MINUTE: BENCH_RATE_LIMIT_PER_MINUTE,
    LOG_LEVEL: 'info',
    SHUTDOWN_DELAY_MS: '0',
    SHUTDOWN_TIMEOUT_MS: '3000',
  };
  const broker = (env: Record<string, string>) =>
    startServer({
      name,
      cpus: context.cpus?.served,
      cgroup: context.brokerCgroup,
      args: nodeArgs(context, context.brokerScript),
      cwd: context.cwd,
      port,
      env: { ...brokerEnv, ...env },
    });
  const sample = (jwtMode: boolean) =>
    startServer({
      name,
      cpus: context.cpus?.served,
      args: nodeArgs(
        context,
        path.join(SERVERS, 'vendor-sample.cjs'),
        ...(jwtMode ? ['--jwt'] : []),
      ),
      cwd: context.cwd,
      port,
      env: {
        ...common,
        CARDSCAN_BASE_URL: cardscanBase,
        CARDSCAN_API_KEY: BENCH_CARDSCAN_KEY,
        ...(jwtMode ? { JWT_SECRET: BENCH_HMAC_SECRET } : {}),
      },
    });

  switch (name) {
    case 'direct':
      return {
        served: cardscan,
        answerKey: 'Token',
        requests: userIds.map((userId) => ({
          path: `/v1/access-token?user_id=${encodeURIComponent(userId)}`,
          headers: { authorization: `Bearer ${BENCH_CARDSCAN_KEY}` },
        })),
      };
    case 'naive':
      return { served: await sample(false), answerKey: 'Token', requests: sampleRequests() };
    case 'naive-jwt':
      return {
        served: await sample(true),
        answerKey: 'Token',
        requests: sampleRequests(context.hsTokens),
      };
    case 'broker-hs256':
      return {
        served: await broker({ AUTH_JWT_SECRET: BENCH_HMAC_SECRET }),
        answerKey: 'session',
        requests: brokerRequests(context.hsTokens),
      };
    case 'broker-rs256':
      return {
        served: await broker({
          AUTH_JWKS_URI: context.idp.jwksUri,
          AUTH_ISSUER: context.idp.issuer,
        }),
        answerKey: 'session',
        requests: brokerRequests(context.rsTokens),
      };
    case 'broker-traced':
      // broker-rs256 with every request traced, exported in protobuf to the stand-in's receiver.
      return {
        served: await broker({
          AUTH_JWKS_URI: context.idp.jwksUri,
          AUTH_ISSUER: context.idp.issuer,
          OTEL_EXPORTER_OTLP_ENDPOINT: cardscan.origin,
          OTEL_TRACES_SAMPLER: 'always_on',
        }),
        answerKey: 'session',
        requests: brokerRequests(context.rsTokens),
      };
    case 'broker-2idp':
      // broker-rs256's tokens, with the provider chosen by issuer among two (AUTH_PROVIDERS).
      return {
        served: await broker({
          AUTH_AUDIENCE: '',
          AUTH_PROVIDERS: 'patients,staff',
          AUTH_PATIENTS_ISSUER: context.idp.issuer,
          AUTH_PATIENTS_JWKS_URI: context.idp.jwksUri,
          AUTH_PATIENTS_AUDIENCE: BENCH_AUDIENCE,
          AUTH_STAFF_ISSUER: 'https://staff.bench.invalid',
          AUTH_STAFF_JWT_SECRET: BENCH_HMAC_SECRET,
          AUTH_STAFF_AUDIENCE: BENCH_AUDIENCE,
        }),
        answerKey: 'session',
        requests: brokerRequests(context.rsTokens),
      };
  }
}

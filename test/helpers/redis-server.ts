import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';

/** The redis-server binary on PATH, or undefined: tests that need one are skipped then. */
export const REDIS_SERVER_BINARY = (process.env.PATH ?? '')
  .split(path.delimiter)
  .filter(Boolean)
  .map((dir) => path.join(dir, 'redis-server'))
  .find((candidate) => {
    try {
      accessSync(candidate, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

/** Says why Redis tests are skipped, once per test file, so a green run cannot hide it. */
export function warnWhenRedisMissing(): void {
  // CI installs redis-server; there a missing one is a broken CI, not a reason to skip.
  if (!REDIS_SERVER_BINARY && process.env.CI) {
    throw new Error('CI=true but redis-server is missing: .ci/run should have installed it');
  }
  if (!REDIS_SERVER_BINARY) {
    console.warn(
      `redis-server is not installed: the Redis tests that start their own server are SKIPPED${
        process.env.TEST_REDIS_URL ? ' (those that only need one use TEST_REDIS_URL)' : ''
      }. Install it (apt-get install redis-server) or run .ci/run.`,
    );
  }
}

/** A port that was free a moment ago, on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface RedisServer {
  port: number;
  url: string;
  /** Kills it like a crash (SIGKILL) and waits until it is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty (no persistence). */
  restart(): Promise<void>;
  /** Freezes it (SIGSTOP): connections stay open but nothing answers. */
  freeze(): void;
  thaw(): void;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 5000;

async function spawnRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    REDIS_SERVER_BINARY ?? 'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server did not start on port ${port}:\n${output}`));
    }, START_TIMEOUT_MS);
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}) on port ${port}:\n${output}`));
    });
  });
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

async function kill(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/** A private redis-server on 127.0.0.1 (on a free port unless given), without persistence. */
export async function startRedisServer(port?: number): Promise<RedisServer> {
  port ??= await freePort();
  let child: ChildProcess | undefined = await spawnRedis(port);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: async () => {
      await kill(child);
      child = undefined;
    },
    restart: async () => {
      await kill(child);
      child = await spawnRedis(port);
    },
    freeze: () => child?.kill('SIGSTOP'),
    thaw: () => child?.kill('SIGCONT'),
    stop: async () => {
      child?.kill('SIGCONT');
      await kill(child);
      child = undefined;
    },
  };
}

/** Set by .ci/run: a Redis for the tests that only need one (not kill it). */
const CI_REDIS_URL = process.env.TEST_REDIS_URL;

export const redisAvailable = Boolean(CI_REDIS_URL ?? REDIS_SERVER_BINARY);

/** TEST_REDIS_URL when .ci/run provides one, else a private redis-server. */
export async function anyRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  if (CI_REDIS_URL) return { url: CI_REDIS_URL, stop: async () => undefined };
  return startRedisServer();
}

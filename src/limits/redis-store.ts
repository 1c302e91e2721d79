import type { Options, Store } from 'express-rate-limit';
import type { RedisReply } from 'rate-limit-redis';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';

export interface RedisRateLimitStoreOptions {
  /** redis:// or rediss:// URL; it may hold a password, so it is never logged. */
  url: string;
  logger: Logger;
  metrics: Metrics;
  /** A Redis command slower than this fails, and its request is served without the limit. Default 500 ms. */
  commandTimeoutMs?: number;
}

export interface RedisRateLimitStore {
  /** For express-rate-limit, with `passOnStoreError`: every failure here lets the request through. */
  store: Store;
  close(): Promise<void>;
}

/** Every replica must use the same prefix, or they would count apart. */
const KEY_PREFIX = 'cardscan-broker:rate-limit:';
const CONNECT_TIMEOUT_MS = 2000;
const MAX_RECONNECT_DELAY_MS = 2000;

/**
 * node-redis's own command timeout stops counting once the command is written, so a Redis that
 * accepts connections but does not answer would hold requests forever. The late reply, if any,
 * is still read and dropped by the client, so the connection stays in step.
 */
async function withTimeout<T>(reply: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Redis did not answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([reply, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : 'unknown';
}

/**
 * The per-user counters in Redis, shared by all replicas. Redis going away must never stop the
 * broker: the client reconnects by itself forever, commands fail at once instead of waiting, each
 * failure is counted, and the outage is logged once when it starts and once when it ends.
 */
export function createRedisRateLimitStore(
  options: RedisRateLimitStoreOptions,
): RedisRateLimitStore {
  const { logger, metrics } = options;
  const commandTimeoutMs = options.commandTimeoutMs ?? 500;

  let failing = false;
  const reportFailure = (error: unknown) => {
    if (failing) return;
    failing = true;
    logger.error(
      { reason: reasonOf(error) },
      'Redis rate-limit store failing: requests are served without the shared rate limit until it answers again',
    );
  };
  const reportRecovery = () => {
    if (!failing) return;
    failing = false;
    logger.info('Redis rate-limit store answers again: the shared rate limit applies again');
  };

  // Loaded here, not at the top, and left out of the bundle (package.json "build"): a broker
  // without REDIS_URL should not pay for the Redis client at every start.
  const parts = Promise.all([import('@redis/client'), import('rate-limit-redis')]).then(
    ([{ createClient }, { RedisStore }]) => {
      const client = createClient({
        url: options.url,
        // Queued commands would hold their requests until Redis returns; failing at once fails open.
        disableOfflineQueue: true,
        socket: {
          connectTimeout: CONNECT_TIMEOUT_MS,
          // Jittered so that replicas do not all reconnect in the same instant.
          reconnectStrategy: (retries) =>
            Math.round(
              Math.min(100 * 2 ** retries, MAX_RECONNECT_DELAY_MS) * (0.5 + Math.random() / 2),
            ),
        },
      });
      // node-redis emits 'error' for every failed (re)connect; without a listener the process would crash.
      client.on('error', reportFailure);
      client.on('ready', reportRecovery);
      // Not awaited: the broker serves while Redis is still down. It rejects only when closed meanwhile.
      client.connect().catch(() => undefined);
      const redisStore = new RedisStore({
        sendCommand: (...args: string[]) =>
          withTimeout(client.sendCommand<RedisReply>(args), commandTimeoutMs),
        prefix: KEY_PREFIX,
      });
      return { client, redisStore };
    },
  );

  let limiterOptions: Options | undefined;
  let scriptsLoaded: Promise<void> | undefined;
  /**
   * rate-limit-redis loads its scripts in init() and keeps the promise: one that failed (Redis down
   * at start, or gone while reloading) would fail every later call. Load again after any failure.
   */
  function loadScripts(): Promise<void> {
    const limiter = limiterOptions;
    if (!limiter) return Promise.reject(new Error('the store was used before init'));
    scriptsLoaded ??= parts
      .then(({ redisStore }) => redisStore.init(limiter))
      .catch((error: unknown) => {
        scriptsLoaded = undefined;
        throw error;
      });
    return scriptsLoaded;
  }

  async function guarded<T>(operation: () => Promise<T>): Promise<T> {
    try {
      await loadScripts();
      const result = await operation();
      reportRecovery();
      return result;
    } catch (error) {
      scriptsLoaded = undefined;
      metrics.countRateLimitStoreError();
      reportFailure(error);
      throw error;
    }
  }

  const store: Store = {
    localKeys: false,
    prefix: KEY_PREFIX,
    init(limiter) {
      limiterOptions = limiter;
      // Usually before Redis is connected; the first request loads the scripts then.
      loadScripts().catch(() => undefined);
    },
    increment: (key) => guarded(async () => (await parts).redisStore.increment(key)),
    decrement: (key) => guarded(async () => (await parts).redisStore.decrement(key)),
    resetKey: (key) => guarded(async () => (await parts).redisStore.resetKey(key)),
  };

  return {
    store,
    async close() {
      const { client } = await parts;
      // close() lets commands in flight finish (each bounded by the timeout); destroy() when
      // there is no connection to be polite on.
      if (client.isReady) await client.close();
      else client.destroy();
    },
  };
}

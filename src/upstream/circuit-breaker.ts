import CircuitBreaker from 'opossum';
import { UpstreamError, type UpstreamName } from '../errors';
import type { Logger } from '../observability/logger';
import type { CircuitState, Metrics } from '../observability/metrics';

/** The breaker's numbers. The defaults are the contract in docs/interface.md, "Resilience". */
export interface BreakerSettings {
  /** Calls needed in the window before the breaker may open. Default 10. */
  volumeThreshold: number;
  /** It opens when strictly more than this percentage of the calls in the window failed. Default 50. */
  errorThresholdPercentage: number;
  /** The rolling window the calls are counted in. Default 10 s. */
  windowMs: number;
  /** How long it stays open before one trial call is let through. Default 30 s. */
  openMs: number;
}

export const DEFAULT_BREAKER_SETTINGS: Readonly<BreakerSettings> = Object.freeze({
  volumeThreshold: 10,
  errorThresholdPercentage: 50,
  windowMs: 10_000,
  openMs: 30_000,
});

export interface UpstreamBreakerOptions {
  name: UpstreamName;
  label: string;
  settings?: Partial<BreakerSettings>;
  /** Whether a call's error says the upstream is unhealthy. Other errors count as answers. */
  isFailure: (error: unknown) => boolean;
  metrics: Metrics;
  logger: Logger;
}

export interface UpstreamBreaker {
  /**
   * Runs the call unless the breaker is open; then it throws UpstreamError 'circuit-open' (503 with
   * Retry-After) at once, without calling the upstream.
   */
  run<T>(call: () => Promise<T>): Promise<T>;
  state(): CircuitState;
  /** Stops its timers, for shutdown. */
  shutdown(): void;
}

/** Opossum counts the window in buckets; ten keeps a call's weight from lingering a full bucket too long. */
const WINDOW_BUCKETS = 10;

export function createUpstreamBreaker(options: UpstreamBreakerOptions): UpstreamBreaker {
  const { name, label, metrics, logger } = options;
  const settings: BreakerSettings = { ...DEFAULT_BREAKER_SETTINGS, ...options.settings };
  let openedAt = 0;

  const breaker = new CircuitBreaker((call: () => Promise<unknown>) => call(), {
    // The upstream client's own deadline (retries included) bounds each call; a second timer
    // here would only race it.
    timeout: false,
    resetTimeout: settings.openMs,
    errorThresholdPercentage: settings.errorThresholdPercentage,
    volumeThreshold: settings.volumeThreshold,
    rollingCountTimeout: settings.windowMs,
    rollingCountBuckets: WINDOW_BUCKETS,
    // Filtered errors are counted as answers: the upstream is alive, it judged the request.
    errorFilter: (error: unknown) => !options.isFailure(error),
    rollingPercentilesEnabled: false,
    enableSnapshots: false,
  });

  const state = (): CircuitState =>
    breaker.opened ? 'open' : breaker.halfOpen ? 'half-open' : 'closed';

  metrics.setCircuitState(name, 'closed');
  breaker.on('open', () => {
    openedAt = performance.now();
    metrics.setCircuitState(name, 'open');
    const { fires, failures } = breaker.stats;
    logger.error(
      { upstream: name, circuit: 'open', recentCalls: fires, recentFailures: failures },
      `${label} circuit opened: too many recent calls failed; answering 503 without calling ${label} for ${settings.openMs / 1000} s`,
    );
  });
  breaker.on('halfOpen', () => {
    metrics.setCircuitState(name, 'half-open');
    logger.warn(
      { upstream: name, circuit: 'half-open' },
      `${label} circuit half-open: the next call is a trial`,
    );
  });
  breaker.on('close', () => {
    metrics.setCircuitState(name, 'closed');
    logger.info(
      { upstream: name, circuit: 'closed' },
      `${label} circuit closed: ${label} answers again`,
    );
  });

  return {
    state,
    shutdown: () => breaker.shutdown(),
    async run<T>(call: () => Promise<T>): Promise<T> {
      try {
        return (await breaker.fire(call)) as T;
      } catch (error) {
        if (!(error instanceof Error) || !CircuitBreaker.isOurError(error)) throw error;
        metrics.observeUpstream(name, 'circuit-open', 0);
        // Open: until the trial. Half-open with the trial under way: the trial decides soon.
        const remainingMs = breaker.opened ? settings.openMs - (performance.now() - openedAt) : 0;
        throw new UpstreamError(
          name,
          'circuit-open',
          `${label} is failing; the broker is not calling it for now`,
          { retryAfterSeconds: remainingMs / 1000 },
        );
      }
    },
  };
}

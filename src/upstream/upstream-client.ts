import { setTimeout as sleep } from 'node:timers/promises';
import { UpstreamError, type UpstreamName } from '../errors';
import type { Logger } from '../observability/logger';
import type { Metrics, UpstreamOutcome } from '../observability/metrics';
import type { Tracing } from '../observability/tracing';
import { createUpstreamBreaker, type BreakerSettings } from './circuit-breaker';
import { createAnswerReader, Failure, type Answer } from './answers';
import { createTransport } from './transport';

/** Thrown by a request's `read` when a 2xx answer is not what the contract promises. */
export class UnusableAnswerError extends Error {}

export interface UpstreamRequest<T> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path below the base URL, query included; callers encode any variable part. */
  path: string;
  /**
   * The path's template, without query or variable parts (e.g. `/access-token`): names the
   * attempt's span. Without it the span is named by the method alone.
   */
  route?: string;
  data?: unknown;
  requestId: string;
  /** Retry network errors and 5xx within the deadline; only for idempotent calls. */
  retry: boolean;
  /**
   * Turns a 2xx JSON body into the caller's value, or throws UnusableAnswerError. It runs inside
   * the call, so an unusable answer counts as `bad-response` in the metrics and the breaker.
   */
  read: (body: unknown) => T;
}

export interface UpstreamResponse<T> {
  status: number;
  value: T;
}

/** The broker's credential for an upstream; it may change while the broker runs (rotation). */
export interface UpstreamCredential {
  /** `Bearer <token>`, read once at the start of each call. */
  readonly authorization: string;
  /** What an operator must fix when the upstream refuses it: the variable, or its file. */
  readonly origin: string;
}

export interface UpstreamClientOptions {
  name: UpstreamName;
  /** Human name in messages, e.g. "Cardscan". */
  label: string;
  baseUrl: string;
  credential: UpstreamCredential;
  /** One call, retries included, never outlives this. */
  timeoutMs: number;
  /** 4xx statuses about the request itself that reach the caller unchanged. Others become 502. */
  passThroughStatuses?: readonly number[];
  /** Default 2. */
  maxRetries?: number;
  /** A proxy variable (HTTP(S)_PROXY, ALL_PROXY) is set, so axios must look for one per call. */
  proxyFromEnvironment?: boolean;
  /** Circuit breaker numbers; the defaults are the contract (docs/interface.md, "Resilience"). */
  breaker?: Partial<BreakerSettings>;
  metrics: Metrics;
  logger: Logger;
  /** Present only when tracing is on: then each attempt gets a CLIENT span and a traceparent. */
  tracing?: Tracing;
}

export interface UpstreamClient {
  send<T>(request: UpstreamRequest<T>): Promise<UpstreamResponse<T>>;
  /** Closes the kept-alive connections and stops the breaker's timers, for shutdown. */
  close(): void;
}

const RETRY_BASE_MS = 50;

/**
 * What the circuit breaker counts as a failure: the upstream did not answer usefully (5xx, timeout,
 * refused or dropped connection, unreadable body). A 4xx other than 408/429 is an answer about the
 * request; so is 401/403: our credentials are wrong but the upstream is healthy, and an open
 * breaker would hide the 502 and the log line that names the credential to fix.
 */
export function isBreakerFailure(error: unknown): boolean {
  if (!(error instanceof UpstreamError)) return true;
  const status = error.upstreamStatus;
  const answered = status !== undefined && status >= 400 && status < 500;
  return !(answered && status !== 408 && status !== 429);
}

export function createUpstreamClient(options: UpstreamClientOptions): UpstreamClient {
  const { name, label, timeoutMs, credential, metrics, logger } = options;
  const startAttempt = options.tracing?.upstreamAttempts(name, options.baseUrl);
  const maxRetries = options.maxRetries ?? 2;
  const answers = createAnswerReader(label, new Set(options.passThroughStatuses ?? []));
  const transport = createTransport(options);
  const breaker = createUpstreamBreaker({
    name,
    label,
    settings: options.breaker,
    isFailure: isBreakerFailure,
    metrics,
    logger,
  });

  /**
   * The attempts of one call, within its deadline: retried on a retryable failure when the request
   * allows it. Every attempt carries `authorization`, the credential the call began with.
   */
  async function attempts<T>(
    request: UpstreamRequest<T>,
    authorization: string,
  ): Promise<Answer | Failure> {
    // One deadline for the whole call: it aborts whichever attempt is running when it passes.
    const endsAt = performance.now() + timeoutMs;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      for (let attempt = 0; ; attempt++) {
        const traced = startAttempt?.(request.method, request.route, attempt);
        let result: Answer | Failure;
        try {
          result = answers.classify(
            await transport.instance.request({
              method: request.method,
              url: request.path,
              data: request.data,
              headers: traced
                ? {
                    Authorization: authorization,
                    'X-Request-Id': request.requestId,
                    traceparent: traced.traceparent,
                  }
                : { Authorization: authorization, 'X-Request-Id': request.requestId },
              signal: controller.signal,
            }),
          );
        } catch (error) {
          result = controller.signal.aborted
            ? new Failure('timeout', `${label} did not answer within ${timeoutMs} ms`, false)
            : answers.networkFailure(error);
        }
        if (traced) {
          if (result instanceof Failure) traced.end(result.upstreamStatus, result.failure);
          else traced.end(result.status, undefined);
        }
        if (
          !(result instanceof Failure) ||
          !result.retryable ||
          !request.retry ||
          attempt >= maxRetries
        ) {
          return result;
        }
        // Full jitter keeps replicas from retrying in lockstep against a struggling upstream.
        const backoff = RETRY_BASE_MS * 2 ** attempt * (0.5 + Math.random());
        if (performance.now() + backoff >= endsAt) return result;
        await sleep(backoff);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Counts and logs a failed call, and throws the UpstreamError callers see. */
  function fail(request: UpstreamRequest<unknown>, result: Failure, started: number): never {
    metrics.observeUpstream(
      name,
      result.failure as UpstreamOutcome,
      (performance.now() - started) / 1000,
    );
    const logFields = {
      upstream: name,
      failure: result.failure,
      upstreamStatus: result.upstreamStatus,
      requestId: request.requestId,
    };
    if (result.failure === 'credentials') {
      logger.error(
        logFields,
        `${label} refused the broker's credentials (${result.upstreamStatus}): check ${credential.origin}`,
      );
    } else if (result.failure !== 'rejected') {
      logger.warn(logFields, result.detail);
    }
    throw new UpstreamError(name, result.failure, result.detail, {
      upstreamStatus: result.upstreamStatus,
    });
  }

  /** One call with its retries and deadline; `send` runs it through the breaker. */
  async function unguarded<T>(request: UpstreamRequest<T>): Promise<UpstreamResponse<T>> {
    const started = performance.now();
    // Read once: every attempt of this call, retries included, carries the credential it began
    // with, even when a rotation replaces it meanwhile.
    const result = await attempts(request, credential.authorization);
    if (result instanceof Failure) fail(request, result, started);
    let value: T;
    try {
      value = request.read(result.body);
    } catch (error) {
      if (!(error instanceof UnusableAnswerError)) throw error;
      fail(request, new Failure('bad-response', error.message, false, result.status), started);
    }
    metrics.observeUpstream(name, 'success', (performance.now() - started) / 1000);
    return { status: result.status, value };
  }

  return {
    close() {
      breaker.shutdown();
      transport.close();
    },
    send: (request) => breaker.run(() => unguarded(request)),
  };
}

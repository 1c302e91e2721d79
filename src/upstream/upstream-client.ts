import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import axios, { type AxiosInstance, type AxiosResponse, type GenericAbortSignal } from 'axios';
import { UpstreamError, type UpstreamFailure, type UpstreamName } from '../errors';
import type { Logger } from '../observability/logger';
import type { Metrics, UpstreamOutcome } from '../observability/metrics';
import type { Tracing } from '../observability/tracing';
import { createUpstreamBreaker, type BreakerSettings } from './circuit-breaker';
import { createHttpAdapter } from './http-adapter';

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
/** As undici (Node's fetch) does: below the 5 s idle timeout of Node's own HTTP server. */
const IDLE_SOCKET_TIMEOUT_MS = 4000;
/** Upstream answers are small JSON documents; anything larger is nonsense. */
const MAX_BODY_BYTES = 256 * 1024;
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

class Failure {
  constructor(
    readonly failure: UpstreamFailure,
    readonly detail: string,
    readonly retryable: boolean,
    readonly upstreamStatus?: number,
  ) {}
}

function messageOf(body: unknown): string | undefined {
  if (body && typeof body === 'object') {
    for (const field of ['message', 'detail', 'error']) {
      const value = (body as Record<string, unknown>)[field];
      if (typeof value === 'string' && value.length > 0) return value.slice(0, 500);
    }
  }
  return undefined;
}

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

/**
 * One call's deadline, retries included, handed to axios as the call's signal. Not an
 * AbortController: Node 20 builds every AbortSignal with Object.setPrototypeOf, which kept each
 * one alive through V8's young-generation collections into the old generation (685 B per request
 * under the bench load, a quarter of what still got there). axios takes any signal with
 * `aborted` and the two listener methods, but it must stay a class instance: axios copies a plain
 * object's fields into each call's config, and the copy would never see the deadline pass.
 */
class Deadline implements GenericAbortSignal {
  aborted = false;
  /** When it passes, on the performance.now() clock. */
  readonly endsAt: number;
  private listeners: (() => void)[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(ms: number) {
    this.endsAt = performance.now() + ms;
    this.timer = setTimeout(() => {
      this.aborted = true;
      const listeners = this.listeners;
      this.listeners = [];
      for (const listener of listeners) listener();
    }, ms);
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    this.listeners = this.listeners.filter((each) => each !== listener);
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

function parseJson(text: unknown): { ok: true; value: unknown } | { ok: false } {
  if (typeof text !== 'string') return { ok: false };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

export function createUpstreamClient(options: UpstreamClientOptions): UpstreamClient {
  const { name, label, timeoutMs, credential, metrics, logger } = options;
  const startAttempt = options.tracing?.upstreamAttempts(name, options.baseUrl);
  const maxRetries = options.maxRetries ?? 2;
  const passThrough = new Set(options.passThroughStatuses ?? []);

  // An idle kept-alive socket is closed before the upstream closes it: reusing one the upstream is
  // closing at that moment fails the call (and a create is not retried). Node's agent then also
  // honours the upstream's `Keep-Alive: timeout=N` hint, ending 1 s before it; without this
  // option it ignores the hint. A busy socket is not affected: the call's deadline governs it.
  const agentOptions = { keepAlive: true, timeout: IDLE_SOCKET_TIMEOUT_MS };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  const instance: AxiosInstance = axios.create({
    baseURL: options.baseUrl,
    // These upstreams never redirect; and axios's own adapter (the proxy case) only skips its
    // follow-redirects layer when redirects are off.
    maxRedirects: 0,
    httpAgent,
    httpsAgent,
    // Only axios's own adapter implements proxies; without a proxy variable the lean one serves,
    // and `proxy: false` keeps axios from searching the environment on every call.
    ...(options.proxyFromEnvironment
      ? { adapter: 'http' }
      : { adapter: createHttpAdapter({ http: httpAgent, https: httpsAgent }), proxy: false }),
    responseType: 'text',
    transformResponse: [(data: unknown) => data],
    validateStatus: () => true,
    maxContentLength: MAX_BODY_BYTES,
  });
  // axios deep-copies its default header buckets (common, get, post, …) into every call; one flat
  // set of our own headers gives the same request at a fraction of the copying.
  instance.defaults.headers = {
    Accept: 'application/json',
    'User-Agent': 'cardscan-broker',
  } as unknown as AxiosInstance['defaults']['headers'];

  function classify(response: AxiosResponse): { status: number; body: unknown } | Failure {
    const { status } = response;
    const parsed = parseJson(response.data);
    if (status >= 200 && status < 300) {
      return parsed.ok
        ? { status, body: parsed.value }
        : new Failure(
            'bad-response',
            `${label} answered ${status} with a body that is not JSON`,
            false,
            status,
          );
    }
    const upstreamMessage = parsed.ok ? messageOf(parsed.value) : undefined;
    if (status === 401 || status === 403) {
      return new Failure('credentials', `${label} refused the broker's credentials`, false, status);
    }
    if (passThrough.has(status)) {
      return new Failure(
        'rejected',
        upstreamMessage ?? `${label} refused the request (${status})`,
        false,
        status,
      );
    }
    if (status >= 500) {
      return new Failure('bad-response', `${label} failed (${status})`, true, status);
    }
    return new Failure(
      'bad-response',
      `${label} answered with unexpected status ${status}`,
      false,
      status,
    );
  }

  function networkFailure(error: unknown): Failure {
    const code = axios.isAxiosError(error) ? error.code : undefined;
    if (
      code === 'ERR_BAD_RESPONSE' &&
      String((error as Error).message).includes('maxContentLength')
    ) {
      return new Failure('bad-response', `${label} answered with an oversized body`, false);
    }
    if (code && UNREACHABLE_CODES.has(code)) {
      return new Failure('unreachable', `${label} is unreachable`, true);
    }
    return new Failure('bad-response', `${label} dropped the connection`, true);
  }

  const breaker = createUpstreamBreaker({
    name,
    label,
    settings: options.breaker,
    isFailure: isBreakerFailure,
    metrics,
    logger,
  });

  /** One call with its retries and deadline; `send` runs it through the breaker. */
  const unguarded: UpstreamClient = {
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
    async send(request) {
      const started = performance.now();
      // Read once: every attempt of this call, retries included, carries the credential it began
      // with, even when a rotation replaces it meanwhile.
      const authorization = credential.authorization;
      const deadline = new Deadline(timeoutMs);
      let result: { status: number; body: unknown } | Failure;
      try {
        for (let attempt = 0; ; attempt++) {
          const traced = startAttempt?.(request.method, request.route, attempt);
          try {
            result = classify(
              await instance.request({
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
                signal: deadline,
              }),
            );
          } catch (error) {
            result = deadline.aborted
              ? new Failure('timeout', `${label} did not answer within ${timeoutMs} ms`, false)
              : networkFailure(error);
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
            break;
          }
          // Full jitter keeps replicas from retrying in lockstep against a struggling upstream.
          const backoff = RETRY_BASE_MS * 2 ** attempt * (0.5 + Math.random());
          if (performance.now() + backoff >= deadline.endsAt) break;
          await sleep(backoff);
        }
      } finally {
        deadline.clear();
      }

      if (!(result instanceof Failure)) {
        try {
          const value = request.read(result.body);
          metrics.observeUpstream(name, 'success', (performance.now() - started) / 1000);
          return { status: result.status, value };
        } catch (error) {
          if (!(error instanceof UnusableAnswerError)) throw error;
          result = new Failure('bad-response', error.message, false, result.status);
        }
      }
      const seconds = (performance.now() - started) / 1000;
      metrics.observeUpstream(name, result.failure as UpstreamOutcome, seconds);
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
    },
  };
  return {
    close() {
      breaker.shutdown();
      unguarded.close();
    },
    send: (request) => breaker.run(() => unguarded.send(request)),
  };
}

import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { TracingConfig } from '../config/config';
import type { Logger } from './logger';

/**
 * The broker's own span attributes, `cardscan_broker.<name>`, set on the request's SERVER span:
 * - `outcome`: why a request was refused or failed (`rate_limited`, `circuit_open`,
 *   `upstream_unauthorized`, …); absent on success.
 * - `provider`: the identity provider that verified the login; the authenticator sets it once it
 *   knows the provider's name.
 */
export type BrokerAttribute = 'outcome' | 'provider';

/** The CLIENT span of one upstream attempt (each retry is an attempt of its own). */
export interface UpstreamAttempt {
  /** The W3C `traceparent` header for this attempt. */
  readonly traceparent: string;
  /**
   * Ends the span. `status`: the upstream's HTTP status, when it answered; `failure`: the kind of
   * failure when the attempt failed (never an upstream message: those may echo what was sent).
   */
  end(status: number | undefined, failure: string | undefined): void;
}

/**
 * OpenTelemetry traces of the broker. It exists only when tracing is on: callers hold
 * `Tracing | undefined`, decided once at build time, so with tracing off no span call is made.
 */
export interface Tracing {
  /** The first middleware: a SERVER span for every request except the ops routes. */
  serverSpans: RequestHandler;
  /** Runs just before the problem handler: records the outcome of a refused or failed request. */
  outcomes: ErrorRequestHandler;
  /**
   * The starter of CLIENT spans for one upstream (`server.address` and `server.port` from its base
   * URL), called once per attempt: a child of the request being served. `route` is the path's
   * template (no variable part, no query), e.g. `/access-token`; `resendCount` the attempt's number.
   */
  upstreamAttempts(
    name: string,
    baseUrl: string,
  ): (method: string, route: string | undefined, resendCount: number) => UpstreamAttempt;
  /** Sets `cardscan_broker.<attribute>` on the SERVER span of the request being served. */
  annotate(attribute: BrokerAttribute, value: string): void;
  /** A child of `logger` whose lines carry `trace_id` and `span_id` while a request is traced. */
  withTraceIds(logger: Logger): Logger;
  /** Sends the spans still pending and stops; gives up after `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void>;
}

/**
 * Starts tracing. The SDK and the exporter are required here, not imported at the top: with
 * tracing off this function is never called and no OpenTelemetry module is loaded at all.
 */
export function startTracing(config: TracingConfig, logger: Logger): Tracing {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sdk = require('./tracing-sdk') as typeof import('./tracing-sdk');
  return sdk.createTracing(config, logger);
}

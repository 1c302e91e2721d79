/**
 * The OpenTelemetry SDK behind `Tracing`, loaded only when tracing is on (see tracing.ts).
 *
 * Spans are made by hand, not by auto-instrumentation: every attribute is one this file chose, so
 * no user id, claim, token, key, query string or header can reach a collector by way of a library
 * default. No tracer provider, context manager or propagator is registered globally: the
 * request's span travels in this module's own AsyncLocalStorage, so two brokers in one process
 * never see each other's spans. (The SDK's error handler is global: the last broker's logs it.)
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  trace,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator, setGlobalErrorHandler } from '@opentelemetry/core';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type ReadableSpan,
  type Sampler,
  type Span as SdkSpan,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import type { Request, Response } from 'express';
import type { TracingConfig } from '../config/config';
import { UpstreamError, type UpstreamFailure, type AppError } from '../errors';
import { appErrorOf } from '../http/problems';
import type { Logger } from './logger';
import type { Tracing, UpstreamAttempt } from './tracing';

/** Polled by load balancers and scrapers: a span each would bury the real traffic. */
const UNTRACED_PATHS = new Set(['/healthz', '/readyz', '/metrics', '/openapi.json']);

/** HTTP semantic conventions: any other method is reported as `_OTHER` (a client picks it). */
const KNOWN_METHODS = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
]);

const UPSTREAM_OUTCOMES: Record<UpstreamFailure, string> = {
  'circuit-open': 'circuit_open',
  credentials: 'upstream_unauthorized',
  timeout: 'upstream_timeout',
  unreachable: 'upstream_unreachable',
  'bad-response': 'upstream_bad_response',
  rejected: 'upstream_rejected',
};

/** A failed export is logged at most this often: a collector that is down must not flood the log. */
const EXPORT_FAILURE_LOG_INTERVAL_MS = 60_000;

/** `rate_limited`, `circuit_open`, `upstream_unauthorized`, …: fixed words, never a message. */
function outcomeOf(error: AppError | undefined): string {
  if (!error) return 'internal_error';
  if (error instanceof UpstreamError) return UPSTREAM_OUTCOMES[error.failure];
  return error.code.replaceAll('-', '_');
}

/**
 * Parent-based for the broker's own spans (a CLIENT span is sampled with its SERVER span), but an
 * incoming traceparent's sampled flag does not decide: any caller, signed in or not, sets it, and
 * would otherwise turn on (or off) the tracing of its own requests. A remote parent's request is
 * decided by the root sampler like any other; its trace id is still continued.
 */
function parentBased(root: Sampler): Sampler {
  return new ParentBasedSampler({ root, remoteParentSampled: root, remoteParentNotSampled: root });
}

function samplerOf(config: TracingConfig): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(config.samplerRatio);
  switch (config.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_on':
      return parentBased(new AlwaysOnSampler());
    case 'parentbased_always_off':
      return parentBased(new AlwaysOffSampler());
    case 'parentbased_traceidratio':
      return parentBased(ratio());
  }
}

/**
 * Passes ended spans on, except the SERVER span of a request that matched no route (a 404 without
 * `http.route`): scans of unknown paths would fill the collector with spans that say nothing.
 */
class RoutedSpansOnly implements SpanProcessor {
  constructor(private readonly next: SpanProcessor) {}

  onStart(span: SdkSpan, context: Context): void {
    this.next.onStart(span, context);
  }

  onEnd(span: ReadableSpan): void {
    const { attributes } = span;
    if (
      span.kind === SpanKind.SERVER &&
      attributes['http.route'] === undefined &&
      attributes['http.response.status_code'] === 404
    ) {
      return;
    }
    this.next.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.next.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.next.shutdown();
  }
}

/** The `traceparent` header for a span: version 00, trace id, span id, sampled flag. */
function traceparentOf(span: Span): string {
  const context = span.spanContext();
  return `00-${context.traceId}-${context.spanId}-${context.traceFlags & 1 ? '01' : '00'}`;
}

class Attempt implements UpstreamAttempt {
  readonly traceparent: string;

  constructor(private readonly span: Span) {
    this.traceparent = traceparentOf(span);
  }

  end(status: number | undefined, failure: string | undefined): void {
    const { span } = this;
    if (status !== undefined) span.setAttribute('http.response.status_code', status);
    if (failure !== undefined) {
      // The conventions' error.type: the status code when there is one, else a fixed word.
      span.setAttribute(
        'error.type',
        status !== undefined && status >= 400 ? String(status) : failure,
      );
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  }
}

export function createTracing(config: TracingConfig, logger: Logger): Tracing {
  const Exporter = config.protocol === 'http/json' ? JsonExporter : ProtobufExporter;
  const exporter = new Exporter({
    url: config.endpoint,
    headers: config.headers,
    timeoutMillis: config.exportTimeoutMs,
  });
  const provider = new TracerProvider({
    resource: defaultResource().merge(resourceFromAttributes(config.resource)),
    sampler: samplerOf(config),
    spanProcessors: [
      new RoutedSpansOnly(
        new BatchSpanProcessor({
          exporter,
          scheduledDelayMillis: config.scheduleDelayMs,
          exportTimeoutMillis: config.exportTimeoutMs,
        }),
      ),
    ],
  });
  const tracer = provider.getTracer('cardscan-broker');
  const propagator = new W3CTraceContextPropagator();
  /** The SERVER span of the request being served. */
  const current = new AsyncLocalStorage<Span>();

  // The SDK reports failed exports only here. Only the error's code is logged: its message may
  // quote the collector's answer.
  let lastExportFailureLog = -Infinity;
  setGlobalErrorHandler((error) => {
    const now = performance.now();
    if (now - lastExportFailureLog < EXPORT_FAILURE_LOG_INTERVAL_MS) return;
    lastExportFailureLog = now;
    const code = (error as { code?: unknown } | null)?.code;
    logger.warn(
      { reason: typeof code === 'string' || typeof code === 'number' ? code : 'unknown' },
      'traces: sending spans to the collector failed; spans are dropped until it answers (logged at most once a minute)',
    );
  });

  function endServerSpan(span: Span, req: Request, res: Response): void {
    const route: unknown = req.route?.path;
    if (typeof route === 'string') {
      span.updateName(`${req.method} ${route}`);
      span.setAttribute('http.route', route);
    }
    if (res.headersSent) {
      const status = res.statusCode;
      span.setAttribute('http.response.status_code', status);
      // For a SERVER span only a 5xx is an error; a 4xx is the client's mistake.
      if (status >= 500) {
        span.setAttribute('error.type', String(status));
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
    }
    span.end();
  }

  return {
    serverSpans(req, res, next) {
      const queryAt = req.url.indexOf('?');
      if (UNTRACED_PATHS.has(queryAt === -1 ? req.url : req.url.slice(0, queryAt))) return next();
      // Only the traceparent is continued: a tracestate is the caller's free text, and it would be
      // copied into every span of the trace.
      const { traceparent } = req.headers;
      const parent =
        traceparent === undefined
          ? ROOT_CONTEXT
          : propagator.extract(ROOT_CONTEXT, { traceparent }, defaultTextMapGetter);
      const method = KNOWN_METHODS.has(req.method) ? req.method : '_OTHER';
      // Named by the method until the route is known; no path, query or header is recorded.
      const span = tracer.startSpan(
        method === '_OTHER' ? 'HTTP' : method,
        {
          kind: SpanKind.SERVER,
          // With TRUST_PROXY, req.protocol comes from X-Forwarded-Proto: only the two real values.
          attributes: {
            'http.request.method': method,
            'url.scheme': req.protocol === 'https' ? 'https' : 'http',
          },
        },
        parent,
      );
      // 'close' comes exactly once, after 'finish' or alone when the client left.
      res.on('close', () => {
        endServerSpan(span, req, res);
        // A client that leaves closes the response from its socket, outside the request's context:
        // the listeners after this one (the request log's line) must still see the request's span.
        if (current.getStore() !== span) current.enterWith(span);
      });
      current.run(span, next);
    },

    outcomes(error, _req, _res, next) {
      current.getStore()?.setAttribute('cardscan_broker.outcome', outcomeOf(appErrorOf(error)));
      next(error);
    },

    upstreamAttempts(name, baseUrl) {
      const url = new URL(baseUrl);
      const port = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
      return (method, route, resendCount) => {
        const parent = current.getStore();
        const attributes: Attributes = {
          'http.request.method': method,
          'server.address': url.hostname,
          'server.port': port,
          'cardscan_broker.upstream': name,
        };
        if (route !== undefined) attributes['url.template'] = route;
        if (resendCount > 0) attributes['http.request.resend_count'] = resendCount;
        const span = tracer.startSpan(
          route === undefined ? method : `${method} ${route}`,
          { kind: SpanKind.CLIENT, attributes },
          parent ? trace.setSpan(ROOT_CONTEXT, parent) : ROOT_CONTEXT,
        );
        return new Attempt(span);
      };
    },

    annotate(attribute, value) {
      current.getStore()?.setAttribute(`cardscan_broker.${attribute}`, value);
    },

    withTraceIds(parentLogger) {
      return parentLogger.child(
        {},
        {
          formatters: {
            log(fields) {
              const span = current.getStore();
              if (!span) return fields;
              const { traceId, spanId } = span.spanContext();
              return { ...fields, trace_id: traceId, span_id: spanId };
            },
          },
        },
      );
    },

    async shutdown(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = new Promise<'gave up'>((resolve) => {
        timer = setTimeout(resolve, timeoutMs, 'gave up');
      });
      const result = await Promise.race([
        provider.shutdown().then(
          () => 'sent' as const,
          () => 'failed' as const,
        ),
        gaveUp,
      ]);
      clearTimeout(timer);
      if (result !== 'sent') {
        logger.warn(
          { reason: result },
          'traces: the spans still pending could not be sent before exit',
        );
      }
    },
  };
}

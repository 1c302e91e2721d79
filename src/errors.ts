/**
 * Every error the broker answers with. Each class has a fixed status and problem type, so the one
 * error handler never has to guess; `detail` is written for the caller and never carries a secret.
 */

const PROBLEM_BASE = 'urn:cardscan-broker:problem:';

export interface ProblemFields {
  type: string;
  title: string;
  status: number;
  detail: string;
}

export abstract class AppError extends Error {
  abstract readonly status: number;
  abstract readonly code: string;
  abstract readonly title: string;
  /** Extra response headers, e.g. WWW-Authenticate or Retry-After. */
  headers: Record<string, string> = {};

  constructor(detail: string, options?: { cause?: unknown }) {
    super(detail, options);
    this.name = new.target.name;
  }

  toProblem(): ProblemFields {
    return {
      type: PROBLEM_BASE + this.code,
      title: this.title,
      status: this.status,
      detail: this.message,
    };
  }
}

export class BadRequestError extends AppError {
  readonly status = 400;
  readonly code = 'bad-request';
  readonly title = 'Bad request';
}

export type BearerErrorCode = 'invalid_request' | 'invalid_token';

export class AuthenticationError extends AppError {
  readonly status = 401;
  readonly code = 'unauthenticated';
  readonly title = 'Authentication required';

  /** `bearerError` goes into WWW-Authenticate (RFC 6750); absent when no credentials were sent. */
  constructor(
    detail: string,
    readonly bearerError?: BearerErrorCode,
    options?: { cause?: unknown },
  ) {
    super(detail, options);
    const params = ['realm="cardscan-broker"'];
    if (bearerError) {
      // Header-safe: visible ASCII only, no quotes or backslashes (RFC 6750 error_description).
      const description = detail.replace(/[^\x20-\x7E]|["\\]/g, '');
      params.push(`error="${bearerError}"`, `error_description="${description}"`);
    }
    this.headers['WWW-Authenticate'] = `Bearer ${params.join(', ')}`;
  }
}

export class ForbiddenError extends AppError {
  readonly status = 403;
  readonly code = 'forbidden';
  readonly title = 'Forbidden';
}

export class NotFoundError extends AppError {
  readonly status = 404;
  readonly code = 'not-found';
  readonly title = 'Not found';
}

export class PayloadTooLargeError extends AppError {
  readonly status = 413;
  readonly code = 'payload-too-large';
  readonly title = 'Payload too large';
}

export class UnsupportedMediaTypeError extends AppError {
  readonly status = 415;
  readonly code = 'unsupported-media-type';
  readonly title = 'Unsupported media type';
}

export class RateLimitedError extends AppError {
  readonly status = 429;
  readonly code = 'rate-limited';
  readonly title = 'Too many requests';

  constructor(detail: string, retryAfterSeconds: number) {
    super(detail);
    this.headers['Retry-After'] = String(Math.max(1, Math.ceil(retryAfterSeconds)));
  }
}

/** The broker cannot do its job right now for a reason of its own (e.g. no signing keys yet). */
export class ServiceUnavailableError extends AppError {
  readonly status = 503;
  readonly code = 'unavailable';
  readonly title = 'Service unavailable';

  constructor(detail: string, retryAfterSeconds: number) {
    super(detail);
    this.headers['Retry-After'] = String(Math.max(1, Math.ceil(retryAfterSeconds)));
  }
}

export type UpstreamName = 'cardscan' | 'certiscan';

/**
 * What went wrong with an upstream call, from the caller's point of view:
 * - `unreachable`: connection refused or host unknown → 503
 * - `circuit-open`: the breaker is open, the upstream was not called → 503
 * - `timeout`: the deadline passed → 504
 * - `credentials`: the upstream refused the broker's own credentials → 502
 * - `bad-response`: 5xx, dropped connection, unreadable or unexpected body → 502
 * - `rejected`: the upstream refused the request itself (400/404/409/422) → same status
 */
export type UpstreamFailure =
  'unreachable' | 'circuit-open' | 'timeout' | 'credentials' | 'bad-response' | 'rejected';

const UPSTREAM_STATUS: Record<Exclude<UpstreamFailure, 'rejected'>, number> = {
  unreachable: 503,
  'circuit-open': 503,
  timeout: 504,
  credentials: 502,
  'bad-response': 502,
};

const UPSTREAM_TITLE: Record<number, string> = {
  502: 'Bad gateway',
  503: 'Upstream unavailable',
  504: 'Upstream timeout',
};

export class UpstreamError extends AppError {
  readonly status: number;
  readonly code: string;
  readonly title: string;
  readonly upstreamStatus: number | undefined;

  constructor(
    readonly upstream: UpstreamName,
    readonly failure: UpstreamFailure,
    detail: string,
    options: { upstreamStatus?: number; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(detail, { cause: options.cause });
    this.upstreamStatus = options.upstreamStatus;
    this.status =
      failure === 'rejected' ? (options.upstreamStatus ?? 502) : UPSTREAM_STATUS[failure];
    this.code = `upstream-${failure}`;
    this.title = UPSTREAM_TITLE[this.status] ?? 'Upstream refused the request';
    if (options.retryAfterSeconds !== undefined) {
      this.headers['Retry-After'] = String(Math.max(1, Math.ceil(options.retryAfterSeconds)));
    }
  }
}

import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import {
  AppError,
  BadRequestError,
  NotFoundError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  type ProblemFields,
} from '../errors';
import type { Logger } from '../observability/logger';

const PROBLEM_TYPE = 'application/problem+json; charset=utf-8';

function send(res: Response, problem: ProblemFields, headers: Record<string, string> = {}): void {
  res.status(problem.status).set(headers).set('Cache-Control', 'no-store').type(PROBLEM_TYPE);
  res.send(JSON.stringify({ ...problem, request_id: String(res.req.id ?? '') }));
}

/**
 * body-parser errors carry a `type` (and http-errors' `status` and `expose`); they are the only
 * foreign errors with a caller-facing meaning. Each is a 4xx: the body is the client's.
 */
function fromBodyParser(error: unknown): AppError | undefined {
  const type = (error as { type?: unknown } | null)?.type;
  switch (type) {
    case 'entity.too.large':
      return new PayloadTooLargeError('the request body is larger than 100 kB');
    case 'entity.parse.failed':
      return new BadRequestError('the request body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new UnsupportedMediaTypeError('the request body encoding is not supported');
    case 'request.aborted':
      return new BadRequestError('the request body ended before its announced length');
    case 'request.size.invalid':
      return new BadRequestError('the request body does not match its Content-Length');
    default:
      // A decompression failure (zlib's error wrapped as a 400 without a type): the client's data.
      return (error as { status?: unknown } | null)?.status === 400 &&
        (error as { expose?: unknown }).expose === true
        ? new BadRequestError(
            'the request body cannot be decoded: corrupt or truncated compressed data',
          )
        : undefined;
  }
}

/** The router's own 400: a path parameter with a broken percent-encoding such as `%zz`. */
function fromRouter(error: unknown): AppError | undefined {
  return error instanceof URIError && (error as { status?: unknown }).status === 400
    ? new BadRequestError('the URL holds an invalid percent-encoding')
    : undefined;
}

/** The AppError an error stands for, or undefined for an unexpected one (a 500). */
export function appErrorOf(error: unknown): AppError | undefined {
  return error instanceof AppError ? error : (fromBodyParser(error) ?? fromRouter(error));
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new NotFoundError(`no route for ${req.method} ${req.path}`));
};

/** The one place that writes error responses. Unknown errors become a bare 500, logged in full. */
export function createProblemHandler(logger: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, next) => {
    if (res.headersSent) return next(error);
    const known = appErrorOf(error);
    if (known) {
      send(res, known.toProblem(), known.headers);
      return;
    }
    logger.error(
      {
        error:
          error instanceof Error
            ? { name: error.name, message: error.message }
            : { name: typeof error },
        requestId: req.id,
      },
      'unexpected error',
    );
    send(res, {
      type: 'urn:cardscan-broker:problem:internal',
      title: 'Internal server error',
      status: 500,
      detail: 'the broker failed unexpectedly; the request id identifies it in the logs',
    });
  };
}

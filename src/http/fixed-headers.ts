import type { IncomingHttpHeaders } from 'node:http';
import type { Request, RequestHandler, Response } from 'express';

type HeaderOperation = [name: string, value: string | number | readonly string[] | undefined];

/**
 * What a header-only middleware (helmet, cors) does to a response, found by running it once
 * against a recording response. Middleware whose headers depend only on its options and on the
 * request fields given here sets the same headers on every such request, so the work can be done
 * once at start. Throws if it does anything else: a future version that, say, adds a per-request
 * nonce fails at start instead of being frozen.
 */
export function headersSetBy(
  middleware: RequestHandler,
  request: { method: string; headers: IncomingHttpHeaders },
): HeaderOperation[] {
  const operations: HeaderOperation[] = [];
  const current = new Map<string, string | number | readonly string[]>();
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      operations.push([name, value]);
      current.set(name.toLowerCase(), value);
      return recorder;
    },
    getHeader: (name: string) => current.get(name.toLowerCase()),
    removeHeader(name: string) {
      operations.push([name, undefined]);
      current.delete(name.toLowerCase());
    },
  };
  let outcome: 'next' | 'error' | undefined;
  middleware(request as Request, recorder as unknown as Response, (error?: unknown) => {
    outcome = error ? 'error' : 'next';
  });
  if (outcome !== 'next') {
    throw new Error('a header middleware did not pass the request on at once; it cannot be fixed');
  }
  return operations;
}

/** Applies the operations `headersSetBy` recorded, in order, to each response. */
export function setFixedHeaders(operations: HeaderOperation[]): RequestHandler {
  // Two flat arrays and an index loop: no destructuring (and no iterator) on every request.
  const names = operations.map(([name]) => name);
  const values = operations.map(([, value]) => value);
  return (_req, res, next) => {
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      const value = values[i];
      if (value === undefined) res.removeHeader(name);
      else res.setHeader(name, value);
    }
    next();
  };
}

import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * How a stand-in answers. `ok` runs the real contract; the others are the faults a real upstream
 * shows: refusing our credentials, failing, answering nonsense, never answering, cutting the line.
 */
export type Fault = 'unauthorized' | 'server-error' | 'malformed' | 'hang' | 'drop';
export type Mode = 'ok' | Fault;

export interface RecordedRequest {
  method: string;
  /** Path as received, without the query string. */
  path: string;
  query: Record<string, string>;
  /** The query string exactly as received, e.g. `?user_id=a%20b`. */
  rawQuery: string;
  headers: http.IncomingHttpHeaders;
  /** Parsed JSON body, or the raw text when it is not JSON, or undefined when empty. */
  body: unknown;
}

export interface JsonAnswer {
  status: number;
  body: unknown;
}

/** The contract part of a stand-in: answers a request that passed the credential check. */
export type ContractHandler = (request: RecordedRequest) => JsonAnswer | Promise<JsonAnswer>;

export interface StandIn {
  /** http://127.0.0.1:PORT */
  origin: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** The answer for every request from now on. */
  setMode(mode: Mode): void;
  /** Answers for the next requests, one each, before falling back to the mode: a mode or a literal answer. */
  queue(...answers: (Mode | JsonAnswer)[]): void;
  /** Delay before each answer, for slow-upstream drills. */
  setDelay(ms: number): void;
  /** Holds every answer from now on until the returned function is called. */
  hold(): () => void;
  /** The bearer tokens it accepts from now on, e.g. the old and the new one during a rotation. */
  acceptTokens(...tokens: string[]): void;
  close(): Promise<void>;
}

export interface StandInOptions {
  /** The bearer token the stand-in accepts. */
  bearerToken: string;
  /** The body of a 401, in the vendor's error format. */
  unauthorizedBody: unknown;
  /** The body of a 500, in the vendor's error format. */
  serverErrorBody: unknown;
  handle: ContractHandler;
  port?: number;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function sendJson(res: ServerResponse, answer: JsonAnswer): void {
  const text = JSON.stringify(answer.body);
  res.writeHead(answer.status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

export async function startStandIn(options: StandInOptions): Promise<StandIn> {
  const requests: RecordedRequest[] = [];
  let mode: Mode = 'ok';
  const queued: (Mode | JsonAnswer)[] = [];
  let delayMs = 0;
  let gate: Promise<void> = Promise.resolve();
  let accepted = new Set([`Bearer ${options.bearerToken}`]);

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const recorded: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      rawQuery: url.search,
      headers: req.headers,
      body: await readBody(req),
    };
    requests.push(recorded);
    const current = queued.shift() ?? mode;
    if (current === 'hang') return; // never answers; close() cuts it
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    await gate;
    if (typeof current === 'object') return sendJson(res, current);
    switch (current) {
      case 'drop':
        req.socket.destroy();
        return;
      case 'malformed':
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"Token": <html>oops');
        return;
      case 'server-error':
        return sendJson(res, { status: 500, body: options.serverErrorBody });
      case 'unauthorized':
        return sendJson(res, { status: 401, body: options.unauthorizedBody });
    }
    if (!accepted.has(req.headers.authorization ?? '')) {
      return sendJson(res, { status: 401, body: options.unauthorizedBody });
    }
    sendJson(res, await options.handle(recorded));
  });
  server.keepAliveTimeout = 30_000;
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    setMode: (next) => {
      mode = next;
    },
    queue: (...answers) => {
      queued.push(...answers);
    },
    setDelay: (ms) => {
      delayMs = ms;
    },
    hold: () => {
      let release = () => {};
      gate = new Promise((resolve) => {
        release = () => {
          gate = Promise.resolve();
          resolve();
        };
      });
      return release;
    },
    acceptTokens: (...tokens) => {
      accepted = new Set(tokens.map((token) => `Bearer ${token}`));
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

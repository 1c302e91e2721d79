import { once } from 'node:events';
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import v8 from 'node:v8';
import type { Express } from 'express';
import type { Logger } from '../observability/logger';

export interface ServerLimits {
  /** A whole request, body included, must arrive within this. Default 30 s. */
  requestTimeoutMs: number;
  /** The request's headers must arrive within this; never more than requestTimeoutMs. Default 15 s. */
  headersTimeoutMs: number;
  /** Connections open at once; further ones are closed as they are accepted. Default: defaultMaxConnections(). */
  maxConnections: number;
}

export interface ListenerSpec {
  name: string;
  app: Express;
  port: number;
  host: string;
  /** Timeouts and the connection cap; tests shrink them. */
  limits?: Partial<ServerLimits>;
}

export interface DrainOptions {
  /** Keep serving this long after the signal, so the load balancer sees /readyz fail first. */
  delayMs: number;
  /** Hard stop, counted from the signal: connections still open then are cut. */
  timeoutMs: number;
  /** Called first: turns /readyz to 503. */
  startDraining: () => void;
}

export interface RunningListeners {
  /** Bound addresses by listener name, e.g. { public: 'http://127.0.0.1:8080' }. */
  urls: Record<string, string>;
  /** The drain: readyz 503, keep serving for delayMs, stop accepting, let in-flight requests finish. */
  shutdown(options: DrainOptions): Promise<void>;
}

/**
 * Longer than the usual load-balancer idle timeout (60 s), so the balancer, not the broker, closes
 * idle keep-alive connections; otherwise a request can race a closing socket and get a 502.
 */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

const SLOT = Symbol('inFlightSlot');
type Tracked = ServerResponse & { [SLOT]?: number };

/**
 * The responses in flight, for the drain: an array, each response knowing its slot. Not a Set: a
 * Set or Map with an entry added and removed per request kept finished requests alive through
 * V8's young-generation collections, so they were copied into the old generation (1.7 MB per
 * collection in a bare Express app on the bench machine; with this array, no more than without
 * tracking).
 */
export class InFlight {
  private readonly responses: Tracked[] = [];

  add(res: Tracked): void {
    res[SLOT] = this.responses.length;
    this.responses.push(res);
  }

  delete(res: Tracked): void {
    const slot = res[SLOT];
    if (slot === undefined) return;
    res[SLOT] = undefined;
    const last = this.responses.pop() as Tracked;
    if (last !== res) {
      this.responses[slot] = last;
      last[SLOT] = slot;
    }
  }

  /** Tracks `res` until it closes, or until its connection is gone before it was ever sent. */
  track(req: IncomingMessage, res: Tracked): void {
    this.add(res);
    res.once('close', () => this.delete(res));
    // An answer queued behind another on a pipelining connection never gets the socket, so it
    // never emits 'close' when the client resets the connection; its request does.
    req.once('close', () => {
      if (req.socket.destroyed) this.delete(res);
    });
  }

  /** A copy: closing a response while the caller iterates would move another into its slot. */
  values(): ServerResponse[] {
    return this.responses.slice();
  }
}

const REQUEST_TIMEOUT_MS = 30_000;
/** Headers are a few kB even from a poor mobile link; a client slower than this is holding a slot. */
const HEADERS_TIMEOUT_MS = 15_000;
/** How long cut responses get to emit 'close' (one turn of the event loop is enough). */
const CUT_CLOSE_WAIT_MS = 100;
/** Node checks the timeouts on an interval (30 s by default); often enough to cut near the deadline. */
const MAX_CHECK_INTERVAL_MS = 2000;

/** Room one connection may take in the worst case: a full 100 kB body, its headers, the socket. */
const BYTES_PER_CONNECTION = 128 * 2 ** 10;
const MIN_CONNECTIONS = 64;

/**
 * MAX_CONNECTIONS' default: as many connections as fit in half of V8's heap at 128 KiB each, so
 * that even every connection holding a full body at once leaves the other half for the work.
 * With npm start's 256 MB old space that is 1120; the heap flags size it along with the memory.
 */
export function defaultMaxConnections(
  heapLimitBytes: number = v8.getHeapStatistics().heap_size_limit,
): number {
  return Math.max(MIN_CONNECTIONS, Math.floor(heapLimitBytes / 2 / BYTES_PER_CONNECTION));
}

async function start(spec: ListenerSpec): Promise<Server> {
  const requestTimeout = spec.limits?.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const headersTimeout = Math.min(
    spec.limits?.headersTimeoutMs ?? HEADERS_TIMEOUT_MS,
    requestTimeout,
  );
  // Given at construction, where Node refuses a headersTimeout above requestTimeout. Keep-alive
  // idle time is not bounded by either (Node times only requests in progress), so keepAliveTimeout
  // may exceed them.
  const server = http.createServer(
    {
      requestTimeout,
      headersTimeout,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      connectionsCheckingInterval: Math.min(MAX_CHECK_INTERVAL_MS, Math.ceil(requestTimeout / 4)),
    },
    spec.app,
  );
  server.maxConnections = spec.limits?.maxConnections ?? defaultMaxConnections();
  server.listen(spec.port, spec.host);
  await once(server, 'listening');
  return server;
}

export async function startListeners(
  specs: ListenerSpec[],
  logger: Logger,
): Promise<RunningListeners> {
  const servers = await Promise.all(specs.map(start));
  let closing = false;
  const inFlight = new InFlight();
  const urls: Record<string, string> = {};
  servers.forEach((server, index) => {
    const spec = specs[index] as ListenerSpec;
    const { address, port } = server.address() as AddressInfo;
    urls[spec.name] = `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
    // Once closing, every answer also closes its keep-alive connection, so clients move on and
    // close() does not wait out the keep-alive timeout of a connection that was busy meanwhile.
    // Prepended, so it runs before Express answers (a synchronous answer has sent its headers).
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
      if (closing) {
        if (!res.headersSent) res.setHeader('Connection', 'close');
        return;
      }
      inFlight.track(req, res);
    });
  });
  logger.info({ urls }, 'listening');

  return {
    urls,
    async shutdown({ delayMs, timeoutMs, startDraining }) {
      const hardStop = Date.now() + timeoutMs;
      startDraining();
      logger.info({ delayMs }, 'draining: /readyz answers 503, still serving');
      await sleep(delayMs);
      closing = true;
      for (const res of inFlight.values()) {
        if (!res.headersSent) res.setHeader('Connection', 'close');
      }
      const closed = Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              server.closeIdleConnections();
            }),
        ),
      );
      const cancelTimer = new AbortController();
      const timer = sleep(Math.max(0, hardStop - Date.now()), 'timeout' as const, {
        signal: cancelTimer.signal,
      }).catch(() => 'cancelled' as const);
      if ((await Promise.race([closed, timer])) === 'timeout') {
        logger.warn('drain timed out; cutting the connections still open');
        // A cut response emits 'close' only once its socket's handle has closed, in the event
        // loop's close phase, after anything a setImmediate could wait for. Its listeners end the
        // request's SERVER span and write its log line: they must run before the caller stops the
        // tracer, or the span is lost. Bounded: an answer queued behind another on a pipelined
        // connection never emits 'close'.
        const cut = inFlight
          .values()
          .map((res) => new Promise<void>((resolve) => res.once('close', () => resolve())));
        for (const server of servers) server.closeAllConnections();
        await Promise.race([Promise.all(cut), sleep(CUT_CLOSE_WAIT_MS, undefined, { ref: false })]);
      }
      cancelTimer.abort();
      logger.info('stopped');
    },
  };
}

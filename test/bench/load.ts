import autocannon from 'autocannon';

/** One user's request: the path (with query) and the headers that make it valid. */
export interface UserRequest {
  path: string;
  headers: Record<string, string>;
}

export interface LoadOptions {
  origin: string;
  /** One entry per distinct user; every connection walks all of them. */
  requests: UserRequest[];
  connections: number;
  seconds: number;
}

export interface LoadResult {
  /** Answers with a 2xx status: the only ones that count as served. */
  ok: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

/**
 * Closed-loop load with autocannon: each connection sends its next request as soon as the previous
 * answer arrived. The users are dealt out to the connections like cards (connection c gets users
 * c, c+connections, …) and each connection walks its own hand: no two connections ever ask for the
 * same user, so the broker's sharing of one user's concurrent Cardscan calls gets no help from the
 * bench (real users rarely ask twice at the same moment).
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { requests, connections } = options;
  let nextClient = 0;
  const handOf = (client: number) =>
    requests
      .filter((_, user) => user % connections === client % Math.min(connections, requests.length))
      .map((request) => ({ method: 'GET' as const, path: request.path, headers: request.headers }));

  const result = await autocannon({
    url: options.origin,
    connections,
    duration: options.seconds,
    requests: handOf(0),
    setupClient: (client) => {
      client.setRequests(handOf(nextClient++));
    },
    timeout: 10,
  });
  return {
    ok: result['2xx'],
    requestsPerSecond: result['2xx'] / options.seconds,
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
    },
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

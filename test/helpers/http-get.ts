import http from 'node:http';

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One GET with node:http, bounded by `timeoutMs`. A new connection each time unless an agent is
 * given, so a drill can tell "refused" (never reached the server) from "cut" (accepted, then lost).
 */
export function httpGet(
  url: string,
  options: { headers?: Record<string, string>; timeoutMs: number; agent?: http.Agent },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      url,
      {
        headers: options.headers,
        agent: options.agent ?? false,
        signal: AbortSignal.timeout(options.timeoutMs),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
}

/** The error code of a failed httpGet, e.g. ECONNREFUSED, ECONNRESET, ABORT_ERR. */
export function codeOf(error: unknown): string {
  return (error as { code?: string }).code ?? (error as Error).name ?? 'unknown';
}

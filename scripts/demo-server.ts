/**
 * The demo page's own static server. It runs on another port than the broker, so the page is a
 * different origin, exactly like a customer's web app: every call it makes is a CORS call.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/** What the page needs to know, served to it as `/config.js`. */
export interface DemoPageConfig {
  brokerUrl: string;
  identityProviderUrl: string;
  /** The second (`staff`) provider's dev login. */
  staffIdentityProviderUrl: string;
  /** The broker's AUTH_COOKIE_NAME, for the cookie variant. */
  cookieName: string;
}

export interface DemoServer {
  /** http://127.0.0.1:PORT */
  origin: string;
  close(): Promise<void>;
}

const DEMO_DIR = path.join(__dirname, '..', 'demo');

/** The only files served: no part of a URL ever reaches the file system. */
const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/demo.js': { file: 'demo.js', type: 'text/javascript; charset=utf-8' },
  '/demo.css': { file: 'demo.css', type: 'text/css; charset=utf-8' },
};

/** The policy a real app would send: scripts only from itself, calls only to the broker and login. */
function contentSecurityPolicy(config: DemoPageConfig): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `connect-src ${config.brokerUrl} ${config.identityProviderUrl} ${config.staffIdentityProviderUrl}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/**
 * Serves demo/ and a generated `/config.js`. `pageConfig` is read per request, because the broker's
 * address is known only after it listens, and the broker's CORS_ORIGINS needs this server's first.
 */
export async function startDemoServer(options: {
  pageConfig: () => DemoPageConfig;
  /** Default 0: a free port. */
  port?: number;
}): Promise<DemoServer> {
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://demo').pathname;
    const config = options.pageConfig();
    const send = (status: number, type: string, body: string | Buffer) => {
      res.writeHead(status, {
        'Content-Type': type,
        'Cache-Control': 'no-store',
        'Content-Security-Policy': contentSecurityPolicy(config),
        'X-Content-Type-Options': 'nosniff',
      });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(405, 'text/plain; charset=utf-8', 'method not allowed\n');
    }
    if (pathname === '/config.js') {
      return send(
        200,
        'text/javascript; charset=utf-8',
        `window.CARDSCAN_DEMO_CONFIG = ${JSON.stringify(config)};\n`,
      );
    }
    const entry = FILES[pathname];
    if (!entry) return send(404, 'text/plain; charset=utf-8', 'not found\n');
    readFile(path.join(DEMO_DIR, entry.file)).then(
      (content) => send(200, entry.type, content),
      () => send(500, 'text/plain; charset=utf-8', 'cannot read the demo page\n'),
    );
  });
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

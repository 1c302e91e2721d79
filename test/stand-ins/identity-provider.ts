import { once } from 'node:events';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import jwt from 'jsonwebtoken';

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The algorithm it signs with: RS256 (default) or ES256. */
  alg?: 'RS256' | 'ES256';
}

export interface SignOptions {
  /** Seconds from now; negative for an expired token. Default 300. */
  expiresIn?: number;
  /** Seconds from now before which the token is not valid. */
  notBefore?: number;
  audience?: string;
  issuer?: string;
  /** Sign with this key instead of the current one (e.g. a key the JWKS does not publish). */
  key?: SigningKey;
  /** Leave `kid` out of the header. */
  noKid?: boolean;
}

export interface IdentityProvider {
  issuer: string;
  jwksUri: string;
  /** The key the provider signs with now. */
  currentKey: SigningKey;
  sign(claims: Record<string, unknown>, options?: SignOptions): string;
  /** A fresh key becomes current; the JWKS then publishes only it. */
  rotate(): void;
  /** While down, discovery and JWKS answer 503. */
  setDown(down: boolean): void;
  /** How many times the JWKS was requested, answered or not (while down). */
  jwksFetches(): number;
  close(): Promise<void>;
}

export function createSigningKey(
  alg: 'RS256' | 'ES256' = 'RS256',
  kid: string = randomUUID(),
): SigningKey {
  const { privateKey, publicKey } =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, privateKey, publicKey, alg };
}

/** A cookie name the dev login may set (RFC 6265 token characters). */
const COOKIE_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;

/**
 * An OIDC identity provider on 127.0.0.1: discovery document, JWKS, RS256 tokens, and a dev
 * login for `npm run local` and the demo page:
 * - `POST /dev/login {"sub","expires_in"?,"aud"?}` → `{"access_token"}` (the bearer variant;
 *   `aud` mints a token for another audience than the provider's own);
 * - `POST /dev/login {"sub","expires_in"?,"cookie":"<name>"}` → sets the token as an HttpOnly,
 *   SameSite=Strict cookie instead, as a customer's login server would. Cookies belong to a host,
 *   not a port, so a broker on the same host receives it; the page never sees the token;
 * - `POST /dev/logout {"cookie":"<name>"}` clears that cookie.
 */
export async function startIdentityProvider(
  options: {
    audience?: string;
    port?: number;
    /**
     * The JWKS lists the current key once per entry, with that `alg` (undefined: none), as
     * providers variously do. Default ['RS256'].
     */
    jwkAlgs?: (string | undefined)[];
    /**
     * The issuer's path after the origin, as real providers have (`/auth/v1`, `/<tenant>/v2.0`,
     * a trailing `/`). Discovery and the JWKS are served under it. Default none.
     */
    issuerPath?: string;
    /** The first signing key's algorithm and kid (e.g. a kid another provider also uses). */
    keyAlg?: 'RS256' | 'ES256';
    kid?: string;
  } = {},
): Promise<IdentityProvider> {
  let currentKey = createSigningKey(options.keyAlg, options.kid);
  const base = (options.issuerPath ?? '').replace(/\/+$/, '');
  let down = false;
  let jwksFetches = 0;
  let issuer = '';
  let origin = '';

  const sign = (claims: Record<string, unknown>, signOptions: SignOptions = {}): string => {
    const key = signOptions.key ?? currentKey;
    const now = Math.floor(Date.now() / 1000);
    const payload: Record<string, unknown> = {
      iss: signOptions.issuer ?? issuer,
      iat: now,
      exp: now + (signOptions.expiresIn ?? 300),
      ...claims,
    };
    const audience = signOptions.audience ?? options.audience;
    if (audience !== undefined && payload.aud === undefined) payload.aud = audience;
    if (signOptions.notBefore !== undefined) payload.nbf = now + signOptions.notBefore;
    return jwt.sign(payload, key.privateKey, {
      algorithm: key.alg ?? 'RS256',
      ...(signOptions.noKid ? {} : { keyid: key.kid }),
    });
  };

  const json = (
    res: http.ServerResponse,
    status: number,
    body: unknown,
    headers: http.OutgoingHttpHeaders = {},
  ) => {
    // A dev stand-in: any page may call it. A credentialed call (the cookie login) is only
    // readable when the page's exact origin is echoed with Allow-Credentials, never with `*`.
    const pageOrigin = res.req.headers.origin;
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Access-Control-Allow-Headers': 'Content-Type',
      ...(pageOrigin
        ? {
            'Access-Control-Allow-Origin': pageOrigin,
            'Access-Control-Allow-Credentials': 'true',
            Vary: 'Origin',
          }
        : { 'Access-Control-Allow-Origin': '*' }),
      ...headers,
    });
    res.end(JSON.stringify(body));
  };

  const server = http.createServer(async (req, res) => {
    const fullPath = new URL(req.url ?? '/', 'http://idp').pathname;
    const path = fullPath.startsWith(`${base}/`) ? fullPath.slice(base.length) : fullPath;
    if (req.method === 'OPTIONS') return json(res, 204, null);
    if ((path === '/dev/login' || path === '/dev/logout') && req.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<
          string,
          unknown
        >;
      } catch {
        return json(res, 400, { error: 'invalid_request' });
      }
      const cookie = body.cookie;
      if (cookie !== undefined && (typeof cookie !== 'string' || !COOKIE_NAME.test(cookie))) {
        return json(res, 400, { error: 'invalid_request', error_description: 'bad cookie name' });
      }
      const cookieAttributes = 'Path=/; HttpOnly; SameSite=Strict';
      if (path === '/dev/logout') {
        if (!cookie) {
          return json(res, 400, { error: 'invalid_request', error_description: 'no cookie' });
        }
        return json(res, 200, {}, { 'Set-Cookie': `${cookie}=; ${cookieAttributes}; Max-Age=0` });
      }
      const sub = typeof body.sub === 'string' && body.sub ? body.sub : 'patient-1';
      const expiresIn = typeof body.expires_in === 'number' ? body.expires_in : 3600;
      const audience = typeof body.aud === 'string' && body.aud ? body.aud : undefined;
      const token = sign({ sub }, { expiresIn, audience });
      if (cookie) {
        // A session cookie (no Max-Age): it may outlive the token, so an expired login still
        // reaches the broker and gets its 401, as with a real login server.
        return json(
          res,
          200,
          { token_type: 'cookie', cookie, expires_in: expiresIn },
          { 'Set-Cookie': `${cookie}=${token}; ${cookieAttributes}` },
        );
      }
      return json(res, 200, { access_token: token, token_type: 'Bearer', expires_in: expiresIn });
    }
    // Counted also while down: tests prove the broker does not hammer a failing provider.
    const jwksPath = path === '/jwks.json' || path === '/.well-known/jwks.json';
    if (jwksPath) jwksFetches += 1;
    if (down) return json(res, 503, { error: 'temporarily_unavailable' });
    if (path === '/.well-known/openid-configuration') {
      return json(res, 200, {
        issuer,
        jwks_uri: `${origin}${base}/jwks.json`,
        id_token_signing_alg_values_supported: [currentKey.alg ?? 'RS256'],
      });
    }
    if (jwksPath) {
      const jwk = currentKey.publicKey.export({ format: 'jwk' });
      const keys = (options.jwkAlgs ?? [currentKey.alg ?? 'RS256']).map((alg) => ({
        ...jwk,
        kid: currentKey.kid,
        ...(alg === undefined ? {} : { alg }),
        use: 'sig',
      }));
      return json(res, 200, { keys });
    }
    json(res, 404, { error: 'not_found' });
  });
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  issuer = origin + (options.issuerPath ?? '');

  return {
    issuer,
    jwksUri: `${origin}${base}/jwks.json`,
    get currentKey() {
      return currentKey;
    },
    sign,
    rotate: () => {
      currentKey = createSigningKey();
    },
    setDown: (value) => {
      down = value;
    },
    jwksFetches: () => jwksFetches,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

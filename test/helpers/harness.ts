import { createBroker, type Broker, type BrokerOptions } from '../../src/broker';
import { loadConfig, type Config } from '../../src/config/config';
import { createLogger } from '../../src/observability/logger';
import { startCardscanStandIn, type CardscanStandIn } from '../stand-ins/cardscan';
import { startCertiscanStandIn, type CertiscanStandIn } from '../stand-ins/certiscan';
import { startIdentityProvider, type IdentityProvider } from '../stand-ins/identity-provider';
import { listen } from './listen';
import { LogCapture } from './log-capture';

/** Placeholders in the vendors' formats; none of them is a real credential. */
export const TEST_CARDSCAN_KEY = 'secret_test_broker_placeholder_0001';
export const TEST_CERTISCAN_TOKEN = 'secret_test_certiscan_placeholder_0001';
export const TEST_HMAC_SECRET = 'secret_test_hmac_placeholder_0123456789abcdef';
export const AUDIENCE = 'cardscan-broker-tests';

export interface Harness {
  idp: IdentityProvider;
  cardscan: CardscanStandIn;
  certiscan: CertiscanStandIn;
  config: Config;
  broker: Broker;
  /**
   * The URL of the broker's main app on 127.0.0.1, on a node:http server as the broker builds
   * its own, for supertest's `request(h.app)`.
   */
  app: string;
  logs: LogCapture;
  /** A valid RS256 token for the user, from the identity provider. */
  tokenFor(sub: string): string;
  /** Moves the broker's clock (not the stand-ins') forward. */
  advanceClock(ms: number): void;
  close(): Promise<void>;
}

export type AuthMode = 'jwks' | 'issuer' | 'secret';

/**
 * Starts the stand-ins on 127.0.0.1 and a broker wired to them. `env` overrides or removes
 * (undefined) any variable.
 */
export async function startHarness(
  options: {
    auth?: AuthMode;
    env?: Record<string, string | undefined>;
    /** Breaker numbers and clock for the broker. */
    broker?: Pick<BrokerOptions, 'breaker' | 'now'>;
    /** How the identity provider's JWKS lists its key (see startIdentityProvider). */
    jwkAlgs?: (string | undefined)[];
  } = {},
): Promise<Harness> {
  const idp = await startIdentityProvider({ audience: AUDIENCE, jwkAlgs: options.jwkAlgs });
  const cardscan = await startCardscanStandIn({ apiKey: TEST_CARDSCAN_KEY });
  const certiscan = await startCertiscanStandIn({ authToken: TEST_CERTISCAN_TOKEN });
  const auth = options.auth ?? 'jwks';
  const env: Record<string, string | undefined> = {
    CARDSCAN_API_KEY: TEST_CARDSCAN_KEY,
    CARDSCAN_BASE_URL: cardscan.baseUrl,
    CERTISCAN_BASE_URL: certiscan.baseUrl,
    AUTH_AUDIENCE: AUDIENCE,
    UPSTREAM_TIMEOUT_MS: '1500',
    RATE_LIMIT_PER_MINUTE: '1000',
    LOG_LEVEL: 'debug',
    ...(auth === 'jwks' ? { AUTH_JWKS_URI: idp.jwksUri, AUTH_ISSUER: idp.issuer } : {}),
    ...(auth === 'issuer' ? { AUTH_ISSUER: idp.issuer } : {}),
    ...(auth === 'secret' ? { AUTH_JWT_SECRET: TEST_HMAC_SECRET } : {}),
    ...options.env,
  };
  const { config } = loadConfig(env);
  const logs = new LogCapture();
  let clockOffset = 0;
  const broker = createBroker(config, {
    logger: createLogger(config.logLevel, logs),
    now: () => Date.now() + clockOffset,
    ...options.broker,
  });
  await broker.keys.warmUp();
  const listening = await listen(broker.app);
  return {
    idp,
    cardscan,
    certiscan,
    config,
    broker,
    app: listening.url,
    logs,
    tokenFor: (sub) => idp.sign({ sub }),
    advanceClock: (ms) => {
      clockOffset += ms;
    },
    close: async () => {
      await listening.close();
      await broker.close();
      await Promise.all([idp.close(), cardscan.close(), certiscan.close()]);
    },
  };
}

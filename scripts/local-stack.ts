/**
 * The broker with built-in stand-ins for Cardscan, CertiScan and two identity providers, plus the
 * demo page on its own origin, all on 127.0.0.1. Used by `npm run local` and the browser tests.
 */
import type { DestinationStream } from 'pino';
import { createBroker } from '../src/broker';
import { loadConfig, type Config } from '../src/config/config';
import { createLogger } from '../src/observability/logger';
import { startListeners } from '../src/http/lifecycle';
import { startCardscanStandIn, type CardscanStandIn } from '../test/stand-ins/cardscan';
import { startCertiscanStandIn } from '../test/stand-ins/certiscan';
import { startIdentityProvider, type IdentityProvider } from '../test/stand-ins/identity-provider';
import { createAdminKey } from './admin-key';
import { startDemoServer, type DemoPageConfig } from './demo-server';

const CARDSCAN_KEY = 'secret_test_local_placeholder_key';
const CERTISCAN_TOKEN = 'secret_test_local_certiscan_token';
/** The audience of the dev login's tokens unless the developer sets AUTH_AUDIENCE. */
export const LOCAL_AUDIENCE = 'cardscan-broker-local';
const STAFF_AUDIENCE = 'cardscan-broker-local-staff';
/** The broker's AUTH_COOKIE_NAME in local mode, for the demo page's cookie variant. */
export const LOCAL_COOKIE_NAME = 'cardscan_login';

export interface LocalStackOptions {
  /** Broker port; 0 picks a free one. */
  port: number;
  /** Demo page port; 0 picks a free one. */
  demoPort: number;
  logLevel: string;
  /** Where the broker's log lines go; stdout when absent. */
  logDestination?: DestinationStream;
  /** Process-wide metrics (CPU, memory); on for `npm run local`. */
  defaultMetrics?: boolean;
  /**
   * More broker variables, e.g. a lower RATE_LIMIT_PER_MINUTE for a test. CORS_ORIGINS adds
   * origins to the demo page's, and the dev login mints its tokens for the first AUTH_AUDIENCE.
   */
  env?: Record<string, string>;
}

export interface LocalStack {
  brokerUrl: string;
  /** The demo page; its origin is the only one in the broker's CORS_ORIGINS. */
  demoUrl: string;
  pageConfig: DemoPageConfig;
  /** The `patients` provider: its users keep bare ids (empty prefix), as with one provider. */
  idp: IdentityProvider;
  /** The `staff` provider: its users' ids start with `staff:`. */
  staffIdp: IdentityProvider;
  cardscan: CardscanStandIn;
  /** The CertiScan stand-in's API base. */
  certiscanUrl: string;
  /** The placeholder credentials the stand-ins accept: not secrets, the same on every run. */
  placeholders: { cardscanApiKey: string; certiscanAuthToken: string };
  /** The broker's configuration as local mode built it (origins, audience, rate limit…). */
  config: Config;
  /** A fresh admin key for this run only. */
  adminKey: string;
  close(): Promise<void>;
}

export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  const { CORS_ORIGINS: extraOrigins, AUTH_AUDIENCE: audienceSetting, ...env } = options.env ?? {};
  // AUTH_AUDIENCE, as a developer knows it, is the patients provider's audience here.
  const audience = audienceSetting?.trim() || LOCAL_AUDIENCE;
  const idp = await startIdentityProvider({ audience: audience.split(',')[0]?.trim() });
  const staffIdp = await startIdentityProvider({ audience: STAFF_AUDIENCE });
  const cardscan = await startCardscanStandIn({ apiKey: CARDSCAN_KEY });
  const certiscan = await startCertiscanStandIn({ authToken: CERTISCAN_TOKEN });
  const admin = createAdminKey('local-ops');
  const pageConfig: DemoPageConfig = {
    brokerUrl: '',
    identityProviderUrl: idp.issuer,
    staffIdentityProviderUrl: staffIdp.issuer,
    cookieName: LOCAL_COOKIE_NAME,
  };
  // First the page's server, because its origin goes into the broker's CORS_ORIGINS.
  const demo = await startDemoServer({ pageConfig: () => pageConfig, port: options.demoPort });

  const standIns = [demo, idp, staffIdp, cardscan, certiscan];
  let config: Config;
  try {
    ({ config } = loadConfig({
      PORT: String(options.port),
      HOST: '127.0.0.1',
      CARDSCAN_API_KEY: CARDSCAN_KEY,
      CARDSCAN_BASE_URL: cardscan.baseUrl,
      // Two identity providers, as a deployment with a patient app and a clinician app has them.
      AUTH_PROVIDERS: 'patients,staff',
      AUTH_PATIENTS_ISSUER: idp.issuer,
      AUTH_PATIENTS_AUDIENCE: audience,
      AUTH_PATIENTS_USER_ID_PREFIX: '',
      AUTH_STAFF_ISSUER: staffIdp.issuer,
      AUTH_STAFF_AUDIENCE: STAFF_AUDIENCE,
      AUTH_COOKIE_NAME: LOCAL_COOKIE_NAME,
      // The demo page must keep working whatever else a developer lets in.
      CORS_ORIGINS: [demo.origin, extraOrigins].filter(Boolean).join(','),
      ADMIN_API_KEYS: admin.entry,
      CERTISCAN_BASE_URL: certiscan.baseUrl,
      CERTISCAN_AUTH_TOKEN: CERTISCAN_TOKEN,
      SHUTDOWN_DELAY_MS: '0',
      SHUTDOWN_TIMEOUT_MS: '3000',
      LOG_LEVEL: options.logLevel,
      ...env,
    }));
  } catch (error) {
    await Promise.all(standIns.map((standIn) => standIn.close()));
    throw error;
  }
  const logger = createLogger(config.logLevel, options.logDestination);
  const broker = createBroker(config, { logger, defaultMetrics: options.defaultMetrics });
  const running = await startListeners(broker.listeners, logger);
  await broker.keys.warmUp();
  pageConfig.brokerUrl = running.urls.public ?? '';

  return {
    brokerUrl: pageConfig.brokerUrl,
    demoUrl: `${demo.origin}/`,
    pageConfig,
    idp,
    staffIdp,
    cardscan,
    certiscanUrl: certiscan.baseUrl,
    placeholders: { cardscanApiKey: CARDSCAN_KEY, certiscanAuthToken: CERTISCAN_TOKEN },
    config,
    adminKey: admin.key,
    close: async () => {
      await running.shutdown({ delayMs: 0, timeoutMs: 3000, startDraining: broker.startDraining });
      await broker.close();
      await Promise.all(standIns.map((standIn) => standIn.close()));
    },
  };
}

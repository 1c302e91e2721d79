/**
 * `npm run local`: the broker with built-in stand-ins for Cardscan, CertiScan and the identity
 * provider, all on 127.0.0.1, so it runs with no accounts. Prints ready-to-paste curl lines.
 */
import { createBroker } from '../src/broker';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/http/logger';
import { startListeners } from '../src/lifecycle';
import { startCardscanStandIn } from '../test/stand-ins/cardscan';
import { startCertiscanStandIn } from '../test/stand-ins/certiscan';
import { startIdentityProvider } from '../test/stand-ins/identity-provider';
import { createAdminKey } from './admin-key';

const CARDSCAN_KEY = 'secret_test_local_placeholder_key';
const CERTISCAN_TOKEN = 'secret_test_local_certiscan_token';
const AUDIENCE = 'cardscan-broker-local';

async function main(): Promise<void> {
  const port = Number(process.env.PORT ?? 8080);
  const idp = await startIdentityProvider({ audience: AUDIENCE });
  const cardscan = await startCardscanStandIn({ apiKey: CARDSCAN_KEY });
  const certiscan = await startCertiscanStandIn({ authToken: CERTISCAN_TOKEN });
  const admin = createAdminKey('local-ops');

  const { config } = loadConfig({
    PORT: String(port),
    HOST: '127.0.0.1',
    CARDSCAN_API_KEY: CARDSCAN_KEY,
    CARDSCAN_BASE_URL: cardscan.baseUrl,
    AUTH_ISSUER: idp.issuer,
    AUTH_AUDIENCE: AUDIENCE,
    ADMIN_API_KEYS: admin.entry,
    CERTISCAN_BASE_URL: certiscan.baseUrl,
    CERTISCAN_AUTH_TOKEN: CERTISCAN_TOKEN,
    SHUTDOWN_DELAY_MS: '0',
    SHUTDOWN_TIMEOUT_MS: '3000',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
  });
  const logger = createLogger(config.logLevel);
  const broker = createBroker(config, { logger, defaultMetrics: true });
  const running = await startListeners(broker.listeners, logger);
  await broker.keys.warmUp();

  const url = running.urls.public;
  const userToken = idp.sign({ sub: 'patient-1' }, { expiresIn: 3600 });
  process.stdout.write(
    [
      '',
      `cardscan-broker (local stand-ins) listening on ${url}`,
      `  identity provider: ${idp.issuer}   (POST ${idp.issuer}/dev/login '{"sub":"…"}' for another user)`,
      '',
      'A session for patient-1 (the login token is valid for 1 hour):',
      `  curl -s -H 'Authorization: Bearer ${userToken}' ${url}/cardscan-session`,
      '',
      'Admin routes, with a key for this run only (the README section "Admin routes for ops" has',
      'curl lines for create, rename, rotate and delete that use these two variables):',
      `  export BROKER=${url} ADMIN_KEY=${admin.key}`,
      `  curl -s -X POST "$BROKER/admin/worktokens" -H "Authorization: Bearer $ADMIN_KEY" \\`,
      `       -H 'Content-Type: application/json' -d '{"name":"Front desk scanner","subject":"front-desk-1"}'`,
      '',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );

  const stop = async () => {
    await running.shutdown({ delayMs: 0, timeoutMs: 3000, startDraining: broker.startDraining });
    await broker.close();
    await Promise.all([idp.close(), cardscan.close(), certiscan.close()]);
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

void main();

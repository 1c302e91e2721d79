/**
 * `npm run local`: the broker with built-in stand-ins for Cardscan, CertiScan and two identity
 * providers, and the demo page for web apps on its own origin, all on 127.0.0.1, so it runs with no
 * accounts. Prints what it started and ready-to-paste curl lines.
 */
import { ConfigError } from '../src/config/config';
import { startLocalStack, type LocalStack, type LocalStackOptions } from './local-stack';
import { startSpanPrinter } from './print-spans';

/**
 * The broker variables a developer sets to try their own app against local mode. Everything
 * else is fixed, and no `.env` is read: a production `.env` must not leak real keys into it.
 */
export const LOCAL_VARIABLES = ['CORS_ORIGINS', 'AUTH_AUDIENCE', 'RATE_LIMIT_PER_MINUTE'] as const;

export function localOptions(env: Record<string, string | undefined>): LocalStackOptions {
  const brokerEnv: Record<string, string> = {};
  for (const name of LOCAL_VARIABLES) {
    const value = env[name]?.trim();
    if (value) brokerEnv[name] = value;
  }
  // The standard OTEL_* variables reach the local broker as they would reach a deployed one.
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith('OTEL_') && value) brokerEnv[name] = value;
  }
  return {
    port: Number(env.PORT || 8080),
    demoPort: Number(env.DEMO_PORT || 8081),
    logLevel: env.LOG_LEVEL || 'info',
    defaultMetrics: true,
    env: brokerEnv,
  };
}

/** What `npm run local` prints: every address, the placeholder credentials, the settings in force. */
export function describeLocalStack(
  stack: LocalStack,
  userToken: string,
  staffToken: string,
): string {
  const { brokerUrl: url, idp, staffIdp, config } = stack;
  const [patients, staff] = config.auth.providers ?? [];
  const audience = patients?.audience ?? [];
  return [
    '',
    `cardscan-broker (local stand-ins) listening on ${url}`,
    '',
    'Stand-ins on 127.0.0.1 (placeholder credentials, the same on every run, not secrets):',
    `  Cardscan            ${stack.cardscan.baseUrl}   CARDSCAN_API_KEY=${stack.placeholders.cardscanApiKey}`,
    `  CertiScan           ${stack.certiscanUrl}   CERTISCAN_AUTH_TOKEN=${stack.placeholders.certiscanAuthToken}`,
    'Identity providers (AUTH_PROVIDERS=patients,staff):',
    `  patients            ${idp.issuer}   (issuer; keys at ${idp.jwksUri}; user ids as they are: patient-1)`,
    `  staff               ${staffIdp.issuer}   (issuer; audience ${staff?.audience.join(',')}; user ids prefixed: staff:nurse-1)`,
    '',
    'Settings (set these variables before npm run local to change them):',
    `  CORS_ORIGINS=${config.cors.origins.join(',')}   (the demo page's origin is always included)`,
    `  AUTH_AUDIENCE=${audience.join(',')}   (the patients provider's; its dev login mints tokens for ${audience[0]})`,
    `  RATE_LIMIT_PER_MINUTE=${config.rateLimit.perMinute}   LOG_LEVEL=${config.logLevel}   PORT, DEMO_PORT`,
    '',
    `Demo page for web apps (its own origin): ${stack.demoUrl}`,
    '',
    'A session for patient-1 of the patients provider (the login token is valid for 1 hour):',
    `  curl -s -H 'Authorization: Bearer ${userToken}' ${url}/cardscan-session`,
    'A session for nurse-1 of the staff provider:',
    `  curl -s -H 'Authorization: Bearer ${staffToken}' ${url}/cardscan-session`,
    'A token for another user, or for another audience (the broker refuses one it does not expect):',
    `  curl -s -X POST ${idp.issuer}/dev/login -H 'Content-Type: application/json' -d '{"sub":"patient-2"}'`,
    `  curl -s -X POST ${idp.issuer}/dev/login -H 'Content-Type: application/json' -d '{"sub":"patient-2","aud":"other-app"}'`,
    '',
    'Admin routes, with a key for this run only (docs/admin.md has curl lines for create,',
    'rename, new secret and delete that use these two variables):',
    `  export BROKER=${url} ADMIN_KEY=${stack.adminKey}`,
    `  curl -s -X POST "$BROKER/admin/worktokens" \\`,
    `       -H @<(printf 'Authorization: Bearer %s\\n' "$ADMIN_KEY") \\`,
    `       -H 'Content-Type: application/json' -d '{"name":"Front desk scanner","subject":"front-desk-1"}'`,
    '',
    'Ctrl-C stops everything.',
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const spans = process.argv.includes('--print-spans')
    ? await startSpanPrinter((text) => process.stdout.write(text))
    : undefined;
  const options = localOptions(process.env);
  let stack: LocalStack;
  try {
    stack = await startLocalStack({ ...options, env: { ...options.env, ...spans?.env } });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(
        `npm run local: invalid configuration\n${error.problems.map((p) => `  ${p}\n`).join('')}`,
      );
      process.exit(1);
    }
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      // Often an earlier npm run local still running in the background (see the README).
      process.stderr.write(
        `npm run local: ${(error as Error).message}: another process holds that port; stop it, or set PORT and DEMO_PORT to free ones\n`,
      );
      process.exit(1);
    }
    throw error;
  }
  const userToken = stack.idp.sign({ sub: 'patient-1' }, { expiresIn: 3600 });
  const staffToken = stack.staffIdp.sign({ sub: 'nurse-1' }, { expiresIn: 3600 });
  process.stdout.write(describeLocalStack(stack, userToken, staffToken));

  const stop = async () => {
    await stack.close();
    await spans?.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

if (require.main === module) void main();

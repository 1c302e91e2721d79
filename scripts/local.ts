/**
 * `npm run local`: the broker with built-in stand-ins for Cardscan, CertiScan and two identity
 * providers, and the demo page for web apps on its own origin, all on 127.0.0.1, so it runs with no
 * accounts. Prints the demo page's address and ready-to-paste curl lines.
 */
import { startLocalStack } from './local-stack';

async function main(): Promise<void> {
  const stack = await startLocalStack({
    port: Number(process.env.PORT ?? 8080),
    demoPort: Number(process.env.DEMO_PORT ?? 8081),
    logLevel: process.env.LOG_LEVEL ?? 'info',
    defaultMetrics: true,
  });
  const { brokerUrl: url, idp, staffIdp, adminKey } = stack;
  const userToken = idp.sign({ sub: 'patient-1' }, { expiresIn: 3600 });
  const staffToken = staffIdp.sign({ sub: 'nurse-1' }, { expiresIn: 3600 });
  process.stdout.write(
    [
      '',
      `cardscan-broker (local stand-ins) listening on ${url}`,
      `  identity providers (AUTH_PROVIDERS=patients,staff; POST <provider>/dev/login '{"sub":"…"}' for another user):`,
      `    patients: ${idp.issuer}   (user ids as they are: patient-1)`,
      `    staff:    ${staffIdp.issuer}   (user ids prefixed: staff:nurse-1)`,
      '',
      `Demo page for web apps (its own origin, the one in CORS_ORIGINS): ${stack.demoUrl}`,
      '',
      'A session for patient-1 of the patients provider (the login token is valid for 1 hour):',
      `  curl -s -H 'Authorization: Bearer ${userToken}' ${url}/cardscan-session`,
      'A session for nurse-1 of the staff provider:',
      `  curl -s -H 'Authorization: Bearer ${staffToken}' ${url}/cardscan-session`,
      '',
      'Admin routes, with a key for this run only (the README section "Admin routes for ops" has',
      'curl lines for create, rename, rotate and delete that use these two variables):',
      `  export BROKER=${url} ADMIN_KEY=${adminKey}`,
      `  curl -s -X POST "$BROKER/admin/worktokens" -H "Authorization: Bearer $ADMIN_KEY" \\`,
      `       -H 'Content-Type: application/json' -d '{"name":"Front desk scanner","subject":"front-desk-1"}'`,
      '',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );

  const stop = async () => {
    await stack.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

void main();

/**
 * The last step of `npm run build`: starts the built broker once, with the Node flags of `npm start`
 * and placeholder settings, on 127.0.0.1, in JWKS mode against a key set served here; waits until
 * /readyz answers 200 (so the signing keys were fetched and jwks-rsa ran), then stops it. On exit
 * the launcher writes dist/broker.js.v8cache (src/launch.ts, --write-code-cache).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNodeFlags } from './start-command';

const ROOT = path.resolve(__dirname, '..');
const CACHE = path.join(ROOT, 'dist/broker.js.v8cache');
const DEADLINE_MS = 30_000;

async function main(): Promise<void> {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'build', use: 'sig', alg: 'RS256' };
  const jwks = createServer((_req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  jwks.listen(0, '127.0.0.1');
  await once(jwks, 'listening');
  const jwksPort = (jwks.address() as AddressInfo).port;

  const child = spawn(
    process.execPath,
    [...startNodeFlags(), 'dist/server.js', '--write-code-cache'],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: '0',
        LOG_LEVEL: 'info',
        CARDSCAN_API_KEY: 'secret_test_build_placeholder',
        AUTH_JWKS_URI: `http://127.0.0.1:${jwksPort}/jwks`,
        AUTH_ISSUER: 'https://build.invalid/',
        AUTH_AUDIENCE: 'cardscan-broker-build',
        SHUTDOWN_DELAY_MS: '0',
      },
    },
  );
  const output: string[] = [];
  let publicUrl: string | undefined;
  createInterface({ input: child.stderr }).on('line', (line) => output.push(line));
  createInterface({ input: child.stdout }).on('line', (line) => {
    output.push(line);
    try {
      publicUrl ??= (JSON.parse(line) as { urls?: { public?: string } }).urls?.public;
    } catch {
      // Not a log line; it is kept in the output for the error message.
    }
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);

  try {
    const deadline = Date.now() + DEADLINE_MS;
    while (!(publicUrl && (await isReady(publicUrl)))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`the broker did not become ready:\n${output.join('\n')}`);
      }
      await sleep(20);
    }
    child.kill('SIGTERM');
    const code = await exited;
    if (code !== 0 || !existsSync(CACHE)) {
      throw new Error(`the broker exited ${code} without a code cache:\n${output.join('\n')}`);
    }
    process.stdout.write(`code cache: ${(statSync(CACHE).size / 1e6).toFixed(1)} MB\n`);
  } finally {
    child.kill('SIGKILL');
    jwks.close();
  }
}

async function isReady(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
    return response.status === 200;
  } catch {
    return false;
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`build-code-cache: ${error instanceof Error ? error.message : error}\n`);
  process.exit(1);
});

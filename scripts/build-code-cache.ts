/**
 * The last step of `npm run build`: starts the built broker with the Node flags of `npm start` and
 * placeholder settings, on 127.0.0.1, in JWKS mode against a key set served here; waits until
 * /readyz answers 200 (so the signing keys were fetched and jwks-rsa ran), then stops it. On exit
 * the launcher writes dist/broker.js.v8cache (src/launch.ts, --write-code-cache). A second start
 * checks that the broker uses it.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNodeFlags } from './start-command';

const ENTRY = path.resolve(__dirname, '../dist/server.js');
const STEP_DEADLINE_MS = 30_000;

async function main(): Promise<void> {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'build', use: 'sig', alg: 'RS256' };
  const jwks = createServer((_req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  jwks.listen(0, '127.0.0.1');
  await once(jwks, 'listening');
  // An empty working directory: the broker reads .env from it, and a developer's .env must not
  // change (or break) the build.
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'cardscan-build-'));
  try {
    const jwksUri = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`;
    await startAndStop(cwd, jwksUri, ['--write-code-cache']);
    const output = await startAndStop(cwd, jwksUri, []);
    const notice = output.find((line) => line.includes('v8cache'));
    if (notice) throw new Error(`the broker does not use the cache just written: ${notice}`);
    process.stdout.write('code cache written and used\n');
  } finally {
    jwks.close();
    rmSync(cwd, { recursive: true, force: true });
  }
}

/** Starts dist/server.js, waits until it is ready, SIGTERMs it; its output if it exited 0. */
async function startAndStop(cwd: string, jwksUri: string, args: string[]): Promise<string[]> {
  const child = spawn(process.execPath, [...startNodeFlags(), ENTRY, ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      CARDSCAN_API_KEY: 'secret_test_build_placeholder',
      AUTH_JWKS_URI: jwksUri,
      AUTH_ISSUER: 'https://build.invalid/',
      AUTH_AUDIENCE: 'cardscan-broker-build',
      SHUTDOWN_DELAY_MS: '0',
      SHUTDOWN_TIMEOUT_MS: '5000',
    },
  });
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
  const deadline = Date.now() + STEP_DEADLINE_MS;
  try {
    while (!(publicUrl && (await isReady(publicUrl)))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`the broker did not become ready:\n${output.join('\n')}`);
      }
      await sleep(20);
    }
    child.kill('SIGTERM');
    const timeout = sleep(deadline - Date.now(), 'timeout' as const, { ref: false });
    const code = await Promise.race([exited, timeout]);
    if (code !== 0) throw new Error(`the broker exited ${code} on SIGTERM:\n${output.join('\n')}`);
    return output;
  } finally {
    child.kill('SIGKILL');
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

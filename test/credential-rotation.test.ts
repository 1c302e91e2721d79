import http from 'node:http';
import {
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createAdminKey, type NewAdminKey } from '../scripts/admin-key';
import { BearerCredential } from '../src/config/credential-watcher';
import { createLogger } from '../src/observability/logger';
import { createMetrics } from '../src/observability/metrics';
import { createCardscanClient } from '../src/upstream/cardscan';
import { createUpstreamClient } from '../src/upstream/upstream-client';
import { spawnBroker, type BrokerProcess } from './helpers/broker-process';
import { AUDIENCE } from './helpers/harness';
import { codeOf } from './helpers/http-get';
import { SecretVolume } from './helpers/secret-volume';
import { startCardscanStandIn, type CardscanStandIn } from './stand-ins/cardscan';
import { startCertiscanStandIn, type CertiscanStandIn } from './stand-ins/certiscan';
import { startIdentityProvider, type IdentityProvider } from './stand-ins/identity-provider';
import type { StandIn } from './stand-ins/stand-in-server';

/**
 * Credential rotation drills against the real server process (src/server.ts): real files in a temp
 * directory, changed the ways operators and the kubelet change them, real signals, and the
 * stand-ins recording which credential each upstream call carried. Every wait has a deadline.
 */

/** Placeholders in the vendors' formats; none is a real credential. */
const KEYS = [1, 2, 3, 4].map((n) => `secret_test_rotation_cardscan_key_000${n}`);
const TOKENS = [1, 2, 3].map((n) => `secret_test_rotation_certiscan_token_000${n}`);
const SUBJECT = 'rotation-drill';
/** The contract: a changed file is in use within 10 s. */
const ROTATION_DEADLINE_MS = 10_000;

let idp: IdentityProvider;
let cardscan: CardscanStandIn;
let certiscan: CertiscanStandIn;
let dir: string;
let agent: http.Agent;
const processes: BrokerProcess[] = [];
/** Lines for the drill's summary, printed when ROTATION_DRILL_REPORT is set. */
const report: string[] = [];

beforeAll(async () => {
  idp = await startIdentityProvider({ audience: AUDIENCE });
  cardscan = await startCardscanStandIn({ apiKey: KEYS[0] as string });
  certiscan = await startCertiscanStandIn({ authToken: TOKENS[0] as string });
  agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
});
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'credential-rotation-'));
  // A vendor keeps the old credential valid while the new one rolls out.
  cardscan.acceptTokens(...KEYS);
  certiscan.acceptTokens(...TOKENS);
  cardscan.requests.length = 0;
  certiscan.requests.length = 0;
  certiscan.worktokens.set(SUBJECT, { name: 'Rotation drill', secret: 'secret_test_drill_0001' });
});
afterEach(async () => {
  await Promise.all(processes.splice(0).map((broker) => broker.stop()));
  rmSync(dir, { recursive: true, force: true });
});
afterAll(async () => {
  agent.destroy();
  await Promise.all([idp.close(), cardscan.close(), certiscan.close()]);
  if (process.env.ROTATION_DRILL_REPORT) process.stdout.write(`${report.join('\n')}\n`);
});

async function start(env: Record<string, string>): Promise<BrokerProcess> {
  const broker = await spawnBroker(
    {
      CARDSCAN_BASE_URL: cardscan.baseUrl,
      CERTISCAN_BASE_URL: certiscan.baseUrl,
      AUTH_JWKS_URI: idp.jwksUri,
      AUTH_ISSUER: idp.issuer,
      AUTH_AUDIENCE: AUDIENCE,
      RATE_LIMIT_PER_MINUTE: '1000000',
      UPSTREAM_TIMEOUT_MS: '4000',
      LOG_LEVEL: 'info',
      ...env,
    },
    { retain: (line) => !line.includes('"msg":"request completed"') },
  );
  processes.push(broker);
  return broker;
}

/** Writes a file in the test's directory (or below it) and returns its path. */
function file(name: string, content: string): string {
  const target = path.join(dir, name);
  mkdirSync(path.dirname(target), { recursive: true });
  writeFileSync(target, content);
  return target;
}

/** Replaces a file the safe way: a new file renamed over the old one. */
function renameOver(target: string, content: string): void {
  const tmp = `${target}.tmp-${process.hrtime.bigint()}`;
  writeFileSync(tmp, content);
  renameSync(tmp, target);
}

interface Answer {
  status: number;
  body: string;
}

function call(
  method: string,
  url: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: text ? { ...headers, 'Content-Type': 'application/json' } : headers,
        signal: AbortSignal.timeout(5000),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

const session = (broker: BrokerProcess, token: string) =>
  call('GET', `${broker.url}/cardscan-session`, { Authorization: `Bearer ${token}` });

const updateWorktoken = (broker: BrokerProcess, adminKey: string) =>
  call(
    'PUT',
    `${broker.url}/admin/worktokens/${SUBJECT}`,
    { Authorization: `Bearer ${adminKey}` },
    { name: 'Rotation drill' },
  );

async function waitFor(condition: () => boolean | Promise<boolean>, ms: number, what: string) {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`no ${what} within ${ms} ms`);
    await sleep(25);
  }
}

interface Stream {
  served(): number;
  /** Stops the stream and returns every request that did not get its expected status. */
  stop(): Promise<string[]>;
}

/**
 * A constant stream: three users asking for sessions and, with an admin key, one operator
 * updating a worktoken, each again and again until stopped.
 */
function startStream(broker: BrokerProcess, adminKey?: () => string): Stream {
  let running = true;
  let served = 0;
  const failures: string[] = [];
  const loop = async (label: string, send: () => Promise<Answer>) => {
    while (running) {
      try {
        const answer = await send();
        if (answer.status === 200) served++;
        else failures.push(`${label}: ${answer.status} ${answer.body.slice(0, 200)}`);
      } catch (error) {
        failures.push(`${label}: ${codeOf(error)}`);
      }
      await sleep(5);
    }
  };
  const users = [0, 1, 2].map((n) => idp.sign({ sub: `stream-user-${n}` }, { expiresIn: 600 }));
  const workers = users.map((token, n) => loop(`session ${n}`, () => session(broker, token)));
  if (adminKey) workers.push(loop('admin', () => updateWorktoken(broker, adminKey())));
  return {
    served: () => served,
    stop: async () => {
      running = false;
      await Promise.all(workers);
      return failures;
    },
  };
}

const authorizations = (standIn: StandIn, from = 0) =>
  standIn.requests.slice(from).map((request) => request.headers.authorization);

/**
 * Runs one change and waits until the upstream receives the new credential, then until every
 * call carries it. Returns the seconds from the change to the first call with it.
 */
async function rotate(
  label: string,
  standIn: StandIn,
  from: string,
  to: string,
  change: () => void,
): Promise<number> {
  const mark = standIn.requests.length;
  expect(mark).toBeGreaterThan(0);
  expect(authorizations(standIn).at(-1)).toBe(`Bearer ${from}`);
  const changedAt = performance.now();
  change();
  await waitFor(
    () => authorizations(standIn, mark).includes(`Bearer ${to}`),
    ROTATION_DEADLINE_MS,
    `${label}: upstream call with the new credential`,
  );
  const seconds = (performance.now() - changedAt) / 1000;
  const seen = standIn.requests.length;
  await waitFor(() => standIn.requests.length >= seen + 6, 5000, `${label}: more upstream calls`);
  expect(authorizations(standIn).slice(-3)).toEqual(Array(3).fill(`Bearer ${to}`));
  report.push(
    `${label}: upstream saw the old credential on ${authorizations(standIn, 0).filter((a) => a === `Bearer ${from}`).length} calls, ` +
      `the new one ${seconds.toFixed(2)} s after the change`,
  );
  return seconds;
}

type LogEntry = Record<string, unknown> & { msg?: string; level?: string };

function entries(broker: BrokerProcess): LogEntry[] {
  return broker.output.flatMap((line) => {
    try {
      return [JSON.parse(line) as LogEntry];
    } catch {
      return [];
    }
  });
}

/** The rotation log lines (applied or refused) about one variable. */
const rotationLines = (broker: BrokerProcess, variable: string) =>
  entries(broker).filter(
    (entry) => entry.variable === variable && entry.msg?.startsWith('credential rotation:'),
  );

async function metrics(broker: BrokerProcess): Promise<string> {
  const answer = await call('GET', `${broker.url}/metrics`, {});
  expect(answer.status).toBe(200);
  return answer.body;
}

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((each) => each.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const reloads = (variable: string, outcome: string) =>
  `credential_reloads_total{variable="${variable}",outcome="${outcome}"}`;

/** No key, token or admin key of the drill may reach the process output. */
function expectNoSecrets(broker: BrokerProcess, admins: NewAdminKey[] = []): void {
  const output = broker.output.join('\n');
  for (const secret of [...KEYS, ...TOKENS, ...admins.map((admin) => admin.key)]) {
    expect(output).not.toContain(secret);
  }
}

test('when the Cardscan key, the CertiScan token and the admin keys are rotated by a rewrite, a rename and ..data swaps under a constant stream of session and admin requests, then each new credential is in use within 10 s, in the same process, with zero failed requests', async () => {
  const alice = createAdminKey('alice');
  const bob = createAdminKey('bob');
  const keyFile = file('cardscan/api-key', `${KEYS[0]}\n`);
  const volume = new SecretVolume(path.join(dir, 'admin-secret'));
  volume.write({ 'certiscan-auth-token': `${TOKENS[0]}\n`, 'admin-api-keys': `${alice.entry}\n` });
  const startedAt = Date.now() / 1000;
  const broker = await start({
    CARDSCAN_API_KEY_FILE: keyFile,
    CERTISCAN_AUTH_TOKEN_FILE: volume.pathOf('certiscan-auth-token'),
    ADMIN_API_KEYS_FILE: volume.pathOf('admin-api-keys'),
  });
  const pid = broker.child.pid;

  const stream = startStream(broker, () => alice.key);
  await waitFor(() => stream.served() >= 10, 10_000, 'requests served before the rotations');

  const seconds = [
    await rotate('Cardscan key, file rewritten in place', cardscan, KEYS[0]!, KEYS[1]!, () =>
      writeFileSync(keyFile, `${KEYS[1]}\n`),
    ),
    await rotate('Cardscan key, new file renamed over it', cardscan, KEYS[1]!, KEYS[2]!, () =>
      renameOver(keyFile, `${KEYS[2]}\n`),
    ),
    await rotate('CertiScan token, kubelet ..data swap', certiscan, TOKENS[0]!, TOKENS[1]!, () =>
      volume.write({
        'certiscan-auth-token': `${TOKENS[1]}\n`,
        'admin-api-keys': `${alice.entry}\n`,
      }),
    ),
  ];

  // A staff key added by the next swap works within 10 s, while alice's stream goes on.
  const addedAt = performance.now();
  volume.write({
    'certiscan-auth-token': `${TOKENS[1]}\n`,
    'admin-api-keys': `${alice.entry}\n${bob.entry}\n`,
  });
  await waitFor(
    async () => (await updateWorktoken(broker, bob.key)).status === 200,
    ROTATION_DEADLINE_MS,
    "bob's admin key accepted",
  );
  report.push(
    `Admin keys, kubelet ..data swap adding bob: accepted ${((performance.now() - addedAt) / 1000).toFixed(2)} s after the change`,
  );

  const served = stream.served();
  const failures = await stream.stop();
  report.push(`stream: ${served} requests served across the rotations, ${failures.length} failed`);
  expect(failures).toEqual([]);
  for (const each of seconds) expect(each).toBeLessThan(ROTATION_DEADLINE_MS / 1000);
  expect(broker.child.pid).toBe(pid);
  expect(broker.child.exitCode).toBeNull();

  const text = await metrics(broker);
  expect(metric(text, reloads('CARDSCAN_API_KEY', 'applied'))).toBe(2);
  expect(metric(text, reloads('CERTISCAN_AUTH_TOKEN', 'applied'))).toBe(1);
  expect(metric(text, reloads('ADMIN_API_KEYS', 'applied'))).toBe(1);
  for (const variable of ['CARDSCAN_API_KEY', 'CERTISCAN_AUTH_TOKEN', 'ADMIN_API_KEYS']) {
    expect(metric(text, reloads(variable, 'refused'))).toBe(0);
    const loaded = metric(text, `credential_loaded_timestamp_seconds{variable="${variable}"}`);
    expect(loaded).toBeGreaterThanOrEqual(startedAt);
    expect(loaded).toBeLessThanOrEqual(Date.now() / 1000);
  }
  expect(rotationLines(broker, 'CARDSCAN_API_KEY')).toEqual([
    expect.objectContaining({ level: 'info', file: keyFile }),
    expect.objectContaining({ level: 'info', file: keyFile }),
  ]);
  expectNoSecrets(broker, [alice, bob]);
}, 60_000);

test('when SIGHUP arrives, then a change that no directory event reports is applied at once', async () => {
  // The file is a symlink into a directory the broker does not watch: only SIGHUP (or the
  // periodic check, seconds later) can see the target change.
  const target = file('elsewhere/api-key', `${KEYS[0]}\n`);
  const link = path.join(dir, 'watched', 'api-key');
  mkdirSync(path.dirname(link));
  symlinkSync(target, link);
  const broker = await start({ CARDSCAN_API_KEY_FILE: link });
  const user = idp.sign({ sub: 'sighup-user' });
  expect((await session(broker, user)).status).toBe(200);
  expect(authorizations(cardscan).at(-1)).toBe(`Bearer ${KEYS[0]}`);

  // The periodic check may, rarely, read the file between the change and the signal; then the
  // drill runs once more with the next key.
  let applied: LogEntry | undefined;
  for (const key of [KEYS[1]!, KEYS[2]!]) {
    const before = rotationLines(broker, 'CARDSCAN_API_KEY').length;
    const signalledAt = performance.now();
    renameOver(target, `${key}\n`);
    process.kill(broker.child.pid!, 'SIGHUP');
    await waitFor(
      () => rotationLines(broker, 'CARDSCAN_API_KEY').length > before,
      2000,
      'rotation after SIGHUP',
    );
    applied = rotationLines(broker, 'CARDSCAN_API_KEY').at(-1);
    report.push(
      `SIGHUP: new Cardscan key in use ${((performance.now() - signalledAt) / 1000).toFixed(2)} s after the signal (trigger ${String(applied?.trigger)})`,
    );
    if (applied?.trigger === 'SIGHUP') {
      expect((await session(broker, user)).status).toBe(200);
      expect(authorizations(cardscan).at(-1)).toBe(`Bearer ${key}`);
      break;
    }
  }
  expect(applied).toMatchObject({ level: 'info', trigger: 'SIGHUP' });
  expect(broker.child.exitCode).toBeNull();
  expectNoSecrets(broker);
});

test('when SIGHUP arrives and no credential comes from a file, then the broker keeps serving and says there is nothing to reload', async () => {
  const broker = await start({ CARDSCAN_API_KEY: KEYS[0]! });
  process.kill(broker.child.pid!, 'SIGHUP');
  await broker.logged('SIGHUP: no credential is read from a file; nothing to reload');
  expect((await session(broker, idp.sign({ sub: 'no-files' }))).status).toBe(200);
  expect(broker.child.exitCode).toBeNull();
});

test('when a new value does not validate or the file cannot be read, then it is refused: the old value stays in use, one error line names the variable (never the value), and the refusal is counted', async () => {
  const keyFile = file('cardscan/api-key', `${KEYS[0]}\n`);
  const broker = await start({ CARDSCAN_API_KEY_FILE: keyFile });
  const user = idp.sign({ sub: 'refused-user' });
  const refusals = () =>
    rotationLines(broker, 'CARDSCAN_API_KEY').filter((entry) => entry.level === 'error');

  const refused = [
    ['sk_live_cardscan_ai_other_mode_0001', /a live key cannot replace the test key/],
    ['pk_without_a_known_prefix_0001', /CARDSCAN_API_KEY: has no known prefix/],
  ] as const;
  for (const [value, problem] of refused) {
    const before = refusals().length;
    renameOver(keyFile, `${value}\n`);
    await waitFor(() => refusals().length > before, ROTATION_DEADLINE_MS, 'refusal line');
    expect(refusals().at(-1)?.msg).toMatch(problem);
    expect(refusals().at(-1)?.msg).toMatch(/^credential rotation: the new CARDSCAN_API_KEY/);
    expect((await session(broker, user)).status).toBe(200);
    expect(authorizations(cardscan).at(-1)).toBe(`Bearer ${KEYS[0]}`);
    expect(broker.output.join('\n')).not.toContain(value);
  }

  // Read again (SIGHUP) but unchanged: no second line for the same refused value.
  process.kill(broker.child.pid!, 'SIGHUP');
  await broker.logged('SIGHUP: credential files read again');
  expect(refusals()).toHaveLength(2);

  unlinkSync(keyFile);
  await waitFor(() => refusals().length > 2, ROTATION_DEADLINE_MS, 'refusal of a missing file');
  expect(refusals().at(-1)?.msg).toContain(
    `CARDSCAN_API_KEY_FILE: the file ${keyFile} cannot be read (ENOENT)`,
  );
  expect((await session(broker, user)).status).toBe(200);

  const text = await metrics(broker);
  expect(metric(text, reloads('CARDSCAN_API_KEY', 'refused'))).toBe(3);
  expect(metric(text, reloads('CARDSCAN_API_KEY', 'applied'))).toBe(0);
  expect(refusals()).toHaveLength(3);
  expectNoSecrets(broker);
});

test('when the upstream refuses a credential that came from a file, then the error line names the file to fix', async () => {
  const keyFile = file('cardscan/api-key', `${KEYS[3]}\n`);
  const broker = await start({ CARDSCAN_API_KEY_FILE: keyFile });
  cardscan.acceptTokens(KEYS[0]!);
  const answer = await session(broker, idp.sign({ sub: 'expired-key-user' }));
  expect(answer.status).toBe(502);
  await waitFor(
    () => entries(broker).some((entry) => entry.failure === 'credentials'),
    5000,
    'the credentials error line',
  );
  const line = entries(broker).find((entry) => entry.failure === 'credentials');
  expect(line).toMatchObject({ level: 'error' });
  expect(line?.msg).toBe(
    `Cardscan refused the broker's credentials (401): check CARDSCAN_API_KEY_FILE (${keyFile})`,
  );
  expectNoSecrets(broker);
});

test('when an admin key is removed from ADMIN_API_KEYS_FILE, then it stops working at the next request after the reload, while the other keys and the stream go on', async () => {
  const alice = createAdminKey('alice');
  const bob = createAdminKey('bob');
  const keysFile = file('admin/keys', `${alice.entry}\n${bob.entry}\n`);
  const broker = await start({
    CARDSCAN_API_KEY: KEYS[0]!,
    CERTISCAN_AUTH_TOKEN: TOKENS[0]!,
    ADMIN_API_KEYS_FILE: keysFile,
  });
  expect((await updateWorktoken(broker, bob.key)).status).toBe(200);
  const stream = startStream(broker, () => alice.key);
  await waitFor(() => stream.served() >= 10, 10_000, 'requests served before the rotation');

  renameOver(keysFile, `${alice.entry}\n`);
  await waitFor(
    () => rotationLines(broker, 'ADMIN_API_KEYS').length > 0,
    ROTATION_DEADLINE_MS,
    'the admin keys applied',
  );
  const refusedBob = await updateWorktoken(broker, bob.key);
  expect(refusedBob.status).toBe(401);
  expect(refusedBob.body).toContain('the admin key is not valid');
  expect((await updateWorktoken(broker, alice.key)).status).toBe(200);
  expect(await stream.stop()).toEqual([]);
  expectNoSecrets(broker, [alice, bob]);
});

describe('a call in flight during a rotation', () => {
  test('when the credential changes between a call and its retry, then every attempt of that call carries the credential it started with, and the next call the new one', async () => {
    const credential = new BearerCredential('CARDSCAN_API_KEY', KEYS[0]!, undefined);
    const client = createUpstreamClient({
      name: 'cardscan',
      label: 'Cardscan',
      baseUrl: cardscan.baseUrl,
      credential,
      timeoutMs: 4000,
      metrics: createMetrics(),
      logger: createLogger('silent'),
    });
    const accessToken = (user: string) =>
      createCardscanClient(client).getAccessToken(user, `rotation-${user}`);
    try {
      // The first attempt fails slowly, so the rotation lands before the retry.
      cardscan.setDelay(300);
      cardscan.queue('server-error');
      const inFlight = accessToken('in-flight-user');
      await waitFor(() => cardscan.requests.length === 1, 2000, 'the first attempt');
      credential.replace(KEYS[1]!);
      await inFlight;
      expect(authorizations(cardscan)).toEqual([`Bearer ${KEYS[0]}`, `Bearer ${KEYS[0]}`]);

      await accessToken('next-user');
      expect(authorizations(cardscan, 2)).toEqual([`Bearer ${KEYS[1]}`]);
    } finally {
      cardscan.setDelay(0);
      client.close();
    }
  });
});

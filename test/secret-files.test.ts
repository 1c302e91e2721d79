import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CONFIG_VARIABLES, loadConfig, SECRET_VARIABLES } from '../src/config/config';
import {
  MAX_SECRET_FILE_BYTES,
  readSecretFile,
  resolveSecretFiles,
} from '../src/config/secret-files';
import { problemsOf } from './helpers/config-problems';

const HMAC = 'secret_test_hmac_placeholder_0123456789abcdef';
const KEY = 'sk_test_cardscan_ai_placeholder_from_file';
const TOKEN = 'secret_test_certiscan_token_from_file';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'secret-files-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a file in the test's directory and returns its path. */
function file(name: string, content: string | Buffer): string {
  const target = path.join(dir, name);
  writeFileSync(target, content, { mode: 0o600 });
  return target;
}

const hashOf = (key: string) => createHash('sha256').update(key).digest('hex');

describe('secrets given as files', () => {
  test('when every secret variable is given as X_FILE, then each value is its file with one trailing newline dropped, and the files are remembered', () => {
    const files = {
      CARDSCAN_API_KEY_FILE: file('cardscan', `${KEY}\n`),
      CERTISCAN_AUTH_TOKEN_FILE: file('certiscan', `Bearer ${TOKEN}\r\n`),
      ADMIN_API_KEYS_FILE: file(
        'admin',
        `alice:${hashOf('adm_alice')}\nbob:${hashOf('adm_bob')},\ncarol:${hashOf('adm_carol')}\n`,
      ),
      AUTH_JWT_SECRET_FILE: file('hmac', HMAC),
      USER_ID_HASH_SECRET_FILE: file('user-id', `${HMAC}_user_ids\n`),
      REDIS_URL_FILE: file('redis', 'redis://:secret_test_password@127.0.0.1:6399\n'),
    };
    const { config } = loadConfig(files);
    expect(config.cardscan).toMatchObject({ apiKey: KEY, keyKind: 'test' });
    expect(config.certiscan.authToken).toBe(TOKEN);
    expect(config.admin?.keys.map((key) => key.name)).toEqual(['alice', 'bob', 'carol']);
    expect(config.admin?.keys[1]?.sha256.toString('hex')).toBe(hashOf('adm_bob'));
    expect(config.auth.keys).toEqual({ kind: 'secret', secret: HMAC });
    expect(config.auth.userIdHashSecret).toBe(`${HMAC}_user_ids`);
    expect(config.rateLimit.redisUrl).toBe('redis://:secret_test_password@127.0.0.1:6399');
    expect(config.credentialFiles).toEqual({
      CARDSCAN_API_KEY: files.CARDSCAN_API_KEY_FILE,
      CERTISCAN_AUTH_TOKEN: files.CERTISCAN_AUTH_TOKEN_FILE,
      ADMIN_API_KEYS: files.ADMIN_API_KEYS_FILE,
      AUTH_JWT_SECRET: files.AUTH_JWT_SECRET_FILE,
      USER_ID_HASH_SECRET: files.USER_ID_HASH_SECRET_FILE,
      REDIS_URL: files.REDIS_URL_FILE,
    });
  });

  test('when a secret comes from the environment, then nothing is remembered as a file and an empty X_FILE counts as unset', () => {
    const { config } = loadConfig({
      CARDSCAN_API_KEY: KEY,
      CARDSCAN_API_KEY_FILE: '',
      AUTH_JWT_SECRET: HMAC,
    });
    expect(config.cardscan.apiKey).toBe(KEY);
    expect(config.credentialFiles).toEqual({});
  });

  test('when both X and X_FILE are set, then that is one problem naming both, for every secret variable', () => {
    const content = file('both', 'secret_test_never_printed_both_0123456789abcdef');
    // The AUTH_<N>_JWT_SECRET family has its own test below.
    for (const variable of SECRET_VARIABLES.filter((name) => !name.includes('<N>'))) {
      const env = {
        CARDSCAN_API_KEY: KEY,
        AUTH_JWT_SECRET: HMAC,
        CERTISCAN_AUTH_TOKEN: TOKEN,
        [variable]: 'secret_test_never_printed_env_0123456789abcdef',
        [`${variable}_FILE`]: content,
      };
      const problems = problemsOf(env);
      expect(problems).toEqual([
        `${variable}_FILE: set either ${variable} or ${variable}_FILE, not both`,
      ]);
    }
  });

  test('when X_FILE cannot be read, then it is the one problem, naming X_FILE and the path, and no rule reports X missing', () => {
    const missing = path.join(dir, 'missing');
    expect(problemsOf({ CARDSCAN_API_KEY_FILE: missing, AUTH_JWT_SECRET: HMAC })).toEqual([
      `CARDSCAN_API_KEY_FILE: the file ${missing} cannot be read (ENOENT)`,
    ]);
    // Rules that tie variables together still see the secret as set.
    expect(problemsOf({ CARDSCAN_API_KEY: KEY, AUTH_JWT_SECRET_FILE: missing })).toEqual([
      `AUTH_JWT_SECRET_FILE: the file ${missing} cannot be read (ENOENT)`,
    ]);
    expect(
      problemsOf({
        CARDSCAN_API_KEY: KEY,
        AUTH_JWT_SECRET: HMAC,
        ADMIN_API_KEYS: `alice:${hashOf('adm_alice')}`,
        CERTISCAN_AUTH_TOKEN_FILE: missing,
      }),
    ).toEqual([`CERTISCAN_AUTH_TOKEN_FILE: the file ${missing} cannot be read (ENOENT)`]);
  });

  test('when X_FILE is a FIFO, then it is refused as not a regular file, at start and on a reload, without waiting for a writer', async () => {
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(problemsOf({ CARDSCAN_API_KEY_FILE: fifo, AUTH_JWT_SECRET: HMAC })).toEqual([
      `CARDSCAN_API_KEY_FILE: the file ${fifo} is not a regular file`,
    ]);
    await expect(readSecretFile(fifo)).resolves.toEqual({
      ok: false,
      reason: 'is not a regular file',
    });
  });

  test('when the file is empty, a directory, too large or not readable, then each is one problem naming X_FILE, never the content', () => {
    const empty = file('empty', '\n');
    const directory = path.join(dir, 'directory');
    mkdirSync(directory);
    const large = file('large', Buffer.alloc(MAX_SECRET_FILE_BYTES + 1, 'a'));
    const closed = file('closed', 'secret_test_never_printed_closed');
    const env = {
      CARDSCAN_API_KEY_FILE: empty,
      AUTH_JWT_SECRET_FILE: directory,
      USER_ID_HASH_SECRET_FILE: large,
      REDIS_URL_FILE: closed,
    };
    const unreadable = process.getuid?.() !== 0;
    if (unreadable) writeFileSync(closed, 'secret_test_never_printed_closed', { mode: 0o000 });
    const problems = problemsOf(env);
    expect(problems).toEqual(
      expect.arrayContaining([
        `CARDSCAN_API_KEY_FILE: the file ${empty} is empty`,
        `AUTH_JWT_SECRET_FILE: the file ${directory} is not a regular file`,
        `USER_ID_HASH_SECRET_FILE: the file ${large} is larger than 64 KiB`,
      ]),
    );
    if (unreadable) {
      expect(problems).toContain(`REDIS_URL_FILE: the file ${closed} cannot be read (EACCES)`);
    }
    expect(problems.join('\n')).not.toContain('never_printed');
    expect(problems.join('\n')).not.toContain('aaaa');
  });

  test("when a file holds a value its variable refuses, then the variable's own rule reports it, says it came from the file, and never prints it", () => {
    const problems = problemsOf({
      CARDSCAN_API_KEY_FILE: file('cardscan', 'pk_wrong_secret_from_file\n'),
      AUTH_JWT_SECRET_FILE: file('hmac', 'secret_test_too_short\n'),
    });
    expect(problems).toEqual([
      expect.stringMatching(
        /^CARDSCAN_API_KEY: has no known prefix.* \(value read from CARDSCAN_API_KEY_FILE\)$/,
      ),
      'AUTH_JWT_SECRET: must be at least 32 bytes (value read from AUTH_JWT_SECRET_FILE)',
    ]);
    expect(problems.join('\n')).not.toMatch(/pk_wrong_secret_from_file|secret_test_too_short/);
  });

  test('when a file holds a live key beside the sandbox URL, then the rule tying the two applies as for the variable', () => {
    expect(
      problemsOf({
        CARDSCAN_API_KEY_FILE: file('cardscan', 'sk_live_cardscan_ai_placeholder\n'),
        CARDSCAN_BASE_URL: 'https://sandbox.cardscan.ai/v1',
        AUTH_JWT_SECRET: HMAC,
      }),
    ).toEqual(['CARDSCAN_BASE_URL: a live key cannot be used with the sandbox URL']);
  });

  test('when a family of secret variables is listed (AUTH_<N>_JWT_SECRET), then each member resolves from its file and other _FILE variables are left alone', () => {
    const resolved = resolveSecretFiles(
      {
        AUTH_PATIENTS_JWT_SECRET_FILE: file('patients', `${HMAC}\n`),
        AUTH_STAFF_JWT_SECRET: HMAC,
        PORT_FILE: '/not/a/secret',
      },
      ['CARDSCAN_API_KEY', 'AUTH_<N>_JWT_SECRET'],
    );
    expect(resolved.env).toEqual({
      AUTH_PATIENTS_JWT_SECRET: HMAC,
      AUTH_STAFF_JWT_SECRET: HMAC,
      PORT_FILE: '/not/a/secret',
    });
    expect(resolved.files).toEqual({ AUTH_PATIENTS_JWT_SECRET: path.join(dir, 'patients') });
    expect(resolved.problems).toEqual([]);
  });

  test('when the variable names are listed for the docs, then each secret variable has its X_FILE', () => {
    expect(CONFIG_VARIABLES).toEqual(
      expect.arrayContaining([
        'CARDSCAN_API_KEY_FILE',
        'CERTISCAN_AUTH_TOKEN_FILE',
        'ADMIN_API_KEYS_FILE',
        'AUTH_JWT_SECRET_FILE',
        'USER_ID_HASH_SECRET_FILE',
        'REDIS_URL_FILE',
      ]),
    );
  });
});

describe('the server at start', () => {
  test('when a secret file is missing and another holds a bad value, then it exits 1 with one line each, naming the files, never the content', () => {
    const missing = path.join(dir, 'missing');
    const result = spawnSync(
      process.execPath,
      ['-r', 'tsx/cjs', path.join(__dirname, '../src/server.ts')],
      {
        env: {
          PATH: process.env.PATH,
          CARDSCAN_API_KEY_FILE: file('cardscan', 'pk_wrong_secret_value_in_file\n'),
          AUTH_JWT_SECRET_FILE: missing,
          DOTENV_CONFIG_PATH: '/nonexistent',
        },
        cwd: path.join(__dirname, '..', 'test'),
        encoding: 'utf8',
        timeout: 15_000,
      },
    );
    expect(result.status).toBe(1);
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines[0]).toBe('cardscan-broker: invalid configuration');
    expect(lines.slice(1).sort()).toEqual([
      `  AUTH_JWT_SECRET_FILE: the file ${missing} cannot be read (ENOENT)`,
      expect.stringMatching(
        /^ {2}CARDSCAN_API_KEY: has no known prefix.*\(value read from CARDSCAN_API_KEY_FILE\)$/,
      ),
    ]);
    expect(result.stderr + result.stdout).not.toContain('pk_wrong_secret_value_in_file');
  });
});

/**
 * `npm run admin-key -- <name>`: makes a new admin key, prints it once, and prints the
 * `ADMIN_API_KEYS` entry (`name:sha256hex`) to paste, so nobody hashes a key by hand.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ADMIN_KEY_NAME } from '../src/config/config';

/** 32 bytes from the CSPRNG: 43 base64url characters after the prefix. */
const KEY_BYTES = 32;
/** Makes a key recognisable in a password manager or a leaked paste. */
const KEY_PREFIX = 'adm_';

export interface NewAdminKey {
  name: string;
  /** The key itself: shown once, never stored by the broker. */
  key: string;
  /** What goes into ADMIN_API_KEYS: `name:sha256hex`. */
  entry: string;
}

export function createAdminKey(name: string): NewAdminKey {
  if (!ADMIN_KEY_NAME.test(name)) {
    throw new Error(
      `the name must be 1 to 64 letters, digits, ".", "_" or "-" (it becomes the actor in audit lines)`,
    );
  }
  const key = KEY_PREFIX + randomBytes(KEY_BYTES).toString('base64url');
  const sha256 = createHash('sha256').update(key, 'utf8').digest('hex');
  return { name, key, entry: `${name}:${sha256}` };
}

export interface Output {
  out(text: string): void;
  error(text: string): void;
}

/** The command line: returns the exit code. */
export function runAdminKey(args: readonly string[], output: Output): number {
  if (args.length !== 1 || args[0] === undefined) {
    output.error('usage: npm run admin-key -- <name>   (e.g. npm run admin-key -- alice)\n');
    return 2;
  }
  let created: NewAdminKey;
  try {
    created = createAdminKey(args[0]);
  } catch (error) {
    output.error(`admin-key: ${(error as Error).message}\n`);
    return 2;
  }
  output.out(
    [
      `New admin key for "${created.name}". It is shown only this once: give it to ${created.name}`,
      'through your password manager, then clear this terminal.',
      '',
      `  ${created.key}`,
      '',
      'Add this entry to the file named by ADMIN_API_KEYS_FILE, on a line of its own (the broker',
      'applies it within 10 s, no restart), or to ADMIN_API_KEYS, comma-separated, and restart:',
      '',
      `  ${created.entry}`,
      '',
      'The broker keeps only the SHA-256 of the key. To revoke the key, remove its entry the same way.',
      'docs/credentials.md has the whole procedure.',
      '',
    ].join('\n'),
  );
  return 0;
}

if (require.main === module) {
  process.exitCode = runAdminKey(process.argv.slice(2), {
    out: (text) => process.stdout.write(text),
    error: (text) => process.stderr.write(text),
  });
}

import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * Secrets as files: every secret variable `X` may be given as `X_FILE`, the path of a file holding
 * the value (a Kubernetes or Docker secret mount). This is the only module that reads those files.
 */

/** A secret file holds a key, a token or a short list of hashes: anything larger is a wrong path. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024;

export type SecretFileRead = { ok: true; value: string } | { ok: false; reason: string };

/**
 * Matches a variable name against the secret variables; a family such as `AUTH_<N>_JWT_SECRET`
 * matches every `<N>` of letters, digits and `_`.
 */
function secretNameMatcher(secretVariables: readonly string[]): (name: string) => boolean {
  const exact = new Set(secretVariables.filter((name) => !name.includes('<')));
  const families = secretVariables
    .filter((name) => name.includes('<'))
    .map((name) => new RegExp(`^${name.replace(/<[A-Z]+>/g, '[A-Z0-9_]+')}$`));
  return (name) => exact.has(name) || families.some((family) => family.test(name));
}

/** The file's text with one trailing newline dropped: `echo key > file` must give `key`. */
function valueOf(bytes: Buffer): SecretFileRead {
  if (bytes.length > MAX_SECRET_FILE_BYTES) {
    return { ok: false, reason: `is larger than ${MAX_SECRET_FILE_BYTES / 1024} KiB` };
  }
  const value = bytes.toString('utf8').replace(/\r?\n$/, '');
  return value.trim() ? { ok: true, value } : { ok: false, reason: 'is empty' };
}

function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  return `cannot be read (${code ?? 'unknown error'})`;
}

/**
 * Opened without blocking: opening a FIFO for reading otherwise waits for a writer, forever, before
 * the regular-file check below can refuse it (a start that hangs; a watcher that stops rotating).
 */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

/**
 * Reads a secret file at start. Only a regular file (symlinks followed) is read: a FIFO or a
 * device would block or never end. Reading one byte past the limit tells "too large" apart.
 */
export function readSecretFileSync(path: string): SecretFileRead {
  let fd: number | undefined;
  try {
    fd = openSync(path, OPEN_FLAGS);
    if (!fstatSync(fd).isFile()) return { ok: false, reason: 'is not a regular file' };
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    let length = 0;
    for (let read = -1; read !== 0 && length < buffer.length; length += read) {
      read = readSync(fd, buffer, length, buffer.length - length, null);
    }
    return valueOf(buffer.subarray(0, length));
  } catch (error) {
    return { ok: false, reason: reasonOf(error) };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The same read for the credential watcher, off the event loop's thread. */
export async function readSecretFile(path: string): Promise<SecretFileRead> {
  let handle;
  try {
    handle = await open(path, OPEN_FLAGS);
    if (!(await handle.stat()).isFile()) return { ok: false, reason: 'is not a regular file' };
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    let length = 0;
    for (let read = -1; read !== 0 && length < buffer.length; length += read) {
      ({ bytesRead: read } = await handle.read(buffer, length, buffer.length - length, null));
    }
    return valueOf(buffer.subarray(0, length));
  } catch (error) {
    return { ok: false, reason: reasonOf(error) };
  } finally {
    await handle?.close();
  }
}

export interface ResolvedSecrets {
  /** The environment with each `X_FILE` replaced by `X` holding the file's value. */
  env: Record<string, string | undefined>;
  /** The file each secret came from, by variable (`X`, not `X_FILE`). */
  files: Record<string, string>;
  /** One line per problem, naming the variable; a path may appear, a value never. */
  problems: string[];
  /**
   * Variables set by the operator that have no usable value: both X and X_FILE, or a file that
   * cannot be read. Their one problem names X_FILE; no other rule should report them.
   */
  unresolved: Set<string>;
}

/**
 * Resolves `X` or `X_FILE` for every secret variable before the schema parses the environment, so
 * the rules for `X` apply to a value from a file exactly as to one from the environment. Works for
 * any name in `secretVariables`, families (`AUTH_<N>_JWT_SECRET`) included. Empty values count as
 * unset, as everywhere in the configuration.
 */
export function resolveSecretFiles(
  rawEnv: Record<string, string | undefined>,
  secretVariables: readonly string[],
): ResolvedSecrets {
  const isSecret = secretNameMatcher(secretVariables);
  const env: Record<string, string | undefined> = { ...rawEnv };
  const files: Record<string, string> = {};
  const problems: string[] = [];
  const unresolved = new Set<string>();
  for (const fileVariable of Object.keys(rawEnv).sort()) {
    if (!fileVariable.endsWith('_FILE')) continue;
    const variable = fileVariable.slice(0, -'_FILE'.length);
    const path = rawEnv[fileVariable]?.trim();
    if (!isSecret(variable) || !path) continue;
    delete env[fileVariable];
    if (rawEnv[variable]?.trim()) {
      problems.push(`${fileVariable}: set either ${variable} or ${fileVariable}, not both`);
      unresolved.add(variable);
      continue;
    }
    const read = readSecretFileSync(path);
    if (!read.ok) {
      problems.push(`${fileVariable}: the file ${path} ${read.reason}`);
      unresolved.add(variable);
      continue;
    }
    env[variable] = read.value;
    files[variable] = path;
  }
  return { env, files, problems, unresolved };
}

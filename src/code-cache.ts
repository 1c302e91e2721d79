import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

/**
 * - used: V8 took the cache;
 * - absent: there is none;
 * - unreadable: there is one, but reading it failed (permissions, a directory in its place);
 * - mismatched: it was written for other source (the file changed since), or it is damaged;
 * - rejected: V8 refused it (another Node version, or other V8 flags than when it was written).
 */
export type CodeCacheOutcome = 'used' | 'absent' | 'unreadable' | 'mismatched' | 'rejected';

export interface CachedScript {
  outcome: CodeCacheOutcome;
  /** Runs the file as a CommonJS module and returns its exports. */
  run(): unknown;
  /** Writes V8's code for everything compiled so far, for the next start to skip compiling it. */
  saveCache(): void;
}

const DIGEST_BYTES = 32;
// A newline after the wrapper and lineOffset -1 keep stack positions those of the file itself.
const WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname) {\n';
const WRAPPER_TAIL = '\n})';

const WHY_NOT_USED: Record<Exclude<CodeCacheOutcome, 'used'>, string> = {
  absent: 'there is none',
  unreadable: 'it cannot be read',
  mismatched: 'it was written for another build, or is damaged',
  rejected: 'it was written by another Node version or with other V8 flags',
};

/**
 * Compiles a CommonJS file with the V8 code cache kept beside it, if there is a usable one. A cache
 * is only a faster start: any problem with it means compiling from source, never failing.
 *
 * The cache file is a SHA-256 of the source and V8's data, then the data. V8 matches a cache to
 * its source by length only and need not checksum the data: a same-length edit would run the old
 * code, and a damaged file would be deserialized as code. (The digest is no signature: whoever can
 * write the cache can write the source beside it.)
 */
export function loadWithCodeCache(file: string, cacheFile: string): CachedScript {
  const source = readFileSync(file, 'utf8');
  const stored = readCache(cacheFile);
  const usable =
    Buffer.isBuffer(stored) &&
    digestOf(source, stored.subarray(DIGEST_BYTES)).equals(stored.subarray(0, DIGEST_BYTES))
      ? stored.subarray(DIGEST_BYTES)
      : undefined;
  const script = new vm.Script(WRAPPER_HEAD + source + WRAPPER_TAIL, {
    filename: file,
    lineOffset: -1,
    cachedData: usable,
  });
  const outcome: CodeCacheOutcome = !Buffer.isBuffer(stored)
    ? stored
    : !usable
      ? 'mismatched'
      : script.cachedDataRejected
        ? 'rejected'
        : 'used';
  return {
    outcome,
    run() {
      const module = { exports: {} };
      const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
      wrapper.call(
        module.exports,
        module.exports,
        createRequire(file),
        module,
        file,
        path.dirname(file),
      );
      return module.exports;
    },
    saveCache() {
      const next = script.createCachedData();
      // Renamed into place: a write cut short (a full disk) must not leave half a cache.
      const partial = `${cacheFile}.partial`;
      writeFileSync(partial, Buffer.concat([digestOf(source, next), next]));
      renameSync(partial, cacheFile);
    },
  };
}

/** One line for stderr when the cache was not used, or undefined when it was. */
export function codeCacheNotice(outcome: CodeCacheOutcome, cacheFile: string): string | undefined {
  if (outcome === 'used') return undefined;
  return `cardscan-broker: not using ${cacheFile} (${WHY_NOT_USED[outcome]}): the start is slower; npm run build writes it`;
}

function digestOf(source: string, data: Buffer): Buffer {
  return createHash('sha256').update(source).update(data).digest();
}

function readCache(cacheFile: string): Buffer | 'absent' | 'unreadable' {
  try {
    return readFileSync(cacheFile);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'absent' : 'unreadable';
  }
}

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

/**
 * - used: V8 took the cache;
 * - absent: there is none;
 * - mismatched: it was written for other source (the file changed since), or it is damaged;
 * - rejected: V8 refused it (another Node version, or other V8 flags than when it was written).
 */
export type CodeCacheOutcome = 'used' | 'absent' | 'mismatched' | 'rejected';

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

/**
 * Compiles a CommonJS file with the V8 code cache kept beside it, if there is a usable one.
 *
 * The cache file is a SHA-256 of the source and V8's data, then the data. V8 matches a cache to
 * its source by length only and need not checksum the data: a same-length edit would run the old
 * code, and a damaged file would be deserialized as code.
 */
export function loadWithCodeCache(file: string, cacheFile: string): CachedScript {
  const source = readFileSync(file, 'utf8');
  const stored = readCache(cacheFile);
  const data = stored?.subarray(DIGEST_BYTES);
  const usable =
    stored && data && digestOf(source, data).equals(stored.subarray(0, DIGEST_BYTES))
      ? data
      : undefined;
  const script = new vm.Script(WRAPPER_HEAD + source + WRAPPER_TAIL, {
    filename: file,
    lineOffset: -1,
    cachedData: usable,
  });
  const outcome: CodeCacheOutcome =
    stored === undefined
      ? 'absent'
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
      wrapper(module.exports, createRequire(file), module, file, path.dirname(file));
      return module.exports;
    },
    saveCache() {
      const next = script.createCachedData();
      writeFileSync(cacheFile, Buffer.concat([digestOf(source, next), next]));
    },
  };
}

function digestOf(source: string, data: Buffer): Buffer {
  return createHash('sha256').update(source).update(data).digest();
}

function readCache(cacheFile: string): Buffer | undefined {
  try {
    return readFileSync(cacheFile);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

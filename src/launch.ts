import path from 'node:path';
import { codeCacheNotice, loadWithCodeCache } from './code-cache';

/**
 * The entry point of the build (dist/server.js): runs the broker's bundle (dist/broker.js) with
 * the code cache that `npm run build` wrote after a start with placeholder settings
 * (scripts/build-code-cache.ts). Compiling the bundle's start-up path is about a quarter of the
 * cold start; V8 reuses the cache only with the Node version and V8 flags it was written with.
 */
const bundle = path.join(__dirname, 'broker.js');
const cacheFile = `${bundle}.v8cache`;
const script = loadWithCodeCache(bundle, cacheFile);

if (process.argv.includes('--write-code-cache')) {
  process.on('exit', () => script.saveCache());
} else {
  const notice = codeCacheNotice(script.outcome, cacheFile);
  if (notice) process.stderr.write(`${notice}\n`);
}

script.run();

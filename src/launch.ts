import path from 'node:path';
import { loadWithCodeCache } from './code-cache';

/**
 * The entry point of the build (dist/server.js): runs the broker's bundle (dist/broker.js) with
 * the code cache that `npm run build` wrote after a start with placeholder settings
 * (scripts/build-code-cache.ts). Compiling the bundle's start-up path is a quarter of the cold
 * start; V8 reuses the cache only with the Node version and V8 flags it was written with.
 */
const bundle = path.join(__dirname, 'broker.js');
const script = loadWithCodeCache(bundle, `${bundle}.v8cache`);

if (process.argv.includes('--write-code-cache')) {
  process.on('exit', () => script.saveCache());
} else if (script.outcome === 'mismatched' || script.outcome === 'rejected') {
  process.stderr.write(
    `cardscan-broker: not using ${bundle}.v8cache (${
      script.outcome === 'mismatched'
        ? 'written for another build, or damaged'
        : 'written by another Node version or with other V8 flags'
    }): the start is slower; npm run build writes it again\n`,
  );
}

script.run();

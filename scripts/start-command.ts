import { readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');

/**
 * The Node flags of `npm start` (package.json), the one place they are set: the build writes the
 * code cache with them, the bench runs the broker with them, and test/build.test.ts checks that
 * the image's CMD repeats them.
 */
export function startNodeFlags(): string[] {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    scripts: { start: string };
  };
  const match = /^node((?: --[a-z_-]+(?:=[\w.]+)?)*) dist\/server\.js$/.exec(pkg.scripts.start);
  if (!match) {
    throw new Error('package.json "start" is not "node [--flag[=value] ...] dist/server.js"');
  }
  return (match[1] ?? '').split(' ').filter(Boolean);
}

import { readFileSync } from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(__dirname, '../..');
const FLAG = /^--[a-z0-9-]+=[\w.]+$/;

/** The node flags of `npm start`, which must read `node [--flag=value …] dist/server.js`. */
export function startScriptNodeFlags(): string[] {
  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
    scripts: { start: string };
  };
  const words = pkg.scripts.start.split(' ');
  const flags = words.slice(1, -1);
  if (
    words[0] !== 'node' ||
    words.at(-1) !== 'dist/server.js' ||
    !flags.every((f) => FLAG.test(f))
  ) {
    throw new Error(
      `"npm start" is not "node [--flag=value …] dist/server.js": ${pkg.scripts.start}`,
    );
  }
  return flags;
}

/** The node flags of the Dockerfile's CMD, which must be ["node", …flags, "dist/server.js"]. */
export function dockerfileNodeFlags(): string[] {
  const dockerfile = readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1];
  const words = cmd ? (JSON.parse(cmd) as string[]) : [];
  if (words[0] !== 'node' || words.at(-1) !== 'dist/server.js') {
    throw new Error(`the Dockerfile's CMD is not ["node", …, "dist/server.js"]: ${cmd}`);
  }
  return words.slice(1, -1);
}

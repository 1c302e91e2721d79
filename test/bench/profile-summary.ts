/**
 * `npx tsx test/bench/profile-summary.ts <file.cpuprofile> [requests] [top]`: where a served
 * process spent its CPU, by package, from a `BENCH_PROFILE=1 npm run bench` profile. With the
 * request count of that round (printed by the bench) the figures are µs per request.
 * The broker runs as one esbuild bundle; its lines are attributed to the package named by the
 * `// node_modules/<pkg>/…` or `// src/…` comment esbuild writes above each module.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** For a bundle: the module each line belongs to, from esbuild's per-module comments. */
function bundleModules(path: string): (line: number) => string | undefined {
  let lines: string[];
  try {
    lines = readFileSync(path, 'utf8').split('\n');
  } catch {
    return () => undefined;
  }
  const starts: { line: number; name: string }[] = [];
  lines.forEach((text, index) => {
    const match = /^\/\/ (node_modules\/((?:@[^/]+\/)?[^/]+)|src\/\S+)/.exec(text);
    if (match) starts.push({ line: index, name: match[2] ?? `broker ${match[1]}` });
  });
  return (line) => {
    let found: string | undefined;
    for (const start of starts) {
      if (start.line > line) break;
      found = start.name;
    }
    return found;
  };
}

function main(): void {
  const [file, requestsArg, topArg] = process.argv.slice(2);
  if (!file) throw new Error('usage: profile-summary.ts <file.cpuprofile> [requests] [top]');
  const requests = Number(requestsArg ?? 1) || 1;
  const top = Number(topArg ?? 30);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const bundles = new Map<string, (line: number) => string | undefined>();

  const packageOf = (url: string, line: number): string => {
    if (!url) return '(native)';
    const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (inModules?.[1]) return inModules[1];
    if (url.startsWith('node:')) return url;
    if (url.startsWith('file://')) {
      let lookup = bundles.get(url);
      if (!lookup) bundles.set(url, (lookup = bundleModules(fileURLToPath(url))));
      return lookup(line) ?? url;
    }
    return url;
  };

  const selfUs = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, index) => {
    const node = byId.get(id);
    const delta = profile.timeDeltas[index + 1] ?? 0;
    if (!node || node.callFrame.functionName === '(idle)') return;
    const { url, functionName, lineNumber } = node.callFrame;
    const key = url ? packageOf(url, lineNumber) : `(native) ${functionName}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + delta);
    busy += delta;
  });

  process.stdout.write(
    `busy ${(busy / 1000).toFixed(0)} ms = ${(busy / requests).toFixed(1)} µs per request\n`,
  );
  for (const [key, us] of [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${(us / requests).toFixed(2).padStart(9)} µs  ${key}\n`);
  }
}

main();

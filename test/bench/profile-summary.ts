/**
 * `npx tsx test/bench/profile-summary.ts <file.cpuprofile> [requests] [top]`: where a served
 * process spent its CPU, by package, from a `BENCH_PROFILE=1 npm run bench` profile. With the
 * request count of that round (printed by the bench) the figures are µs per request.
 * The broker runs as one minified esbuild bundle; its positions are attributed to packages through
 * the source map beside it (dist/broker.js.map).
 */
import { readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** For a bundle: the package each position belongs to, from the source map esbuild writes beside it. */
function bundleModules(path: string): (line: number, column: number) => string | undefined {
  let map: SourceMap;
  try {
    map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')) as SourceMapPayload);
  } catch {
    return () => undefined;
  }
  return (line, column) => {
    const source = (map.findEntry(line, column) as { originalSource?: string }).originalSource;
    if (!source) return undefined;
    const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(source);
    if (inModules?.[1]) return inModules[1];
    const inSrc = /\bsrc\/\S+/.exec(source);
    return inSrc ? `broker ${inSrc[0]}` : undefined;
  };
}

function main(): void {
  const [file, requestsArg, topArg] = process.argv.slice(2);
  if (!file) throw new Error('usage: profile-summary.ts <file.cpuprofile> [requests] [top]');
  const requests = Number(requestsArg ?? 1) || 1;
  const top = Number(topArg ?? 30);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const bundles = new Map<string, (line: number, column: number) => string | undefined>();

  const packageOf = (url: string, line: number, column: number): string => {
    if (!url) return '(native)';
    const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (inModules?.[1]) return inModules[1];
    if (url.startsWith('node:')) return url;
    // The launcher compiles the bundle from a plain path (src/code-cache.ts), not a file:// URL.
    if (url.startsWith('file://') || url.startsWith('/')) {
      let lookup = bundles.get(url);
      if (!lookup) {
        bundles.set(url, (lookup = bundleModules(url.startsWith('/') ? url : fileURLToPath(url))));
      }
      return lookup(line, column) ?? url;
    }
    return url;
  };

  const selfUs = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, index) => {
    const node = byId.get(id);
    const delta = profile.timeDeltas[index + 1] ?? 0;
    if (!node || node.callFrame.functionName === '(idle)') return;
    const { url, functionName, lineNumber, columnNumber } = node.callFrame;
    const key = url ? packageOf(url, lineNumber, columnNumber) : `(native) ${functionName}`;
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

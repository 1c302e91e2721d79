/**
 * `npm run bench`: the broker against the vendor's own sample handler, on loopback only.
 * See docs/performance.md for what is measured and how to read it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNodeFlags } from '../../scripts/start-command';
import { startIdentityProvider } from '../stand-ins/identity-provider';
import { measureRound } from './measure';
import { parseOptions } from './options';
import { cpuPlan, killAllStarted } from './processes';
import { checks, formatReport, ratios, summarize, type RoundMeasure } from './report';
import {
  BENCH_AUDIENCE,
  BENCH_RATE_LIMIT_PER_MINUTE,
  signBenchTokens,
  type BenchContext,
} from './targets';

const REPO = path.resolve(__dirname, '../..');
const RESULTS_DIR = path.join(REPO, 'bench-results');

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2), process.env);
  const perRound = options.warmupSeconds + options.seconds + 5;
  const roundCount = options.rounds * options.delaysMs.length * options.targets.length;
  // Bounded in time: however things go wrong, the bench and everything it started end by then.
  const budgetSeconds = roundCount * perRound * 2 + 60;
  setTimeout(() => {
    log(`bench: over its ${budgetSeconds} s budget; stopping`);
    killAllStarted();
    process.exit(2);
  }, budgetSeconds * 1000).unref();

  const cwd = mkdtempSync(path.join(os.tmpdir(), 'cardscan-bench-'));
  mkdirSync(RESULTS_DIR, { recursive: true });
  const profileDir = options.profile ? path.join(RESULTS_DIR, 'profiles') : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const idp = await startIdentityProvider({ audience: BENCH_AUDIENCE });
  const userIds = Array.from({ length: options.users }, (_, i) => `user-${i}`);
  const context: BenchContext = {
    idp,
    userIds,
    ...signBenchTokens(idp, userIds),
    cwd,
    brokerScript: path.join(REPO, 'dist/server.js'),
    cpus: cpuPlan(),
    profileDir,
    // The broker runs as `npm start` runs it, with the flags the build's code cache was written with.
    brokerNodeOptions: [...startNodeFlags(), ...options.brokerNodeOptions],
    brokerCgroup: options.brokerCgroup,
  };

  const startedAt = new Date();
  const loadAtStart = os.loadavg();
  // Every target, anchors included, is spawned with this process's own Node (process.execPath):
  // under npm run bench that is the Node the project ships on (node_modules/.bin/node).
  log(
    `bench: Node ${process.version} for every target; ${options.targets.join(', ')}; delays ${options.delaysMs.join(', ')} ms; ${options.rounds} rounds of ` +
      `${options.warmupSeconds} s warm-up + ${options.seconds} s; ${options.connections} connections, ` +
      `${options.users} users; about ${Math.ceil((roundCount * perRound) / 60)} min. ` +
      `Broker node flags: ${context.brokerNodeOptions.join(' ')}. ` +
      (options.brokerCgroup ? `Broker cgroup: ${options.brokerCgroup}. ` : '') +
      `Load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}`,
  );
  const measures: RoundMeasure[] = [];
  try {
    for (const delayMs of options.delaysMs) {
      for (let round = 1; round <= options.rounds; round++) {
        const order = round % 2 === 1 ? options.targets : [...options.targets].reverse();
        for (const target of order) {
          const measure = await measureRound(context, options, target, delayMs, round);
          measures.push(measure);
          log(
            `  ${target.padEnd(12)} ${String(delayMs).padStart(3)} ms  round ${round}: ` +
              `${measure.load.ok} answers, ${measure.load.requestsPerSecond.toFixed(0)} req/s, ` +
              `p99 ${measure.load.latencyMs.p99} ms, pid ${measure.pid}, ` +
              `${measure.cpuMsPerRequest.toFixed(3)} CPU ms/req, ${measure.peakRssMb.toFixed(0)} MB, ` +
              `cold ${measure.coldStartMs.toFixed(0)} ms, load ${measure.loadAverage1m.toFixed(2)}`,
          );
          await sleep(500);
        }
      }
    }
  } finally {
    await idp.close();
    rmSync(cwd, { recursive: true, force: true });
  }

  const summaries = summarize(measures);
  const ratioList = ratios(summaries, measures);
  const checkList = checks(summaries);
  const loadAtEnd = os.loadavg();
  const report = formatReport(summaries, ratioList, checkList);
  process.stdout.write(`\nRuntime: Node ${process.version} (${process.execPath})\n${report}`);
  const file = path.join(
    RESULTS_DIR,
    `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`,
  );
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        machine: {
          cpus: os.cpus().length,
          cpuModel: os.cpus()[0]?.model,
          memoryMb: Math.round(os.totalmem() / 2 ** 20),
          node: process.version,
          loadAverageAtStart: loadAtStart,
          loadAverageAtEnd: loadAtEnd,
        },
        options,
        rateLimitPerMinute: Number(BENCH_RATE_LIMIT_PER_MINUTE),
        summaries,
        ratios: ratioList,
        checks: checkList,
        rounds: measures,
      },
      null,
      2,
    )}\n`,
  );
  log(
    `\nload average at start ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}, ` +
      `at end ${loadAtEnd.map((l) => l.toFixed(2)).join(' ')}; results in ${path.relative(process.cwd(), file)}`,
  );
}

process.on('exit', killAllStarted);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log(`bench: ${signal}; stopping what it started`);
    killAllStarted();
    process.exit(130);
  });
}
main().then(
  () => process.exit(0),
  (error: unknown) => {
    log(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    killAllStarted();
    process.exit(1);
  },
);

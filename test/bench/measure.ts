import os from 'node:os';
import { runLoad } from './load';
import type { BenchOptions, TargetName } from './options';
import { cpuMs, get, memoryMb } from './processes';
import type { RoundMeasure } from './report';
import { startCardscanFast, startTarget, type BenchContext } from './targets';

async function servedCount(origin: string): Promise<number> {
  return (JSON.parse((await get(`${origin}/stats`)).body) as { served: number }).served;
}

/**
 * One round: a fresh stand-in and a fresh target process, cold start, smoke check, warm-up, then
 * the measured load with CPU and memory read from /proc. Both processes are stopped at the end.
 */
export async function measureRound(
  context: BenchContext,
  options: BenchOptions,
  target: TargetName,
  delayMs: number,
  round: number,
): Promise<RoundMeasure> {
  const loadAverage1m = os.loadavg()[0] ?? 0;
  const cardscan = await startCardscanFast(context, delayMs, target === 'direct');
  try {
    const run = await startTarget(target, context, cardscan);
    try {
      // The first real request: for the broker in RS256 mode it also waits for the signing keys.
      const smoke = await get(
        `${run.served.origin}${run.requests[0]?.path}`,
        run.requests[0]?.headers,
      );
      const firstAnswerMs = performance.now() - run.served.spawnedAt;
      if (smoke.status !== 200 || !(run.answerKey in (JSON.parse(smoke.body) as object))) {
        throw new Error(
          `${target} answered ${smoke.status} ${smoke.body}\n${run.served.stderrTail()}`,
        );
      }
      const load = {
        origin: run.served.origin,
        requests: run.requests,
        connections: options.connections,
      };
      if (options.warmupSeconds > 0) await runLoad({ ...load, seconds: options.warmupSeconds });

      const callsBefore = await servedCount(cardscan.origin);
      const cpuBefore = cpuMs(run.served.pid);
      const result = await runLoad({ ...load, seconds: options.seconds });
      const cpuAfter = cpuMs(run.served.pid);
      const callsAfter = await servedCount(cardscan.origin);
      const { peak } = memoryMb(run.served.pid);
      const answered = Math.max(1, result.ok);
      return {
        target,
        delayMs,
        round,
        pid: run.served.pid,
        loadAverage1m,
        coldStartMs: run.served.coldStartMs,
        firstAnswerMs,
        peakRssMb: peak,
        cpuMsPerRequest: (cpuAfter - cpuBefore) / answered,
        // The /stats call itself is not an access token; `direct` is served by the stand-in alone.
        upstreamCallsPerRequest: (callsAfter - callsBefore) / answered,
        load: result,
      };
    } finally {
      if (run.served !== cardscan) await run.served.stop();
    }
  } finally {
    await cardscan.stop();
  }
}

import type { LoadResult } from './load';
import type { TargetName } from './options';

/** One measured round of one target at one upstream delay. */
export interface RoundMeasure {
  target: TargetName;
  delayMs: number;
  round: number;
  /** The served process (its profile file is named after it with BENCH_PROFILE=1). */
  pid: number;
  /** 1-minute load average just before the round started. */
  loadAverage1m: number;
  coldStartMs: number;
  /** Spawn → first 200 on the session route (the stand-in's access-token route for `direct`). */
  firstAnswerMs: number;
  /** VmHWM of the served process at the end of the round: its peak over its whole life. */
  peakRssMb: number;
  /** utime+stime of the served process over the measured seconds, per 2xx answer. */
  cpuMsPerRequest: number;
  /** Cardscan calls per 2xx answer (below 1 when the broker shared one user's concurrent calls). */
  upstreamCallsPerRequest: number;
  load: LoadResult;
}

export interface Summary {
  target: TargetName;
  delayMs: number;
  rounds: number;
  /** Means over the rounds, unless said otherwise. */
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Sums over the rounds. */
  non2xx: number;
  errors: number;
  /** Largest over the rounds. */
  peakRssMb: number;
  cpuMsPerRequest: number;
  /** Median and largest over the spawns. */
  coldStartMs: number;
  coldStartMaxMs: number;
  /** Median over the spawns. */
  firstAnswerMs: number;
  upstreamCallsPerRequest: number;
}

export interface Ratio {
  delayMs: number;
  broker: TargetName;
  versus: TargetName;
  /** Of the means over the rounds. */
  throughput: number;
  cpuPerRequest: number;
  /**
   * Smallest and largest of the same ratio taken round by round (round N of one target against
   * round N of the other, run minutes apart): how far this machine's noise moves it.
   */
  throughputRange: [number, number];
  cpuPerRequestRange: [number, number];
}

export interface Check {
  target: string;
  holds: boolean;
  measured: string;
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : mean(sorted.slice(middle - 1, middle + 1));
};

export function summarize(measures: RoundMeasure[]): Summary[] {
  const groups = new Map<string, RoundMeasure[]>();
  for (const measure of measures) {
    const key = `${measure.delayMs}|${measure.target}`;
    groups.set(key, [...(groups.get(key) ?? []), measure]);
  }
  return [...groups.values()].map((group) => {
    const first = group[0] as RoundMeasure;
    return {
      target: first.target,
      delayMs: first.delayMs,
      rounds: group.length,
      requestsPerSecond: mean(group.map((m) => m.load.requestsPerSecond)),
      p50Ms: mean(group.map((m) => m.load.latencyMs.p50)),
      p99Ms: mean(group.map((m) => m.load.latencyMs.p99)),
      non2xx: group.reduce((sum, m) => sum + m.load.non2xx, 0),
      errors: group.reduce((sum, m) => sum + m.load.errors, 0),
      peakRssMb: Math.max(...group.map((m) => m.peakRssMb)),
      cpuMsPerRequest: mean(group.map((m) => m.cpuMsPerRequest)),
      coldStartMs: median(group.map((m) => m.coldStartMs)),
      coldStartMaxMs: Math.max(...group.map((m) => m.coldStartMs)),
      firstAnswerMs: median(group.map((m) => m.firstAnswerMs)),
      upstreamCallsPerRequest: mean(group.map((m) => m.upstreamCallsPerRequest)),
    };
  });
}

function find(summaries: Summary[], target: TargetName, delayMs: number): Summary | undefined {
  return summaries.find((s) => s.target === target && s.delayMs === delayMs);
}

function range(values: number[]): [number, number] {
  return [Math.min(...values), Math.max(...values)];
}

export function ratios(summaries: Summary[], measures: RoundMeasure[]): Ratio[] {
  const result: Ratio[] = [];
  for (const delayMs of new Set(summaries.map((s) => s.delayMs))) {
    for (const broker of ['broker-rs256', 'broker-hs256'] as const) {
      for (const versus of ['naive', 'naive-jwt'] as const) {
        const b = find(summaries, broker, delayMs);
        const v = find(summaries, versus, delayMs);
        if (!b || !v) continue;
        const pairs = measures
          .filter((m) => m.target === broker && m.delayMs === delayMs)
          .flatMap((m) => {
            const other = measures.find(
              (o) => o.target === versus && o.delayMs === delayMs && o.round === m.round,
            );
            return other ? [[m, other] as const] : [];
          });
        result.push({
          delayMs,
          broker,
          versus,
          throughput: b.requestsPerSecond / v.requestsPerSecond,
          cpuPerRequest: b.cpuMsPerRequest / v.cpuMsPerRequest,
          throughputRange: range(
            pairs.map(([m, o]) => m.load.requestsPerSecond / o.load.requestsPerSecond),
          ),
          cpuPerRequestRange: range(pairs.map(([m, o]) => m.cpuMsPerRequest / o.cpuMsPerRequest)),
        });
      }
    }
  }
  return result;
}

/**
 * The targets of the bench on the shipped runtime; a target whose inputs were not run is left out.
 * The broker must beat the vendor's sample (`naive`, no login at all) while verifying an RS256
 * login, and the sample with express-jwt added (`naive-jwt`) by 10 % with HS256.
 */
export function checks(summaries: Summary[]): Check[] {
  const result: Check[] = [];
  const rs0 = find(summaries, 'broker-rs256', 0);
  const hs0 = find(summaries, 'broker-hs256', 0);
  const naive0 = find(summaries, 'naive', 0);
  const naiveJwt0 = find(summaries, 'naive-jwt', 0);
  const rs50 = find(summaries, 'broker-rs256', 50);
  const naive50 = find(summaries, 'naive', 50);
  const direct50 = find(summaries, 'direct', 50);
  // The broker as it ships (tracing off), in both login modes.
  const brokers = summaries.filter(
    (s) => s.target === 'broker-rs256' || s.target === 'broker-hs256',
  );
  const naives = summaries.filter((s) => s.target === 'naive');
  const fixed = (n: number, digits = 2) => n.toFixed(digits);

  if (rs0 && naive0) {
    const ratio = rs0.requestsPerSecond / naive0.requestsPerSecond;
    result.push({
      target: 'broker-rs256 throughput at 0 ms ≥ 1.0× naive',
      holds: ratio >= 1,
      measured: `${fixed(ratio)}×`,
    });
    result.push({
      target: 'broker-rs256 CPU per request ≤ naive (0 ms)',
      holds: rs0.cpuMsPerRequest <= naive0.cpuMsPerRequest,
      measured: `${fixed(rs0.cpuMsPerRequest, 3)} vs ${fixed(naive0.cpuMsPerRequest, 3)} ms`,
    });
  }
  if (hs0 && naiveJwt0) {
    const ratio = hs0.requestsPerSecond / naiveJwt0.requestsPerSecond;
    result.push({
      target: 'broker-hs256 throughput at 0 ms ≥ 1.1× naive-jwt',
      holds: ratio >= 1.1,
      measured: `${fixed(ratio)}×`,
    });
  }
  if (rs50 && naive50) {
    result.push({
      target: 'broker-rs256 p99 at 50 ms ≤ naive p99',
      holds: rs50.p99Ms <= naive50.p99Ms,
      measured:
        `${fixed(rs50.p99Ms, 1)} vs ${fixed(naive50.p99Ms, 1)} ms` +
        (direct50 ? ` (direct ${fixed(direct50.p99Ms, 1)} ms)` : ''),
    });
  }
  const traced0 = find(summaries, 'broker-traced', 0);
  if (rs0 && traced0) {
    const ratio = traced0.cpuMsPerRequest / rs0.cpuMsPerRequest;
    result.push({
      target: 'CPU per request with every request traced ≤ 1.3× untraced (0 ms)',
      holds: ratio <= 1.3,
      measured: `${fixed(ratio)}×`,
    });
  }
  if (brokers.length > 0 && naives.length > 0) {
    const peak = Math.max(...brokers.map((s) => s.peakRssMb));
    const naivePeak = Math.max(...naives.map((s) => s.peakRssMb));
    result.push({
      target: 'broker peak RSS ≤ 0.6× naive',
      holds: peak <= 0.6 * naivePeak,
      measured: `${fixed(peak, 1)} vs ${fixed(naivePeak, 1)} MB (${fixed(peak / naivePeak)}×)`,
    });
    const cold = median(brokers.map((s) => s.coldStartMs));
    const naiveCold = median(naives.map((s) => s.coldStartMs));
    result.push({
      target: 'broker cold start ≤ naive (median)',
      holds: cold <= naiveCold,
      measured: `${fixed(cold, 0)} vs ${fixed(naiveCold, 0)} ms`,
    });
  }
  const failed = summaries.filter((s) => s.non2xx > 0 || s.errors > 0);
  result.push({
    target: 'every answer 2xx, no errors',
    holds: failed.length === 0,
    measured:
      failed.length === 0 ? 'yes' : failed.map((s) => `${s.target}@${s.delayMs}`).join(', '),
  });
  return result;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** Markdown tables, so the output can go into docs/performance.md as it is. */
export function formatReport(summaries: Summary[], ratioList: Ratio[], checkList: Check[]): string {
  const results = table(
    [
      'target',
      'upstream delay',
      'req/s',
      'p50 ms',
      'p99 ms',
      'non-2xx',
      'errors',
      'peak RSS MB',
      'CPU ms/req',
      'cold start ms',
      'first answer ms',
      'Cardscan calls/req',
    ],
    summaries.map((s) => [
      s.target,
      `${s.delayMs} ms`,
      s.requestsPerSecond.toFixed(0),
      s.p50Ms.toFixed(1),
      s.p99Ms.toFixed(1),
      String(s.non2xx),
      String(s.errors),
      s.peakRssMb.toFixed(1),
      s.cpuMsPerRequest.toFixed(3),
      `${s.coldStartMs.toFixed(0)} (max ${s.coldStartMaxMs.toFixed(0)})`,
      s.firstAnswerMs.toFixed(0),
      s.upstreamCallsPerRequest.toFixed(3),
    ]),
  );
  const withRange = (value: number, [low, high]: [number, number]) =>
    `${value.toFixed(2)}× (${low.toFixed(2)}–${high.toFixed(2)})`;
  const ratioTable = table(
    ['ratio', 'upstream delay', 'throughput (round by round)', 'CPU per request (round by round)'],
    ratioList.map((r) => [
      `${r.broker} / ${r.versus}`,
      `${r.delayMs} ms`,
      withRange(r.throughput, r.throughputRange),
      withRange(r.cpuPerRequest, r.cpuPerRequestRange),
    ]),
  );
  const checkTable = table(
    ['target', 'holds', 'measured'],
    checkList.map((c) => [c.target, c.holds ? 'yes' : 'NO', c.measured]),
  );
  return `${results}\n\n${ratioTable}\n\n${checkTable}\n`;
}

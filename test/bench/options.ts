import { existsSync } from 'node:fs';
import path from 'node:path';

export const TARGET_NAMES = [
  'direct',
  'naive',
  'naive-jwt',
  'broker-hs256',
  'broker-rs256',
  'broker-traced',
  'broker-2idp',
] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface BenchOptions {
  /** Measured seconds per round. BENCH_SECONDS / --seconds, default 10. */
  seconds: number;
  /** Load before each measured round, not counted. BENCH_WARMUP_SECONDS / --warmup-seconds, default 3. */
  warmupSeconds: number;
  /** Rounds per target and delay; odd rounds run the targets in order, even rounds in reverse. Default 2. */
  rounds: number;
  /** autocannon connections. Default 50. */
  connections: number;
  /** Distinct users with their own valid token. Default 100. */
  users: number;
  /** Fixed delays of the Cardscan stand-in, in ms. BENCH_DELAYS / --delays, default 0,50. */
  delaysMs: number[];
  /** Which targets to run. BENCH_TARGETS / --targets, default all. */
  targets: TargetName[];
  /** Runs the served processes with `node --cpu-prof` (slower; for finding costs, not for figures). */
  profile: boolean;
  /**
   * Node flags for the broker targets only, after those of `npm start`, e.g.
   * "--max-old-space-size=128", to measure a heap setting an operator might choose. A V8 flag also
   * makes V8 refuse the build's code cache, so the cold start is that of a broker without it.
   * BENCH_BROKER_NODE_OPTIONS / --broker-node-options.
   */
  brokerNodeOptions: string[];
  /**
   * A cgroup directory (v1 memory group or v2 group, created beforehand, needs root) the broker
   * targets join before node starts, so node sizes V8's heap from its memory limit as it does in
   * a container. BENCH_BROKER_CGROUP / --broker-cgroup, default none.
   */
  brokerCgroup?: string;
}

const DEFAULTS: Record<string, string> = {
  seconds: '10',
  'warmup-seconds': '3',
  rounds: '2',
  connections: '50',
  users: '100',
  delays: '0,50',
  targets: TARGET_NAMES.join(','),
  profile: 'false',
  'broker-node-options': '',
  'broker-cgroup': '',
};

/** `--name=value` arguments win over BENCH_NAME variables, which win over the defaults. */
export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const args = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match?.[1] || !(match[1] in DEFAULTS)) {
      throw new Error(`unknown argument ${arg}; known: ${Object.keys(DEFAULTS).join(', ')}`);
    }
    args.set(match[1], match[2] ?? 'true');
  }
  const value = (name: string): string =>
    args.get(name) ??
    env[`BENCH_${name.toUpperCase().replace(/-/g, '_')}`] ??
    (DEFAULTS[name] as string);
  const positive = (name: string): number => {
    const number = Number(value(name));
    if (!Number.isInteger(number) || number < 1)
      throw new Error(`${name} must be a whole number ≥ 1`);
    return number;
  };
  const targets = value('targets').split(',').filter(Boolean);
  for (const target of targets) {
    if (!(TARGET_NAMES as readonly string[]).includes(target)) {
      throw new Error(`unknown target ${target}; known: ${TARGET_NAMES.join(', ')}`);
    }
  }
  const brokerFlags = value('broker-node-options').split(' ').filter(Boolean);
  if (brokerFlags.some((flag) => !/^--[a-z0-9-]+(=[\w.,/-]+)?$/.test(flag))) {
    throw new Error('broker-node-options must be node flags such as --max-old-space-size=128');
  }
  const brokerCgroup = value('broker-cgroup') || undefined;
  if (
    brokerCgroup &&
    !(path.isAbsolute(brokerCgroup) && existsSync(`${brokerCgroup}/cgroup.procs`))
  ) {
    throw new Error('broker-cgroup must be the absolute path of a cgroup directory');
  }
  const delaysMs = value('delays').split(',').map(Number);
  if (delaysMs.some((delay) => !Number.isInteger(delay) || delay < 0 || delay > 1000)) {
    throw new Error('delays must be whole numbers of ms between 0 and 1000');
  }
  return {
    seconds: positive('seconds'),
    warmupSeconds: Number(value('warmup-seconds')) || 0,
    rounds: positive('rounds'),
    connections: positive('connections'),
    users: positive('users'),
    delaysMs,
    targets: targets as TargetName[],
    profile: value('profile') === 'true' || value('profile') === '1',
    brokerNodeOptions: brokerFlags,
    brokerCgroup,
  };
}

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

/** Every process this bench started and that has not exited yet: the only ones it ever kills. */
const started = new Set<ChildProcess>();

/** Kills, synchronously, every process this bench started; for exit, Ctrl-C and crashes. */
export function killAllStarted(): void {
  for (const child of started) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  started.clear();
}

export interface ServerProcess {
  name: string;
  pid: number;
  /** http://127.0.0.1:PORT */
  origin: string;
  /** performance.now() when it was spawned. */
  spawnedAt: number;
  /** Spawn → first 200 on /healthz, in ms. */
  coldStartMs: number;
  /** The last lines the process wrote to stderr, for failure messages. */
  stderrTail(): string;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  name: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /** Passed as PORT. */
  port: number;
  /** Give up waiting for /healthz after this long. */
  startTimeoutMs?: number;
  /** CPUs the process may run on (taskset list, e.g. "1"); unset: any. */
  cpus?: string;
  /** A cgroup directory the process joins before node starts, so node sees its memory limit. */
  cgroup?: string;
}

/** A port free right now on 127.0.0.1 (loopback only; the tiny reuse race is harmless here). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** GET on loopback; resolves with status and body, rejects on a network error or after 2 s. */
export function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false, timeout: 2000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/**
 * Spawns `node <args>` and polls /healthz every 2 ms until it answers 200; the time from spawn to
 * that answer is the cold start. stdout goes to /dev/null (a log collector's cheapest stand-in),
 * stderr is kept for error messages.
 */
export async function startServer(options: SpawnOptions): Promise<ServerProcess> {
  const origin = `http://127.0.0.1:${options.port}`;
  const spawnedAt = performance.now();
  // taskset execs node in place, so the pid is node's own.
  const node = options.cpus
    ? ['taskset', '-c', options.cpus, process.execPath, ...options.args]
    : [process.execPath, ...options.args];
  // The shell joins the cgroup, then execs node in place: node sizes its heap from the limit it
  // sees at start, and the pid stays the one measured.
  const [command, ...args]: string[] = options.cgroup
    ? ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', options.cgroup, ...node]
    : node;
  const child = spawn(command as string, args, {
    cwd: options.cwd,
    env: { ...options.env, PORT: String(options.port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  started.add(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      started.delete(child);
      resolve();
    });
  });

  const deadline = spawnedAt + (options.startTimeoutMs ?? 10_000);
  let coldStartMs: number | undefined;
  while (coldStartMs === undefined) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${options.name} exited during start:\n${stderr}`);
    }
    if (performance.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${options.name} did not answer /healthz in time:\n${stderr}`);
    }
    try {
      if ((await get(`${origin}/healthz`)).status === 200) {
        coldStartMs = performance.now() - spawnedAt;
      }
    } catch {
      await sleep(2);
    }
  }

  return {
    name: options.name,
    pid: child.pid as number,
    origin,
    spawnedAt,
    coldStartMs,
    stderrTail: () => stderr,
    async stop(graceMs = 3000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = sleep(graceMs, 'timeout' as const);
      if ((await Promise.race([exited, timer])) === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

const CLOCK_TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU time the process has used so far, all threads, in ms (from /proc/<pid>/stat). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may itself hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Resident set size now and its peak over the process's life (VmRSS, VmHWM), in MB. */
export function memoryMb(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/**
 * How the bench shares the CPUs: the measured process alone on the last CPU, the load generator
 * and the stand-in on the others, so a target's throughput is bounded by its own cost per request
 * and not by how the scheduler interleaves three busy processes. Undefined on one CPU or without
 * taskset (util-linux).
 */
export function cpuPlan(): { served: string; others: string } | undefined {
  const count = os.cpus().length;
  if (count < 2) return undefined;
  try {
    execFileSync('taskset', ['-a', '-cp', `0-${count - 2}`, String(process.pid)], {
      stdio: 'ignore',
    });
  } catch {
    return undefined;
  }
  return { served: String(count - 1), others: `0-${count - 2}` };
}

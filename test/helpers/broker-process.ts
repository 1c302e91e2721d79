import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = path.resolve(__dirname, '../..');
const START_TIMEOUT_MS = 15_000;

export interface BrokerProcess {
  child: ChildProcess;
  /** http://127.0.0.1:PORT of the public listener. */
  url: string;
  /** The lines it wrote, stdout and stderr (those `retain` kept). */
  output: string[];
  /** Resolves with the exit code (or the signal's name) once it exited. */
  exited: Promise<number | string>;
  /** Resolves once a log line with this message was written. */
  logged(message: string): Promise<void>;
  /** SIGKILLs it if it still runs. */
  stop(): Promise<void>;
}

/**
 * The real server (src/server.ts through tsx) as a child process on 127.0.0.1 and a free port,
 * configured by `env` alone, the way a container runs it.
 */
export async function spawnBroker(
  env: Record<string, string>,
  options: {
    /** Which lines `output` keeps (all by default); a long load run drops the per-request ones. */
    retain?: (line: string) => boolean;
  } = {},
): Promise<BrokerProcess> {
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const waiters: { message: string; resolve: () => void }[] = [];
  const retain = options.retain ?? (() => true);
  const onLine = (line: string) => {
    if (retain(line)) output.push(line);
    let msg: unknown;
    try {
      msg = (JSON.parse(line) as { msg?: unknown }).msg;
    } catch {
      return;
    }
    for (const waiter of waiters.filter((each) => each.message === msg)) waiter.resolve();
  };
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);

  const logged = (message: string) =>
    new Promise<void>((resolve) => {
      if (output.some((line) => line.includes(`"msg":${JSON.stringify(message)}`))) resolve();
      else waiters.push({ message, resolve });
    });

  const started = await Promise.race([
    logged('listening').then(() => 'listening' as const),
    exited.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => setTimeout(resolve, START_TIMEOUT_MS, 'timeout').unref()),
  ]);
  if (started !== 'listening') {
    child.kill('SIGKILL');
    throw new Error(`the broker did not start (${started}):\n${output.join('\n')}`);
  }
  const listening = output
    .map((line) => {
      try {
        return JSON.parse(line) as { msg?: string; urls?: { public?: string } };
      } catch {
        return {};
      }
    })
    .find((entry) => entry.msg === 'listening');

  return {
    child,
    url: listening?.urls?.public ?? '',
    output,
    exited,
    logged,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

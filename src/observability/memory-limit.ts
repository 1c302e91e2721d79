import os from 'node:os';
import v8 from 'node:v8';

/** Room the broker needs beside V8's heap: the node binary's pages, buffers, sockets, malloc. */
const OUTSIDE_HEAP_BYTES = 100 * 2 ** 20;

const mb = (bytes: number) => Math.round(bytes / 2 ** 20);

/**
 * A warning when the memory limit the process runs under (a container's) leaves less room than
 * V8's heap may take: there the kernel kills the broker (SIGKILL: no drain, no log line) before
 * V8 collects harder or reports. The heap limit comes from the start command's flags.
 */
export function memoryLimitWarning(
  limitBytes: number = process.constrainedMemory(),
  heapLimitBytes: number = v8.getHeapStatistics().heap_size_limit,
  machineBytes: number = os.totalmem(),
): string | undefined {
  // 0, or more than the machine has, means there is no limit.
  if (!limitBytes || limitBytes >= machineBytes) return undefined;
  const needed = heapLimitBytes + OUTSIDE_HEAP_BYTES;
  if (limitBytes >= needed) return undefined;
  return (
    `the memory limit (${mb(limitBytes)} MB) is below V8's heap limit plus about ` +
    `${mb(OUTSIDE_HEAP_BYTES)} MB outside the heap (${mb(needed)} MB): under load the kernel may ` +
    'kill the broker before V8 collects; raise the limit, or lower --max-old-space-size'
  );
}

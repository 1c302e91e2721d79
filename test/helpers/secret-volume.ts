import { mkdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * A directory laid out and updated the way the kubelet updates a Secret volume
 * (kubernetes/kubernetes pkg/volume/util/atomic_writer.go): each key is a symlink `key -> ..data/key`,
 * `..data` is a symlink to a timestamped directory `..2026_12_06_07_00_00.123456789`, and an update
 * writes a new timestamped directory, points a new `..data_tmp` symlink at it, renames that over
 * `..data` (the one atomic step), then deletes the old directory.
 */
export class SecretVolume {
  private generation = 0;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** The path a pod reads, e.g. /etc/secrets/cardscan-api-key. */
  pathOf(key: string): string {
    return path.join(this.dir, key);
  }

  /** Publishes a new version of every key, as one atomic swap. */
  write(files: Record<string, string>): void {
    const data = path.join(this.dir, '..data');
    let previous: string | undefined;
    try {
      previous = readlinkSync(data);
    } catch {
      previous = undefined;
    }
    const stamp = new Date().toISOString().replace(/[-T:]/g, '_').replace(/\..*$/, '');
    const version = `..${stamp}.${String(++this.generation).padStart(9, '0')}`;
    mkdirSync(path.join(this.dir, version), { mode: 0o755 });
    for (const [key, content] of Object.entries(files)) {
      writeFileSync(path.join(this.dir, version, key), content, { mode: 0o644 });
    }
    const tmp = path.join(this.dir, '..data_tmp');
    symlinkSync(version, tmp);
    renameSync(tmp, data);
    for (const key of Object.keys(files)) {
      try {
        symlinkSync(path.join('..data', key), this.pathOf(key));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
    }
    if (previous) rmSync(path.join(this.dir, previous), { recursive: true, force: true });
  }
}

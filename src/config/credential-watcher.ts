import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import {
  parseRotatedCredential,
  type AdminKey,
  type Config,
  type RotatableVariable,
  type RotatedValues,
} from './config';
import { readSecretFile } from './secret-files';

/**
 * A credential that may change while the broker runs. Its users read `current` when they start a
 * piece of work, so work in flight finishes with the value it started with.
 */
export class Credential<T> {
  private value: T;
  /** What an operator must fix when the credential is refused: the file when it came from one. */
  readonly origin: string;

  constructor(
    readonly variable: RotatableVariable,
    value: T,
    readonly file: string | undefined,
  ) {
    this.value = value;
    this.origin = file ? `${variable}_FILE (${file})` : variable;
  }

  get current(): T {
    return this.value;
  }

  replace(value: T): void {
    this.value = value;
  }
}

/** An upstream's bearer token; the Authorization header is built once per change, not per call. */
export class BearerCredential extends Credential<string> {
  private header: string;

  constructor(variable: RotatableVariable, token: string, file: string | undefined) {
    super(variable, token, file);
    this.header = `Bearer ${token}`;
  }

  get authorization(): string {
    return this.header;
  }

  override replace(token: string): void {
    super.replace(token);
    this.header = `Bearer ${token}`;
  }
}

export interface Credentials {
  cardscan: BearerCredential;
  /** Absent when CERTISCAN_AUTH_TOKEN is unset (admin off). */
  certiscan?: BearerCredential;
  /** Absent when ADMIN_API_KEYS is unset (admin off). */
  adminKeys?: Credential<AdminKey[]>;
}

/** The running credentials, from the config; their load time goes to /metrics. */
export function createCredentials(config: Config, metrics: Metrics): Credentials {
  const files = config.credentialFiles;
  const credentials: Credentials = {
    cardscan: new BearerCredential(
      'CARDSCAN_API_KEY',
      config.cardscan.apiKey,
      files.CARDSCAN_API_KEY,
    ),
    certiscan:
      config.certiscan.authToken === undefined
        ? undefined
        : new BearerCredential(
            'CERTISCAN_AUTH_TOKEN',
            config.certiscan.authToken,
            files.CERTISCAN_AUTH_TOKEN,
          ),
    adminKeys: config.admin
      ? new Credential('ADMIN_API_KEYS', config.admin.keys, files.ADMIN_API_KEYS)
      : undefined,
  };
  const now = Date.now();
  for (const credential of Object.values(credentials) as (Credential<unknown> | undefined)[]) {
    if (credential) metrics.setCredentialLoaded(credential.variable, now);
  }
  return credentials;
}

/** What made the watcher read the files: its start, a change in a watched directory, its periodic check, or SIGHUP. */
export type ReloadTrigger = 'start' | 'file-change' | 'poll' | 'SIGHUP';

export interface CredentialWatcher {
  /** Reads every rotatable credential file now; resolves when they were read and applied or refused. */
  reload(trigger: ReloadTrigger): Promise<void>;
  /** Stops watching; for shutdown. */
  close(): void;
}

/** The backstop for changes no directory event reports (e.g. a symlink's target elsewhere). */
const POLL_INTERVAL_MS = 5000;
/** The wait after a directory event, so a file written in several steps is read once, complete. */
const SETTLE_MS = 100;

interface Watched {
  credential: Credential<unknown>;
  file: string;
  /** Parses a new value with the start-up rules and applies it unless it equals the current one. */
  apply(text: string): { applied: boolean } | { problems: string[] };
  /** The last content (or read failure) handled, so an unchanged file is not handled again. */
  seen?: string;
}

function sameAdminKeys(a: AdminKey[], b: AdminKey[]): boolean {
  return (
    a.length === b.length &&
    a.every((key, index) => key.name === b[index]?.name && key.sha256.equals(b[index].sha256))
  );
}

function watched<V extends RotatableVariable>(
  config: Config,
  credential: Credential<RotatedValues[V]> | undefined,
  variable: V,
  same: (a: RotatedValues[V], b: RotatedValues[V]) => boolean,
): Watched | undefined {
  const file = config.credentialFiles[variable];
  if (!credential || !file) return undefined;
  return {
    credential,
    file,
    apply(text) {
      const parsed = parseRotatedCredential(config, variable, text);
      if (!parsed.ok) return { problems: parsed.problems };
      if (same(parsed.value, credential.current)) return { applied: false };
      credential.replace(parsed.value);
      return { applied: true };
    },
  };
}

/**
 * Reads CARDSCAN_API_KEY_FILE, CERTISCAN_AUTH_TOKEN_FILE and ADMIN_API_KEYS_FILE again when they
 * change; undefined when none of them is set. A change is seen through fs.watch on each file's
 * directory, which reports Kubernetes' `..data` symlink swap (a rename in that directory) as well
 * as a rewrite or a rename over the file; a read every few seconds catches what no event reports,
 * so a change is applied within 10 s in any case. A value that fails the start-up rules is
 * refused: the old one stays and one error line names the variable.
 */
export function createCredentialWatcher(
  config: Config,
  credentials: Credentials,
  deps: { logger: Logger; metrics: Metrics },
): CredentialWatcher | undefined {
  const { logger, metrics } = deps;
  const entries = [
    watched(config, credentials.cardscan, 'CARDSCAN_API_KEY', (a, b) => a === b),
    watched(config, credentials.certiscan, 'CERTISCAN_AUTH_TOKEN', (a, b) => a === b),
    watched(config, credentials.adminKeys, 'ADMIN_API_KEYS', sameAdminKeys),
  ].filter((entry): entry is Watched => entry !== undefined);
  if (entries.length === 0) return undefined;
  for (const { credential } of entries) {
    metrics.countCredentialReload(credential.variable, 'applied', 0);
    metrics.countCredentialReload(credential.variable, 'refused', 0);
  }

  const refuse = (entry: Watched, trigger: ReloadTrigger, problems: string[]) => {
    const { variable } = entry.credential;
    metrics.countCredentialReload(variable, 'refused');
    logger.error(
      { variable, file: entry.file, trigger, problems },
      `credential rotation: the new ${variable} in ${variable}_FILE was refused, the old one stays in use: ${problems.join('; ')}`,
    );
  };

  async function check(trigger: ReloadTrigger): Promise<void> {
    for (const entry of entries) {
      const read = await readSecretFile(entry.file);
      const seen = read.ok ? `value:${read.value}` : `failure:${read.reason}`;
      if (seen === entry.seen) continue;
      entry.seen = seen;
      const { variable } = entry.credential;
      if (!read.ok) {
        refuse(entry, trigger, [`${variable}_FILE: the file ${entry.file} ${read.reason}`]);
        continue;
      }
      const outcome = entry.apply(read.value);
      if ('problems' in outcome) {
        refuse(entry, trigger, outcome.problems);
      } else if (outcome.applied) {
        metrics.countCredentialReload(variable, 'applied');
        metrics.setCredentialLoaded(variable, Date.now());
        logger.info(
          { variable, file: entry.file, trigger },
          `credential rotation: the new ${variable} from ${variable}_FILE is in use`,
        );
      }
    }
  }

  // One check at a time; a trigger that arrives meanwhile runs one more check after it.
  let running: Promise<void> | undefined;
  let queued: ReloadTrigger | undefined;
  const reload = (trigger: ReloadTrigger): Promise<void> => {
    if (running) {
      if (trigger !== 'poll') queued = trigger;
      return running;
    }
    running = check(trigger).finally(() => {
      running = undefined;
      const next = queued;
      queued = undefined;
      if (next) void reload(next);
    });
    return running;
  };

  let settling: NodeJS.Timeout | undefined;
  const onChange = () => {
    settling ??= setTimeout(() => {
      settling = undefined;
      void reload('file-change');
    }, SETTLE_MS).unref();
  };
  const watchers: FSWatcher[] = [];
  for (const directory of new Set(entries.map((entry) => path.dirname(path.resolve(entry.file))))) {
    const onWatchError = (error: unknown) =>
      logger.warn(
        { directory, code: (error as NodeJS.ErrnoException).code },
        `credential rotation: cannot watch ${directory}; changes there are picked up by the check every ${POLL_INTERVAL_MS / 1000} s`,
      );
    try {
      const watcher = watch(directory, { persistent: false }, onChange);
      watcher.on('error', (error) => {
        onWatchError(error);
        watcher.close();
      });
      watchers.push(watcher);
    } catch (error) {
      onWatchError(error);
    }
  }
  const poll = setInterval(() => void reload('poll'), POLL_INTERVAL_MS).unref();
  void reload('start');

  return {
    reload,
    close() {
      clearInterval(poll);
      clearTimeout(settling);
      for (const watcher of watchers) watcher.close();
    },
  };
}

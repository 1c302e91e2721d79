import dotenv from 'dotenv';
import { createBroker } from './broker';
import { ConfigError, loadConfig } from './config/config';
import { createLogger } from './observability/logger';
import { startListeners } from './http/lifecycle';
import { memoryLimitWarning } from './observability/memory-limit';

/**
 * Kept from the drain to close upstream and Redis connections and send the last spans before
 * SHUTDOWN_TIMEOUT_MS.
 */
const CLOSE_RESERVE_MS = 1000;
/** Left between the end of closing and the hard stop, so the exit is a clean 0. */
const EXIT_MARGIN_MS = 100;

/** The only module that reads process.env, listens and handles signals. */
async function main(): Promise<void> {
  dotenv.config({ quiet: true });
  let loaded;
  try {
    loaded = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(
        `cardscan-broker: invalid configuration\n${error.problems.map((p) => `  ${p}\n`).join('')}`,
      );
      process.exit(1);
    }
    throw error;
  }
  const { config, warnings } = loaded;
  const logger = createLogger(config.logLevel);
  for (const warning of warnings) logger.warn(warning);
  const memoryWarning = memoryLimitWarning();
  if (memoryWarning) logger.warn(memoryWarning);

  const broker = createBroker(config, { logger, defaultMetrics: true });
  const starting = startListeners(broker.listeners, logger);

  // Registered before the listeners are up: a SIGTERM that arrives while starting must drain,
  // not kill the process with the default action.
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const { shutdownDelayMs, shutdownTimeoutMs } = config.server;
    const stopBy = performance.now() + shutdownTimeoutMs - EXIT_MARGIN_MS;
    // The last resort if closing a connection hangs: the orchestrator must not have to SIGKILL.
    setTimeout(() => {
      logger.error('shutdown did not finish within SHUTDOWN_TIMEOUT_MS: exiting');
      process.exit(1);
    }, shutdownTimeoutMs).unref();
    starting
      .then((running) =>
        running.shutdown({
          delayMs: shutdownDelayMs,
          timeoutMs: shutdownTimeoutMs - Math.min(CLOSE_RESERVE_MS, shutdownTimeoutMs / 4),
          startDraining: broker.startDraining,
        }),
      )
      // An unreachable collector costs at most what is left of SHUTDOWN_TIMEOUT_MS.
      .then(() => broker.close(Math.max(0, stopBy - performance.now())))
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error(
            { reason: error instanceof Error ? error.message : 'unknown' },
            'shutdown failed',
          );
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Credential rotation at once, without waiting for the file watch. Handled even without a
  // credential file: SIGHUP's default action would kill the broker.
  process.on('SIGHUP', () => {
    broker.reloadCredentials().then(
      (watched) =>
        logger.info(
          watched
            ? 'SIGHUP: credential files read again'
            : 'SIGHUP: no credential is read from a file; nothing to reload',
        ),
      (error: unknown) =>
        logger.error(
          { reason: error instanceof Error ? error.message : 'unknown' },
          'SIGHUP: reading the credential files failed',
        ),
    );
  });

  await starting;
  void broker.keys.warmUp();
}

// One line and exit 1 for a start that fails (e.g. the port is taken), never a stack trace.
main().catch((error: unknown) => {
  const reason = error instanceof Error ? error.message : String(error);
  process.stderr.write(`cardscan-broker: cannot start: ${reason}\n`);
  process.exit(1);
});

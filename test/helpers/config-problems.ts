import { ConfigError, loadConfig } from '../../src/config/config';

/** The problems loadConfig reports for `env`; fails the test when it reports none. */
export function problemsOf(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Paths that must never reach a log line even if some code passes them in by mistake. The request
 * serializer below already drops headers and query strings; this list is the second fence.
 */
export const REDACT_PATHS = [
  'authorization',
  'cookie',
  'secret',
  'apiKey',
  'token',
  'authToken',
  '*.authorization',
  '*.Authorization',
  '*.cookie',
  '*.secret',
  '*.apiKey',
  '*.token',
  '*.Token',
  '*.authToken',
  '*.headers.authorization',
  '*.headers.Authorization',
  '*.headers.cookie',
  '*.headers["set-cookie"]',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'cardscan-broker' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

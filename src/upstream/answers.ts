import axios, { type AxiosResponse } from 'axios';
import type { UpstreamFailure } from '../errors';

/** A usable upstream answer: a 2xx with a JSON body. */
export interface Answer {
  status: number;
  body: unknown;
}

/** Why an attempt did not give an Answer, and whether another attempt may. */
export class Failure {
  constructor(
    readonly failure: UpstreamFailure,
    readonly detail: string,
    readonly retryable: boolean,
    readonly upstreamStatus?: number,
  ) {}
}

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

function messageOf(body: unknown): string | undefined {
  if (body && typeof body === 'object') {
    for (const field of ['message', 'detail', 'error']) {
      const value = (body as Record<string, unknown>)[field];
      if (typeof value === 'string' && value.length > 0) return value.slice(0, 500);
    }
  }
  return undefined;
}

function parseJson(text: unknown): { ok: true; value: unknown } | { ok: false } {
  if (typeof text !== 'string') return { ok: false };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/**
 * Reads one upstream's answers. `label` names it in messages ("Cardscan"); `passThrough` are the
 * 4xx statuses about the request itself that reach the caller unchanged.
 */
export function createAnswerReader(label: string, passThrough: ReadonlySet<number>) {
  return {
    /** An answer that came back: usable, or the Failure it means. */
    classify(response: AxiosResponse): Answer | Failure {
      const { status } = response;
      const parsed = parseJson(response.data);
      if (status >= 200 && status < 300) {
        return parsed.ok
          ? { status, body: parsed.value }
          : new Failure(
              'bad-response',
              `${label} answered ${status} with a body that is not JSON`,
              false,
              status,
            );
      }
      const upstreamMessage = parsed.ok ? messageOf(parsed.value) : undefined;
      if (status === 401 || status === 403) {
        return new Failure(
          'credentials',
          `${label} refused the broker's credentials`,
          false,
          status,
        );
      }
      if (passThrough.has(status)) {
        return new Failure(
          'rejected',
          upstreamMessage ?? `${label} refused the request (${status})`,
          false,
          status,
        );
      }
      if (status >= 500) {
        return new Failure('bad-response', `${label} failed (${status})`, true, status);
      }
      return new Failure(
        'bad-response',
        `${label} answered with unexpected status ${status}`,
        false,
        status,
      );
    },

    /** A call that threw before an answer came back (the deadline aside). */
    networkFailure(error: unknown): Failure {
      const code = axios.isAxiosError(error) ? error.code : undefined;
      if (
        code === 'ERR_BAD_RESPONSE' &&
        String((error as Error).message).includes('maxContentLength')
      ) {
        return new Failure('bad-response', `${label} answered with an oversized body`, false);
      }
      if (code && UNREACHABLE_CODES.has(code)) {
        return new Failure('unreachable', `${label} is unreachable`, true);
      }
      return new Failure('bad-response', `${label} dropped the connection`, true);
    },
  };
}

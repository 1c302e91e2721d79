import { z } from 'zod';
import { UnusableAnswerError, type UpstreamClient } from './upstream-client';

/** What CertiScan keeps for a worktoken client. The secret cannot be read back once set. */
export interface WorktokenFields {
  name: string;
  subject: string;
  secret: string;
}

export interface Worktoken {
  subject: string;
  name: string;
}

/** Every answer carries CertiScan's HTTP status, for the audit line. */
export interface CertiscanAnswer {
  upstreamStatus: number;
}

export interface WorktokenAnswer extends CertiscanAnswer {
  worktoken: Worktoken;
}

export interface CertiscanClient {
  createWorktoken(fields: WorktokenFields, requestId: string): Promise<WorktokenAnswer>;
  /** CertiScan has only PUT: every update sets the secret too. */
  updateWorktoken(fields: WorktokenFields, requestId: string): Promise<WorktokenAnswer>;
  deleteWorktoken(subject: string, requestId: string): Promise<CertiscanAnswer>;
  close(): void;
}

/** CertiScan's 4xx about the request itself: they reach the admin caller with CertiScan's message. */
export const CERTISCAN_PASS_THROUGH_STATUSES = [400, 404, 409, 422] as const;

const PATH = '/account/worktoken/';
/** The template of a subject's path, for spans: a subject is an account's own name for a client. */
const SUBJECT_ROUTE = `${PATH}{subject}/`;

const worktokenBody = z.object({
  success: z.literal(true),
  result: z.object({ subject: z.string().min(1), name: z.string() }),
});
const deletedBody = z.object({ success: z.literal(true), result: z.object({}) });

function refusalMessage(body: unknown): string | undefined {
  const message = (body as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message.length > 0 ? message.slice(0, 300) : undefined;
}

/** A reader of `{"success": true, "result": …}`; `success: false` or any other shape is a 502. */
function resultOf<T>(schema: z.ZodType<{ result: T }>): (body: unknown) => T {
  return (body) => {
    const parsed = schema.safeParse(body);
    if (parsed.success) return parsed.data.result;
    const refused = (body as { success?: unknown } | null)?.success === false;
    const message = refused ? refusalMessage(body) : undefined;
    throw new UnusableAnswerError(
      refused
        ? `CertiScan answered success: false${message ? `: ${message}` : ''}`
        : 'CertiScan answered with an unexpected body',
    );
  };
}

/** The subject goes into the URL encoded even though the routes already allow only safe characters. */
const subjectPath = (subject: string) => `${PATH}${encodeURIComponent(subject)}/`;

export function createCertiscanClient(upstream: UpstreamClient): CertiscanClient {
  /** Create and update send the same body; only PUT may be retried. */
  async function write(
    method: 'POST' | 'PUT',
    fields: WorktokenFields,
    requestId: string,
  ): Promise<WorktokenAnswer> {
    const { status, value } = await upstream.send({
      method,
      path: method === 'POST' ? PATH : subjectPath(fields.subject),
      route: method === 'POST' ? PATH : SUBJECT_ROUTE,
      data: { name: fields.name, subject: fields.subject, secret: fields.secret },
      requestId,
      // Never for a create: one that reached CertiScan but lost its answer would fail as a duplicate.
      retry: method === 'PUT',
      read: resultOf(worktokenBody),
    });
    return { upstreamStatus: status, worktoken: value };
  }

  return {
    close: () => upstream.close(),
    createWorktoken: (fields, requestId) => write('POST', fields, requestId),
    updateWorktoken: (fields, requestId) => write('PUT', fields, requestId),
    async deleteWorktoken(subject, requestId) {
      const { status } = await upstream.send({
        method: 'DELETE',
        path: subjectPath(subject),
        route: SUBJECT_ROUTE,
        requestId,
        retry: true,
        read: resultOf(deletedBody),
      });
      return { upstreamStatus: status };
    },
  };
}

import { randomBytes } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import type { Routes } from '../app';
import { z } from 'zod';
import { AppError, BadRequestError, UnsupportedMediaTypeError, UpstreamError } from '../errors';
import { adminActorOf, createAdminAuthenticator, type AdminKeys } from '../auth/admin-auth';
import { jsonBody } from '../http/json-body';
import { auditHead } from '../observability/audit';
import type { Logger } from '../observability/logger';
import type { CertiscanClient, Worktoken } from '../upstream/certiscan';

/** Letters, digits, `.`, `_`, `-`, 1 to 128 characters, not starting with `.` (so never `..`). */
export const SUBJECT_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const SUBJECT_RULE = 'must be 1 to 128 letters, digits, ".", "_" or "-", not starting with "."';
/** Bytes behind a generated secret: 32 bytes of base64url are 43 characters. */
const GENERATED_SECRET_BYTES = 32;
/** Exported for /openapi.json, which must describe exactly what the routes accept. */
export const MIN_SECRET_LENGTH = 16;
export const MAX_SECRET_LENGTH = 512;
export const MAX_NAME_LENGTH = 128;
/**
 * CertiScan stores the name and shows it to people: no control characters (a CR/LF forges lines in
 * logs and exports), no format characters (U+202E and friends reorder what a reader sees, zero-width
 * ones hide text), no line separators and no lone surrogates. Counted in code points.
 */
const PRINTABLE_NAME = new RegExp(
  `^[^\\p{Cc}\\p{Cf}\\p{Cs}\\p{Zl}\\p{Zp}]{1,${MAX_NAME_LENGTH}}$`,
  'u',
);
/** A refused subject is still logged, but never at any length a caller likes. */
const MAX_LOGGED_SUBJECT = 256;

const DELETE_NOTE =
  'Deleted. Tokens already in use stop working within about 5 minutes: the change takes up to about 5 minutes to reach every CertiScan cache.';

type AdminAction = 'worktoken.create' | 'worktoken.update' | 'worktoken.delete';

export interface AdminRouteDeps {
  keys: AdminKeys;
  certiscan: CertiscanClient;
  logger: Logger;
}

const text = () =>
  z.string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') });
const name = text()
  .trim()
  .min(1, 'must not be empty')
  .regex(
    PRINTABLE_NAME,
    `must be 1 to ${MAX_NAME_LENGTH} printable characters (no control or bidi-override characters)`,
  );
const subject = text().regex(SUBJECT_PATTERN, SUBJECT_RULE);
const secret = text()
  .min(MIN_SECRET_LENGTH, `must be at least ${MIN_SECRET_LENGTH} characters`)
  .max(MAX_SECRET_LENGTH, `must be at most ${MAX_SECRET_LENGTH} characters`);

const createBody = z.object({ name, subject, secret: secret.optional() }).strict();
const updateBody = z.object({ name, secret: secret.optional() }).strict();

/** One sentence per problem, naming the field; never the value, which may be a secret. */
function describe(error: z.ZodError, accepted: readonly string[]): string {
  return error.issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        const fields = issue.keys.map((key) => JSON.stringify(key.slice(0, 64))).join(', ');
        return `body field ${fields} is not accepted (accepted: ${accepted.join(', ')})`;
      }
      const field = issue.path.join('.');
      return field ? `body field "${field}" ${issue.message}` : 'the body must be a JSON object';
    })
    .join('; ');
}

function bodyOf<T extends z.ZodObject>(req: Request, schema: T): z.infer<T> {
  if (req.body === undefined) {
    const hasBody =
      req.headers['transfer-encoding'] !== undefined ||
      Number(req.headers['content-length'] ?? 0) > 0;
    if (hasBody) {
      throw new UnsupportedMediaTypeError(
        'send the body as JSON with Content-Type: application/json',
      );
    }
    throw new BadRequestError('the body must be a JSON object');
  }
  const parsed = schema.safeParse(req.body);
  if (!parsed.success) throw new BadRequestError(describe(parsed.error, Object.keys(schema.shape)));
  return parsed.data;
}

/** Admin routes take no query string; `PUT /admin/worktokens/a?b` must not quietly update `a`. */
function refuseQuery(req: Request): void {
  if (req.url.includes('?')) {
    throw new BadRequestError(
      'admin routes take no query string; a subject holding "?" or "#" is not valid anyway',
    );
  }
}

/** The `:subject` path parameter as Express decoded it (so `%2e%2e` arrives here as `..`). */
function pathSubject(req: Request): string {
  const value = req.params.subject;
  return typeof value === 'string' ? value : '';
}

function checkedSubject(value: string): string {
  if (!SUBJECT_PATTERN.test(value)) throw new BadRequestError(`the subject ${SUBJECT_RULE}`);
  return value;
}

/** The secret given, or a strong one from the CSPRNG that is shown to the caller this once. */
function secretFor(supplied: string | undefined): { secret: string; generated: boolean } {
  return supplied === undefined
    ? { secret: randomBytes(GENERATED_SECRET_BYTES).toString('base64url'), generated: true }
    : { secret: supplied, generated: false };
}

function answer(worktoken: Worktoken, secret: { secret: string; generated: boolean }) {
  return {
    subject: worktoken.subject,
    name: worktoken.name,
    ...(secret.generated ? { secret: secret.secret } : {}),
  };
}

/** What a handler learns for the audit line while it works. */
interface AuditRecord {
  subject?: string;
  upstreamStatus?: number;
}

type AuditedHandler = (req: Request, res: Response, record: AuditRecord) => Promise<void>;

/** Wraps a handler so every call, success or failure, writes exactly one audit line. */
function audited(logger: Logger, action: AdminAction, handle: AuditedHandler): RequestHandler {
  return async (req, res) => {
    const started = performance.now();
    const record: AuditRecord = {};
    const line = (outcome: string, status: number, upstreamStatus: number | undefined) => ({
      ...auditHead(req, adminActorOf(res)),
      action,
      subject: record.subject?.slice(0, MAX_LOGGED_SUBJECT),
      outcome,
      status,
      upstreamStatus,
      durationMs: Math.round(performance.now() - started),
    });
    try {
      await handle(req, res, record);
    } catch (error) {
      const known = error instanceof AppError ? error : undefined;
      const upstreamStatus = error instanceof UpstreamError ? error.upstreamStatus : undefined;
      logger.warn(
        line(known?.code ?? 'internal', known?.status ?? 500, upstreamStatus),
        `audit: ${action} failed`,
      );
      throw error;
    }
    logger.info(line('success', res.statusCode, record.upstreamStatus), `audit: ${action}`);
  };
}

export function adminRoutes(deps: AdminRouteDeps): Routes {
  const { certiscan, logger } = deps;

  const create = audited(logger, 'worktoken.create', async (req, res, record) => {
    const raw = (req.body as { subject?: unknown } | undefined)?.subject;
    if (typeof raw === 'string') record.subject = raw;
    refuseQuery(req);
    const body = bodyOf(req, createBody);
    const secret = secretFor(body.secret);
    const { upstreamStatus, worktoken } = await certiscan.createWorktoken(
      { name: body.name, subject: body.subject, secret: secret.secret },
      String(req.id),
    );
    record.upstreamStatus = upstreamStatus;
    res.status(201).json(answer(worktoken, secret));
  });

  const update = audited(logger, 'worktoken.update', async (req, res, record) => {
    record.subject = pathSubject(req);
    refuseQuery(req);
    const subject = checkedSubject(record.subject);
    const body = bodyOf(req, updateBody);
    const secret = secretFor(body.secret);
    const { upstreamStatus, worktoken } = await certiscan.updateWorktoken(
      { name: body.name, subject, secret: secret.secret },
      String(req.id),
    );
    record.upstreamStatus = upstreamStatus;
    res.json(answer(worktoken, secret));
  });

  const remove = audited(logger, 'worktoken.delete', async (req, res, record) => {
    record.subject = pathSubject(req);
    refuseQuery(req);
    const subject = checkedSubject(record.subject);
    const { upstreamStatus } = await certiscan.deleteWorktoken(subject, String(req.id));
    record.upstreamStatus = upstreamStatus;
    res.json({ subject, deleted: true, note: DELETE_NOTE });
  });

  const noSubject = (action: AdminAction) =>
    audited(logger, action, async () => {
      throw new BadRequestError('the subject is missing: use /admin/worktokens/{subject}');
    });

  return (router) => {
    router.use('/admin', (_req, res, next) => {
      // Answers may carry a secret shown once; no cache on the way may keep any admin answer.
      res.set('Cache-Control', 'no-store');
      next();
    });
    router.use('/admin', createAdminAuthenticator(deps.keys, logger));
    router
      .route('/admin/worktokens')
      .post(jsonBody, create)
      .put(noSubject('worktoken.update'))
      .delete(noSubject('worktoken.delete'));
    router.route('/admin/worktokens/:subject').put(jsonBody, update).delete(remove);
  };
}

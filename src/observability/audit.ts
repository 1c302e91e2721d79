import { randomUUID } from 'node:crypto';
import type { Request } from 'express';

/** The fields that make a log line an admin audit line, the same on every one. */
export interface AuditHead {
  audit: true;
  /** The broker's own id of this line: the request id is the caller's to choose, this never repeats. */
  audit_id: string;
  /** The name of the admin key that was accepted; null when none was. */
  actor: string | null;
  requestId: string;
}

/**
 * The head of an admin audit line, for both writers: the admin authenticator (refused calls) and
 * the admin routes (every call that got past it). A search for `audit: true` finds them all.
 */
export function auditHead(req: Request, actor: string | null): AuditHead {
  return { audit: true, audit_id: randomUUID(), actor, requestId: String(req.id) };
}

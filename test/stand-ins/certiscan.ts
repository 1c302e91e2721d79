import { startStandIn, type StandIn } from './stand-in-server';

export interface Worktoken {
  name: string;
  secret: string;
}

export interface CertiscanStandIn extends StandIn {
  /** Base URL as CERTISCAN_BASE_URL wants it. */
  baseUrl: string;
  /** The worktoken clients it holds, by subject. */
  worktokens: Map<string, Worktoken>;
  /** Answers the next request with 200 `{"success": false}`. */
  refuseNext(message: string): void;
}

const PREFIX = '/api/v1/account/worktoken/';

function fail(status: number, message: string) {
  return { status, body: { success: false, message } };
}

/**
 * CertiScan's worktoken API: create, update (PUT only) and delete, with trailing slashes,
 * `{"success": true, "result": …}` answers and its 4xx for bad, duplicate or unknown subjects.
 */
export async function startCertiscanStandIn(options: {
  authToken: string;
  port?: number;
}): Promise<CertiscanStandIn> {
  const worktokens = new Map<string, Worktoken>();
  const refusals: string[] = [];
  const standIn = await startStandIn({
    bearerToken: options.authToken,
    port: options.port,
    unauthorizedBody: { detail: 'Invalid token.' },
    serverErrorBody: { detail: 'Server Error (500)' },
    handle: (request) => {
      const refusal = refusals.shift();
      if (refusal !== undefined) return { status: 200, body: { success: false, message: refusal } };
      if (!request.path.startsWith(PREFIX)) return fail(404, 'Not found.');
      const body = (request.body ?? {}) as Record<string, unknown>;
      const rest = request.path.slice(PREFIX.length);

      if (request.method === 'POST' && rest === '') {
        const { name, subject, secret } = body;
        if (typeof name !== 'string' || typeof subject !== 'string' || typeof secret !== 'string') {
          return fail(400, 'name, subject and secret are required.');
        }
        if (worktokens.has(subject))
          return fail(409, `A worktoken with subject ${subject} already exists.`);
        worktokens.set(subject, { name, secret });
        return { status: 201, body: { success: true, result: { subject, name } } };
      }

      const match = /^([^/]+)\/$/.exec(rest);
      if (!match) return fail(404, 'Not found.');
      const subject = decodeURIComponent(match[1] as string);
      const existing = worktokens.get(subject);
      if (!existing) return fail(404, `No worktoken with subject ${subject}.`);
      if (request.method === 'PUT') {
        const { name, secret } = body;
        if (typeof name !== 'string' || typeof secret !== 'string' || body.subject !== subject) {
          return fail(400, 'name, subject and secret are required.');
        }
        worktokens.set(subject, { name, secret });
        return { status: 200, body: { success: true, result: { subject, name } } };
      }
      if (request.method === 'DELETE') {
        worktokens.delete(subject);
        return { status: 200, body: { success: true, result: {} } };
      }
      return fail(405, 'Method not allowed.');
    },
  });
  return {
    ...standIn,
    baseUrl: `${standIn.origin}/api/v1`,
    worktokens,
    refuseNext: (message) => {
      refusals.push(message);
    },
  };
}

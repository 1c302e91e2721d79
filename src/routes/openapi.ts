/** The OpenAPI 3.1 description served at /openapi.json. Admin paths only on the listener serving them. */
import { MAX_NAME_LENGTH, MAX_SECRET_LENGTH, MIN_SECRET_LENGTH, SUBJECT_PATTERN } from './admin';

const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});

const standardErrors = {
  '400': problem('Bad input: the detail names the field and why'),
  '401': problem('No or bad credentials; see WWW-Authenticate'),
  '403': problem(
    'A browser Origin not in CORS_ORIGINS, or a cookie login without an allowed Origin or Sec-Fetch-Site: same-origin',
  ),
  '413': problem('Body larger than 100 kB'),
  '429': problem('Rate limited; see Retry-After'),
  '502': problem('The upstream refused the broker or answered nonsense'),
  '503': problem('Upstream unreachable or circuit open; see Retry-After'),
  '504': problem('Upstream too slow'),
};

const subjectParameter = {
  name: 'subject',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: SUBJECT_PATTERN.source },
};

/** A worktoken request body: `name` and an optional `secret`, plus `subject` when creating. */
const worktokenBody = (withSubject: boolean) => ({
  required: true,
  content: {
    'application/json': {
      schema: {
        type: 'object',
        additionalProperties: false,
        required: withSubject ? ['name', 'subject'] : ['name'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: MAX_NAME_LENGTH },
          ...(withSubject ? { subject: subjectParameter.schema } : {}),
          secret: { type: 'string', minLength: MIN_SECRET_LENGTH, maxLength: MAX_SECRET_LENGTH },
        },
      },
    },
  },
});

const worktokenAnswer = {
  description: 'The worktoken; `secret` only when the broker generated it, shown this once',
  headers: { 'Cache-Control': { schema: { type: 'string', const: 'no-store' } } },
  content: {
    'application/json': {
      schema: {
        type: 'object',
        required: ['subject', 'name'],
        properties: {
          subject: { type: 'string' },
          name: { type: 'string' },
          secret: { type: 'string' },
        },
      },
    },
  },
};

const adminErrors = {
  ...standardErrors,
  '404': problem('CertiScan has no worktoken with that subject'),
  '409': problem('CertiScan already has a worktoken with that subject'),
  '415': problem('A body that is not JSON, or a Content-Encoding other than gzip, deflate, br'),
  '422': problem('CertiScan refused the values'),
};

const session = {
  tags: ['session'],
  summary: 'Mint a Cardscan.ai session token for the logged-in user',
  description:
    'The user_id sent to Cardscan comes only from the verified login; a client-supplied user_id is refused with 400. POST takes no body.',
  security: [{ bearer: [] }, { cookie: [] }],
  responses: {
    '200': {
      description: 'A session for the Cardscan SDK; every value is a string',
      headers: { 'Cache-Control': { schema: { type: 'string', const: 'no-store' } } },
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Session' } } },
    },
    ...standardErrors,
    '415': problem('A body that is not JSON, or a Content-Encoding other than gzip, deflate, br'),
  },
};

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'cardscan-broker',
    version: '0.1.0',
    description:
      'Mints Cardscan.ai session tokens for verified users; admin routes wrap CertiScan worktokens.',
  },
  paths: {
    '/cardscan-session': { get: session, post: session },
    '/healthz': {
      get: { tags: ['ops'], summary: 'Liveness', responses: { '200': { description: 'Serving' } } },
    },
    '/readyz': {
      get: {
        tags: ['ops'],
        summary: 'Readiness: config loaded, signing keys available, not draining',
        responses: { '200': { description: 'Ready' }, '503': problem('Not ready') },
      },
    },
    '/metrics': {
      get: {
        tags: ['ops'],
        summary: 'Prometheus metrics',
        responses: {
          '200': { description: 'Prometheus text format', content: { 'text/plain': {} } },
        },
      },
    },
    '/openapi.json': {
      get: {
        tags: ['ops'],
        summary: 'This document',
        responses: { '200': { description: 'OpenAPI 3.1' } },
      },
    },
    '/admin/worktokens': {
      post: {
        tags: ['admin'],
        summary: 'Create a CertiScan worktoken client',
        security: [{ adminKey: [] }],
        requestBody: worktokenBody(true),
        responses: { '201': worktokenAnswer, ...adminErrors },
      },
    },
    '/admin/worktokens/{subject}': {
      parameters: [subjectParameter],
      put: {
        tags: ['admin'],
        summary: 'Rename a worktoken client and set its secret (generated when omitted)',
        security: [{ adminKey: [] }],
        requestBody: worktokenBody(false),
        responses: { '200': worktokenAnswer, ...adminErrors },
      },
      delete: {
        tags: ['admin'],
        summary: 'Delete a worktoken client; tokens in use stop working within about 5 minutes',
        security: [{ adminKey: [] }],
        responses: {
          '200': {
            description: 'Deleted',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['subject', 'deleted', 'note'],
                  properties: {
                    subject: { type: 'string' },
                    deleted: { type: 'boolean', const: true },
                    note: { type: 'string' },
                  },
                },
              },
            },
          },
          ...adminErrors,
        },
      },
    },
  },
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
      cookie: { type: 'apiKey', in: 'cookie', name: 'AUTH_COOKIE_NAME' },
      adminKey: { type: 'http', scheme: 'bearer', description: 'An admin key from ADMIN_API_KEYS' },
    },
    schemas: {
      Session: {
        type: 'object',
        additionalProperties: { type: 'string' },
        required: ['session', 'identity_id'],
        properties: {
          session: { type: 'string', description: "Cardscan's short-lived Token" },
          identity_id: { type: 'string' },
          session_id: { type: 'string', description: 'Omitted when Cardscan sends none' },
          expires_at: {
            type: 'string',
            format: 'date-time',
            description: "The Token's exp; omitted when unreadable",
          },
        },
      },
      Problem: {
        type: 'object',
        required: ['type', 'title', 'status', 'detail', 'request_id'],
        properties: {
          type: { type: 'string', format: 'uri' },
          title: { type: 'string' },
          status: { type: 'integer' },
          detail: { type: 'string' },
          request_id: { type: 'string' },
        },
      },
    },
  },
} as const;

/** Which optional routes a listener serves; its /openapi.json describes exactly those. */
export interface ServedRoutes {
  admin: boolean;
  metrics: boolean;
}

/** The document for one listener, without the paths it does not serve. Built once, at start. */
export function openApiDocumentFor(served: ServedRoutes): typeof openApiDocument {
  const paths = Object.fromEntries(
    Object.entries(openApiDocument.paths).filter(([path]) =>
      path.startsWith('/admin') ? served.admin : path === '/metrics' ? served.metrics : true,
    ),
  );
  return { ...openApiDocument, paths } as typeof openApiDocument;
}

'use strict';
/**
 * Bench-only Cardscan stand-in: `GET /v1/access-token?user_id=…` as the vendor documents it, made
 * as cheap as possible so it never is the bottleneck. Each user's answer (a real HS256 JWT with
 * `exp`, an IdentityId, a session_id) is signed once and then served from memory.
 * Plain JavaScript on bare node, so `direct` measures the same runtime as the other targets.
 *
 * Env: PORT, CARDSCAN_API_KEY (the bearer it accepts), BENCH_UPSTREAM_DELAY_MS (default 0).
 * Extra routes: GET /healthz, GET /stats (how many access tokens it served), and POST /v1/traces:
 * an OTLP/HTTP receiver for `broker-traced` that reads each export and answers an empty success.
 */
const { Buffer } = require('node:buffer');
const http = require('node:http');
const { setTimeout } = require('node:timers');
const { URLSearchParams } = require('node:url');
const { createHash, createHmac, randomBytes, randomUUID } = require('node:crypto');

const port = Number(process.env.PORT);
const expectedAuthorization = `Bearer ${process.env.CARDSCAN_API_KEY}`;
const delayMs = Number(process.env.BENCH_UPSTREAM_DELAY_MS || 0);
const signingSecret = randomBytes(32);
const jwtHeader = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url');
const answers = new Map();
let served = 0;

function answerFor(userId) {
  let answer = answers.get(userId);
  if (answer === undefined) {
    const now = Math.floor(Date.now() / 1000);
    const payload = Buffer.from(
      JSON.stringify({ user_id: userId, iss: 'cardscan-bench', iat: now, exp: now + 3600 }),
    ).toString('base64url');
    const signature = createHmac('sha256', signingSecret)
      .update(`${jwtHeader}.${payload}`)
      .digest('base64url');
    const hex = createHash('sha256').update(userId).digest('hex');
    answer = JSON.stringify({
      Token: `${jwtHeader}.${payload}.${signature}`,
      IdentityId: `us-east-1:${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`,
      session_id: randomUUID(),
    });
    answers.set(userId, answer);
  }
  return answer;
}

function send(res, status, text) {
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const url = req.url || '/';
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  if (path === '/healthz') return send(res, 200, '{"status":"ok"}');
  if (path === '/stats') return send(res, 200, JSON.stringify({ served }));
  if (path === '/v1/traces') {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'Content-Length': 0 }).end());
    return;
  }
  if (path !== '/v1/access-token') return send(res, 404, '{"message":"Not Found","code":404}');
  if (req.headers.authorization !== expectedAuthorization) {
    return send(res, 401, '{"message":"Unauthorized","type":"AuthenticationError","code":401}');
  }
  const userId = queryAt === -1 ? null : new URLSearchParams(url.slice(queryAt + 1)).get('user_id');
  if (!userId) return send(res, 400, '{"message":"user_id is required","code":400}');
  served += 1;
  const answer = answerFor(userId);
  if (delayMs > 0) setTimeout(send, delayMs, res, 200, answer);
  else send(res, 200, answer);
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));

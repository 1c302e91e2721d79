import { execFileSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import axios, { type AxiosInstance } from 'axios';
import { createLogger } from '../src/observability/logger';
import { createMetrics } from '../src/observability/metrics';
import { createHttpAdapter } from '../src/upstream/http-adapter';
import { createUpstreamClient, type UpstreamClient } from '../src/upstream/upstream-client';
import { BearerCredential } from '../src/config/credential-watcher';

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  remotePort: number;
}

/** A plain server on 127.0.0.1 (http, or https with the given certificate) that records requests. */
async function startUpstream(tls?: { key: Buffer; cert: Buffer }) {
  const received: Received[] = [];
  let handler: Handler = (_req, _body, res) => res.end('{}');
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      received.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        remotePort: req.socket.remotePort ?? 0,
      });
      handler(req, body, res);
    });
  };
  const server = tls ? https.createServer(tls, listener) : http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    received,
    answer(next: Handler) {
      handler = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type Upstream = Awaited<ReturnType<typeof startUpstream>>;

const agents = () => ({
  http: new http.Agent({ keepAlive: true }),
  https: new https.Agent({ keepAlive: true }),
});

function instanceFor(baseURL: string, adapterAgents = agents()): AxiosInstance {
  return axios.create({
    baseURL,
    adapter: createHttpAdapter(adapterAgents),
    proxy: false,
    responseType: 'text',
    transformResponse: [(data: unknown) => data],
    headers: { Authorization: 'Bearer secret_test_adapter' },
  });
}

describe('the adapter, under axios', () => {
  let upstream: Upstream;
  let client: AxiosInstance;
  beforeAll(async () => {
    upstream = await startUpstream();
    // A base URL with a path, as Cardscan's (…/v1): the adapter must keep it.
    client = instanceFor(`${upstream.origin}/v1/`);
  });
  afterAll(() => upstream.close());
  beforeEach(() => {
    upstream.received.length = 0;
    upstream.answer((_req, _body, res) => res.end('{"ok":true}'));
  });

  test('when axios sends a GET, then the upstream receives the joined path, the query as encoded, and the headers', async () => {
    const res = await client.get('/access-token?user_id=a%20b', {
      headers: { 'X-Request-Id': 'req-1' },
    });

    expect(res.status).toBe(200);
    expect(res.data).toBe('{"ok":true}');
    expect(upstream.received).toHaveLength(1);
    const [seen] = upstream.received;
    expect(seen).toMatchObject({ method: 'GET', url: '/v1/access-token?user_id=a%20b', body: '' });
    expect(seen?.headers).toMatchObject({
      authorization: 'Bearer secret_test_adapter',
      'x-request-id': 'req-1',
    });
    expect(seen?.headers['content-length']).toBeUndefined();
  });

  test('when axios sends a JSON body, then it arrives whole with its type and byte length', async () => {
    const data = { name: 'Zoë', subject: 'ops-1' };

    await client.post('/account/worktoken/', data);

    const [seen] = upstream.received;
    expect(seen?.method).toBe('POST');
    expect(JSON.parse(seen?.body ?? '')).toEqual(data);
    expect(seen?.headers['content-type']).toMatch(/^application\/json/);
    expect(seen?.headers['content-length']).toBe(String(Buffer.byteLength(JSON.stringify(data))));
  });

  test('when calls follow each other, then they reuse one kept-alive connection', async () => {
    await client.get('/a');
    await client.get('/b');
    await client.delete('/c');

    const ports = new Set(upstream.received.map((seen) => seen.remotePort));
    expect(ports.size).toBe(1);
  });

  test('when the status fails validateStatus, then axios rejects with the response, as its own adapter does', async () => {
    upstream.answer((_req, _body, res) => {
      res.statusCode = 404;
      res.end('{"message":"no such thing"}');
    });

    await expect(client.get('/missing')).rejects.toMatchObject({
      code: 'ERR_BAD_REQUEST',
      response: { status: 404, data: '{"message":"no such thing"}' },
    });
  });

  test('when an option the adapter does not carry is used, then the call is refused, not sent without it', async () => {
    await expect(client.get('/x', { params: { user_id: 'a' } })).rejects.toMatchObject({
      code: 'ERR_NOT_SUPPORT',
      message: 'params is not supported by this adapter',
    });
    await expect(client.get('/x', { timeout: 100 })).rejects.toMatchObject({
      code: 'ERR_NOT_SUPPORT',
    });
    // A signal it cannot listen to could never end the call at its deadline.
    const refusedSignal = {
      code: 'ERR_NOT_SUPPORT',
      message:
        'a signal without addEventListener and removeEventListener is not supported by this adapter',
    };
    await expect(client.get('/x', { signal: { aborted: false } })).rejects.toMatchObject(
      refusedSignal,
    );
    class HalfSignal {
      aborted = false;
      addEventListener(): void {}
    }
    await expect(client.get('/x', { signal: new HalfSignal() })).rejects.toMatchObject(
      refusedSignal,
    );
    expect(upstream.received).toHaveLength(0);
  });

  test('when calls end (answered, or refused by their status), then no listener is left on their signal', async () => {
    const signal = new AbortController().signal;
    await client.get('/ok', { signal });
    upstream.answer((_req, _body, res) => {
      res.statusCode = 500;
      res.end('{}');
    });
    await expect(client.get('/failing', { signal })).rejects.toMatchObject({ status: 500 });

    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  test('when a multi-byte character arrives split across two writes, then it is decoded whole', async () => {
    const bytes = Buffer.from('{"name":"Zoë"}');
    const cut = bytes.indexOf(0xab); // the second byte of "ë"
    upstream.answer((_req, _body, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': bytes.length });
      res.write(bytes.subarray(0, cut), () => setTimeout(() => res.end(bytes.subarray(cut)), 10));
    });

    const res = await client.get('/name');

    expect(res.data).toBe('{"name":"Zoë"}');
  });

  test('when the upstream redirects, then the 3xx is the answer and the redirect is not followed', async () => {
    upstream.answer((_req, _body, res) => {
      res.writeHead(302, { Location: '/elsewhere' });
      res.end();
    });

    const res = await client.get('/moved', { validateStatus: () => true });

    expect(res.status).toBe(302);
    expect(upstream.received.map((seen) => seen.url)).toEqual(['/v1/moved']);
  });

  test('when the upstream answers 204, then the answer has an empty body', async () => {
    upstream.answer((_req, _body, res) => {
      res.statusCode = 204;
      res.end();
    });

    await expect(client.delete('/gone')).resolves.toMatchObject({ status: 204, data: '' });
  });

  test('when a DELETE carries a body, then it arrives with its length and the connection stays usable', async () => {
    await client.delete('/with-body', { data: { reason: 'rotated' } });
    await client.get('/after');

    expect(upstream.received.map((seen) => seen.body)).toEqual(['{"reason":"rotated"}', '']);
    expect(new Set(upstream.received.map((seen) => seen.remotePort)).size).toBe(1);
  });

  test('when node:http refuses the request before sending it, then axios gets an AxiosError with its code', async () => {
    await expect(instanceFor('ftp://127.0.0.1:1').get('/x')).rejects.toMatchObject({
      isAxiosError: true,
      code: 'ERR_INVALID_PROTOCOL',
    });
  });

  test('when the signal aborts while the upstream is silent, then axios rejects as canceled', async () => {
    upstream.answer(() => undefined);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);

    await expect(client.get('/silent', { signal: controller.signal })).rejects.toMatchObject({
      code: 'ERR_CANCELED',
    });
  });
});

describe('the adapter over TLS', () => {
  let dir: string;
  let upstream: Upstream;
  let cert: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'adapter-tls-'));
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    // A throwaway certificate for 127.0.0.1, made for this run and deleted after it.
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-days',
        '1',
        '-keyout',
        keyFile,
        '-out',
        certFile,
      ],
      { stdio: 'ignore' },
    );
    cert = readFileSync(certFile);
    upstream = await startUpstream({ key: readFileSync(keyFile), cert });
  });
  afterAll(async () => {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('when the base URL is https, then the call goes over TLS through the https agent', async () => {
    upstream.answer((_req, _body, res) => res.end('{"secure":true}'));
    const trusting = {
      http: new http.Agent(),
      https: new https.Agent({ keepAlive: true, ca: cert }),
    };

    const res = await instanceFor(upstream.origin, trusting).get('/v1/access-token?user_id=u1');

    expect(res.data).toBe('{"secure":true}');
    expect(upstream.received.at(-1)?.url).toBe('/v1/access-token?user_id=u1');
  });

  test('when the base URL spells the scheme in capitals, then it is still https', async () => {
    upstream.answer((_req, _body, res) => res.end('{"secure":true}'));
    const trusting = { http: new http.Agent(), https: new https.Agent({ ca: cert }) };
    const base = upstream.origin.replace('https://', 'HTTPS://');

    await expect(instanceFor(base, trusting).get('/v1/x')).resolves.toMatchObject({
      data: '{"secure":true}',
    });
  });

  test('when the certificate is not trusted, then the call fails instead of going out unverified', async () => {
    await expect(instanceFor(upstream.origin).get('/v1/x')).rejects.toMatchObject({
      code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
    });
  });
});

describe('what the upstream client makes of the transport failures', () => {
  let upstream: Upstream;
  let client: UpstreamClient;
  beforeAll(async () => {
    upstream = await startUpstream();
  });
  afterAll(() => upstream.close());
  beforeEach(() => {
    upstream.received.length = 0;
    client = createUpstreamClient({
      name: 'cardscan',
      label: 'Cardscan',
      baseUrl: `${upstream.origin}/v1`,
      credential: new BearerCredential('CARDSCAN_API_KEY', 'secret_test_adapter', undefined),
      timeoutMs: 3000,
      metrics: createMetrics(),
      logger: createLogger('silent'),
    });
  });
  afterEach(() => client.close());

  const call = () =>
    client.send({
      method: 'GET',
      path: '/access-token?user_id=u1',
      requestId: 'req-1',
      retry: false,
      read: (body) => body,
    });

  test('when the upstream streams more than 256 KiB, then the call fails as an oversized answer', async () => {
    upstream.answer((_req, _body, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write(`"${'x'.repeat(200 * 1024)}`);
      res.end(`${'x'.repeat(100 * 1024)}"`);
    });

    await expect(call()).rejects.toMatchObject({
      failure: 'bad-response',
      message: 'Cardscan answered with an oversized body',
    });
  });

  test('when the upstream cuts the line in the middle of the body, then the call fails at once as a dropped connection', async () => {
    upstream.answer((req, _body, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
      res.write('{"Token":"', () => req.socket.destroy());
    });

    // Not 'timeout': the broken answer itself ends the call, long before the deadline.
    await expect(call()).rejects.toMatchObject({
      failure: 'bad-response',
      message: 'Cardscan dropped the connection',
    });
  });

  test('when the upstream announces a short keep-alive timeout, then an idle connection is closed before it, not reused', async () => {
    // Node's server closes after 2 s here; the client must let go of the socket 1 s before that.
    upstream.answer((_req, _body, res) => {
      res.setHeader('Keep-Alive', 'timeout=2');
      res.end('{"Token":"t"}');
    });
    await call();
    // Past the 1 s the client may keep it, well before the 5 s the server would really wait.
    await sleep(1600);

    await call();

    const [first, second] = upstream.received;
    expect(second?.remotePort).not.toBe(first?.remotePort);
  });

  test('when the upstream answers in time, then the parsed body comes back', async () => {
    upstream.answer((_req, _body, res) => res.end('{"Token":"t"}'));

    await expect(call()).resolves.toEqual({ status: 200, value: { Token: 't' } });
  });
});

import express from 'express';
import http from 'node:http';
import { createAppServer } from '../src/http/app-server';
import { httpGet } from './helpers/http-get';
import { listen } from './helpers/listen';

test("when the broker's server takes a request, then req and res are born with the app's prototypes and Express serves them as usual", async () => {
  const app = express();
  app.use(express.json());
  app.post('/echo', (req, res) => {
    res.status(201).json({ body: req.body as unknown, contentType: req.get('content-type') });
  });
  app.get('/hello', (req, res) => {
    res.json({ query: req.query.name });
  });
  const listening = await listen(app);
  // Runs before Express, which would otherwise set these prototypes itself.
  const born: boolean[] = [];
  listening.server.prependListener('request', (req: http.IncomingMessage, res) => {
    born.push(
      Object.getPrototypeOf(req) === app.request,
      Object.getPrototypeOf(res) === app.response,
      req instanceof http.IncomingMessage,
      res instanceof http.ServerResponse,
    );
  });
  try {
    const hello = await httpGet(`${listening.url}/hello?name=ada`, { timeoutMs: 2000 });
    expect(hello.status).toBe(200);
    expect(JSON.parse(hello.body)).toEqual({ query: 'ada' });

    const echo = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        `${listening.url}/echo`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, agent: false },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ a: 1 }));
    });
    expect(echo.status).toBe(201);
    expect(JSON.parse(echo.body)).toEqual({ body: { a: 1 }, contentType: 'application/json' });

    expect(born).toEqual(Array(8).fill(true));
  } finally {
    await listening.close();
  }
});

test('when two apps each get a server, then each request is born with its own app’s prototypes', async () => {
  const first = express();
  const second = express();
  first.get('/', (_req, res) => void res.send('first'));
  second.get('/', (_req, res) => void res.send('second'));
  const servers = [createAppServer(first), createAppServer(second)];
  const seen: boolean[] = [];
  servers[0]?.prependListener('request', (req: http.IncomingMessage) => {
    seen.push(Object.getPrototypeOf(req) === first.request);
  });
  servers[1]?.prependListener('request', (req: http.IncomingMessage) => {
    seen.push(Object.getPrototypeOf(req) === second.request);
  });
  const listenings = await Promise.all(
    servers.map(
      (server) =>
        new Promise<string>((resolve) => {
          server.listen(0, '127.0.0.1', () => {
            const address = server.address() as import('node:net').AddressInfo;
            resolve(`http://127.0.0.1:${address.port}/`);
          });
        }),
    ),
  );
  try {
    const answers = await Promise.all(listenings.map((url) => httpGet(url, { timeoutMs: 2000 })));
    expect(answers.map((answer) => answer.body)).toEqual(['first', 'second']);
    expect(seen).toEqual([true, true]);
  } finally {
    await Promise.all(
      servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
  }
});

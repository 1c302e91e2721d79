import http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { startHarness, type Harness } from './helpers/harness';

/** A forward proxy on 127.0.0.1: records each absolute-form request URL and passes it on. */
async function startForwardProxy() {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url ?? '');
    const upstream = http.request(
      req.url ?? '',
      { method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

let proxy: Awaited<ReturnType<typeof startForwardProxy>>;
let h: Harness | undefined;
beforeAll(async () => {
  proxy = await startForwardProxy();
});
afterEach(async () => {
  delete process.env.HTTP_PROXY;
  await h?.close();
  h = undefined;
});
afterAll(() => proxy.close());

const session = (harness: Harness) =>
  request(harness.app)
    .get('/cardscan-session')
    .set('Authorization', `Bearer ${harness.tokenFor('patient-7')}`);

describe('outbound proxy', () => {
  test('when HTTP_PROXY is set at start, then the Cardscan call goes through that proxy', async () => {
    // axios reads the variable from the process at call time; the broker reads it at start.
    process.env.HTTP_PROXY = proxy.url;
    h = await startHarness({ env: { HTTP_PROXY: proxy.url, NO_PROXY: undefined } });
    const before = proxy.seen.length;

    const res = await session(h);

    expect(res.status).toBe(200);
    expect(proxy.seen.slice(before)).toEqual([
      `${h.config.cardscan.baseUrl}/access-token?user_id=patient-7`,
    ]);
    expect(h.cardscan.requests).toHaveLength(1);
  });

  test('when the call through the proxy hangs, then 504 at the deadline', async () => {
    // Through a proxy the call runs on axios's own adapter, not the broker's: it must honour the
    // deadline's signal too.
    process.env.HTTP_PROXY = proxy.url;
    h = await startHarness({ env: { HTTP_PROXY: proxy.url, NO_PROXY: undefined } });
    h.cardscan.setMode('hang');
    const before = proxy.seen.length;
    const started = Date.now();

    // If the call outlives the deadline, this fails after 5 s with a timeout, not at Jest's limit.
    const res = await session(h).timeout(5000);

    expect(res.status).toBe(504);
    expect(res.body.detail).toMatch(/did not answer within 1500 ms/);
    // A bound, not a benchmark: one deadline of 1.5 s, not one per attempt (3 × 1.5 s).
    expect(Date.now() - started).toBeLessThan(3000);
    expect(proxy.seen.length).toBe(before + 1);
  });

  test('when no proxy variable is set at start, then one set later is not used (restart to apply)', async () => {
    h = await startHarness({ env: { HTTP_PROXY: undefined } });
    process.env.HTTP_PROXY = proxy.url;
    const before = proxy.seen.length;

    const res = await session(h);

    expect(res.status).toBe(200);
    expect(proxy.seen.length).toBe(before);
    expect(h.cardscan.requests).toHaveLength(1);
  });
});

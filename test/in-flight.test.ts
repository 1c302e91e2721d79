import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { InFlight } from '../src/http/lifecycle';
import { listen } from './helpers/listen';

const response = (name: string) => ({ name }) as unknown as ServerResponse;
const names = (inFlight: InFlight) =>
  inFlight
    .values()
    .map((res) => (res as unknown as { name: string }).name)
    .sort();

test('when responses finish in any order, then exactly the unfinished ones stay in flight', () => {
  const inFlight = new InFlight();
  const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map(response) as ServerResponse[] &
    [ServerResponse, ServerResponse, ServerResponse, ServerResponse, ServerResponse];
  for (const res of [a, b, c, d, e]) inFlight.add(res);

  inFlight.delete(b); // from the middle
  expect(names(inFlight)).toEqual(['a', 'c', 'd', 'e']);
  inFlight.delete(e); // the last one
  inFlight.delete(a); // the first one
  expect(names(inFlight)).toEqual(['c', 'd']);

  inFlight.delete(a); // a second 'close' changes nothing
  expect(names(inFlight)).toEqual(['c', 'd']);

  const f = response('f');
  inFlight.add(f);
  inFlight.delete(c);
  inFlight.delete(f);
  expect(names(inFlight)).toEqual(['d']);
  inFlight.delete(d);
  expect(inFlight.values()).toEqual([]);
});

test('when a client resets a connection with pipelined requests queued, then none of their answers stays in flight', async () => {
  const app = express();
  app.get('/slow', (_req, res) => {
    setTimeout(() => res.end('ok'), 100);
  });
  const inFlight = new InFlight();
  const listening = await listen(app);
  listening.server.prependListener('request', (req: IncomingMessage, res: ServerResponse) =>
    inFlight.track(req, res),
  );
  try {
    const socket = net.connect((listening.server.address() as AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET /slow HTTP/1.1\r\nHost: broker\r\n\r\n'.repeat(3));
    for (let polls = 0; inFlight.values().length < 3; polls++) {
      expect(polls).toBeLessThan(200);
      await sleep(5);
    }
    // Two answers wait behind the first; the reset means none of them can ever be sent.
    socket.resetAndDestroy();
    for (let polls = 0; inFlight.values().length > 0 && polls < 100; polls++) await sleep(10);
    expect(inFlight.values()).toHaveLength(0);
  } finally {
    await listening.close();
  }
});

import type { ServerResponse } from 'node:http';
import { InFlight } from '../src/lifecycle';

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

import { dockerfileNodeFlags, startScriptNodeFlags } from './helpers/node-flags';

test('when the broker ships, then the Dockerfile runs it with the same node flags as npm start (and the bench)', () => {
  expect(startScriptNodeFlags().length).toBeGreaterThan(0);
  expect(dockerfileNodeFlags()).toEqual(startScriptNodeFlags());
});

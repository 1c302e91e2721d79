import { createLogger } from '../src/observability/logger';
import { LogCapture } from './helpers/log-capture';

test('when code logs headers, secrets or tokens by mistake, then the logger redacts them', () => {
  const logs = new LogCapture();
  const logger = createLogger('info', logs);
  logger.info(
    {
      req: {
        headers: { authorization: 'Bearer eyJsecret.token.value', cookie: 'session=abc123secret' },
      },
      upstream: { apiKey: 'secret_test_key_value', token: 'secret_test_token_value' },
      secret: 'secret_test_top_level',
      authorization: 'Bearer top-level-token',
    },
    'careless line',
  );
  const [entry] = logs.entries();
  expect(entry).toMatchObject({
    req: { headers: { authorization: '[redacted]', cookie: '[redacted]' } },
    upstream: { apiKey: '[redacted]', token: '[redacted]' },
    secret: '[redacted]',
    authorization: '[redacted]',
  });
  expect(logs.text()).not.toMatch(/secret_test_|eyJ|abc123secret|top-level-token/);
});

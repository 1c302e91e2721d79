import http from 'node:http';
import https from 'node:https';
import {
  AxiosError,
  CanceledError,
  type AxiosAdapter,
  type AxiosResponse,
  type InternalAxiosRequestConfig,
} from 'axios';

/**
 * axios's transport for the upstream clients, on node:http with kept-alive agents. axios's own
 * `http` adapter costs about 100 µs of CPU per call more than node:http underneath it (streams,
 * redirect, decompression and progress plumbing this client never uses); measured with the bench
 * in README "Performance". axios itself still builds each request (defaults, headers, request and
 * response transforms) and gets the answer back.
 *
 * It carries what upstream-client uses: method, baseURL + url (query already encoded), headers,
 * a string body, signal, maxContentLength, validateStatus, and a text body back. Options it does
 * not carry are refused rather than ignored. No proxy: with a proxy variable set, upstream-client
 * uses axios's own adapter, which implements them.
 */
export function createHttpAdapter(agents: { http: http.Agent; https: https.Agent }): AxiosAdapter {
  return (config) =>
    new Promise<AxiosResponse>((resolve, reject) => {
      const unsupported = unsupportedOption(config);
      if (unsupported) {
        reject(
          new AxiosError(
            `${unsupported} is not supported by this adapter`,
            AxiosError.ERR_NOT_SUPPORT,
            config,
          ),
        );
        return;
      }
      const signal = config.signal as AbortSignal | undefined;
      if (signal?.aborted) {
        reject(new CanceledError(undefined, config));
        return;
      }
      const url = fullUrl(config.baseURL, config.url ?? '');
      const secure = url.startsWith('https:');
      const limit = config.maxContentLength ?? -1;

      // The abort listener stays until the call settles: a connection that closes without an
      // error must still end at the caller's deadline.
      const settle = () => signal?.removeEventListener('abort', abort);
      const fail = (error: AxiosError) => {
        settle();
        request.destroy();
        reject(error);
      };
      const abort = () => fail(new CanceledError(undefined, config, request));

      // Node sets Content-Length itself for a body given whole to end().
      const request = (secure ? https : http).request(
        url,
        {
          method: (config.method ?? 'get').toUpperCase(),
          headers: config.headers.toJSON() as Record<string, string>,
          agent: secure ? agents.https : agents.http,
        },
        (answer) => {
          const chunks: Buffer[] = [];
          let size = 0;
          answer.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (limit > -1 && size > limit) {
              fail(
                new AxiosError(
                  `maxContentLength size of ${limit} exceeded`,
                  AxiosError.ERR_BAD_RESPONSE,
                  config,
                  request,
                ),
              );
              return;
            }
            chunks.push(chunk);
          });
          answer.on('error', (error) => fail(failure(error, config, request)));
          answer.on('end', () => {
            settle();
            const response: AxiosResponse = {
              data: Buffer.concat(chunks, size).toString('utf8'),
              status: answer.statusCode ?? 0,
              statusText: answer.statusMessage ?? '',
              headers: answer.headers,
              config,
              request,
            };
            const valid = config.validateStatus;
            if (!valid || valid(response.status)) resolve(response);
            else reject(statusError(response));
          });
        },
      );
      signal?.addEventListener('abort', abort, { once: true });
      request.on('error', (error) => fail(failure(error, config, request)));
      request.end(config.data as string | undefined);
    });
}

/** What axios itself does with a relative url: joined to baseURL with exactly one slash. */
function fullUrl(baseUrl: string | undefined, url: string): string {
  if (!baseUrl || /^[a-z][a-z\d+.-]*:\/\//i.test(url)) return url;
  return url ? `${baseUrl.replace(/\/+$/, '')}/${url.replace(/^\/+/, '')}` : baseUrl;
}

function unsupportedOption(config: InternalAxiosRequestConfig): string | undefined {
  if (config.params !== undefined) return 'params';
  if (config.timeout) return 'timeout';
  if (config.auth) return 'auth';
  if (config.proxy) return 'proxy';
  if (config.responseType !== undefined && config.responseType !== 'text') return 'responseType';
  if (config.data !== undefined && typeof config.data !== 'string')
    return 'a body that is not a string';
  return undefined;
}

function failure(error: Error, config: InternalAxiosRequestConfig, request: http.ClientRequest) {
  return AxiosError.from(error, (error as NodeJS.ErrnoException).code, config, request);
}

/** axios's own rejection for a status validateStatus refuses. */
function statusError(response: AxiosResponse): AxiosError {
  const { status } = response;
  return new AxiosError(
    `Request failed with status code ${status}`,
    status >= 400 && status < 500 ? AxiosError.ERR_BAD_REQUEST : AxiosError.ERR_BAD_RESPONSE,
    response.config,
    response.request,
    response,
  );
}

import http from 'node:http';
import https from 'node:https';
import {
  AxiosError,
  CanceledError,
  type AxiosAdapter,
  type AxiosResponse,
  type GenericAbortSignal,
  type InternalAxiosRequestConfig,
} from 'axios';

/**
 * axios's transport for the upstream clients, on node:http with kept-alive agents. axios's own
 * `http` adapter cost about 100 µs of CPU per call more than node:http underneath it (streams,
 * redirect, decompression and progress plumbing these calls never use; docs/performance.md).
 * axios itself still builds each request (defaults, headers, request and response transforms)
 * and gets the answer back.
 *
 * It carries what upstream-client uses: method, baseURL + url (query already encoded), headers,
 * a string body, signal, maxContentLength, validateStatus, and a text body back. A 3xx comes back
 * as an answer (never followed, as with maxRedirects 0); compression is not asked for, so none is
 * undone. Options it does not carry are refused rather than ignored. No proxy: with a proxy
 * variable set, upstream-client uses axios's own adapter, which implements them.
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
      const signal = config.signal as ListenableSignal | undefined;
      if (signal?.aborted) {
        reject(new CanceledError(undefined, config));
        return;
      }
      let target: URL;
      try {
        target = new URL(fullUrl(config.baseURL, config.url ?? ''));
      } catch (error) {
        reject(AxiosError.from(error, AxiosError.ERR_INVALID_URL, config));
        return;
      }
      const secure = target.protocol === 'https:';
      const body = config.data as string | undefined;
      const headers = config.headers.toJSON() as Record<string, string>;
      // Node computes a length only for methods that usually carry a body; a DELETE body without
      // one would desynchronise the kept-alive connection.
      if (body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(body));
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

      let request: http.ClientRequest;
      try {
        request = (secure ? https : http).request(
          target,
          {
            method: (config.method ?? 'get').toUpperCase(),
            headers,
            agent: secure ? agents.https : agents.http,
          },
          onAnswer,
        );
      } catch (error) {
        // Refused before anything was sent: a protocol other than http(s), a bad header value.
        reject(failure(error as Error, config));
        return;
      }
      signal?.addEventListener('abort', abort, { once: true });
      request.on('error', (error) => fail(failure(error, config, request)));
      request.end(body);

      function onAnswer(answer: http.IncomingMessage) {
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
            // Decoded once, whole: a character split across two chunks stays intact.
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
      }
    });
}

/** What axios itself does with a relative url: joined to baseURL with exactly one slash. */
function fullUrl(baseUrl: string | undefined, url: string): string {
  if (!baseUrl || /^[a-z][a-z\d+.-]*:\/\//i.test(url)) return url;
  return url ? `${baseUrl.replace(/\/+$/, '')}/${url.replace(/^\/+/, '')}` : baseUrl;
}

/** An AbortSignal, or any signal axios accepts that can be listened to the same way. */
type ListenableSignal = Required<
  Pick<GenericAbortSignal, 'aborted' | 'addEventListener' | 'removeEventListener'>
>;

function unsupportedOption(config: InternalAxiosRequestConfig): string | undefined {
  if (config.params !== undefined) return 'params';
  const signal = config.signal;
  if (
    signal &&
    (typeof signal.addEventListener !== 'function' ||
      typeof signal.removeEventListener !== 'function')
  ) {
    return 'a signal without addEventListener and removeEventListener';
  }
  if (config.timeout) return 'timeout';
  if (config.auth) return 'auth';
  if (config.proxy) return 'proxy';
  if (config.responseType !== undefined && config.responseType !== 'text') return 'responseType';
  if (config.data !== undefined && typeof config.data !== 'string')
    return 'a body that is not a string';
  return undefined;
}

function failure(error: Error, config: InternalAxiosRequestConfig, request?: http.ClientRequest) {
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

import http from 'node:http';
import https from 'node:https';
import axios, { type AxiosInstance } from 'axios';
import { createHttpAdapter } from './http-adapter';

/** As undici (Node's fetch) does: below the 5 s idle timeout of Node's own HTTP server. */
const IDLE_SOCKET_TIMEOUT_MS = 4000;
/** Upstream answers are small JSON documents; anything larger is nonsense. */
const MAX_BODY_BYTES = 256 * 1024;

export interface Transport {
  /** Answers every status (the caller classifies it) with the body as text. */
  instance: AxiosInstance;
  /** Closes the kept-alive connections. */
  close(): void;
}

/** The axios instance an upstream client sends through, with its own kept-alive connections. */
export function createTransport(options: {
  baseUrl: string;
  /** A proxy variable (HTTP(S)_PROXY, ALL_PROXY) is set, so axios must look for one per call. */
  proxyFromEnvironment?: boolean;
}): Transport {
  // An idle kept-alive socket is closed before the upstream closes it: reusing one the upstream is
  // closing at that moment fails the call (and a create is not retried). Node's agent then also
  // honours the upstream's `Keep-Alive: timeout=N` hint, ending 1 s before it; without this
  // option it ignores the hint. A busy socket is not affected: the call's deadline governs it.
  const agentOptions = { keepAlive: true, timeout: IDLE_SOCKET_TIMEOUT_MS };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  const instance: AxiosInstance = axios.create({
    baseURL: options.baseUrl,
    // These upstreams never redirect; and axios's own adapter (the proxy case) only skips its
    // follow-redirects layer when redirects are off.
    maxRedirects: 0,
    httpAgent,
    httpsAgent,
    // Only axios's own adapter implements proxies; without a proxy variable the lean one serves,
    // and `proxy: false` keeps axios from searching the environment on every call.
    ...(options.proxyFromEnvironment
      ? { adapter: 'http' }
      : { adapter: createHttpAdapter({ http: httpAgent, https: httpsAgent }), proxy: false }),
    responseType: 'text',
    transformResponse: [(data: unknown) => data],
    validateStatus: () => true,
    maxContentLength: MAX_BODY_BYTES,
  });
  // axios deep-copies its default header buckets (common, get, post, …) into every call; one flat
  // set of our own headers gives the same request at a fraction of the copying.
  instance.defaults.headers = {
    Accept: 'application/json',
    'User-Agent': 'cardscan-broker',
  } as unknown as AxiosInstance['defaults']['headers'];
  return {
    instance,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

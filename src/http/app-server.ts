import http from 'node:http';
import type { Express } from 'express';

/**
 * A constructor that runs `base` on an object whose prototype is `prototype` from birth. Node's
 * IncomingMessage and ServerResponse are plain functions, so they can initialise such an object
 * (a test fails if a Node release makes them classes). Reflect.construct with this function as
 * new.target would also take classes, but cost about half the throughput in the same bare-app test.
 */
function bornWith<C extends abstract new (...args: never[]) => object>(
  base: C,
  prototype: InstanceType<C>,
): C {
  function Born(this: object, ...args: unknown[]): void {
    Reflect.apply(base as unknown as (...args: unknown[]) => void, this, args);
  }
  Born.prototype = prototype;
  return Born as unknown as C;
}

/**
 * The HTTP server for an Express app, whose requests and responses are born with the app's own
 * prototypes (`app.request`, `app.response`). Express re-parents every req and res with
 * Object.setPrototypeOf; when the prototype is already the one it sets, V8 has nothing to do.
 * Done for real on every request, the change of prototype kept each request's objects alive
 * through young-generation collections, so they were copied into the old generation: in a bare
 * Express app on the bench machine, 2.5 MB per collection (12-16 KB with this server), and it
 * halved the app's throughput. `options` are node:http's (timeouts and such).
 */
export function createAppServer(app: Express, options: http.ServerOptions = {}): http.Server {
  return http.createServer(
    {
      ...options,
      IncomingMessage: bornWith<typeof http.IncomingMessage>(http.IncomingMessage, app.request),
      ServerResponse: bornWith<typeof http.ServerResponse>(http.ServerResponse, app.response),
    },
    app,
  );
}

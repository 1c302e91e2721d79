import express, { type RequestHandler } from 'express';

/** The largest request body any route takes; problems.ts names it in the 413 answer. */
export const MAX_BODY = '100kb';

/**
 * The JSON body parser, for the routes that take a body, after their authentication: no other
 * route reads (or decompresses) a body, so an anonymous caller cannot make the broker inflate one.
 * Decodes gzip, deflate and br; any other Content-Encoding is a 415.
 */
export const jsonBody: RequestHandler = express.json({ limit: MAX_BODY });

'use strict';
/**
 * What customers who do not use the broker run: the vendor's documented Express handler, copied
 * as is. `--jwt` puts it behind express-jwt exactly as express-jwt's README shows (string secret,
 * HS256). Plain JavaScript on bare node, as customers deploy it.
 *
 * Env: PORT, CARDSCAN_BASE_URL, CARDSCAN_API_KEY, JWT_SECRET (with --jwt).
 * Bench additions, not part of the sample: GET /healthz (for the cold-start probe) and exit on
 * SIGTERM (so `node --cpu-prof` can write its profile).
 */
const express = require('express');
const axios = require('axios');
const { expressjwt } = require('express-jwt');

const base = process.env.CARDSCAN_BASE_URL;
const apiKey = process.env.CARDSCAN_API_KEY;
const app = express();

app.get('/healthz', (req, res) => {
  res.end('ok');
});

const handlers = [];
if (process.argv.includes('--jwt')) {
  handlers.push(expressjwt({ secret: process.env.JWT_SECRET, algorithms: ['HS256'] }));
}
handlers.push(async (req, res) => {
  try {
    const response = await axios.get(`${base}/access-token`, {
      params: { user_id: req.query.user_id },
      headers: { Authorization: 'Bearer ' + apiKey },
    });
    res.end(JSON.stringify(response.data));
  } catch (error) {
    res.status(500).end(JSON.stringify({ error: error.message }));
  }
});
app.get('/cardscan-session', ...handlers);

app.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));

/**
 * The demo page in a real browser (Debian's Chromium, driven by playwright-core): what curl and
 * supertest never show — CORS preflights, which headers a page may read, cookies, and what a page
 * sees when the broker refuses its origin.
 */
import { existsSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startDemoServer, type DemoServer } from '../scripts/demo-server';
import { LOCAL_COOKIE_NAME, startLocalStack, type LocalStack } from '../scripts/local-stack';
import { LogCapture } from './helpers/log-capture';
import { identityIdFor } from './stand-ins/cardscan';

const CHROMIUM = '/usr/bin/chromium';
/** Headless, and quiet: without the background-networking flags Chromium dials out at start. */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const ARTIFACTS = path.join(__dirname, '..', 'test-artifacts');
const RATE_LIMIT = 3;
/** Every wait in the browser is bounded by this. */
const WAIT_MS = 5000;

const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) {
  console.warn(
    `SKIPPED: browser tests need ${CHROMIUM} (apt-get install chromium; .ci/run installs it).`,
  );
}

// CI installs Chromium; there a missing browser is a broken CI, not a reason to skip.
if (process.env.CI && !hasChromium) {
  throw new Error(`CI=true but ${CHROMIUM} is missing: .ci/run should have installed it`);
}

interface LoggedRequest {
  method: string;
  path: string;
  status: number;
}

(hasChromium ? describe : describe.skip)('the demo page in Chromium', () => {
  let stack: LocalStack;
  let foreignSite: DemoServer;
  let browser: Browser;
  const logs = new LogCapture();
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    stack = await startLocalStack({
      port: 0,
      demoPort: 0,
      logLevel: 'info',
      logDestination: logs,
      env: { RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT), UPSTREAM_TIMEOUT_MS: '1500' },
    });
    // The same page on another port: an origin the broker's CORS_ORIGINS does not list.
    foreignSite = await startDemoServer({ pageConfig: () => stack.pageConfig });
    // A fresh temporary profile per launch: no cookies, cache or preflight cache carried over.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      timeout: 30_000,
    });
  }, 60_000);

  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()));
  });

  afterAll(async () => {
    await browser?.close();
    await foreignSite?.close();
    await stack?.close();
  });

  /** A new browser context (own cookie jar) on the page at `url`. */
  async function openPage(url = stack.demoUrl): Promise<Page> {
    const context = await browser.newContext();
    contexts.push(context);
    context.setDefaultTimeout(WAIT_MS);
    context.setDefaultNavigationTimeout(WAIT_MS);
    const page = await context.newPage();
    await page.goto(url);
    return page;
  }

  async function logIn(
    page: Page,
    sub: string,
    options: {
      auth?: 'bearer' | 'cookie';
      expired?: boolean;
      provider?: 'patients' | 'staff';
    } = {},
  ): Promise<void> {
    const auth = options.auth ?? 'bearer';
    await page.selectOption('#provider', options.provider ?? 'patients');
    await page.fill('#sub', sub);
    await page.selectOption('#lifetime', options.expired ? '-120' : '3600');
    await page.check(`input[name="auth"][value="${auth}"]`);
    await page.click('#login');
    await page.waitForSelector(`#login-state[data-state="${auth}"]`);
  }

  /** Clicks GET or POST and waits for that call's outcome; returns its state and fields. */
  async function callBroker(page: Page, method: 'GET' | 'POST') {
    const call = Number(await page.getAttribute('#result', 'data-call')) + 1;
    await page.click(method === 'GET' ? '#get-session' : '#post-session');
    await page.waitForSelector(`#result[data-call="${call}"]:not([data-state="busy"])`);
    const fields = await page.$$eval('#result-fields dd', (items) =>
      Object.fromEntries(items.map((item) => [item.getAttribute('data-field'), item.textContent])),
    );
    return {
      state: await page.getAttribute('#result', 'data-state'),
      title: await page.textContent('#result-title'),
      fields: fields as Record<string, string | undefined>,
    };
  }

  /** The broker's own log of every request to the session route, preflights included. */
  function sessionRequestsLogged(): LoggedRequest[] {
    return logs.entries().flatMap((entry) => {
      const req = entry.req as { method?: string; path?: string } | undefined;
      const res = entry.res as { status?: number } | undefined;
      if (req?.path !== '/cardscan-session' || res?.status === undefined) return [];
      return [{ method: req.method ?? '', path: req.path, status: res.status }];
    });
  }

  const cardscanCallsFor = (sub: string) =>
    stack.cardscan.requests.filter((request) => request.query.user_id === sub).length;

  test('when the page on an allowed origin logs in with a bearer token, then GET and POST both show a session, after a preflight the broker allowed', async () => {
    const page = await openPage();
    await logIn(page, 'browser-bearer');

    const viaGet = await callBroker(page, 'GET');
    expect(viaGet.state).toBe('ok');
    expect(viaGet.fields.identity_id).toBe(identityIdFor('browser-bearer'));
    expect(viaGet.fields.session).toMatch(/^present \(\d+ characters\)$/);
    expect(viaGet.fields.expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /);
    // Readable only because the broker lists X-Request-Id in Access-Control-Expose-Headers.
    expect(viaGet.fields.request_id).toMatch(/\S/);

    const viaPost = await callBroker(page, 'POST');
    expect(viaPost.state).toBe('ok');
    expect(viaPost.fields.identity_id).toBe(identityIdFor('browser-bearer'));

    expect(cardscanCallsFor('browser-bearer')).toBe(2);
    // The Authorization header makes these non-simple requests: the browser asked first.
    expect(sessionRequestsLogged()).toContainEqual({
      method: 'OPTIONS',
      path: '/cardscan-session',
      status: 204,
    });

    await mkdir(ARTIFACTS, { recursive: true });
    const screenshot = path.join(ARTIFACTS, 'demo-session-ok.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    expect((await stat(screenshot)).size).toBeGreaterThan(1000);
  });

  test('when the page logs in through the staff provider, then the session is for the staff user id, apart from a patient of the same name', async () => {
    const page = await openPage();
    await logIn(page, 'browser-twin', { provider: 'staff' });
    const staff = await callBroker(page, 'GET');
    expect(staff.state).toBe('ok');
    expect(staff.fields.identity_id).toBe(identityIdFor('staff:browser-twin'));
    await logIn(page, 'browser-twin', { provider: 'patients' });
    const patient = await callBroker(page, 'GET');
    expect(patient.fields.identity_id).toBe(identityIdFor('browser-twin'));
    expect(cardscanCallsFor('staff:browser-twin')).toBe(1);
    expect(cardscanCallsFor('browser-twin')).toBe(1);
  });

  test('when the same page is served from an origin not in CORS_ORIGINS, then the browser blocks both variants and Cardscan is never called', async () => {
    const page = await openPage(`${foreignSite.origin}/`);
    const before = sessionRequestsLogged().length;

    await logIn(page, 'browser-foreign');
    const bearer = await callBroker(page, 'GET');
    expect(bearer.state).toBe('blocked');
    expect(bearer.fields.error).toBe('TypeError: Failed to fetch');
    expect(bearer.fields.cause).toContain('CORS_ORIGINS');

    await logIn(page, 'browser-foreign', { auth: 'cookie' });
    const cookie = await callBroker(page, 'POST');
    expect(cookie.state).toBe('blocked');

    // The bearer call stopped at its preflight; the cookie POST is a "simple" request, so it did
    // reach the broker, cookie and all, and was refused before authentication.
    expect(sessionRequestsLogged().slice(before)).toEqual([
      { method: 'OPTIONS', path: '/cardscan-session', status: 403 },
      { method: 'POST', path: '/cardscan-session', status: 403 },
    ]);
    expect(cardscanCallsFor('browser-foreign')).toBe(0);
  });

  test("when the login is an HttpOnly cookie, then GET and POST with credentials: 'include' show a session, and after logout the 401 problem", async () => {
    const page = await openPage();
    await logIn(page, 'browser-cookie', { auth: 'cookie' });

    const [cookie] = await page.context().cookies(stack.brokerUrl);
    expect(cookie).toMatchObject({ name: LOCAL_COOKIE_NAME, httpOnly: true, sameSite: 'Strict' });
    // What the page's own scripts see: an HttpOnly cookie is not there.
    expect(await page.evaluate('document.cookie')).not.toContain(LOCAL_COOKIE_NAME);

    for (const method of ['GET', 'POST'] as const) {
      const result = await callBroker(page, method);
      expect(result.state).toBe('ok');
      expect(result.fields.identity_id).toBe(identityIdFor('browser-cookie'));
    }
    expect(cardscanCallsFor('browser-cookie')).toBe(2);
    expect(logs.text()).not.toContain(cookie?.value);

    await page.click('#logout');
    await page.waitForSelector('#login-state[data-state="out"]');
    const loggedOut = await callBroker(page, 'GET');
    expect(loggedOut.state).toBe('problem');
    expect(loggedOut.fields.status).toBe('401');
    expect(loggedOut.fields.detail).toBe(`no bearer token and no ${LOCAL_COOKIE_NAME} cookie`);
  });

  test("when the login has expired, then the page shows the 401 problem's detail", async () => {
    const page = await openPage();
    await logIn(page, 'browser-expired', { expired: true });

    const result = await callBroker(page, 'GET');
    expect(result.state).toBe('problem');
    expect(result.title).toBe('401 Authentication required');
    expect(result.fields.detail).toBe('the token has expired');
    expect(result.fields.request_id).toMatch(/\S/);
    expect(cardscanCallsFor('browser-expired')).toBe(0);
  });

  test('when one user calls more often than the rate limit, then the page shows the 429 problem and can read Retry-After', async () => {
    const page = await openPage();
    await logIn(page, 'browser-busy');
    for (let call = 0; call < RATE_LIMIT; call += 1) {
      expect((await callBroker(page, 'POST')).state).toBe('ok');
    }

    const limited = await callBroker(page, 'POST');
    expect(limited.state).toBe('problem');
    expect(limited.fields.status).toBe('429');
    expect(limited.fields.detail).toBe(
      `at most ${RATE_LIMIT} session requests per minute for one user`,
    );
    // Readable only because the broker lists Retry-After in Access-Control-Expose-Headers.
    expect(limited.fields.retry_after).toMatch(/^\d+ s$/);
  });

  test("when Cardscan fails, then the page shows the broker's 502 problem, not a login problem", async () => {
    const page = await openPage();
    await logIn(page, 'browser-upstream-down');
    stack.cardscan.setMode('server-error');
    try {
      const result = await callBroker(page, 'GET');
      expect(result.state).toBe('problem');
      expect(result.fields.status).toBe('502');
      expect(result.fields.detail).toMatch(/Cardscan/);
    } finally {
      stack.cardscan.setMode('ok');
    }
  });
});

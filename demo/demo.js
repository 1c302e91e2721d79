// The browser side of cardscan-broker, as an integrator would write it: log in (here with the
// local identity provider's dev login; in your app, your own login), then ask the broker for a
// Cardscan session with GET or POST and show what came back, or the problem it answered.
'use strict';

(function () {
  const config = window.CARDSCAN_DEMO_CONFIG;
  const byId = (id) => document.getElementById(id);
  /** Bearer variant: the login token lives in memory only, never in localStorage. */
  let accessToken;
  let calls = 0;

  const authMode = () => document.querySelector('input[name="auth"]:checked').value;
  /** The dev login of the chosen identity provider: patients (the mobile app's) or staff. */
  const loginUrl = () =>
    byId('provider').value === 'staff'
      ? config.staffIdentityProviderUrl
      : config.identityProviderUrl;

  function setLoginState(state, text) {
    const element = byId('login-state');
    element.dataset.state = state;
    element.textContent = text;
  }

  /** Shows one outcome. `fields` are [label, value, name] rows; values are set as text, never HTML. */
  function showResult(state, title, fields) {
    const list = byId('result-fields');
    list.replaceChildren();
    for (const [label, value, name] of fields) {
      if (value === undefined || value === null || value === '') continue;
      const term = document.createElement('dt');
      term.textContent = label;
      const detail = document.createElement('dd');
      detail.textContent = value;
      detail.dataset.field = name;
      list.append(term, detail);
    }
    byId('result-title').textContent = title;
    const result = byId('result');
    result.dataset.state = state;
    result.dataset.call = String(calls);
  }

  async function logIn(event) {
    event.preventDefault();
    const sub = byId('sub').value.trim() || 'patient-1';
    const expiresIn = Number(byId('lifetime').value);
    const cookie = authMode() === 'cookie';
    setLoginState('busy', 'Logging in…');
    try {
      const response = await fetch(`${loginUrl()}/dev/login`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
          sub,
          expires_in: expiresIn,
          ...(cookie ? { cookie: config.cookieName } : {}),
        }),
        // The identity provider sets the cookie only if the browser may store it: credentialed.
        credentials: cookie ? 'include' : 'same-origin',
      });
      if (!response.ok) throw new Error(`the identity provider answered ${response.status}`);
      const body = await response.json();
      accessToken = cookie ? undefined : body.access_token;
      const validity = expiresIn > 0 ? `valid for ${expiresIn} s` : 'already expired';
      setLoginState(
        cookie ? 'cookie' : 'bearer',
        cookie
          ? `Logged in as ${sub} (${byId('provider').value}): HttpOnly cookie ${config.cookieName} (${validity}); this page cannot read it.`
          : `Logged in as ${sub} (${byId('provider').value}): bearer token in memory (${validity}).`,
      );
    } catch (error) {
      setLoginState('error', `Login failed: ${error.message}`);
    }
  }

  async function logOut() {
    accessToken = undefined;
    setLoginState('busy', 'Logging out…');
    try {
      await fetch(`${loginUrl()}/dev/logout`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ cookie: config.cookieName }),
        credentials: 'include',
      });
      setLoginState('out', 'Logged out.');
    } catch (error) {
      setLoginState('error', `Logout failed: ${error.message}`);
    }
  }

  /** The call itself: this is what your page does. */
  async function requestSession(method) {
    calls += 1;
    byId('result').dataset.state = 'busy';
    const cookie = authMode() === 'cookie';
    const headers = {};
    if (!cookie && accessToken) headers.Authorization = `Bearer ${accessToken}`;

    let response;
    try {
      response = await fetch(`${config.brokerUrl}/cardscan-session`, {
        method, // POST goes without a body, as Cardscan's React and Android samples send it
        headers,
        // Cookies go to another origin only with 'include'; the broker must allow this origin.
        credentials: cookie ? 'include' : 'same-origin',
      });
    } catch (error) {
      // A CORS refusal and an unreachable broker look the same to a page: no status, no body.
      return showResult('blocked', 'The browser blocked the call: no answer this page may read', [
        ['Method', method, 'method'],
        ['Error', `${error.name}: ${error.message}`, 'error'],
        [
          'Likely cause',
          `this page's origin (${window.location.origin}) is not in the broker's CORS_ORIGINS, or the broker is unreachable`,
          'cause',
        ],
      ]);
    }

    const requestId = response.headers.get('X-Request-Id') ?? undefined;
    const body = await response.json().catch(() => undefined);
    if (response.ok && body && typeof body.session === 'string') {
      const expires = body.expires_at ? new Date(body.expires_at) : undefined;
      return showResult('ok', 'Session ready: hand it to the Cardscan SDK', [
        ['Method', method, 'method'],
        ['Session', `present (${body.session.length} characters)`, 'session'],
        ['Identity id', body.identity_id, 'identity_id'],
        ['Session id', body.session_id, 'session_id'],
        [
          'Expires at',
          expires ? `${body.expires_at} (local time ${expires.toLocaleTimeString()})` : undefined,
          'expires_at',
        ],
        ['Request id', requestId, 'request_id'],
      ]);
    }
    // Every error is application/problem+json: show `detail`; Retry-After is readable because the
    // broker exposes it to pages.
    const retryAfter = response.headers.get('Retry-After') ?? undefined;
    return showResult('problem', `${response.status} ${body?.title ?? response.statusText}`, [
      ['Method', method, 'method'],
      ['Status', String(response.status), 'status'],
      ['Detail', body?.detail ?? 'no problem details in the answer', 'detail'],
      ['Retry after', retryAfter && `${retryAfter} s`, 'retry_after'],
      ['Request id', body?.request_id ?? requestId, 'request_id'],
    ]);
  }

  byId('page-origin').textContent = window.location.origin;
  byId('broker-url').textContent = config.brokerUrl;
  byId('login-form').addEventListener('submit', (event) => void logIn(event));
  byId('logout').addEventListener('click', () => void logOut());
  byId('get-session').addEventListener('click', () => void requestSession('GET'));
  byId('post-session').addEventListener('click', () => void requestSession('POST'));
})();

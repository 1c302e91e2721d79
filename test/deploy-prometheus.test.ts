import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { parse } from 'yaml';
import { createBroker, type Broker } from '../src/broker';
import { loadConfig } from '../src/config/config';
import { createLogger } from '../src/observability/logger';
import { TEST_HMAC_SECRET } from './helpers/harness';
import { listen, type Listening } from './helpers/listen';
import { LogCapture } from './helpers/log-capture';
import { startCardscanStandIn, type CardscanStandIn } from './stand-ins/cardscan';
import { startCertiscanStandIn, type CertiscanStandIn } from './stand-ins/certiscan';

/**
 * deploy/prometheus: promtool checks the rules and runs their unit tests, and every series a rule
 * selects is one the real broker exports, found by scraping one after provoking the failures the
 * alerts watch for.
 */
const ROOT = path.join(__dirname, '..');
const RULES = path.join(ROOT, 'deploy', 'prometheus', 'alerts.yaml');
const RULE_TESTS = path.join(ROOT, 'deploy', 'prometheus', 'alerts.test.yaml');
const RUNBOOK = path.join(ROOT, 'docs', 'operations-alerts.md');

/** Labels that Prometheus's scrape adds to every series. */
const SCRAPE_LABELS = ['job', 'instance'];

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rules = (
  parse(readFileSync(RULES, 'utf8')) as { groups: { rules: Rule[] }[] }
).groups.flatMap((group) => group.rules);

interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}
interface Selector {
  metric: string;
  matchers: Matcher[];
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/**
 * The series selectors of a PromQL expression: enough of PromQL for these rules (a selector
 * without a metric name, or an unknown construct, throws rather than pass unseen).
 */
function selectorsOf(expr: string): Selector[] {
  const selectors: Selector[] = [];
  const rest = expr
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(
      /([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}/g,
      (_all, metric: string | undefined, body: string) => {
        if (!metric) throw new Error(`a selector without a metric name in ${expr}`);
        const matchers = [
          ...body.matchAll(/([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g),
        ].map(([, label, op, value]) => ({ label, op, value }) as Matcher);
        selectors.push({ metric, matchers });
        return ' ';
      },
    );
  for (const [, name, call] of rest.matchAll(/(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?/g)) {
    if (!call && name && !KEYWORDS.has(name)) selectors.push({ metric: name, matchers: [] });
  }
  return selectors;
}

/** A series of the scrape: its metric name and labels. */
interface Series {
  metric: string;
  labels: Record<string, string>;
}

function parseExposition(text: string): { types: Map<string, string>; series: Series[] } {
  const types = new Map<string, string>();
  const series: Series[] = [];
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    const sample = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (sample) {
      const labels: Record<string, string> = {};
      for (const [, label, value] of (sample[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        labels[label!] = value!;
      }
      series.push({ metric: sample[1]!, labels });
    }
  }
  return { types, series };
}

/** Names a scrape can hold for each metric: a histogram's buckets, sum and count. */
function exportedNames(types: Map<string, string>): Set<string> {
  const names = new Set<string>();
  for (const [name, type] of types) {
    names.add(name);
    if (type === 'histogram')
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
  }
  return names;
}

function matches(matcher: Matcher, value: string | undefined): boolean {
  const actual = value ?? '';
  const regex = () => new RegExp(`^(?:${matcher.value})$`);
  if (matcher.op === '=') return actual === matcher.value;
  if (matcher.op === '!=') return actual !== matcher.value;
  if (matcher.op === '=~') return regex().test(actual);
  return !regex().test(actual);
}

function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, command);
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

describe('Prometheus rules: promtool', () => {
  const promtool = which('promtool');
  // Without promtool a developer's run skips these two; CI (CI=true) installs it and must run them.
  const needed = promtool !== undefined || process.env.CI === 'true';

  function run(args: string[]) {
    if (!promtool) {
      throw new Error('promtool is not on PATH: .ci/run installs it (Debian package prometheus)');
    }
    const result = spawnSync(promtool, args, { encoding: 'utf8', timeout: 60_000 });
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
  }

  (needed ? test : test.skip)('when promtool checks the rules, then they are valid', () => {
    expect(run(['check', 'rules', RULES])).toMatchObject({ status: 0 });
  });

  (needed ? test : test.skip)(
    'when promtool runs the rules’ unit tests, then every one passes',
    () => {
      const result = run(['test', 'rules', RULE_TESTS]);
      expect(result).toMatchObject({ status: 0 });
      expect(result.output).toContain('SUCCESS');
    },
  );
});

describe('Prometheus rules: shape', () => {
  const alertNames = rules.map((rule) => rule.alert);

  test('when the rules are read, then each alert the deployment needs is there, once', () => {
    expect(new Set(alertNames).size).toBe(alertNames.length);
    expect(alertNames).toEqual(
      expect.arrayContaining([
        'CardscanBrokerCircuitOpen',
        'CardscanBrokerCardscanCredentialsRefused',
        'CardscanBrokerCertiscanCredentialsRefused',
        'CardscanBrokerCredentialReloadRefused',
        'CardscanBrokerRateLimitStoreErrors',
        'CardscanBrokerHighErrorRatio',
        'CardscanBrokerHighLatencyP99',
        'CardscanBrokerNoSigningKeys',
      ]),
    );
  });

  test('when an alert is defined, then it has a severity, a summary, a description and a runbook section that exists', () => {
    const runbook = readFileSync(RUNBOOK, 'utf8');
    const anchors = [...runbook.matchAll(/^#{2,3} (.+)$/gm)].map(([, heading]) =>
      heading!
        .trim()
        .toLowerCase()
        .replace(/[^\w\- ]/g, '')
        .replace(/ /g, '-'),
    );
    for (const rule of rules) {
      expect([rule.alert, rule.labels?.severity]).toEqual([
        rule.alert,
        expect.stringMatching(/^(critical|warning)$/),
      ]);
      expect(rule.annotations?.summary).toBeTruthy();
      expect(rule.annotations?.description).toBeTruthy();
      expect(rule.annotations?.runbook).toBe(
        `docs/operations-alerts.md#${rule.alert.toLowerCase()}`,
      );
      expect(anchors).toContain(rule.alert.toLowerCase());
    }
  });

  test('when the unit tests are read, then every alert has a case where it fires and one where it stays quiet', () => {
    type Case = { alertname: string; exp_alerts?: unknown[] };
    const tests = (
      parse(readFileSync(RULE_TESTS, 'utf8')) as { tests: { alert_rule_test: Case[] }[] }
    ).tests;
    const cases = tests.flatMap((each) => each.alert_rule_test);
    for (const alert of alertNames) {
      const own = cases.filter((each) => each.alertname === alert);
      expect([alert, own.some((each) => (each.exp_alerts ?? []).length > 0)]).toEqual([
        alert,
        true,
      ]);
      expect([alert, own.some((each) => (each.exp_alerts ?? []).length === 0)]).toEqual([
        alert,
        true,
      ]);
    }
  });

  test('when a PromQL expression is read, then every series selector in it is found, nested ones included', () => {
    expect(
      selectorsOf(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x",route!~"/a|/b"}[5m]))) > 1 and on (job) b_total offset 5m',
      ),
    ).toEqual([
      {
        metric: 'a_bucket',
        matchers: [
          { label: 'job', op: '=', value: 'x' },
          { label: 'route', op: '!~', value: '/a|/b' },
        ],
      },
      { metric: 'b_total', matchers: [] },
    ]);
  });
});

describe('Prometheus rules: a broker that has served nothing yet', () => {
  let broker: Broker;
  let admin: Listening;
  let secretDir: string;

  beforeAll(async () => {
    secretDir = mkdtempSync(path.join(os.tmpdir(), 'prometheus-fresh-'));
    const keyFile = path.join(secretDir, 'cardscan-api-key');
    writeFileSync(keyFile, 'secret_test_prometheus_broker_key_0002\n');
    const { config } = loadConfig({
      CARDSCAN_API_KEY_FILE: keyFile,
      CERTISCAN_AUTH_TOKEN: 'secret_test_prometheus_broker_token_0002',
      AUTH_JWT_SECRET: TEST_HMAC_SECRET,
      ADMIN_API_KEYS: `ops:${createHash('sha256').update('secret_test_unused').digest('hex')}`,
      ADMIN_PORT: '9090',
    });
    broker = createBroker(config, { logger: createLogger('silent', new LogCapture()) });
    admin = await listen(broker.listeners[1]!.app);
  });
  afterAll(async () => {
    await admin.close();
    await broker.close();
    rmSync(secretDir, { recursive: true, force: true });
  });

  // increase() over a series that appears with its first count sees no increase: a counter an
  // alert counts must be exported at 0 before the first event, or that event never fires it.
  test('when no upstream was called, then every series an increase() alert selects is exported, at 0', async () => {
    const res = await request(admin.url).get('/metrics');
    const lines = res.text.split('\n');
    const { series } = parseExposition(res.text);
    const counting = rules.filter((rule) => rule.expr.includes('increase('));
    expect(counting.map((rule) => rule.alert)).toEqual(
      expect.arrayContaining([
        'CardscanBrokerCardscanCredentialsRefused',
        'CardscanBrokerCertiscanCredentialsRefused',
        'CardscanBrokerCredentialReloadRefused',
        'CardscanBrokerRateLimitStoreErrors',
      ]),
    );
    for (const rule of counting) {
      for (const { metric, matchers } of selectorsOf(rule.expr)) {
        const own = matchers.filter((m) => !SCRAPE_LABELS.includes(m.label));
        const picked = series.filter(
          (s) => s.metric === metric && own.every((m) => matches(m, s.labels[m.label])),
        );
        expect([rule.alert, picked.length > 0]).toEqual([rule.alert, true]);
      }
    }
    for (const upstream of ['cardscan', 'certiscan']) {
      const line = `upstream_request_duration_seconds_count{upstream="${upstream}",outcome="credentials"} 0`;
      expect(lines).toContain(line);
    }
    expect(lines).toContain('rate_limit_store_errors_total 0');
    expect(lines).toContain(
      'credential_reloads_total{variable="CARDSCAN_API_KEY",outcome="refused"} 0',
    );
    // Nothing was counted: every upstream series is there at 0, not only the watched ones.
    expect(
      lines.filter((l) => /^upstream_request_duration_seconds_count\{/.test(l) && !/ 0$/.test(l)),
    ).toEqual([]);
  });
});

describe('Prometheus rules: what the broker really exports', () => {
  const ADMIN_KEY = 'secret_test_prometheus_admin_key_0001';
  let cardscan: CardscanStandIn;
  let certiscan: CertiscanStandIn;
  let broker: Broker;
  const listening: Listening[] = [];
  let scrape: { types: Map<string, string>; series: Series[] };
  let secretDir: string;

  beforeAll(async () => {
    // Both upstreams expect other credentials than the broker has: their refusals are what two
    // alerts watch for, so the scrape holds those very series.
    cardscan = await startCardscanStandIn({ apiKey: 'secret_test_not_the_brokers_key_0001' });
    certiscan = await startCertiscanStandIn({
      authToken: 'secret_test_not_the_brokers_token_0001',
    });
    // The key comes from a file, as in the manifests: the credential-rotation series exist then.
    secretDir = mkdtempSync(path.join(os.tmpdir(), 'prometheus-secrets-'));
    const keyFile = path.join(secretDir, 'cardscan-api-key');
    writeFileSync(keyFile, 'secret_test_prometheus_broker_key_0001\n');
    const { config } = loadConfig({
      CARDSCAN_API_KEY_FILE: keyFile,
      CARDSCAN_BASE_URL: cardscan.baseUrl,
      CERTISCAN_BASE_URL: certiscan.baseUrl,
      CERTISCAN_AUTH_TOKEN: 'secret_test_prometheus_broker_token_0001',
      AUTH_JWT_SECRET: TEST_HMAC_SECRET,
      ADMIN_API_KEYS: `ops:${createHash('sha256').update(ADMIN_KEY).digest('hex')}`,
      ADMIN_PORT: '9090',
      UPSTREAM_TIMEOUT_MS: '1500',
    });
    broker = createBroker(config, {
      logger: createLogger('silent', new LogCapture()),
      defaultMetrics: true,
    });
    const [publicListener, adminListener] = await Promise.all(
      broker.listeners.map((listener) => listen(listener.app)),
    );
    listening.push(publicListener!, adminListener!);

    const session = await request(publicListener!.url)
      .post('/cardscan-session')
      .set(
        'Authorization',
        `Bearer ${jwt.sign({ sub: 'metrics-user' }, TEST_HMAC_SECRET, { expiresIn: 300 })}`,
      );
    expect(session.status).toBe(502);
    const admin = await request(adminListener!.url)
      .post('/admin/worktokens')
      .set('Authorization', `Bearer ${ADMIN_KEY}`)
      .send({ name: 'metrics check', subject: 'metrics-check' });
    expect(admin.status).toBe(502);

    const res = await request(adminListener!.url).get('/metrics');
    expect(res.status).toBe(200);
    scrape = parseExposition(res.text);
  });
  afterAll(async () => {
    await Promise.all(listening.map((each) => each.close()));
    await broker.close();
    await Promise.all([cardscan.close(), certiscan.close()]);
    rmSync(secretDir, { recursive: true, force: true });
  });

  const selectors = rules.flatMap((rule) =>
    selectorsOf(rule.expr).map((selector) => [rule.alert, selector] as const),
  );

  test('when the rules select metrics, then each name is one the broker exports', () => {
    expect(selectors.length).toBeGreaterThanOrEqual(rules.length);
    const exported = exportedNames(scrape.types);
    for (const [alert, { metric }] of selectors) {
      expect([alert, metric, exported.has(metric)]).toEqual([alert, metric, true]);
    }
  });

  test('when the rules match labels, then each label is one the metric carries (or the scrape adds)', () => {
    for (const [alert, { metric, matchers }] of selectors) {
      const labels = new Set([
        ...SCRAPE_LABELS,
        ...scrape.series.filter((s) => s.metric === metric).flatMap((s) => Object.keys(s.labels)),
      ]);
      for (const { label } of matchers)
        expect([alert, metric, label, labels.has(label)]).toEqual([alert, metric, label, true]);
    }
  });

  test('when a rule selects series, then the broker exports one that its label matchers pick', () => {
    for (const [alert, { metric, matchers }] of selectors) {
      const own = matchers.filter((m) => !SCRAPE_LABELS.includes(m.label));
      const found = scrape.series.some(
        (s) => s.metric === metric && own.every((m) => matches(m, s.labels[m.label])),
      );
      expect([alert, metric, own, found]).toEqual([alert, metric, own, true]);
    }
  });

  test('when a rule names a metric the broker does not export, then the check finds it (it can fail)', () => {
    const exported = exportedNames(scrape.types);
    expect(exported.has('upstream_request_duration_seconds_count')).toBe(true);
    expect(exported.has('upstream_requests_total')).toBe(false);
  });
});

import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IHTTPGetAction } from 'kubernetes-models/v1/HTTPGetAction';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IIoK8sApimachineryPkgApisMetaV1LabelSelector as LabelSelector } from '@kubernetes-models/apimachinery/apis/meta/v1/LabelSelector';
import request from 'supertest';
import { parseAllDocuments } from 'yaml';
import { createBroker } from '../src/broker';
import { startListeners, type ListenerSpec, type RunningListeners } from '../src/http/lifecycle';
import { CONFIG_VARIABLES, loadConfig, SECRET_VARIABLES } from '../src/config/config';
import { createLogger } from '../src/observability/logger';
import { memoryLimitWarning } from '../src/observability/memory-limit';
import { TEST_HMAC_SECRET } from './helpers/harness';
import { LogCapture } from './helpers/log-capture';
import { SecretVolume } from './helpers/secret-volume';

/**
 * The manifests in deploy/kubernetes, checked without a cluster: each object against the
 * Kubernetes API's schema (the kubernetes-models package carries it), then what a schema cannot
 * see: selectors, ports, probes against the real app, variables against the broker's config.
 */
const ROOT = path.join(__dirname, '..');
const DIR = path.join(ROOT, 'deploy', 'kubernetes');
const EXAMPLE_SECRET_FILE = 'secret.example.yaml';
const BROKER = 'cardscan-broker';
const ADMIN_CLIENT_LABEL = 'cardscan-broker/admin-client';
/** The worst peak RSS measured under load (docs/kubernetes.md, "Memory and CPU"): without the heap flags. */
const PEAK_RSS_BYTES = 150 * 1e6;

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; namespace?: string };
  [field: string]: unknown;
}
interface Loaded {
  file: string;
  object: K8sObject;
}

function loadFile(file: string): Loaded[] {
  const docs = parseAllDocuments(readFileSync(path.join(DIR, file), 'utf8'));
  return (Array.isArray(docs) ? docs : [docs]).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
    return { file, object: doc.toJS() as K8sObject };
  });
}

const files = readdirSync(DIR)
  .filter((name) => /\.ya?ml$/.test(name))
  .sort();
const loaded = files.flatMap(loadFile);
const objects = loaded.map((each) => each.object);
const kustomization = objects.find((o) => o.kind === 'Kustomization') as K8sObject & {
  resources: string[];
  images?: { name: string }[];
};
const manifests = loaded.filter((each) => each.object.kind !== 'Kustomization');
const applied = manifests.filter((each) => each.file !== EXAMPLE_SECRET_FILE);

function ofKind<T>(kind: string, from = applied): T[] {
  return from.filter((each) => each.object.kind === kind).map((each) => each.object as T);
}
type DeploymentObject = K8sObject & {
  spec: {
    replicas?: number;
    selector: LabelSelector;
    template: {
      metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
      spec: IPodSpec;
    };
  };
};
type ServiceObject = K8sObject & {
  spec: { selector: Record<string, string>; ports: { name: string; targetPort: string }[] };
};
const deployments = ofKind<DeploymentObject>('Deployment');
const services = ofKind<ServiceObject>('Service');

function named<T extends K8sObject>(list: T[], name: string): T {
  const found = list.find((each) => each.metadata.name === name);
  if (!found) throw new Error(`no object named ${name}`);
  return found;
}
const broker = named(deployments, BROKER);
const brokerPod = broker.spec.template.spec;
const brokerContainer = brokerPod.containers[0] as IContainer;
const exampleSecret = ofKind<K8sObject & { stringData: Record<string, string> }>(
  'Secret',
  manifests,
)[0];

/** The Kubernetes schema of each kind the manifests hold; a kind not here fails the test. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

/** matchLabels only: the manifests use no matchExpressions, and this throws on one rather than guess. */
function selects(selector: LabelSelector, labels: Record<string, string> | undefined): boolean {
  if (selector.matchExpressions !== undefined) throw new Error('matchExpressions are not checked');
  const wanted = Object.entries(selector.matchLabels ?? {});
  return wanted.length > 0 && wanted.every(([key, value]) => labels?.[key] === value);
}

/** The Deployments whose pods the selector picks. */
function podsOf(selector: LabelSelector): DeploymentObject[] {
  return deployments.filter((d) => selects(selector, d.spec.template.metadata.labels));
}

/** Bytes of a Kubernetes quantity such as 384Mi or 1G. */
function bytes(quantity: string | number | undefined): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(String(quantity));
  if (!match) throw new Error(`unreadable quantity ${String(quantity)}`);
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, k: 1e3, M: 1e6, G: 1e9 };
  return Number(match[1]) * (match[2] ? unit[match[2] as keyof typeof unit] : 1);
}

function envOf(container: IContainer): Record<string, string> {
  const env: Record<string, string> = {};
  for (const each of container.env ?? []) env[each.name] = each.value ?? '';
  return env;
}
const brokerEnv = envOf(brokerContainer);

/** The mounted Secret volumes of the broker's container: mount path → secret name. */
function secretMounts(): Map<string, string> {
  const mounts = new Map<string, string>();
  for (const mount of brokerContainer.volumeMounts ?? []) {
    const volume = brokerPod.volumes?.find((each) => each.name === mount.name);
    if (volume?.secret?.secretName) mounts.set(mount.mountPath, volume.secret.secretName);
  }
  return mounts;
}

/**
 * The example Secret's keys as files, laid out as the kubelet lays out its volume, in a temporary
 * directory that stands for each Secret mount of the broker's container.
 */
const secretVolumes = new Map<string, SecretVolume>();
function volumeFor(mountPath: string): SecretVolume {
  let volume = secretVolumes.get(mountPath);
  if (!volume) {
    volume = new SecretVolume(mkdtempSync(path.join(os.tmpdir(), 'k8s-secret-volume-')));
    volume.write(exampleSecret?.stringData ?? {});
    secretVolumes.set(mountPath, volume);
  }
  return volume;
}
afterAll(() => {
  for (const volume of secretVolumes.values()) rmSync(volume.dir, { recursive: true, force: true });
});

/**
 * The settings the broker gets in the cluster: the manifest's env as it is, except that a path
 * inside a Secret mount points into that mount's stand-in directory instead.
 */
function clusterEnv(): Record<string, string> {
  const mounts = secretMounts();
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(brokerEnv)) {
    const mountPath = [...mounts.keys()].find((mount) => value.startsWith(`${mount}/`));
    env[name] = mountPath ? volumeFor(mountPath).dir + value.slice(mountPath.length) : value;
  }
  return env;
}

function containerPort(pod: IPodSpec, name: string | number | undefined): number {
  for (const container of pod.containers) {
    const port = container.ports?.find((each) => each.name === name);
    if (port) return port.containerPort;
  }
  throw new Error(`no container port named ${String(name)}`);
}

describe('Kubernetes manifests: schema', () => {
  test('when the manifests are read, then there is a kustomization and every object kind has a schema', () => {
    expect(kustomization).toBeDefined();
    expect(kustomization.apiVersion).toBe('kustomize.config.k8s.io/v1beta1');
    for (const { object } of manifests) {
      expect(Object.keys(MODELS)).toContain(`${object.apiVersion}/${object.kind}`);
    }
  });

  test.each(
    manifests.map((each) => [
      `${each.file}: ${each.object.kind} ${each.object.metadata.name}`,
      each.object,
    ]),
  )('when %s is checked against the Kubernetes API schema, then it is valid', (_name, object) => {
    const Model = MODELS[`${object.apiVersion}/${object.kind}`];
    if (!Model) throw new Error(`no schema for ${object.apiVersion}/${object.kind}`);
    expect(() => new Model(object as never).validate()).not.toThrow();
  });

  test('when a schema check meets a wrong type, then it fails (the validator is live)', () => {
    const broken = structuredClone(broker) as DeploymentObject;
    (
      broken.spec.template.spec.containers[0]!.ports![0] as { containerPort: unknown }
    ).containerPort = 'eighty';
    expect(() => new Deployment(broken as never).validate()).toThrow(/containerPort/);
  });
});

describe('Kubernetes manifests: kustomization', () => {
  test('when kustomization.yaml lists its resources, then it lists every manifest but the example Secret, and each exists', () => {
    const listed = [...kustomization.resources].sort();
    expect(listed).toEqual(
      files.filter((file) => file !== 'kustomization.yaml' && file !== EXAMPLE_SECRET_FILE),
    );
    // Applied with every deploy, the example would overwrite the real credentials.
    expect(listed).not.toContain(EXAMPLE_SECRET_FILE);
  });

  test('when the image is set, then the broker runs the cardscan-broker image that the kustomization points at the registry', () => {
    expect(brokerContainer.image).toBe(BROKER);
    expect(kustomization.images?.map((image) => image.name)).toContain(BROKER);
  });

  test('when objects are named, then no two of one kind share a name, and only the example Secret sets a namespace', () => {
    const keys = applied.map((each) => `${each.object.kind}/${each.object.metadata.name}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const { object } of applied) {
      if (object.kind !== 'Namespace') expect(object.metadata.namespace).toBeUndefined();
    }
    expect(exampleSecret?.metadata.namespace).toBe(
      (kustomization as unknown as { namespace: string }).namespace,
    );
  });
});

describe('Kubernetes manifests: selectors and ports', () => {
  test('when a Deployment selects its pods, then its selector matches its own pod labels and no other Deployment’s', () => {
    expect(deployments.length).toBeGreaterThanOrEqual(2);
    for (const deployment of deployments) {
      expect(podsOf(deployment.spec.selector)).toEqual([deployment]);
    }
  });

  test('when a Service, PodDisruptionBudget, NetworkPolicy or spread constraint selects pods, then it selects exactly one Deployment’s', () => {
    const selectors: [string, LabelSelector][] = [
      ...services.map((s): [string, LabelSelector] => [
        s.metadata.name,
        { matchLabels: s.spec.selector },
      ]),
      ...ofKind<K8sObject & { spec: { selector: LabelSelector } }>('PodDisruptionBudget').map(
        (p): [string, LabelSelector] => [p.metadata.name, p.spec.selector],
      ),
      ...ofKind<K8sObject & { spec: { podSelector: LabelSelector } }>('NetworkPolicy').map(
        (n): [string, LabelSelector] => [n.metadata.name, n.spec.podSelector],
      ),
      ...(brokerPod.topologySpreadConstraints ?? []).map((t): [string, LabelSelector] => [
        'topologySpreadConstraints',
        t.labelSelector as LabelSelector,
      ]),
      // A peer without a namespaceSelector is a pod of this namespace: one of these Deployments.
      ...ofKind<
        K8sObject & {
          spec: {
            ingress: { from?: { podSelector?: LabelSelector; namespaceSelector?: unknown }[] }[];
          };
        }
      >('NetworkPolicy').flatMap((n) =>
        n.spec.ingress
          .flatMap((rule) => rule.from ?? [])
          .filter((peer) => peer.podSelector && !peer.namespaceSelector)
          .map((peer): [string, LabelSelector] => [`${n.metadata.name} from`, peer.podSelector!]),
      ),
    ];
    expect(selectors.length).toBeGreaterThanOrEqual(8);
    for (const [name, selector] of selectors) {
      expect([name, podsOf(selector).length]).toEqual([name, 1]);
    }
    const budget = ofKind<K8sObject & { spec: { selector: LabelSelector } }>('PodDisruptionBudget');
    expect(budget.map((p) => podsOf(p.spec.selector)[0])).toEqual([broker]);
  });

  test('when a Service names a targetPort, then the pods it selects have a container port of that name', () => {
    for (const service of services) {
      const [deployment] = podsOf({ matchLabels: service.spec.selector });
      for (const port of service.spec.ports) {
        expect(typeof port.targetPort).toBe('string');
        expect(() => containerPort(deployment!.spec.template.spec, port.targetPort)).not.toThrow();
      }
    }
  });

  test('when the broker listens, then its ports are PORT and ADMIN_PORT, the public Service has only PORT and the admin Service only ADMIN_PORT', () => {
    expect(containerPort(brokerPod, 'http')).toBe(Number(brokerEnv.PORT));
    expect(containerPort(brokerPod, 'admin')).toBe(Number(brokerEnv.ADMIN_PORT));
    const targets = (name: string) => named(services, name).spec.ports.map((p) => p.targetPort);
    expect(targets(BROKER)).toEqual(['http']);
    expect(targets(`${BROKER}-admin`)).toEqual(['admin']);
    for (const service of services) {
      expect((service.spec as { type?: string }).type ?? 'ClusterIP').toBe('ClusterIP');
    }
  });

  test('when the NetworkPolicy admits traffic, then the admin port is open only to pods labelled as admin clients', () => {
    type Rule = {
      from?: {
        podSelector?: LabelSelector;
        namespaceSelector?: LabelSelector;
        ipBlock?: unknown;
      }[];
      ports?: { port?: string | number }[];
    };
    const policy = ofKind<K8sObject & { spec: { podSelector: LabelSelector; ingress: Rule[] } }>(
      'NetworkPolicy',
    ).find((n) => podsOf(n.spec.podSelector)[0] === broker);
    const rules = policy?.spec.ingress ?? [];
    const adminPort = containerPort(brokerPod, 'admin');
    const opensAdmin = (rule: Rule) =>
      rule.ports === undefined ||
      rule.ports.some((p) => p.port === 'admin' || p.port === adminPort || p.port === undefined);
    const adminRules = rules.filter(opensAdmin);
    expect(adminRules).toHaveLength(1);
    for (const peer of adminRules[0]?.from ?? [{}]) {
      expect(peer.ipBlock).toBeUndefined();
      expect(peer.podSelector?.matchLabels?.[ADMIN_CLIENT_LABEL]).toBe('true');
    }
    // The public port stays reachable from anywhere (the ingress controller).
    expect(rules.some((r) => r.from === undefined && r.ports?.some((p) => p.port === 'http'))).toBe(
      true,
    );
  });

  test('when the cluster scales, then the HPA owns a count of at least 2 and the budget keeps one replica serving', () => {
    const [hpa] = ofKind<
      K8sObject & { spec: { scaleTargetRef: { kind: string; name: string }; minReplicas: number } }
    >('HorizontalPodAutoscaler');
    expect(hpa?.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: BROKER });
    expect(hpa?.spec.minReplicas).toBeGreaterThanOrEqual(2);
    // A count in the Deployment would reset the HPA's on every apply.
    expect(broker.spec.replicas).toBeUndefined();
    const [pdb] = ofKind<K8sObject & { spec: { maxUnavailable?: number } }>('PodDisruptionBudget');
    expect(pdb?.spec.maxUnavailable).toBeLessThan(hpa?.spec.minReplicas ?? 0);
    expect(brokerContainer.resources?.requests?.cpu).toBeDefined();
  });
});

describe('Kubernetes manifests: the broker’s configuration', () => {
  test('when the broker container sets a variable, then CONFIG_VARIABLES has it, and no secret is a plain value', () => {
    for (const each of brokerContainer.env ?? []) {
      expect(CONFIG_VARIABLES).toContain(each.name);
      expect(each.valueFrom).toBeUndefined();
      expect(SECRET_VARIABLES as readonly string[]).not.toContain(each.name);
    }
    expect(brokerContainer.envFrom).toBeUndefined();
  });

  test('when a variable is X_FILE, then it names a file of the mounted Secret volume that the example Secret has', () => {
    const mounts = secretMounts();
    const fileVariables = Object.entries(brokerEnv).filter(([name]) => name.endsWith('_FILE'));
    expect(fileVariables.map(([name]) => name)).toEqual(
      expect.arrayContaining([
        'CARDSCAN_API_KEY_FILE',
        'CERTISCAN_AUTH_TOKEN_FILE',
        'ADMIN_API_KEYS_FILE',
      ]),
    );
    for (const [, file] of fileVariables) {
      expect(mounts.get(path.dirname(file))).toBe(exampleSecret?.metadata.name);
      expect(Object.keys(exampleSecret?.stringData ?? {})).toContain(path.basename(file));
    }
  });

  test('when the manifest’s settings and the example Secret are given to the broker, then its config accepts them', () => {
    const env = clusterEnv();
    // Each secret as the cluster gives it: a path in the mounted volume, never a value.
    for (const name of SECRET_VARIABLES) expect(env[name]).toBeUndefined();
    const { config } = loadConfig(env);
    expect(config.admin?.port).toBe(containerPort(brokerPod, 'admin'));
    expect(config.rateLimit.redisUrl).toMatch(/^redis:\/\/cardscan-broker-redis:\d+$/);
    expect(config.production).toBe(true);
    expect(config.cardscan.apiKey).toBe(exampleSecret?.stringData['cardscan-api-key']);
    expect(config.certiscan.authToken).toBe(
      exampleSecret?.stringData['certiscan-auth-token']?.replace(/^Bearer /, ''),
    );
    expect(config.admin?.keys.map((key) => key.name)).toEqual(['ops-placeholder']);
    expect(Object.keys(config.credentialFiles).sort()).toEqual(
      Object.keys(brokerEnv)
        .filter((name) => name.endsWith('_FILE'))
        .map((name) => name.slice(0, -'_FILE'.length))
        .sort(),
    );
  });

  test('when the example Secret holds credentials, then they are placeholders, never live keys', () => {
    const values = Object.values(exampleSecret?.stringData ?? {});
    expect(values.length).toBeGreaterThan(0);
    for (const value of values) expect(value).not.toMatch(/sk_live_|secret_live_/);
    expect(exampleSecret?.stringData['cardscan-api-key']).toMatch(/^secret_test_replace/);
    expect(exampleSecret?.stringData['certiscan-auth-token']).toMatch(/^secret_test_replace/);
  });

  test('when the pod stops, then the grace period exceeds SHUTDOWN_TIMEOUT_MS, which leaves the slowest request time to finish', () => {
    const { config } = loadConfig(clusterEnv());
    const { shutdownTimeoutMs, shutdownDelayMs } = config.server;
    expect(brokerPod.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(shutdownTimeoutMs);
    expect(shutdownTimeoutMs).toBeGreaterThanOrEqual(
      shutdownDelayMs + config.upstream.timeoutMs + 1000,
    );
  });

  test('when no drain timeout is set, then the grace period still exceeds the config default', () => {
    const env = clusterEnv();
    delete env.SHUTDOWN_TIMEOUT_MS;
    delete env.SHUTDOWN_DELAY_MS;
    const { config } = loadConfig(env);
    expect(brokerPod.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(
      config.server.shutdownTimeoutMs,
    );
  });
});

describe('Kubernetes manifests: security and resources', () => {
  test.each(deployments.map((d) => [d.metadata.name, d]))(
    'when %s runs, then it is non-root, seccomp RuntimeDefault, read-only, without privilege escalation or capabilities, and has no API token',
    (_name, deployment) => {
      const pod = deployment.spec.template.spec;
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
      expect(pod.automountServiceAccountToken).toBe(false);
      expect(pod.hostNetwork ?? false).toBe(false);
      for (const container of [...pod.containers, ...(pod.initContainers ?? [])]) {
        expect(container.securityContext).toMatchObject({
          runAsNonRoot: true,
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(container.securityContext?.privileged ?? false).toBe(false);
        expect(container.securityContext?.capabilities?.add).toBeUndefined();
        expect(container.resources?.requests?.memory).toBeDefined();
        expect(container.resources?.limits?.memory).toBeDefined();
        for (const mount of container.volumeMounts ?? []) {
          // A subPath mount is a copy made once: a rotated Secret never reaches it.
          expect(mount.subPath).toBeUndefined();
          expect(mount.subPathExpr).toBeUndefined();
        }
      }
    },
  );

  test('when the broker runs, then it is the image’s node user (uid 1000), with its Secret readable by its group only and no writable volume', () => {
    expect(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')).toMatch(/^USER node$/m);
    expect(brokerPod.securityContext).toMatchObject({ runAsUser: 1000, fsGroup: 1000 });
    const volumes = brokerPod.volumes ?? [];
    expect(volumes.every((v) => v.secret !== undefined)).toBe(true);
    for (const volume of volumes) expect(volume.secret?.defaultMode).toBe(0o440);
    expect((brokerContainer.volumeMounts ?? []).every((m) => m.readOnly === true)).toBe(true);
  });

  test('when the memory limit is read, then V8’s heap under the image’s flags fits in it (no start-up warning) and the request covers the measured peak', () => {
    const start = (
      JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
        scripts: { start: string };
      }
    ).scripts.start;
    const flags = start.split(/\s+/).filter((word) => word.startsWith('--'));
    expect(flags).toEqual(['--max-semi-space-size=8', '--max-old-space-size=256']);
    const heapLimit = Number(
      execFileSync(process.execPath, [...flags, '-p', 'v8.getHeapStatistics().heap_size_limit'], {
        encoding: 'utf8',
        timeout: 10_000,
      }),
    );
    const limit = bytes(brokerContainer.resources?.limits?.memory);
    const requested = bytes(brokerContainer.resources?.requests?.memory);
    // A node far larger than the limit: the question is the limit, not this machine.
    expect(memoryLimitWarning(limit, heapLimit, 64 * 2 ** 30)).toBeUndefined();
    expect(memoryLimitWarning(limit - 32 * 2 ** 20, heapLimit, 64 * 2 ** 30)).toBeDefined();
    expect(requested).toBeGreaterThanOrEqual(PEAK_RSS_BYTES);
    expect(requested).toBeLessThanOrEqual(limit);
  });
});

describe('Kubernetes manifests: probes and scraping against the real broker', () => {
  const logs = new LogCapture();
  /** A small connection cap, so the test can fill the public listener. */
  const MAX_CONNECTIONS = 4;
  let running: RunningListeners;
  let specs: ListenerSpec[];
  let closeBroker: () => Promise<void>;

  beforeAll(async () => {
    // The manifest's settings, with a shared secret instead of the issuer (no identity provider
    // to reach, so the broker is ready at once) and no Redis (nothing to connect to).
    const env = clusterEnv();
    delete env.AUTH_ISSUER;
    delete env.REDIS_URL_FILE;
    env.AUTH_JWT_SECRET = TEST_HMAC_SECRET;
    env.MAX_CONNECTIONS = String(MAX_CONNECTIONS);
    const { config } = loadConfig(env);
    const logger = createLogger('silent', logs);
    const built = createBroker(config, { logger });
    specs = built.listeners;
    // The broker's own listeners with their limits, on free loopback ports instead of 8080/9090.
    running = await startListeners(
      specs.map((spec) => ({ ...spec, port: 0, host: '127.0.0.1' })),
      logger,
    );
    closeBroker = () => built.close();
  });
  afterAll(async () => {
    await running.shutdown({ delayMs: 0, timeoutMs: 1000, startDraining: () => {} });
    await closeBroker();
  });

  /** The broker's URL for the container port the manifest names. */
  function urlOf(port: string | number | undefined): string {
    const number = containerPort(brokerPod, port);
    const spec = specs.find((each) => each.port === number);
    const url = spec && running.urls[spec.name];
    if (!url) throw new Error(`the broker does not listen on port ${String(port)}`);
    return url;
  }

  /** The broker's answer to a GET on the container port the manifest names. */
  function get(port: string | number | undefined, pathname: string) {
    return request(urlOf(port)).get(pathname);
  }

  /** A keep-alive connection that has had one answer, so the listener surely counts it. */
  async function heldConnection(url: string): Promise<net.Socket> {
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer within 5 s')));
    await once(socket, 'connect');
    socket.write(`GET /healthz HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`);
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    expect(chunk.toString('latin1')).toMatch(/^HTTP\/1\.1 200 /);
    socket.setTimeout(0);
    return socket;
  }

  test('when the probes are read, then liveness is /healthz on the admin port (out of reach of a flood on the public one), readiness /readyz on the public port', () => {
    expect(brokerContainer.livenessProbe?.httpGet).toMatchObject({
      path: '/healthz',
      port: 'admin',
    });
    expect(brokerContainer.readinessProbe?.httpGet).toMatchObject({
      path: '/readyz',
      port: 'http',
    });
    // The kubelet probes the pod's IP from the pod's own node, which NetworkPolicy always admits;
    // a probe with a host of its own would come from elsewhere.
    for (const probe of [brokerContainer.livenessProbe, brokerContainer.readinessProbe]) {
      expect(probe?.httpGet?.host).toBeUndefined();
    }
  });

  const probes = (['livenessProbe', 'readinessProbe', 'startupProbe'] as const).flatMap((probe) => {
    const action: IHTTPGetAction | undefined = brokerContainer[probe]?.httpGet;
    return action ? [[probe, action] as const] : [];
  });

  test.each(probes)(
    'when the kubelet runs the %s, then the broker answers it 200 on that port',
    async (_probe, action) => {
      const res = await get(action.port, action.path ?? '/');
      expect(res.status).toBe(200);
    },
  );

  test('when Prometheus scrapes the annotated port and path, then the broker serves its metrics there', async () => {
    const annotations = broker.spec.template.metadata.annotations ?? {};
    expect(annotations['prometheus.io/scrape']).toBe('true');
    const port = Number(annotations['prometheus.io/port']);
    const name = brokerContainer.ports?.find((p) => p.containerPort === port)?.name;
    expect(name).toBe('admin');
    const res = await get(name, annotations['prometheus.io/path'] ?? '/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toContain('# TYPE http_request_duration_seconds histogram');
  });

  test('when a path that the broker does not serve is probed, then it is 404 (the probe check can fail)', async () => {
    expect((await get('http', '/livez')).status).toBe(404);
  });

  // Last: the listener may count the flood's connections for a moment after they are closed.
  test('when a flood holds every connection the public listener allows, then the liveness probe still answers (and readiness on the public port does not)', async () => {
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS; i++) sockets.push(await heldConnection(urlOf('http')));
      const ready = brokerContainer.readinessProbe!.httpGet!;
      await expect(get(ready.port, ready.path ?? '/').timeout(2000)).rejects.toThrow();
      const live = brokerContainer.livenessProbe!.httpGet!;
      expect((await get(live.port, live.path ?? '/').timeout(2000)).status).toBe(200);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});

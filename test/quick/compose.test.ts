/**
 * docker-compose.yml, Dockerfile and deploy/ without a Docker engine: the compose file is
 * validated against the compose-spec JSON schema (dclint bundles it) with a few of dclint's
 * rules, then cross-checked here — every mounted host path and build context exists, every
 * dependency names a service, every service has a health check, every port is bound to
 * 127.0.0.1, Prometheus scrapes services that exist — and the Prometheus config and rules
 * pass promtool, with the container paths of the compose mounts mapped back to the repo.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { promtool } from '../helpers/prometheus.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const COMPOSE = path.join(ROOT, 'docker-compose.yml');

interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  depends_on?: string[] | Record<string, { condition: string }>;
  volumes?: (string | { type?: string; source?: string; target?: string })[];
  ports?: (string | { host_ip?: string; published?: string | number; target?: number })[];
  environment?: Record<string, string> | string[];
  command?: string[];
  entrypoint?: string[];
  healthcheck?: { test?: string[] | string; disable?: boolean };
}

interface Compose {
  services: Record<string, Service>;
}

/** The slice of dclint's API used here. */
interface Linter {
  lintFiles(paths: string[], recursive: boolean): { messages: { rule: string; message: string }[] }[];
}
type LinterConfig = { rules: Record<string, 0 | 1 | 2>; quiet: boolean; debug: boolean; exclude: string[] };
// dclint's .d.ts files import each other without extensions, which NodeNext resolution cannot
// follow (its types come out as errors): the class is typed here by what this file uses.
const dclint: unknown = await import('dclint');
const { DCLinter } = dclint as { DCLinter: new (config: LinterConfig) => Linter };

/**
 * dclint: the compose-spec schema, plus its rules at their defaults, plus as errors the rules
 * that encode this file's promises. Two style rules are off: services are listed in start
 * order (Consul, workers, resolvers, observability), not alphabetically, and the workers'
 * shared definition comes first through a YAML merge key, which the key-order rule flags.
 */
function lint(file: string): { rule: string; message: string }[] {
  const linter = new DCLinter({
    rules: {
      'services-alphabetical-order': 0,
      'service-keys-order': 0,
      'no-unbound-port-interfaces': 2,
      'service-image-require-explicit-tag': 2,
      'no-duplicate-exported-ports': 2,
      'no-duplicate-container-names': 2,
      'no-version-field': 2,
      'require-quotes-in-ports': 2,
    },
    quiet: false,
    debug: false,
    exclude: [],
  });
  return linter.lintFiles([file], false).flatMap((r) => r.messages.map((m) => ({ rule: m.rule, message: m.message })));
}

/** Bind mounts of a service as [host path (absolute), container path]. */
function binds(service: Service): [string, string][] {
  return (service.volumes ?? []).flatMap((v): [string, string][] => {
    if (typeof v === 'string') {
      const [source = '', target = ''] = v.split(':');
      return source.startsWith('.') || source.startsWith('/') ? [[path.resolve(ROOT, source), target]] : [];
    }
    return v.type === 'bind' && v.source !== undefined ? [[path.resolve(ROOT, v.source), v.target ?? '']] : [];
  });
}

function env(service: Service): Record<string, string> {
  const e = service.environment ?? {};
  if (!Array.isArray(e)) return e;
  return Object.fromEntries(
    e.map((kv): [string, string] => [kv.split('=')[0] ?? '', kv.split('=').slice(1).join('=')]),
  );
}

/** A workspace member of rust/, as rust/Dockerfile's compile stage needs it: its binaries and minimum Rust. */
interface RustPackage {
  bins: string[];
  rustVersion: string;
}

/** rust/'s workspace members by package name, read from their Cargo.toml files (the few keys used here). */
function rustWorkspace(): Map<string, RustPackage> {
  const root = readFileSync(path.join(ROOT, 'rust/Cargo.toml'), 'utf8');
  const members = JSON.parse(/^members = (\[.*\])$/m.exec(root)?.[1] ?? '[]') as string[];
  const workspaceRust = /^rust-version = "(.+)"$/m.exec(root)?.[1] ?? '';
  const table = (toml: string, header: string): string[] =>
    toml
      .split(/^(?=\[)/m)
      .filter((t) => t.startsWith(`${header}\n`))
      .map((t) => t.slice(header.length));
  return new Map(
    members.map((dir): [string, RustPackage] => {
      const toml = readFileSync(path.join(ROOT, 'rust', dir, 'Cargo.toml'), 'utf8');
      const pkg = table(toml, '[package]')[0] ?? '';
      const name = /^name = "(.+)"$/m.exec(pkg)?.[1] ?? dir;
      const rustVersion = /^rust-version = "(.+)"$/m.exec(pkg)?.[1] ?? workspaceRust;
      const bins = table(toml, '[[bin]]').map((b) => /^name = "(.+)"$/m.exec(b)?.[1] ?? '');
      return [name, { bins, rustVersion }];
    }),
  );
}

/** "1.95" ≥ "1.94"? Versions as Cargo writes rust-version (major.minor[.patch]). */
function atLeast(version: string, minimum: string): boolean {
  const [a, b] = [version, minimum].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) {
    const d = (a?.[i] ?? 0) - (b?.[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

describe('docker-compose.yml', () => {
  let compose: Compose;
  let tmp: string;
  before(async () => {
    // `merge: true`: the file shares the worker definition through YAML merge keys, as compose does.
    compose = parse(readFileSync(COMPOSE, 'utf8'), { merge: true }) as Compose;
    tmp = await mkdtemp(path.join(tmpdir(), 'compose-test-'));
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  it('validates against the compose-spec schema and the lint rules', () => {
    assert.deepEqual(lint(COMPOSE), []);
  });

  it('the validator does catch a schema error and a port bound to every interface', async () => {
    const text = readFileSync(COMPOSE, 'utf8');
    const bad = path.join(tmp, 'docker-compose.yml');
    await writeFile(
      bad,
      text.replace('\n  consul:\n    image:', '\n  consul:\n    restart_policy: always\n    image:'),
    );
    assert.deepEqual(
      lint(bad).map((m) => m.rule),
      ['invalid-schema'],
    );
    await writeFile(bad, text.replace("'127.0.0.1:9090:9090'", "'9090:9090'"));
    assert.deepEqual(
      lint(bad).map((m) => m.rule),
      ['no-unbound-port-interfaces'],
    );
  });

  it('has the promised services, each with a health check, and only existing dependencies', () => {
    const names = Object.keys(compose.services);
    for (const name of ['consul', 'sidecar', 'coordinator', 'prometheus', 'grafana', 'jaeger']) {
      assert.ok(names.includes(name), `service ${name}`);
    }
    assert.ok(names.filter((n) => /^worker-\d+$/.test(n)).length >= 3, 'three or more workers');
    assert.equal(compose.services['consul']?.image, 'hashicorp/consul:1.16.1');
    assert.deepEqual(compose.services['consul']?.command, ['agent', '-dev', '-client', '0.0.0.0']);
    for (const [name, service] of Object.entries(compose.services)) {
      assert.ok(
        service.healthcheck?.test !== undefined && service.healthcheck.disable !== true,
        `${name} has a health check`,
      );
      const deps = service.depends_on ?? [];
      for (const [dep, spec] of Array.isArray(deps) ? deps.map((d) => [d, undefined] as const) : Object.entries(deps)) {
        assert.ok(names.includes(dep), `${name} depends on ${dep}, which is not a service`);
        if (spec?.condition === 'service_healthy')
          assert.ok(compose.services[dep]?.healthcheck, `${dep} can become healthy`);
      }
    }
  });

  it('mounts and builds only paths that exist in the repository', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const [host, target] of binds(service)) {
        assert.ok(existsSync(host), `${name} mounts ${path.relative(ROOT, host)} at ${target}: missing`);
      }
      if (service.build !== undefined) {
        const build = typeof service.build === 'string' ? { context: service.build } : service.build;
        const context = path.resolve(ROOT, build.context ?? '.');
        assert.ok(statSync(context).isDirectory(), `${name}: build context ${context}`);
        assert.ok(existsSync(path.join(context, build.dockerfile ?? 'Dockerfile')), `${name}: Dockerfile`);
      }
      // Files the containers run from the image must be in the repository (the image copies examples/).
      for (const arg of [...(service.entrypoint ?? []), ...(service.command ?? [])]) {
        if (/^examples\/.+\.ts$/.test(arg)) assert.ok(existsSync(path.join(ROOT, arg)), `${name} runs ${arg}: missing`);
      }
    }
    const grafana = new Map(binds(compose.services['grafana'] ?? {}).map(([h, t]) => [t, path.relative(ROOT, h)]));
    assert.equal(grafana.get('/etc/grafana/provisioning/datasources'), 'dashboards/provisioning/datasources');
    assert.equal(grafana.get('/etc/grafana/provisioning/dashboards'), 'dashboards/provisioning/dashboards');
    assert.equal(grafana.get('/var/lib/grafana/dashboards'), 'dashboards');
    assert.match(
      readFileSync(path.join(ROOT, 'dashboards/provisioning/datasources/prometheus.yml'), 'utf8'),
      /url: http:\/\/prometheus:9090/,
    );
  });

  it('publishes every port on 127.0.0.1 only, and sends traces to a service of the file', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const port of service.ports ?? []) {
        const host = typeof port === 'string' ? port.split(':')[0] : port.host_ip;
        assert.equal(host, '127.0.0.1', `${name} publishes ${JSON.stringify(port)}`);
      }
      const otlp = env(service)['OTEL_EXPORTER_OTLP_ENDPOINT'];
      if (otlp !== undefined) assert.ok(compose.services[new URL(otlp).hostname], `${name} sends traces to ${otlp}`);
    }
    assert.ok(env(compose.services['sidecar'] ?? {})['OTEL_EXPORTER_OTLP_ENDPOINT'], 'the sidecar exports traces');
    assert.deepEqual(compose.services['sidecar']?.command?.slice(0, 1), ['serve']);
    const command = compose.services['sidecar']?.command ?? [];
    assert.equal(command[command.indexOf('--consul') + 1], 'http://consul:8500');
    assert.equal(command[command.indexOf('--listen') + 1], '0.0.0.0:9464');
  });

  it('has a Prometheus config that promtool accepts, scraping services of the file', async () => {
    const prometheus = compose.services['prometheus'] ?? {};
    const mounts = binds(prometheus);
    const config = mounts.find(([, t]) => t === '/etc/prometheus/prometheus.yml')?.[0];
    assert.equal(config && path.relative(ROOT, config), 'deploy/prometheus.yml');
    // promtool resolves rule_files on this machine: map each container path back to its host file.
    let text = readFileSync(path.join(ROOT, 'deploy/prometheus.yml'), 'utf8');
    const parsed = parse(text) as {
      rule_files?: string[];
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    assert.deepEqual(parsed.rule_files, ['/etc/prometheus/alerts.yml']);
    for (const [host, target] of mounts) text = text.replaceAll(target, host);
    const copy = path.join(tmp, 'prometheus.yml');
    await writeFile(copy, text);
    const checked = promtool(['check', 'config', copy]);
    assert.equal(checked.status, 0, checked.output);
    assert.match(checked.output, /SUCCESS: 1 rule files found/);
    const rules = promtool(['check', 'rules', path.join(ROOT, 'dashboards/alerts.yml')]);
    assert.equal(rules.status, 0, rules.output);

    const targets = parsed.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets));
    assert.ok(targets.includes('sidecar:9464') && targets.includes('coordinator:9464'), targets.join(' '));
    for (const target of targets) {
      const host = target.split(':')[0] ?? '';
      assert.ok(host === '127.0.0.1' || compose.services[host], `scrape target ${target} is not a service`);
    }
  });

  it('runs the Rust topology: consul-workers that advertise their service name, a Rust coordinator on the sidecar', () => {
    for (const name of ['worker-1', 'worker-2', 'worker-3']) {
      const command = compose.services[name]?.command ?? [];
      assert.equal(command[0], 'consul-worker', `${name} runs consul-worker`);
      // Consul's check and the coordinator reach the worker by its container name.
      assert.equal(command[command.indexOf('--advertise') + 1], name, `${name} advertises ${name}`);
      assert.equal(command[command.indexOf('--id') + 1], name, `${name} registers as ${name}`);
      assert.equal(command[command.indexOf('--listen') + 1], '0.0.0.0:50051');
      assert.ok(
        (compose.services[name]?.volumes ?? []).includes('datafusion-data:/data:ro'),
        `${name} reads the tables`,
      );
    }
    const rust = compose.services['rust-coordinator'] ?? {};
    assert.equal(rust.command?.[0], 'worker-resolver-coordinator');
    assert.equal(env(rust)['WORKER_RESOLVER_SIDECAR'], 'http://sidecar:9464');
    assert.equal(env(rust)['WORKER_RESOLVER_DATA_DIR'], '/data');
    assert.ok((rust.volumes ?? []).includes('datafusion-data:/data'), 'the coordinator writes the tables');
    // The TypeScript example coordinator keeps to its own workers (the sidecar serves the Rust ones).
    assert.equal(env(compose.services['coordinator'] ?? {})['WORKER_SERVICE'], 'example-worker');
    const dockerfile = readFileSync(path.join(ROOT, 'rust/Dockerfile'), 'utf8');
    assert.match(dockerfile, /^FROM rust:\S+ AS compile$/m);
    assert.match(dockerfile, /^FROM scratch AS prebuilt$/m);
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    assert.match(runtime, /^FROM debian:bookworm-slim$/m);
    const user = /^USER (\S+)/m.exec(runtime)?.[1];
    assert.ok(user !== undefined && user !== 'root' && user !== '0', `USER ${user}`);
  });

  it('builds the Rust image from the workspace as it is: packages, binaries and toolchain of each stage', () => {
    // The compose test builds the image from prebuilt binaries; the compile stage, which users build, is checked
    // here against the workspace (and built for real by WORKER_RESOLVER_COMPOSE_RUST=compile, docs/compose.md).
    const dockerfile = readFileSync(path.join(ROOT, 'rust/Dockerfile'), 'utf8');
    const stage = (name: string): string => {
      const from = new RegExp(`^FROM \\S+ AS ${name}$`, 'm').exec(dockerfile);
      assert.ok(from, `a stage ${name}`);
      const rest = dockerfile.slice(from.index + from[0].length);
      const next = rest.search(/^FROM /m);
      return next === -1 ? rest : rest.slice(0, next);
    };
    const workspace = rustWorkspace();
    const compile = stage('compile');
    const packages = [...compile.matchAll(/ -p (\S+)/g)].map((m) => m[1] ?? '');
    assert.ok(packages.length > 0, 'the compile stage builds named packages');
    const bins = packages.flatMap((p) => {
      const pkg = workspace.get(p);
      assert.ok(pkg, `-p ${p}: not a member of rust/Cargo.toml's workspace (${[...workspace.keys()].join(', ')})`);
      return pkg.bins;
    });
    const sorted = (names: string[]): string[] => [...names].sort();
    const copied = [...compile.matchAll(/target\/release\/(\S+)/g)].map((m) => m[1] ?? '');
    assert.deepEqual(sorted(copied), sorted(bins), 'the compile stage copies every binary of its packages');
    const prebuilt = /^COPY (.+) \/out\/$/m.exec(stage('prebuilt'))?.[1]?.split(' ') ?? [];
    assert.deepEqual(sorted(prebuilt), sorted(bins), 'the prebuilt stage takes the same binaries');
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const installed = /^COPY --from=binaries (.+) \/usr\/local\/bin\/$/m.exec(runtime)?.[1]?.split(' ') ?? [];
    assert.deepEqual(sorted(installed), sorted(bins.map((b) => `/out/${b}`)), 'the runtime installs them all');
    const rust = /^FROM rust:(\d+\.\d+(?:\.\d+)?)-\S+ AS compile$/m.exec(dockerfile)?.[1] ?? '';
    for (const p of packages) {
      const needs = workspace.get(p)?.rustVersion ?? '';
      assert.ok(atLeast(rust, needs), `rust:${rust} is older than ${p}'s rust-version ${needs}`);
    }
    // Every Rust service of the compose file runs one of the image's binaries.
    for (const [name, service] of Object.entries(compose.services)) {
      if (service.image !== 'worker-resolver-rust:local') continue;
      assert.ok(bins.includes(service.command?.[0] ?? ''), `${name} runs ${service.command?.[0]}, not in the image`);
    }
  });

  it('builds a non-root node:20-slim image whose entrypoint is worker-resolver', () => {
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /^FROM node:20-slim\b/m);
    assert.match(dockerfile, /^RUN npm ci\b/m);
    assert.match(dockerfile, /^RUN npm run build\b/m);
    // A slim runtime: the last stage installs production dependencies only and copies the build.
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    assert.match(runtime, /^RUN npm ci --omit=dev\b/m, 'the runtime stage has no dev dependencies');
    assert.match(runtime, /^COPY --from=build \/app\/dist \.\/dist$/m);
    assert.doesNotMatch(runtime, /\btsx\b/, 'nothing in the runtime stage needs tsx');
    const user = /^USER (\S+)/m.exec(dockerfile)?.[1];
    assert.ok(user !== undefined && user !== 'root' && user !== '0', `USER ${user}`);
    assert.match(dockerfile, /^ENTRYPOINT \["worker-resolver"\]/m);
    const ignored = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const [, sources] of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const source of (sources ?? '').split(/\s+/)) {
        assert.ok(existsSync(path.join(ROOT, source)), `COPY ${source}: missing`);
        assert.ok(!ignored.includes(source), `COPY ${source}: excluded by .dockerignore`);
      }
    }
  });
});

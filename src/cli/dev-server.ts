/**
 * `worker-resolver dev-server`: the project's Consul dev server (`worker-resolver/testing`,
 * HTTP API + Consul-style DNS) as a process, the way `consul agent -dev` is one, so that
 * programs in any language — the Rust client's tests, a shell script — can use it without
 * writing TypeScript. It is the same test double, with the same limits (see the README's
 * testing-kit section): not a Consul.
 *
 * Start order, so that a bad command line starts nothing: parse and validate every flag
 * (usage errors, exit 2) → install the signal handlers → listen (HTTP, then DNS on UDP and
 * TCP) → seed → announce. A listen failure exits 1 with `ERR_LISTEN` and leaves no socket.
 *
 * The announcement is the contract for programs: with `--json`, stdout carries exactly one
 * line, a JSON object with the bound addresses (port 0 = ephemeral, so a test can start it
 * without picking ports and read them back), printed only once everything is listening and
 * seeded. Nothing else is written to stdout in that mode.
 *
 * Shutdown on SIGINT or SIGTERM: every socket is closed (held blocking queries included),
 * exit 0. A second signal while that runs exits 1 at once.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDuration } from '../duration.js';
import { ConsulDevServer } from '../testing/index.js';
import { hostPortOf } from './config.js';
import { CliUsageError } from './flags.js';

const USAGE = `Usage: worker-resolver dev-server [flags]

Runs the project's Consul dev server until Ctrl-C or SIGTERM, like \`consul agent -dev\`: the
subset of Consul's HTTP API this project uses (agent service register/deregister, TTL checks,
maintenance, health with blocking queries, catalog, status) and Consul-style DNS on the same
state. It is a TEST DOUBLE, not a Consul (no KV, no raft, one agent; see the README).

Flags:
  --listen HOST:PORT       HTTP API address; port 0 = ephemeral [default 127.0.0.1:8500]
  --dns-listen HOST:PORT   DNS address (UDP and TCP), same host as --listen
                           [default: --listen's host, port 8600; port 0 when --listen's port is 0]
  --no-dns                 no DNS interface
  --datacenter DC          the datacenter [default dc1]
  --node NAME              the agent's node name [default dev-node]
  --seed NAME=N            register N instances of service NAME at start (repeatable; N 1-10000):
                           IDs NAME-1..NAME-N on 127.0.0.1, consecutive ports from --seed-port,
                           each with a passing TTL check "service:NAME-i" (TTL 24h)
  --seed-port PORT         port of the first seeded instance [default 20001]
  --seed-tag TAG           tag every seeded instance with TAG (repeatable)
  --acl-token-file PATH    turn ACLs on (default deny) with the management token in PATH;
                           more tokens and policies through PUT /v1/acl/token, /v1/acl/policy
  --check-interval-floor D lower bound of HTTP/TCP check intervals [default 100ms]
  --exit-on-stdin-close    also stop when stdin reaches its end (a test harness that dies
                           takes the server with it)
  --json                   print one JSON line on stdout once listening:
                           {"http","httpPort","dns","dnsPort","host","datacenter","node","acl","pid","seeded"}
  --help, -h               this text

Try it:
  worker-resolver dev-server --seed web=3 &
  curl -s 'http://127.0.0.1:8500/v1/health/service/web?passing'
  curl -s -X PUT http://127.0.0.1:8500/v1/agent/check/fail/service:web-1
  dig @127.0.0.1 -p 8600 web.service.consul SRV

Exit codes: 0 stopped by a signal, 1 could not listen, 2 bad usage.`;

/** One `--seed NAME=N`. */
interface Seed {
  readonly service: string;
  readonly count: number;
}

/** The parsed, validated command line. */
interface DevServerFlags {
  readonly host: string;
  readonly port: number;
  /** undefined = no DNS interface. */
  readonly dnsPort: number | undefined;
  readonly datacenter: string;
  readonly node: string;
  readonly seeds: readonly Seed[];
  readonly seedPort: number;
  readonly seedTags: readonly string[];
  readonly json: boolean;
  /** The management token (ACLs on), read from `--acl-token-file`. */
  readonly aclToken: string | undefined;
  readonly checkIntervalFloorMs: number;
  readonly exitOnStdinClose: boolean;
}

/** Most instances one `--seed` registers (a bound on start-up time and memory). */
const MAX_SEED = 10_000;
/** Service names and tags that are also valid DNS labels (so every seeded service can be asked for over DNS). */
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function usage(message: string): CliUsageError {
  return new CliUsageError(message);
}

/** Parses and validates argv; starts nothing. Throws {@link CliUsageError}. */
export function parseDevServerFlags(argv: readonly string[]): DevServerFlags | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        listen: { type: 'string' },
        'dns-listen': { type: 'string' },
        'no-dns': { type: 'boolean' },
        datacenter: { type: 'string' },
        node: { type: 'string' },
        seed: { type: 'string', multiple: true },
        'seed-port': { type: 'string' },
        'seed-tag': { type: 'string', multiple: true },
        json: { type: 'boolean' },
        'acl-token-file': { type: 'string' },
        'check-interval-floor': { type: 'string' },
        'exit-on-stdin-close': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    // parseArgs errors are one line already; keep the first sentence, without its quoting advice.
    const message = ((err as Error).message.split('\n')[0] ?? '').replace(/\. To specify .*$/, '').replace(/\.$/, '');
    throw usage(`${message}; see worker-resolver dev-server --help`);
  }
  if (values.help === true) return 'help';
  const listen = hostPortOf(values.listen ?? '127.0.0.1:8500', '--listen', 8500);
  if (values['no-dns'] === true && values['dns-listen'] !== undefined) {
    throw usage('--dns-listen and --no-dns are mutually exclusive');
  }
  let dnsPort: number | undefined;
  if (values['no-dns'] !== true) {
    const given = values['dns-listen'];
    if (given === undefined) dnsPort = listen.port === 0 ? 0 : 8600;
    else {
      const dns = hostPortOf(given, '--dns-listen', 8600);
      if (dns.host !== listen.host) {
        throw usage(
          `--dns-listen: host "${dns.host}" differs from --listen's "${listen.host}" (one address serves both)`,
        );
      }
      dnsPort = dns.port;
    }
    if (dnsPort !== 0 && dnsPort === listen.port) throw usage(`--dns-listen: port ${dnsPort} is --listen's port`);
  }
  const name = (flag: string, value: string | undefined, fallback: string): string => {
    if (value === undefined) return fallback;
    if (!LABEL.test(value)) throw usage(`--${flag}: "${value.slice(0, 64)}" must be letters, digits and dashes`);
    return value;
  };
  const seeds = (values.seed ?? []).map((text): Seed => {
    const m = /^([^=]+)=(\d{1,6})$/.exec(text);
    const count = Number(m?.[2]);
    if (m === null || !LABEL.test(m[1] ?? '') || !(count >= 1 && count <= MAX_SEED)) {
      throw usage(`--seed: "${text.slice(0, 64)}" is not NAME=N (a DNS-label name, N from 1 to ${MAX_SEED})`);
    }
    return { service: m[1] ?? '', count };
  });
  const services = seeds.map((s) => s.service.toLowerCase());
  const twice = services.find((s, i) => services.indexOf(s) !== i);
  if (twice !== undefined) throw usage(`--seed: service "${twice}" is seeded twice`);
  const seedPortText = values['seed-port'];
  const seedPort = seedPortText === undefined ? 20_001 : Number(seedPortText);
  const total = seeds.reduce((sum, s) => sum + s.count, 0);
  if (!/^\d{1,5}$/.test(seedPortText ?? '1') || !(seedPort >= 1 && seedPort <= 65_535)) {
    throw usage(`--seed-port: "${seedPortText ?? ''}" is not a port (1-65535)`);
  }
  if (seedPort + total - 1 > 65_535) {
    throw usage(`--seed-port: ${seedPort} leaves no room for ${total} instances below port 65536`);
  }
  const seedTags = (values['seed-tag'] ?? []).map((t) => name('seed-tag', t, t));
  if (seedTags.length > 0 && seeds.length === 0) throw usage('--seed-tag needs --seed');
  const floorText = values['check-interval-floor'];
  const checkIntervalFloorMs = floorText === undefined ? 100 : parseDuration(floorText);
  if (checkIntervalFloorMs === undefined || checkIntervalFloorMs < 0) {
    throw usage(`--check-interval-floor: "${floorText ?? ''}" is not a duration such as 100ms or 1s`);
  }
  return {
    host: listen.host,
    port: listen.port,
    dnsPort,
    datacenter: name('datacenter', values.datacenter, 'dc1'),
    node: name('node', values.node, 'dev-node'),
    seeds,
    seedPort,
    seedTags,
    json: values.json === true,
    aclToken: aclTokenOf(values['acl-token-file']),
    checkIntervalFloorMs,
    exitOnStdinClose: values['exit-on-stdin-close'] === true,
  };
}

/** The management token in `path` (trimmed); a usage error when unreadable or empty. No `--acl-token`: `ps` shows argv. */
function aclTokenOf(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  let token: string;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw usage(`--acl-token-file: cannot read "${path}": ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (token === '' || /\s/.test(token)) throw usage(`--acl-token-file: "${path}" must hold one token`);
  return token;
}

/** A start-up failure that is not a usage error (exit 1). */
class DevServerStartError extends Error {
  readonly code = 'ERR_LISTEN';
}

/**
 * Resolves with the first SIGINT/SIGTERM (or `stdin closed` with `exitOnStdinClose`); a
 * second signal exits 1 at once. Returns a remover.
 */
function firstSignal(exitOnStdinClose: boolean): { received: Promise<string>; remove: () => void } {
  let remove = (): void => undefined;
  const received = new Promise<string>((resolve) => {
    let seen = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (seen) {
        process.stderr.write(`worker-resolver dev-server: second ${signal}: exiting now\n`);
        process.exit(1);
      }
      seen = true;
      resolve(signal);
    };
    const onStdinEnd = (): void => {
      if (!seen) {
        seen = true;
        resolve('stdin closed');
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    if (exitOnStdinClose) {
      process.stdin.on('end', onStdinEnd).on('close', onStdinEnd).on('error', onStdinEnd).resume();
    }
    remove = () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (exitOnStdinClose) {
        process.stdin.off('end', onStdinEnd).off('close', onStdinEnd).off('error', onStdinEnd);
        process.stdin.destroy();
      }
    };
  });
  return { received, remove };
}

/** Registers the `--seed` instances; returns what the announcement reports. */
function seed(dev: ConsulDevServer, flags: DevServerFlags): { service: string; count: number; ports: string }[] {
  let port = flags.seedPort;
  return flags.seeds.map(({ service, count }) => {
    const first = port;
    for (let i = 1; i <= count; i += 1, port += 1) {
      dev.registerService({
        Name: service,
        ID: `${service}-${i}`,
        Address: '127.0.0.1',
        Port: port,
        ...(flags.seedTags.length > 0 ? { Tags: [...flags.seedTags] } : {}),
        Check: { CheckID: `service:${service}-${i}`, TTL: '24h', Status: 'passing' },
      });
    }
    return { service, count, ports: `${first}-${port - 1}` };
  });
}

/**
 * Runs the dev server until a signal; resolves with the exit code.
 * @throws {CliUsageError} on a bad flag, before anything listens.
 */
export async function runDevServer(argv: readonly string[]): Promise<number> {
  const flags = parseDevServerFlags(argv);
  if (flags === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const signal = firstSignal(flags.exitOnStdinClose);
  let dev: ConsulDevServer;
  try {
    dev = await ConsulDevServer.start({
      host: flags.host,
      port: flags.port,
      datacenter: flags.datacenter,
      nodeName: flags.node,
      dns: flags.dnsPort === undefined ? false : { port: flags.dnsPort },
      checkIntervalFloorMs: flags.checkIntervalFloorMs,
      ...(flags.aclToken === undefined ? {} : { aclToken: flags.aclToken }),
    });
  } catch (err) {
    signal.remove();
    const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
    const where = e.address === undefined ? `${flags.host}` : `${e.address}:${e.port ?? '?'}`;
    const what = e.syscall === 'bind' ? 'DNS (UDP)' : e.port === flags.port ? 'HTTP' : 'DNS';
    throw new DevServerStartError(`cannot listen on ${where} for ${what}: ${e.code ?? e.message}`);
  }
  try {
    const seeded = seed(dev, flags);
    const announcement = {
      http: dev.httpAddr,
      httpPort: dev.port,
      dns: dev.dnsAddr ?? null,
      dnsPort: dev.dnsPort ?? null,
      host: dev.host,
      datacenter: flags.datacenter,
      node: flags.node,
      acl: flags.aclToken !== undefined,
      pid: process.pid,
      seeded,
    };
    if (flags.json) process.stdout.write(`${JSON.stringify(announcement)}\n`);
    else {
      const lines = [
        'worker-resolver dev-server: a Consul dev server (test double), Ctrl-C stops it',
        `  HTTP API    ${dev.httpAddr}   (export CONSUL_HTTP_ADDR=${dev.httpAddr})`,
        dev.dnsAddr === undefined
          ? '  DNS         off'
          : `  DNS         ${dev.dnsAddr}   (dig @${dev.host} -p ${dev.dnsPort} <service>.service.consul SRV)`,
        `  datacenter  ${flags.datacenter}, node ${flags.node}` +
          (flags.aclToken === undefined ? '' : ', ACLs on (default deny; management token from --acl-token-file)'),
        ...seeded.map(
          (s) => `  seeded      ${s.service}: ${s.count} instances on 127.0.0.1:${s.ports}, TTL checks passing`,
        ),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    const received = await signal.received;
    process.stderr.write(`worker-resolver dev-server: ${received}: stopping\n`);
    return 0;
  } finally {
    await dev.stop();
    signal.remove();
  }
}

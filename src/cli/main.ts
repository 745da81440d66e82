#!/usr/bin/env node
/**
 * The `worker-resolver` command: dispatch, `--help`/`--version`, and the exit-code contract
 * every command shares — 0 ok, 1 something is wrong at run time, 2 bad usage. A usage or
 * option error is exactly one stderr line, `worker-resolver: <message> (<CODE>)`, printed
 * before anything was started.
 *
 * Commands are imported on demand: `--help` does not load the OpenTelemetry SDK, and `demo`
 * (written separately) is only needed when asked for.
 */
import { packageVersion } from '../version.js';
import { InvalidOptionError } from '../errors.js';
import { CliUsageError } from './flags.js';

const USAGE = `worker-resolver — healthy-worker discovery for distributed query coordinators

Usage:
  worker-resolver serve [flags]       run the resolver as a sidecar: /v1/workers (long polls), /metrics, /healthz, /readyz
  worker-resolver watch [flags]       live view of the worker set (one line per change when not a terminal)
  worker-resolver doctor [flags]      check Consul, the ACL token, the service's health and the DNS name
  worker-resolver demo [flags]        the demo: workers, sidecar, coordinator (embedded Consul dev server, or --consul URL)
  worker-resolver dev-server [flags]  the Consul dev server (a test double: HTTP API + DNS), like consul agent -dev
  worker-resolver <command> --help    the flags of a command, with their environment variables and defaults
  worker-resolver version             the package version (also --version)

Exit codes: 0 ok, 1 failure, 2 bad usage.`;

/** Library option paths → the flag that sets them, so option errors name what the user typed. */
const OPTION_FLAGS: Readonly<Record<string, string>> = {
  service: '--service',
  'consul.address': '--consul',
  'consul.tokenFile': '--token-file',
  'consul.waitMs': '--wait',
  'consul.leaderCheckMs': '--leader-check',
  'consul.filter': '--filter',
  'consul.tags': '--tag',
  'consul.datacenter': '--datacenter',
  'consul.taggedAddress': '--tagged-address',
  'consul.scheme': '--scheme',
  'consul.schemeMetaKey': '--scheme-meta-key',
  'consul.nodeMeta': '--node-meta',
  'consul.metaMatch.key': '--meta-match',
  'consul.metaMatch.values': '--meta-match',
  'dns.name': '--dns-srv',
  'dns.servers': '--dns-server',
  'dns.scheme': '--scheme',
  static: '--static',
  failoverAfter: '--failover-after',
  failoverAfterMs: '--failover-after-duration',
  minPublishIntervalMs: '--min-publish-interval',
  maxStalenessMs: '--max-staleness',
  maxTasksPerStage: '--max-tasks-per-stage',
  'massFailureGuard.threshold': '--guard-threshold',
};

/** The one stderr line for an error: `worker-resolver: <message> (<CODE>)`. */
function describeError(err: unknown): string {
  let message: string;
  if (err instanceof InvalidOptionError) {
    const flag = OPTION_FLAGS[err.option.replace(/\[\d+\]$/, '')] ?? err.option;
    message = `${flag}: ${err.message.replace(/^Invalid option "[^"]*": /, '')}`;
  } else {
    message = err instanceof Error ? err.message : String(err);
  }
  const code = (err as { code?: unknown } | undefined)?.code;
  return `worker-resolver: ${message.replace(/\s*\n\s*/g, ' ')} (${typeof code === 'string' ? code : 'ERR_INTERNAL'})`;
}

type Runner = (argv: readonly string[]) => Promise<number>;

const COMMANDS: Readonly<Record<string, () => Promise<Runner>>> = {
  serve: async () => (await import('./serve.js')).runServe,
  watch: async () => (await import('./watch.js')).runWatch,
  doctor: async () => (await import('./doctor.js')).runDoctor,
  demo: async () => (await import('./demo.js')).runDemo,
  'dev-server': async () => (await import('./dev-server.js')).runDevServer,
};

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (command === 'help') return main(rest.length > 0 ? [...rest, '--help'] : []);
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (load === undefined) {
    throw new CliUsageError(`unknown command "${command.slice(0, 40)}"; see worker-resolver --help`);
  }
  return (await load())(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Everything was closed; if a stray handle still held the loop, say so and exit anyway
    // (unref'd: this timer alone never keeps the process alive, so it fires only for a leak).
    setTimeout(() => {
      process.stderr.write(
        'worker-resolver: something still held the process 3 s after the command finished; exiting anyway (ERR_HANDLE_LEFT)\n',
      );
      process.exit(code);
    }, 3_000).unref();
  },
  (err: unknown) => {
    const usage = err instanceof CliUsageError || err instanceof InvalidOptionError;
    process.stderr.write(`${describeError(err)}\n`);
    process.exitCode = usage ? 2 : 1;
  },
);

/**
 * The CLI's flags — the one place they are defined — as a table, and the `--help` text
 * generated from it, so help cannot drift from what `config.ts` parses.
 */
/** The commands that take flags from this table. */
export type CommandName = 'serve' | 'watch' | 'doctor';

/** A bad flag, environment value or combination: exit code 2. */
export class CliUsageError extends Error {
  readonly code: string;
  constructor(message: string, code = 'ERR_USAGE') {
    super(message);
    this.code = code;
  }
}

interface FlagSpec {
  readonly name: string;
  /** `list` flags repeat; their environment variable is comma-separated. */
  readonly kind: 'string' | 'boolean' | 'list';
  /** Placeholder in `--help`. */
  readonly arg?: string;
  readonly env?: string;
  /** The default as `--help` shows it. */
  readonly def?: string;
  readonly help: string;
  readonly commands: readonly CommandName[];
}

const ALL: readonly CommandName[] = ['serve', 'watch', 'doctor'];
const RUN: readonly CommandName[] = ['serve', 'watch'];
/** The prefix of the project's own environment variables. */
export const ENV_PREFIX = 'WORKER_RESOLVER_';
const E = ENV_PREFIX;

/** Every flag of every command, in `--help` order. Kept as a table: one flag per line. */
// prettier-ignore
export const FLAGS: readonly FlagSpec[] = [
  { name: 'service', kind: 'string', arg: 'NAME', env: `${E}SERVICE`, help: 'worker service name (required)', commands: ALL },
  { name: 'consul', kind: 'string', arg: 'URL', env: 'CONSUL_HTTP_ADDR', def: 'http://127.0.0.1:8500', help: 'Consul HTTP address (host:port or http(s)://host:port)', commands: ALL },
  { name: 'no-consul', kind: 'boolean', env: `${E}NO_CONSUL`, help: 'do not use Consul (needs --dns-srv; serve and watch also take --static)', commands: ALL },
  { name: 'token-file', kind: 'string', arg: 'PATH', env: 'CONSUL_HTTP_TOKEN_FILE', help: 'file holding the ACL token (or set CONSUL_HTTP_TOKEN); never logged', commands: ALL },
  { name: 'datacenter', kind: 'string', arg: 'DC', env: `${E}DATACENTER`, def: "the agent's", help: 'Consul datacenter', commands: ALL },
  { name: 'tag', kind: 'list', arg: 'TAG', env: `${E}TAGS`, help: 'keep instances carrying this tag (repeatable: all of them)', commands: ALL },
  { name: 'filter', kind: 'string', arg: 'EXPR', env: `${E}FILTER`, help: 'Consul filter expression, and-ed with the tags', commands: ALL },
  { name: 'node-meta', kind: 'list', arg: 'KEY:VALUE', env: `${E}NODE_META`, help: 'keep instances on nodes with this meta (repeatable)', commands: ALL },
  { name: 'meta-match', kind: 'string', arg: 'KEY=V1,V2', env: `${E}META_MATCH`, help: 'keep instances whose Service.Meta[KEY] is one of the values', commands: ALL },
  { name: 'include-warning', kind: 'boolean', env: `${E}INCLUDE_WARNING`, def: 'passing only', help: 'also route to instances whose checks are warning', commands: ALL },
  { name: 'tagged-address', kind: 'string', arg: 'NAME', env: `${E}TAGGED_ADDRESS`, help: 'prefer this tagged address (lan, wan, lan_ipv4, ...)', commands: ALL },
  { name: 'scheme', kind: 'string', arg: 'SCHEME', env: `${E}SCHEME`, def: 'http', help: 'URL scheme of the workers', commands: ALL },
  { name: 'scheme-meta-key', kind: 'string', arg: 'KEY', env: `${E}SCHEME_META_KEY`, help: 'Service.Meta key overriding the scheme per instance', commands: ALL },
  { name: 'stale', kind: 'boolean', env: `${E}CONSISTENCY=stale`, def: 'on', help: 'read from any Consul server (default)', commands: ALL },
  { name: 'consistent', kind: 'boolean', env: `${E}CONSISTENCY=consistent`, help: 'read through the leader, with a quorum check', commands: ALL },
  { name: 'cached', kind: 'boolean', env: `${E}CONSISTENCY=cached`, help: "read from the local agent's cache", commands: ALL },
  { name: 'wait', kind: 'string', arg: 'DURATION', env: `${E}WAIT`, def: '5m', help: 'blocking-query wait (max 10m; also for watch --sidecar)', commands: RUN },
  { name: 'max-stale', kind: 'string', arg: 'DURATION', env: `${E}MAX_STALE`, def: 'off', help: "re-read from the leader when a stale answer's server lost the leader this long ago (consul-template's max_stale)", commands: RUN },
  { name: 'leader-check', kind: 'string', arg: 'DURATION', env: `${E}LEADER_CHECK`, def: '15s', help: 'ask the agent for the Consul leader this often (GET /v1/status/leader: how a lost quorum shows; min 1s)', commands: RUN },
  { name: 'read-in-thread', kind: 'string', arg: 'auto|on|off', env: `${E}READ_IN_THREAD`, def: 'auto', help: 'read Consul answers in a worker thread: auto = from the first 1 MiB answer (~1,000 instances)', commands: RUN },
  { name: 'dns-srv', kind: 'string', arg: 'NAME', env: `${E}DNS_SRV`, help: 'DNS SRV name: fallback, or primary with --no-consul', commands: ALL },
  { name: 'dns-server', kind: 'list', arg: 'HOST:PORT', env: `${E}DNS_SERVERS`, def: 'system resolvers', help: 'DNS server (repeatable; IP literals)', commands: ALL },
  { name: 'dns-transport', kind: 'string', arg: 'auto|udp|tcp', env: `${E}DNS_TRANSPORT`, def: 'auto', help: 'auto = UDP with EDNS0, TCP when cut', commands: RUN },
  { name: 'static', kind: 'list', arg: 'URL', env: `${E}STATIC`, help: 'fixed worker URL: last resort, or the only source (repeatable)', commands: RUN },
  { name: 'failover-after', kind: 'string', arg: 'N', env: `${E}FAILOVER_AFTER`, def: '3', help: 'consecutive Consul failures before switching to DNS', commands: RUN },
  { name: 'failover-after-duration', kind: 'string', arg: 'DURATION', env: `${E}FAILOVER_AFTER_DURATION`, def: 'off', help: 'also switch to DNS after this long without a Consul answer', commands: RUN },
  { name: 'min-publish-interval', kind: 'string', arg: 'DURATION', env: `${E}MIN_PUBLISH_INTERVAL`, def: '250ms', help: 'at most one publish per interval (flap damping)', commands: RUN },
  { name: 'max-staleness', kind: 'string', arg: 'DURATION', env: `${E}MAX_STALENESS`, def: 'wait + wait/16 + 75s', help: 'mark the snapshot stale after this long without an answer', commands: RUN },
  { name: 'guard-threshold', kind: 'string', arg: 'FRACTION', env: `${E}GUARD_THRESHOLD`, def: '0.5', help: 'hold the last set when fewer than this fraction remain (0 = off)', commands: RUN },
  { name: 'max-tasks-per-stage', kind: 'string', arg: 'N', env: `${E}MAX_TASKS_PER_STAGE`, def: '0 (= workers)', help: "only what worker_resolver_stage_task_cap reports (your coordinator's max_tasks_per_stage, for the dashboard); the sidecar plans nothing", commands: ['serve'] },
  { name: 'listen', kind: 'string', arg: 'HOST:PORT', env: `${E}LISTEN`, def: '127.0.0.1:9464', help: 'sidecar HTTP address (port 0 = ephemeral)', commands: ['serve'] },
  { name: 'sidecar', kind: 'string', arg: 'URL', env: `${E}SIDECAR_URL`, help: "watch a running sidecar's /v1/workers instead of Consul", commands: ['watch'] },
  { name: 'timeout', kind: 'string', arg: 'DURATION', env: `${E}DOCTOR_TIMEOUT`, def: '5s', help: 'time allowed for each check', commands: ['doctor'] },
  { name: 'log-level', kind: 'string', arg: 'LEVEL', env: `${E}LOG_LEVEL`, def: 'info (watch, doctor: warn)', help: 'debug, info, warn or error', commands: ALL },
  { name: 'log-format', kind: 'string', arg: 'json|text', env: `${E}LOG_FORMAT`, def: 'json', help: 'log lines on stderr: one JSON object or one text line per event', commands: ALL },
  { name: 'help', kind: 'boolean', help: 'this text', commands: ALL },
];

const SUMMARY: Readonly<Record<CommandName, string>> = {
  serve: 'Runs the resolver and serves its HTTP API (/v1/workers with long polls, /metrics, /healthz, /readyz).',
  watch: 'Shows the live worker set; one plain line per change when stdout is not a terminal. Ctrl-C exits.',
  doctor: "Checks Consul, the ACL token, the service's health and the DNS name, and explains what is wrong.",
};

/** The `--help` text of a command: every flag with its environment variable and default. */
export function helpText(command: CommandName): string {
  const rows = FLAGS.filter((f) => f.commands.includes(command)).map((f) => {
    const left = `  --${f.name}${f.arg === undefined ? '' : ` ${f.arg}`}${f.name === 'help' ? ', -h' : ''}`;
    const notes = [f.env === undefined ? '' : `env ${f.env}`, f.def === undefined ? '' : `default ${f.def}`];
    const tail = notes.filter((n) => n !== '').join('; ');
    return `${left.padEnd(38)} ${f.help}${tail === '' ? '' : ` [${tail}]`}`;
  });
  const consulEnv =
    'Consul variables honoured: CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_SSL,\n' +
    'CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL_VERIFY.\n' +
    'Tracing (serve): OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT turns on the OpenTelemetry SDK.\n' +
    'Durations are written the Consul way: 300ms, 5s, 5m, 1h30m. Exit codes: 0 ok, 1 failure, 2 bad usage.';
  return `Usage: worker-resolver ${command} [flags]\n\n${SUMMARY[command]}\n\nFlags:\n${rows.join('\n')}\n\n${consulEnv}\n`;
}

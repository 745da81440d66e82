/**
 * How the CLI's flags (`flags.ts`, the one place they are defined) and environment variables
 * become `WorkerResolverOptions`, the listen address and the log settings.
 *
 * Precedence: a flag, else its environment variable (empty = unset), else the default.
 * Consul's own variables (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, TLS...) are read by
 * `createWorkerResolver` through its `env` option, exactly as the library does. There is
 * deliberately no `--token` flag: a command line is visible to every local user (`ps`).
 *
 * Everything here is pure: parsing never starts anything, so a bad flag exits before any
 * socket exists. Errors are {@link CliUsageError}s with a one-line message.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDuration } from '../duration.js';
import type { ConsulOptions, WorkerResolverOptions } from '../options.js';
import { CliUsageError, ENV_PREFIX, FLAGS } from './flags.js';
import type { CommandName } from './flags.js';

/** Log verbosity. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** What a command needs, parsed and checked. */
export interface CliConfig {
  readonly help: boolean;
  /** Resolver options without logger/registry/tracer (the command adds those). Undefined with `watch --sidecar`. */
  readonly resolver: WorkerResolverOptions | undefined;
  readonly listen: { readonly host: string; readonly port: number };
  readonly log: { readonly level: LogLevel; readonly format: 'json' | 'text' };
  /** `watch --sidecar`. */
  readonly sidecarUrl: URL | undefined;
  /** Blocking wait, in milliseconds. */
  readonly waitMs: number;
  /** `doctor --timeout`, in milliseconds. */
  readonly timeoutMs: number;
  /** Values never to print (the Consul token from the environment or its file). */
  readonly secrets: readonly string[];
}

type Env = Readonly<Record<string, string | undefined>>;
type Values = Record<string, string | boolean | string[] | undefined>;

/** Parses a command's argv and environment. Throws {@link CliUsageError}. */
export function parseCli(command: CommandName, argv: readonly string[], env: Env): CliConfig {
  const specs = FLAGS.filter((f) => f.commands.includes(command));
  let values: Values;
  try {
    const options = Object.fromEntries(
      specs.map((f) => [
        f.name,
        {
          type: f.kind === 'boolean' ? 'boolean' : 'string',
          multiple: f.kind === 'list',
          ...(f.name === 'help' ? { short: 'h' } : {}),
        } as const,
      ]),
    );
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values as Values;
  } catch (err) {
    // parseArgs errors are one line already; keep the first sentence, without its quoting advice.
    const first =
      err instanceof Error
        ? (err.message.split('\n')[0] ?? '').replace(/\. To specify .*$/, '').replace(/\.$/, '')
        : String(err);
    // Our messages start in lower case ("--wait: ..."); Node's ("Unknown option ...") are made to match.
    const message = first.charAt(0).toLowerCase() + first.slice(1);
    throw new CliUsageError(`${message}; see worker-resolver ${command} --help`);
  }
  if (values['help'] === true) return { ...defaults(command), help: true };
  const get = reader(values, env);
  const log = {
    level: oneOf(get('log-level'), ['debug', 'info', 'warn', 'error'], command === 'serve' ? 'info' : 'warn'),
    format: oneOf(get('log-format'), ['json', 'text'], 'json'),
  };
  const wait = get('wait');
  const waitMs = wait === undefined ? 300_000 : durationOf(wait);
  if (wait !== undefined && !(waitMs >= 1 && waitMs <= 600_000)) {
    throw new CliUsageError(`${wait.origin}: "${wait.value}" must be more than 0 and at most 10m (Consul's maximum)`);
  }
  const timeout = get('timeout');
  const timeoutMs = timeout === undefined ? 5_000 : durationOf(timeout);
  const sidecar = get('sidecar');
  const base = { ...defaults(command), log, waitMs, timeoutMs, listen: listenOf(get('listen')) };
  if (sidecar !== undefined) {
    let url: URL;
    try {
      url = new URL(sidecar.value);
    } catch {
      throw new CliUsageError(`${sidecar.origin}: "${sidecar.value}" is not a URL such as http://127.0.0.1:9464`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new CliUsageError(`${sidecar.origin}: must be http(s)`);
    return { ...base, sidecarUrl: url };
  }
  const { options, secrets } = resolverOptions(command, get, values, env);
  return { ...base, resolver: options, secrets };
}

function defaults(command: CommandName): CliConfig {
  return {
    help: false,
    resolver: undefined,
    listen: { host: '127.0.0.1', port: 9464 },
    log: { level: command === 'serve' ? 'info' : 'warn', format: 'json' },
    sidecarUrl: undefined,
    waitMs: 300_000,
    timeoutMs: 5_000,
    secrets: [],
  };
}

/** A value and where it came from (`--flag` or `ENV_VAR`), for error messages. */
interface Given<T> {
  readonly value: T;
  readonly origin: string;
}

function reader(values: Values, env: Env) {
  function get(name: string): Given<string> | undefined {
    const v = values[name];
    if (typeof v === 'string') return { value: v, origin: `--${name}` };
    const spec = FLAGS.find((f) => f.name === name);
    const envName = spec?.env;
    if (envName === undefined || envName.includes('=') || spec?.kind !== 'string') return undefined;
    const e = env[envName];
    return e === undefined || e === '' ? undefined : { value: e, origin: envName };
  }
  return get;
}

function listOf(values: Values, env: Env, name: string): string[] {
  const v = values[name];
  if (Array.isArray(v) && v.length > 0) return v;
  const envName = FLAGS.find((f) => f.name === name)?.env ?? '';
  return (env[envName] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function boolOf(values: Values, env: Env, name: string): boolean {
  if (values[name] === true) return true;
  const envName = FLAGS.find((f) => f.name === name)?.env ?? '';
  const e = env[envName];
  if (e === undefined || e === '') return false;
  if (/^(1|true|yes)$/i.test(e)) return true;
  if (/^(0|false|no)$/i.test(e)) return false;
  throw new CliUsageError(`${envName}: "${e}" is not true or false`);
}

const READ_IN_THREAD = { auto: 'auto', on: true, off: false } as const;

function oneOf<T extends string>(given: Given<string> | undefined, allowed: readonly T[], fallback: T): T {
  if (given === undefined) return fallback;
  if ((allowed as readonly string[]).includes(given.value)) return given.value as T;
  throw new CliUsageError(`${given.origin}: "${given.value}" must be one of ${allowed.join(', ')}`);
}

function durationOf(given: Given<string>): number {
  const ms = parseDuration(given.value);
  if (ms === undefined) {
    throw new CliUsageError(`${given.origin}: "${given.value}" is not a duration such as 300ms, 5s or 5m`);
  }
  return ms;
}

function integerOf(given: Given<string>): number {
  if (!/^\d{1,9}$/.test(given.value))
    throw new CliUsageError(`${given.origin}: "${given.value}" is not a whole number`);
  return Number(given.value);
}

function listenOf(given: Given<string> | undefined): { host: string; port: number } {
  if (given === undefined) return { host: '127.0.0.1', port: 9464 };
  return hostPortOf(given.value, given.origin, 9464);
}

/**
 * Parses a listen address `host:port` (`[v6]:port` for IPv6; port 0 = ephemeral). Throws a
 * {@link CliUsageError} naming `origin` (the flag or variable), with examples on `examplePort`.
 */
export function hostPortOf(value: string, origin: string, examplePort: number): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (m === null || port > 65535) {
    throw new CliUsageError(
      `${origin}: "${value}" is not host:port (e.g. 127.0.0.1:${examplePort}, [::1]:${examplePort}, 0.0.0.0:0)`,
    );
  }
  return { host: m[1] ?? m[2] ?? '', port };
}

type Getter = (name: string) => Given<string> | undefined;

/** Builds the resolver options; the library validates the values themselves (see {@link describeError}). */
function resolverOptions(
  command: CommandName,
  get: Getter,
  values: Values,
  env: Env,
): { options: WorkerResolverOptions; secrets: string[] } {
  const service = get('service');
  if (service === undefined) throw new CliUsageError(`missing --service (or ${ENV_PREFIX}SERVICE)`);
  const consulFlag = get('consul');
  const noConsul = boolOf(values, env, 'no-consul');
  if (noConsul && values['consul'] !== undefined)
    throw new CliUsageError('--consul and --no-consul are mutually exclusive');
  const dnsSrv = get('dns-srv');
  const dnsServers = listOf(values, env, 'dns-server');
  const statics = listOf(values, env, 'static');
  if (dnsSrv === undefined && dnsServers.length > 0) throw new CliUsageError('--dns-server needs --dns-srv');
  if (noConsul && dnsSrv === undefined && statics.length === 0) {
    throw new CliUsageError(
      command === 'doctor'
        ? '--no-consul needs --dns-srv (doctor checks Consul or DNS)'
        : '--no-consul needs another source: --dns-srv or --static',
    );
  }
  const chosen = ['stale', 'consistent', 'cached'].filter((c) => values[c] === true);
  if (chosen.length > 1) throw new CliUsageError('--stale, --consistent and --cached are mutually exclusive');
  const consistencyEnv = env[`${ENV_PREFIX}CONSISTENCY`] || undefined;
  const consistency =
    chosen[0] ??
    oneOf(
      consistencyEnv === undefined ? undefined : { value: consistencyEnv, origin: `${ENV_PREFIX}CONSISTENCY` },
      ['stale', 'consistent', 'cached', 'default'],
      'stale',
    );
  const tokenFile = get('token-file');
  const metaMatch = get('meta-match');
  const nodeMeta = listOf(values, env, 'node-meta').map((kv) => {
    const i = kv.indexOf(':');
    if (i <= 0) throw new CliUsageError(`--node-meta: "${kv}" is not KEY:VALUE`);
    return [kv.slice(0, i), kv.slice(i + 1)] as const;
  });
  const wait = get('wait');
  const maxStale = get('max-stale');
  const leaderCheck = get('leader-check');
  const readInThread = get('read-in-thread');
  const str = (name: string): string | undefined => get(name)?.value;
  const consul: ConsulOptions = {
    ...(consulFlag !== undefined && consulFlag.origin !== 'CONSUL_HTTP_ADDR' ? { address: consulFlag.value } : {}),
    // From CONSUL_HTTP_TOKEN_FILE the library reads it itself, so its errors name the variable, not --token-file.
    ...(tokenFile === undefined || tokenFile.origin !== '--token-file' ? {} : { tokenFile: tokenFile.value }),
    ...opt('datacenter', str('datacenter')),
    ...(listOf(values, env, 'tag').length > 0 ? { tags: listOf(values, env, 'tag') } : {}),
    ...opt('filter', str('filter')),
    ...(nodeMeta.length > 0 ? { nodeMeta: Object.fromEntries(nodeMeta) } : {}),
    ...(metaMatch === undefined ? {} : { metaMatch: metaMatchOf(metaMatch) }),
    ...(boolOf(values, env, 'include-warning') ? { includeWarning: true } : {}),
    ...opt('taggedAddress', str('tagged-address')),
    ...opt('scheme', str('scheme')),
    ...opt('schemeMetaKey', str('scheme-meta-key')),
    consistency: consistency as NonNullable<ConsulOptions['consistency']>,
    ...(wait === undefined ? {} : { waitMs: durationOf(wait) }),
    ...(maxStale === undefined ? {} : { maxStaleMs: durationOf(maxStale) }),
    ...(leaderCheck === undefined ? {} : { leaderCheckMs: durationOf(leaderCheck) }),
    ...(readInThread === undefined
      ? {}
      : { readInThread: READ_IN_THREAD[oneOf(readInThread, ['auto', 'on', 'off'], 'auto')] }),
  };
  const num = (name: string, parse: (g: Given<string>) => number): number | undefined => {
    const g = get(name);
    return g === undefined ? undefined : parse(g);
  };
  const threshold = num('guard-threshold', fractionOf);
  const transport = get('dns-transport');
  // An explicit --token-file must win over an inherited CONSUL_HTTP_TOKEN (the library prefers the token).
  const resolverEnv = tokenFile?.origin === '--token-file' ? { ...env, CONSUL_HTTP_TOKEN: undefined } : env;
  const options: WorkerResolverOptions = {
    service: service.value,
    env: resolverEnv,
    ...(noConsul ? {} : { consul }),
    ...(dnsSrv === undefined
      ? {}
      : {
          dns: {
            name: dnsSrv.value,
            ...(dnsServers.length > 0 ? { servers: dnsServers } : {}),
            ...(transport === undefined ? {} : { transport: oneOf(transport, ['auto', 'udp', 'tcp'], 'auto') }),
            ...opt('scheme', str('scheme')),
          },
        }),
    ...(statics.length > 0 ? { static: statics } : {}),
    ...opt('failoverAfter', num('failover-after', integerOf)),
    ...opt('failoverAfterMs', num('failover-after-duration', durationOf)),
    ...opt('minPublishIntervalMs', num('min-publish-interval', durationOf)),
    ...opt('maxStalenessMs', num('max-staleness', durationOf)),
    ...opt('maxTasksPerStage', num('max-tasks-per-stage', integerOf)),
    ...(threshold === undefined ? {} : { massFailureGuard: threshold === 0 ? false : { threshold } }),
  };
  return { options, secrets: secretsOf(resolverEnv, tokenFile?.value) };
}

function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function fractionOf(given: Given<string>): number {
  const n = /^\d*\.?\d+$/.test(given.value) ? Number(given.value) : Number.NaN;
  if (!(n >= 0 && n <= 1))
    throw new CliUsageError(`${given.origin}: "${given.value}" is not a fraction between 0 and 1`);
  return n;
}

function metaMatchOf(given: Given<string>): { key: string; values: string[] } {
  const i = given.value.indexOf('=');
  const values = given.value
    .slice(i + 1)
    .split(',')
    .filter((v) => v !== '');
  if (i <= 0 || values.length === 0) throw new CliUsageError(`${given.origin}: "${given.value}" is not KEY=V1,V2`);
  return { key: given.value.slice(0, i), values };
}

/** The token, from the environment or its file, so the logger can redact it even if a bug leaked it. */
function secretsOf(env: Env, tokenFile: string | undefined): string[] {
  const secrets = [env['CONSUL_HTTP_TOKEN']];
  const file = tokenFile ?? env['CONSUL_HTTP_TOKEN_FILE'];
  if (file !== undefined && file !== '') {
    try {
      secrets.push(readFileSync(file, 'utf8').trim());
    } catch {
      // Unreadable: createWorkerResolver reports it as an option error.
    }
  }
  return secrets.filter((s): s is string => s !== undefined && s.length >= 4);
}

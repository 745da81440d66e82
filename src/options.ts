/**
 * Public options of `createWorkerResolver`, their defaults, and their validation.
 *
 * Validation happens once, up front, synchronously: a bad option throws an
 * {@link InvalidOptionError} (a `TypeError`) naming the option, before any socket or timer
 * exists. Consul's own environment variables are honoured as Consul's CLI does, with
 * explicit options taking precedence.
 */
import { readFileSync } from 'node:fs';
import type { TracerProvider } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import type { ConsulTlsOptions } from './consul-client.js';
import { blockingTimeoutMs } from './source-consul.js';
import type { ConsulSourceConfig } from './source-consul.js';
import { InvalidOptionError } from './errors.js';
import type { Logger, ResolverObserver } from './events.js';
import type { GuardConfig } from './engine.js';
import type { WorkerCandidate } from './source.js';
import { urlHost } from './consul-health.js';
import { parseDnsServer } from './dns-client.js';
import type { DnsSrvSourceConfig } from './source-dns-srv.js';

/** Consul source options (DESIGN §4.1). Every field is optional. */
export interface ConsulOptions {
  /** Consul HTTP address. Default `$CONSUL_HTTP_ADDR`, else `http://127.0.0.1:8500`. `host:port` means http (https with `CONSUL_HTTP_SSL=true`). */
  readonly address?: string | URL;
  /** ACL token. Default `$CONSUL_HTTP_TOKEN`, else the content of `tokenFile`. Never logged. */
  readonly token?: string;
  /** File holding the ACL token. Default `$CONSUL_HTTP_TOKEN_FILE`. */
  readonly tokenFile?: string;
  /** TLS settings for https addresses. Defaults from `CONSUL_CACERT`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`, `CONSUL_HTTP_SSL_VERIFY`. */
  readonly tls?: {
    readonly caFile?: string;
    readonly certFile?: string;
    readonly keyFile?: string;
    readonly ca?: string | Buffer;
    readonly cert?: string | Buffer;
    readonly key?: string | Buffer;
    readonly serverName?: string;
    readonly verify?: boolean;
  };
  readonly datacenter?: string;
  /** Keep only instances carrying every one of these tags (one tag: Consul's `tag` parameter; more: a `filter`). */
  readonly tags?: readonly string[];
  /** A Consul filter expression, combined with `tags` by `and`. */
  readonly filter?: string;
  /** Sort by round-trip time from this node (`_agent` = the local agent). */
  readonly near?: string;
  /** Keep only instances on nodes with these meta key/values. */
  readonly nodeMeta?: Readonly<Record<string, string>>;
  /** Enterprise namespace. */
  readonly namespace?: string;
  /** Enterprise admin partition. */
  readonly partition?: string;
  /** Read consistency: `stale` (default: any server answers, scales reads), `consistent`, `cached` (agent cache), or `default`. */
  readonly consistency?: 'stale' | 'consistent' | 'cached' | 'default';
  /** Blocking wait, in milliseconds. Default 300000 (5 min), at most 600000 (Consul's cap). */
  readonly waitMs?: number;
  /** Added to wait + wait/16 to form the client timeout of a blocking request. Default 15000. */
  readonly timeoutMarginMs?: number;
  /** Client timeout of a non-blocking request. Default 10000. */
  readonly requestTimeoutMs?: number;
  /** Also route to instances whose checks are `warning`. Default false (passing only). */
  readonly includeWarning?: boolean;
  /** Prefer this tagged address (`lan`, `wan`, `lan_ipv4`, `wan_ipv6`, ...). */
  readonly taggedAddress?: string;
  /** URL scheme of workers. Default `http`. */
  readonly scheme?: string;
  /** A Service.Meta key that, when set on an instance, overrides `scheme` for it. */
  readonly schemeMetaKey?: string;
  /** Keep only instances whose `Service.Meta[key]` is one of `values` (version pinning during rollouts). */
  readonly metaMatch?: { readonly key: string; readonly values: readonly string[] };
  /** Loop pacing. Default 2 requests/s sustained, bursts of 10. */
  readonly rateLimit?: { readonly ratePerSecond?: number; readonly burst?: number };
  /** Error backoff (full jitter). Default base 250 ms, cap 30 s. */
  readonly backoff?: { readonly baseMs?: number; readonly capMs?: number };
  /** Minimum delay after a 403. Default 30000. */
  readonly aclRetryMs?: number;
  /** Largest accepted answer, in bytes. Default 64 MiB. */
  readonly maxResponseBytes?: number;
}

/** DNS SRV source options (DESIGN §4.2). */
export interface DnsOptions {
  /** The SRV name, e.g. `_datafusion-worker._tcp.service.consul`. */
  readonly name: string;
  /** DNS servers as `host:port` (IP literals; `[v6]:port`). Default: the system's resolvers. */
  readonly servers?: readonly string[];
  /** `auto` (default): UDP with EDNS0, TCP when the answer is truncated or the server ignored EDNS. */
  readonly transport?: 'auto' | 'udp' | 'tcp';
  /** URL scheme of workers. Default `http`. */
  readonly scheme?: string;
  /** Per-attempt timeout. Default 2000. */
  readonly timeoutMs?: number;
  /** TTL bounds for the refresh interval. Default 1000 and 30000. */
  readonly minRefreshMs?: number;
  readonly maxRefreshMs?: number;
  /** Error backoff. Default base 250 ms, cap 30 s. */
  readonly backoff?: { readonly baseMs?: number; readonly capMs?: number };
}

/** Options of `createWorkerResolver`. At least one of `consul`, `dns`, `static` is required. */
export interface WorkerResolverOptions {
  /** The worker service name (Consul service; label value in metrics). */
  readonly service: string;
  /** Enable the Consul source (primary). `{}` uses the environment and defaults. */
  readonly consul?: ConsulOptions;
  /** Enable the DNS SRV source: fallback when `consul` is set, primary otherwise. */
  readonly dns?: DnsOptions;
  /** Static worker URLs: the only source, or the last resort before any other source answered. */
  readonly static?: readonly (string | URL)[];
  /** Fail over to DNS after this many consecutive Consul failures. Default 3. */
  readonly failoverAfter?: number;
  /** Also fail over when Consul has not answered successfully for this long, in milliseconds. Off by default. */
  readonly failoverAfterMs?: number;
  /** Mark the snapshot stale when its source has not answered for this long. Default: the Consul blocking timeout + 60 s (6m troubles a 5m wait), or 60 s without Consul. */
  readonly maxStalenessMs?: number;
  /** Hold the last good set when a source suddenly reports far fewer workers. `false` turns it off. Default threshold 0.5, minWorkers 3, holdMs 60000. */
  readonly massFailureGuard?:
    false | { readonly threshold?: number; readonly minWorkers?: number; readonly holdMs?: number };
  /** At most one publish per this many milliseconds (latest state wins). Default 250. */
  readonly minPublishIntervalMs?: number;
  /** Register the `worker_resolver_*` metrics on this prom-client registry (never the global one). */
  readonly registry?: Registry;
  /** Record spans through this OpenTelemetry tracer provider. */
  readonly tracerProvider?: TracerProvider;
  /** DataFusion's `max_tasks_per_stage` for `resolver.planner` and the task-cap gauge. Default 0 (the cap is the worker count). */
  readonly maxTasksPerStage?: number;
  /** Structured logger. Default: silent (set `NODE_DEBUG=worker-resolver` for debug output). */
  readonly logger?: Logger;
  /** Event observers (metrics, tracing, your own). */
  readonly observers?: readonly ResolverObserver[];
  /** Environment to read Consul's variables from. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Time source; tests inject a manual clock. */
  readonly clock?: Clock;
  /** Randomness for jitter, in [0, 1). */
  readonly random?: () => number;
}

/** A short, safe rendering of a rejected value for an error message. */
function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return value === null ? 'null' : typeof value;
}

function isStringArray(value: unknown): value is readonly string[] {
  return Array.isArray(value) && value.every((t) => typeof t === 'string' && t !== '');
}

function fail(option: string, problem: string): never {
  throw new InvalidOptionError(option, problem);
}

function nonEmptyString(value: unknown, option: string): string {
  if (typeof value !== 'string' || value.trim() === '') fail(option, 'must be a non-empty string');
  return value;
}

function optionalString(value: unknown, option: string): string | undefined {
  return value === undefined ? undefined : nonEmptyString(value, option);
}

/** A finite number within [min, max]; `integer` rejects fractions. */
export function numberOption(
  value: unknown,
  option: string,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  integer = false,
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < min ||
    value > max ||
    (integer && !Number.isInteger(value))
  ) {
    fail(option, `must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max} (got ${show(value)})`);
  }
  return value;
}

const SCHEME = /^[a-z][a-z0-9+.-]*$/;

function schemeOption(value: unknown, option: string): string {
  if (value === undefined) return 'http';
  if (typeof value !== 'string' || !SCHEME.test(value)) fail(option, 'must be a URL scheme such as "http" or "https"');
  return value;
}

/** Parses a Consul address the way Consul's CLI reads `CONSUL_HTTP_ADDR`. */
export function parseConsulAddress(value: string | URL, option: string, sslFromEnv: boolean): URL {
  const text = value instanceof URL ? value.href : value.trim();
  if (text.startsWith('unix://')) fail(option, 'unix sockets are not supported; use http(s)://host:port');
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `${sslFromEnv ? 'https' : 'http'}://${text}`);
  } catch {
    fail(option, 'must be a URL such as http://127.0.0.1:8500 or host:port');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(option, 'scheme must be http or https');
  if (url.username !== '' || url.password !== '') fail(option, 'must not contain credentials; use the token option');
  if (url.pathname !== '/' || url.search !== '') fail(option, 'must not contain a path or query');
  return new URL(`${url.protocol}//${url.host}`);
}

function readFile(path: string, option: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    fail(option, `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

function boolEnv(value: string | undefined, option: string): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^(1|t|true)$/i.test(value)) return true;
  if (/^(0|f|false)$/i.test(value)) return false;
  fail(option, 'must be true or false');
}

function resolveTls(o: ConsulOptions['tls'], env: WorkerResolverOptions['env'] & object): ConsulTlsOptions {
  const caFile = o?.caFile ?? env['CONSUL_CACERT'];
  const certFile = o?.certFile ?? env['CONSUL_CLIENT_CERT'];
  const keyFile = o?.keyFile ?? env['CONSUL_CLIENT_KEY'];
  const ca = o?.ca ?? (caFile ? readFile(caFile, o?.caFile ? 'consul.tls.caFile' : 'CONSUL_CACERT') : undefined);
  const cert =
    o?.cert ?? (certFile ? readFile(certFile, o?.certFile ? 'consul.tls.certFile' : 'CONSUL_CLIENT_CERT') : undefined);
  const key =
    o?.key ?? (keyFile ? readFile(keyFile, o?.keyFile ? 'consul.tls.keyFile' : 'CONSUL_CLIENT_KEY') : undefined);
  if ((cert === undefined) !== (key === undefined))
    fail('consul.tls', 'a client certificate needs its key, and a key its certificate');
  const serverName = o?.serverName ?? (env['CONSUL_TLS_SERVER_NAME'] || undefined);
  const verify = o?.verify ?? boolEnv(env['CONSUL_HTTP_SSL_VERIFY'], 'CONSUL_HTTP_SSL_VERIFY') ?? true;
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    ...(serverName === undefined ? {} : { serverName }),
    verify,
  };
}

/** Quotes a string for a Consul filter expression. */
function filterString(value: string): string {
  return JSON.stringify(value);
}

/** Resolves and validates the Consul options into the source's config. */
export function resolveConsul(
  o: ConsulOptions,
  service: string,
  env: Readonly<Record<string, string | undefined>>,
  clock: Clock,
  random: (() => number) | undefined,
): ConsulSourceConfig {
  if (typeof o !== 'object' || o === null) fail('consul', 'must be an object');
  const ssl = boolEnv(env['CONSUL_HTTP_SSL'], 'CONSUL_HTTP_SSL') ?? false;
  const address = parseConsulAddress(
    o.address ?? env['CONSUL_HTTP_ADDR'] ?? 'http://127.0.0.1:8500',
    o.address === undefined && env['CONSUL_HTTP_ADDR'] !== undefined ? 'CONSUL_HTTP_ADDR' : 'consul.address',
    ssl,
  );
  let token = o.token ?? (env['CONSUL_HTTP_TOKEN'] || undefined);
  const tokenFile = o.tokenFile ?? (env['CONSUL_HTTP_TOKEN_FILE'] || undefined);
  if (token === undefined && tokenFile !== undefined) {
    token = readFile(tokenFile, o.tokenFile ? 'consul.tokenFile' : 'CONSUL_HTTP_TOKEN_FILE').trim();
  }
  if (token !== undefined && (token === '' || /[\r\n]/.test(token)))
    fail('consul.token', 'must be a single-line, non-empty string');

  const tags: unknown = o.tags ?? [];
  if (!isStringArray(tags)) fail('consul.tags', 'must be an array of non-empty strings');
  const userFilter = optionalString(o.filter, 'consul.filter');
  const tagClauses = tags.length > 1 ? tags.map((t) => `${filterString(t)} in Service.Tags`) : [];
  const clauses = [...(userFilter === undefined ? [] : [`(${userFilter})`]), ...tagClauses];
  const nodeMeta = Object.entries(o.nodeMeta ?? {}).map(([k, v]) => {
    if (k === '' || k.includes(':') || typeof v !== 'string')
      fail('consul.nodeMeta', 'keys must be non-empty without ":" and values strings');
    return `${k}:${v}`;
  });
  const consistency = o.consistency ?? 'stale';
  if (!['stale', 'consistent', 'cached', 'default'].includes(consistency)) {
    fail('consul.consistency', 'must be one of stale, consistent, cached, default');
  }
  const metaMatch = o.metaMatch;
  if (metaMatch !== undefined) {
    nonEmptyString(metaMatch.key, 'consul.metaMatch.key');
    if (
      !Array.isArray(metaMatch.values) ||
      metaMatch.values.length === 0 ||
      !metaMatch.values.every((v) => typeof v === 'string')
    ) {
      fail('consul.metaMatch.values', 'must be a non-empty array of strings');
    }
  }
  const waitMs = numberOption(o.waitMs, 'consul.waitMs', 300_000, 1, 600_000);
  const baseMs = numberOption(o.backoff?.baseMs, 'consul.backoff.baseMs', 250, 1);
  return {
    client: {
      address,
      token,
      tls: address.protocol === 'https:' ? resolveTls(o.tls, env) : undefined,
      maxResponseBytes: numberOption(o.maxResponseBytes, 'consul.maxResponseBytes', 64 * 1024 * 1024, 1024),
    },
    query: {
      service,
      passingOnly: o.includeWarning !== true,
      tag: tags.length === 1 ? tags[0] : undefined,
      filter:
        clauses.length === 0
          ? undefined
          : clauses.length === 1 && userFilter !== undefined
            ? userFilter
            : clauses.join(' and '),
      datacenter: optionalString(o.datacenter, 'consul.datacenter'),
      near: optionalString(o.near, 'consul.near'),
      nodeMeta,
      namespace: optionalString(o.namespace, 'consul.namespace'),
      partition: optionalString(o.partition, 'consul.partition'),
      consistency,
    },
    policy: {
      taggedAddress: optionalString(o.taggedAddress, 'consul.taggedAddress'),
      scheme: schemeOption(o.scheme, 'consul.scheme'),
      schemeMetaKey: optionalString(o.schemeMetaKey, 'consul.schemeMetaKey'),
      includeWarning: o.includeWarning === true,
      metaMatch: metaMatch === undefined ? undefined : { key: metaMatch.key, values: [...metaMatch.values] },
    },
    waitMs,
    timeoutMarginMs: numberOption(o.timeoutMarginMs, 'consul.timeoutMarginMs', 15_000, 0),
    requestTimeoutMs: numberOption(o.requestTimeoutMs, 'consul.requestTimeoutMs', 10_000, 1),
    rateLimit: {
      ratePerSecond: numberOption(o.rateLimit?.ratePerSecond, 'consul.rateLimit.ratePerSecond', 2, 0.001),
      burst: numberOption(o.rateLimit?.burst, 'consul.rateLimit.burst', 10, 1, 10_000, true),
    },
    backoff: {
      baseMs,
      capMs: numberOption(o.backoff?.capMs, 'consul.backoff.capMs', Math.max(30_000, baseMs), baseMs),
    },
    aclRetryMs: numberOption(o.aclRetryMs, 'consul.aclRetryMs', 30_000, 0),
    clock,
    ...(random === undefined ? {} : { random }),
  };
}

/** Resolves the mass-failure guard options. */
export function resolveGuard(o: WorkerResolverOptions['massFailureGuard']): GuardConfig | undefined {
  if (o === false) return undefined;
  if (o !== undefined && (typeof o !== 'object' || o === null)) fail('massFailureGuard', 'must be false or an object');
  return {
    threshold: numberOption(o?.threshold, 'massFailureGuard.threshold', 0.5, 0, 1),
    minWorkers: numberOption(o?.minWorkers, 'massFailureGuard.minWorkers', 3, 1, Number.MAX_SAFE_INTEGER, true),
    holdMs: numberOption(o?.holdMs, 'massFailureGuard.holdMs', 60_000, 0),
  };
}

/** Turns static URLs into candidates; a bad URL is an option error, not a silent skip. */
export function resolveStatic(list: unknown, option = 'static'): WorkerCandidate[] {
  if (!Array.isArray(list)) fail(option, 'must be an array of URLs');
  return list.map((entry: unknown, i) => {
    let url: URL;
    try {
      url = entry instanceof URL ? new URL(entry.href) : new URL(String(entry));
    } catch {
      fail(`${option}[${i}]`, `is not a URL: ${String(entry)}`);
    }
    if (url.hostname === '' || urlHost(url.hostname) === undefined) fail(`${option}[${i}]`, 'needs a host');
    const address = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    return {
      url: url.href,
      id: url.href,
      node: address,
      address,
      port,
      tags: [],
      meta: {},
      status: 'passing',
      weight: 1,
    };
  });
}

/** Common resolved settings. */
export interface ResolvedCommon {
  readonly service: string;
  readonly clock: Clock;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Validates the fields every configuration shares. */
export function resolveCommon(options: WorkerResolverOptions): ResolvedCommon {
  if (typeof options !== 'object' || options === null) fail('options', 'must be an object');
  const service = nonEmptyString(options.service, 'service');
  if (!/^[A-Za-z0-9._-]+$/.test(service)) fail('service', 'may contain only letters, digits, ".", "_" and "-"');
  if (options.consul === undefined && options.dns === undefined && options.static === undefined) {
    fail('consul', 'no source configured: set consul, dns or static');
  }
  return { service, clock: options.clock ?? systemClock, env: options.env ?? process.env };
}

/** The default staleness bound: a quiet cluster answers a blocking query only every wait + wait/16. */
export function defaultMaxStalenessMs(consul: ConsulSourceConfig | undefined): number {
  return consul === undefined ? 60_000 : blockingTimeoutMs(consul.waitMs, consul.timeoutMarginMs) + 60_000;
}

/** Resolves and validates the DNS SRV options into the source's config. */
export function resolveDns(o: DnsOptions, clock: Clock, random: (() => number) | undefined): DnsSrvSourceConfig {
  if (typeof o !== 'object' || o === null) fail('dns', 'must be an object');
  const name = nonEmptyString(o.name, 'dns.name');
  if (!/^[A-Za-z0-9_.-]+\.?$/.test(name)) fail('dns.name', 'must be a DNS name such as _worker._tcp.service.consul');
  if (o.servers !== undefined && !Array.isArray(o.servers))
    fail('dns.servers', 'must be an array of host:port strings');
  const servers = (o.servers ?? []).map((s, i) => parseDnsServer(String(s), `dns.servers[${i}]`));
  const transport = o.transport ?? 'auto';
  if (!['auto', 'udp', 'tcp'].includes(transport)) fail('dns.transport', 'must be auto, udp or tcp');
  const minRefreshMs = numberOption(o.minRefreshMs, 'dns.minRefreshMs', 1000, 1);
  const maxRefreshMs = numberOption(o.maxRefreshMs, 'dns.maxRefreshMs', Math.max(30_000, minRefreshMs), minRefreshMs);
  const baseMs = numberOption(o.backoff?.baseMs, 'dns.backoff.baseMs', 250, 1);
  return {
    name,
    servers,
    transport,
    scheme: schemeOption(o.scheme, 'dns.scheme'),
    timeoutMs: numberOption(o.timeoutMs, 'dns.timeoutMs', 2000, 1),
    minRefreshMs,
    maxRefreshMs,
    backoff: { baseMs, capMs: numberOption(o.backoff?.capMs, 'dns.backoff.capMs', Math.max(30_000, baseMs), baseMs) },
    clock,
    ...(random === undefined ? {} : { random }),
  };
}

/**
 * Consul source options (docs/design.md §4.1): types, defaults, validation, and Consul's own
 * environment variables (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN[_FILE]`, `CONSUL_CACERT`, ...),
 * read as Consul's CLI reads them, explicit options first.
 */
import { readFileSync } from 'node:fs';
import type { Clock } from '../clock.js';
import type { ConsulTlsOptions } from './client.js';
import {
  MAX_TIMER_MS,
  durationOption,
  fail,
  isStringArray,
  nonEmptyString,
  numberOption,
  optionalString,
  schemeOption,
  show,
} from '../option-checks.js';
import { LEADER_CHECK_MS } from './leader.js';
import { blockingTimeoutMs } from './source.js';
import type { ConsulSourceConfig } from './source.js';

/** The environment Consul's variables are read from. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Consul source options (docs/design.md §4.1). Every field is optional. */
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
  /** Keep only instances carrying every one of these tags: one Consul `tag` parameter each, matched case-insensitively as Consul does. */
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
  /** Added to wait + wait/16 to form the client timeout of a blocking request. Default 15000, at least 100 (room for the network: Consul's jitter already takes up to wait/16). */
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
  /**
   * Like consul-template's `max_stale`: a `stale` read whose server may be behind by more than
   * this is re-read from the leader; with no leader that read fails and the last good set is
   * kept (and failover may follow). "May be behind": the answer's `X-Consul-KnownLeader: false`
   * or `X-Consul-LastContact` over this — or, for a streaming answer (every blocking read of a
   * Consul ≥ 1.10 agent, whose leader headers mean nothing), no leader seen by the leader check
   * for longer than this. Off by default: a follower's view is then used however old, and
   * `resolver.consulLeader()` / the metrics show how long the cluster has had no leader.
   */
  readonly maxStaleMs?: number;
  /**
   * How often the cluster's leader is asked for (`GET /v1/status/leader` through the same
   * agent; `resolver.consulLeader()`, the `worker_resolver_consul_known_leader` metric).
   * Default 15000 (15 s), at least 1000. A streaming agent's answers say nothing about the
   * leader, so this is how a lost quorum becomes visible (within this interval plus Raft's
   * own detection).
   */
  readonly leaderCheckMs?: number;
  /** Minimum delay after a 403. Default 30000. */
  readonly aclRetryMs?: number;
  /** Largest accepted answer, in bytes. Default 64 MiB. */
  readonly maxResponseBytes?: number;
  /**
   * Where answers are received and read: `'auto'` (default) on the event loop until an answer
   * of 1 MiB (≈ 1,000 instances) arrives, then in a worker thread that hands back only what
   * changed; `true` in the thread from the start; `false` always on the event loop (in turns
   * of at most 5 ms; no second V8 isolate, so less RSS (docs/performance.md), but a 10 MiB
   * answer's buffers are then collected on the event loop).
   */
  readonly readInThread?: boolean | 'auto';
}

/**
 * The smallest accepted `timeoutMarginMs`. Consul holds a blocking query for `wait` plus a
 * random jitter of up to wait/16, so a client timeout of exactly wait + wait/16 would cut
 * the longest healthy answers in transit: the margin is the room for the network and the
 * agent's own work, and 0 leaves none.
 */
export const MIN_TIMEOUT_MARGIN_MS = 100;

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

function resolveTls(o: ConsulOptions['tls'], env: Env): ConsulTlsOptions {
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

function readInThreadOption(value: unknown): boolean | 'auto' {
  if (value === undefined) return 'auto';
  if (value === true || value === false || value === 'auto') return value;
  return fail('consul.readInThread', `must be true, false or 'auto', got ${show(value)}`);
}

/** Resolves and validates the Consul options into the source's config. */
export function resolveConsul(
  o: ConsulOptions,
  service: string,
  env: Env,
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
    const option = o.tokenFile ? 'consul.tokenFile' : 'CONSUL_HTTP_TOKEN_FILE';
    token = readFile(tokenFile, option).trim();
    if (token === '') fail(option, `${tokenFile} is empty: it must hold the ACL token`);
    if (/[\r\n]/.test(token)) fail(option, `${tokenFile} holds more than one line: it must hold only the ACL token`);
  }
  if (token !== undefined && (token === '' || /[\r\n]/.test(token)))
    fail('consul.token', 'must be a single-line, non-empty string');

  const tags: unknown = o.tags ?? [];
  if (!isStringArray(tags)) fail('consul.tags', 'must be an array of non-empty strings');
  const userFilter = optionalString(o.filter, 'consul.filter');
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
  const waitMs = durationOption(o.waitMs, 'consul.waitMs', 300_000, 1, 600_000);
  const baseMs = durationOption(o.backoff?.baseMs, 'consul.backoff.baseMs', 250, 1);
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
      tags: [...tags],
      filter: userFilter,
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
    timeoutMarginMs: durationOption(
      o.timeoutMarginMs,
      'consul.timeoutMarginMs',
      15_000,
      MIN_TIMEOUT_MARGIN_MS,
      MAX_TIMER_MS - blockingTimeoutMs(waitMs, 0),
    ),
    requestTimeoutMs: durationOption(o.requestTimeoutMs, 'consul.requestTimeoutMs', 10_000, 1),
    rateLimit: {
      ratePerSecond: numberOption(o.rateLimit?.ratePerSecond, 'consul.rateLimit.ratePerSecond', 2, 0.001),
      burst: numberOption(o.rateLimit?.burst, 'consul.rateLimit.burst', 10, 1, 10_000, true),
    },
    backoff: {
      baseMs,
      capMs: durationOption(o.backoff?.capMs, 'consul.backoff.capMs', Math.max(30_000, baseMs), baseMs),
    },
    aclRetryMs: durationOption(o.aclRetryMs, 'consul.aclRetryMs', 30_000, 0),
    maxStaleMs: o.maxStaleMs === undefined ? undefined : durationOption(o.maxStaleMs, 'consul.maxStaleMs', 0, 0),
    leaderCheckMs: durationOption(o.leaderCheckMs, 'consul.leaderCheckMs', LEADER_CHECK_MS, 1000),
    readInThread: readInThreadOption(o.readInThread),
    clock,
    ...(random === undefined ? {} : { random }),
  };
}

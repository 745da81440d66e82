/**
 * Public options of `createWorkerResolver`, their defaults, and their validation.
 *
 * Validation happens once, up front, synchronously: a bad option throws an
 * {@link InvalidOptionError} (a `TypeError`) naming the option, before any socket or timer
 * exists. Consul's own environment variables are honoured as Consul's CLI does, with
 * explicit options taking precedence.
 */
import type { TracerProvider } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import { blockingTimeoutMs } from './consul/source.js';
import type { ConsulSourceConfig } from './consul/source.js';
import { durationOption, fail, nonEmptyString, numberOption } from './option-checks.js';
import type { ConsulOptions } from './consul/options.js';
import type { DnsOptions } from './dns/options.js';
import type { DnsSrvSourceConfig } from './dns/source.js';
import type { Logger, ResolverObserver } from './events.js';
import type { GuardConfig } from './guard.js';
import type { WorkerCandidate } from './source.js';
import { urlHost } from './url-host.js';

export { durationOption, numberOption } from './option-checks.js';
export { parseConsulAddress, resolveConsul } from './consul/options.js';
export type { ConsulOptions } from './consul/options.js';
export { resolveDns } from './dns/options.js';
export type { DnsOptions } from './dns/options.js';

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
  /** Also fail over when a Consul failure streak has lasted this long (counted from its first failure, so a quiet blocking query never trips it), in milliseconds. Off by default. */
  readonly failoverAfterMs?: number;
  /** Mark the snapshot stale when its source has not answered for this long. Default: 60 s beyond the longest healthy silence of the configured sources (Consul: wait + wait/16 + margin, 6m20s by default; DNS: maxRefreshMs + timeoutMs). At most 2^31−1 ms. */
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

/** Resolves the mass-failure guard options. */
export function resolveGuard(o: WorkerResolverOptions['massFailureGuard']): GuardConfig | undefined {
  if (o === false) return undefined;
  if (o !== undefined && (typeof o !== 'object' || o === null)) fail('massFailureGuard', 'must be false or an object');
  return {
    threshold: numberOption(o?.threshold, 'massFailureGuard.threshold', 0.5, 0, 1),
    minWorkers: numberOption(o?.minWorkers, 'massFailureGuard.minWorkers', 3, 1, Number.MAX_SAFE_INTEGER, true),
    holdMs: durationOption(o?.holdMs, 'massFailureGuard.holdMs', 60_000, 0),
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

/**
 * The default staleness bound: 60 s beyond the longest silence a healthy source can have. A
 * quiet Consul answers a blocking query only every wait + wait/16 (+ margin); DNS answers
 * every refresh, which TTLs may stretch to `maxRefreshMs`, plus the query's own timeout.
 * Either may be the snapshot's source (DNS while failed over), so the larger bound applies.
 */
export function defaultMaxStalenessMs(
  consul: ConsulSourceConfig | undefined,
  dns: DnsSrvSourceConfig | undefined,
): number {
  const consulSilence = consul === undefined ? 0 : blockingTimeoutMs(consul.waitMs, consul.timeoutMarginMs);
  const dnsSilence = dns === undefined ? 0 : dns.maxRefreshMs + dns.timeoutMs;
  return Math.max(consulSilence, dnsSilence) + 60_000;
}

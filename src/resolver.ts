/**
 * The resolvers: `createWorkerResolver` (discovering: Consul, DNS SRV, static) and
 * {@link StaticWorkerResolver}. Both implement DataFusion's `WorkerResolver` contract:
 * `getUrls()` is synchronous, O(1), allocation-free and never throws.
 */
import { debuglog } from 'node:util';
import { ErrorCode, InvalidOptionError, WorkerResolverError } from './errors.js';
import { Engine } from './engine.js';
import type { Logger } from './events.js';
import {
  defaultMaxStalenessMs,
  durationOption,
  numberOption,
  resolveCommon,
  resolveConsul,
  resolveDns,
  resolveGuard,
  resolveStatic,
} from './options.js';
import type { WorkerResolverOptions } from './options.js';
import { MAX_TIMER_MS } from './option-checks.js';
import { makeSnapshot } from './snapshot.js';
import { buildWorkerSet } from './worker-set.js';
import type { WorkerSnapshot } from './snapshot.js';
import type { ConsulLeaderState } from './source.js';
import { ConsulSource } from './consul/source.js';
import { Planner } from './planner-instrumented.js';
import { createResolverMetrics } from './metrics.js';
import type { ResolverMetrics } from './metrics.js';
import { createResolverTracing } from './tracing.js';
import type { ResolverTracing } from './tracing.js';
import type { ResolverObserver } from './events.js';
import { DnsSrvSource } from './dns/source.js';

/** DataFusion's `WorkerResolver` trait, in TypeScript. */
export interface WorkerResolver {
  /** The current snapshot's worker URLs: the same frozen array until the next publish. Never blocks, never throws. */
  getUrls(): readonly URL[];
}

/** Options of {@link DiscoveringWorkerResolver.ready}. */
export interface ReadyOptions {
  /** Reject with `ERR_READY_TIMEOUT` after this many milliseconds. Default: wait forever. */
  readonly timeoutMs?: number;
  /** Reject with the signal's reason when it aborts. */
  readonly signal?: AbortSignal;
}

/** The resolver returned by {@link createWorkerResolver}. */
export interface DiscoveringWorkerResolver extends WorkerResolver {
  /** The service this resolver discovers. */
  readonly service: string;
  /** Plans and routes stages against a snapshot, recording metrics and spans when a registry / tracer provider was given. */
  readonly planner: Planner;
  /** Resolves with the first published snapshot; rejects with `ERR_READY_TIMEOUT` or `ERR_RESOLVER_CLOSED`. */
  ready(options?: ReadyOptions): Promise<WorkerSnapshot>;
  /** The whole current snapshot (version 0 and no workers before the first publish). */
  snapshot(): WorkerSnapshot;
  /** Calls `listener` after each publish; returns the unsubscribe function. */
  subscribe(listener: (snapshot: WorkerSnapshot) => void): () => void;
  /**
   * The Consul cluster's leader state as last learned (`GET /v1/status/leader` through the same
   * agent, every `consul.leaderCheckMs`): `known`, `none` (quorum lost: the workers are the last
   * ones the cluster agreed on) or `unknown`, and how long ago a leader was last seen.
   * Undefined without a Consul source or before the first check. Not part of the snapshot: it
   * is about the cluster, and changes without a publish. Observers get `onConsulLeader`.
   */
  consulLeader(): ConsulLeaderState | undefined;
  /** Stops everything: aborts the in-flight long poll, leaves no timer or socket. Idempotent. */
  close(): Promise<void>;
}

const debug = debuglog('worker-resolver');

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/**
 * Validates a caller's logger up front (every level must be a function: a missing one would
 * otherwise surface as a crash from inside the Consul loop) and isolates it: a logger that
 * throws loses that one line, never the loop.
 */
export function safeLogger(logger: unknown): Logger {
  if (typeof logger !== 'object' || logger === null) throw new InvalidOptionError('logger', 'must be an object');
  const target = logger as Record<string, unknown>;
  for (const level of LOG_LEVELS) {
    if (typeof target[level] !== 'function') {
      throw new InvalidOptionError(`logger.${level}`, 'must be a function (debug, info, warn and error are all used)');
    }
  }
  const wrap =
    (level: (typeof LOG_LEVELS)[number]) =>
    (message: string, fields?: Record<string, unknown>): void => {
      try {
        (target[level] as Logger['info']).call(logger, message, fields);
      } catch {
        // A broken logger must not break discovery; there is nowhere safer to report it.
      }
    };
  return { debug: wrap('debug'), info: wrap('info'), warn: wrap('warn'), error: wrap('error') };
}

/** The default logger: silent unless `NODE_DEBUG=worker-resolver`. */
export const debugLogger: Logger = {
  debug: (m, f) => debug('%s %j', m, f ?? {}),
  info: (m, f) => debug('%s %j', m, f ?? {}),
  warn: (m, f) => debug('%s %j', m, f ?? {}),
  error: (m, f) => debug('%s %j', m, f ?? {}),
};

class DiscoveringResolver implements DiscoveringWorkerResolver {
  readonly service: string;
  readonly planner: Planner;
  private readonly engine: Engine;
  /** Settles once; shared by every ready() call. */
  private readonly firstSnapshot: Promise<WorkerSnapshot>;
  private rejectFirst: ((err: Error) => void) | undefined;
  /** The close in progress or done; undefined while open. */
  private closing: Promise<void> | undefined;

  constructor(service: string, engine: Engine, planner: Planner) {
    this.service = service;
    this.engine = engine;
    this.planner = planner;
    this.firstSnapshot = new Promise<WorkerSnapshot>((resolve, reject) => {
      this.rejectFirst = reject;
      const unsubscribe = engine.subscribe((s) => {
        unsubscribe();
        this.rejectFirst = undefined;
        resolve(s);
      });
    });
    // ready() may never be called; a rejection on close must not become an unhandled one.
    this.firstSnapshot.catch(() => undefined);
  }

  getUrls(): readonly URL[] {
    return this.engine.current.urls;
  }

  snapshot(): WorkerSnapshot {
    return this.engine.current;
  }

  consulLeader(): ConsulLeaderState | undefined {
    return this.engine.consulLeader;
  }

  subscribe(listener: (snapshot: WorkerSnapshot) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('subscribe(listener): listener must be a function');
    return this.engine.subscribe(listener);
  }

  ready(options: ReadyOptions = {}): Promise<WorkerSnapshot> {
    // Infinity (the default) waits forever; a finite timeout must fit a timer.
    const timeoutMs =
      options.timeoutMs === Number.POSITIVE_INFINITY
        ? options.timeoutMs
        : durationOption(options.timeoutMs, 'timeoutMs', Number.POSITIVE_INFINITY, 0);
    if (this.engine.current.version > 0) return Promise.resolve(this.engine.current);
    if (this.closing !== undefined) {
      return Promise.reject(new WorkerResolverError(ErrorCode.RESOLVER_CLOSED, 'the resolver is closed'));
    }
    const waiters: Promise<WorkerSnapshot>[] = [this.firstSnapshot];
    const cleanups: (() => void)[] = [];
    if (Number.isFinite(timeoutMs)) {
      waiters.push(
        new Promise((_, reject) => {
          const timer = setTimeout(
            () =>
              reject(
                new WorkerResolverError(
                  ErrorCode.READY_TIMEOUT,
                  `no worker snapshot for service "${this.service}" within ${timeoutMs} ms`,
                ),
              ),
            timeoutMs,
          );
          timer.unref();
          cleanups.push(() => clearTimeout(timer));
        }),
      );
    }
    const signal = options.signal;
    if (signal !== undefined) {
      waiters.push(
        new Promise((_, reject) => {
          const onAbort = (): void => reject(signal.reason as Error);
          if (signal.aborted) onAbort();
          signal.addEventListener('abort', onAbort, { once: true });
          cleanups.push(() => signal.removeEventListener('abort', onAbort));
        }),
      );
    }
    const race = Promise.race(waiters);
    void race.finally(() => cleanups.forEach((c) => c())).catch(() => undefined);
    return race;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.rejectFirst?.(
        new WorkerResolverError(ErrorCode.RESOLVER_CLOSED, 'the resolver was closed before its first snapshot'),
      );
      await this.engine.close();
    })();
    return this.closing;
  }
}

/**
 * Creates a discovering resolver and starts it. Throws {@link InvalidOptionError} (a
 * `TypeError`) synchronously on a bad option; nothing is started in that case.
 */
export function createWorkerResolver(options: WorkerResolverOptions): DiscoveringWorkerResolver {
  const common = resolveCommon(options);
  const random = options.random;
  const consul =
    options.consul === undefined
      ? undefined
      : resolveConsul(options.consul, common.service, common.env, common.clock, random);
  const dns = options.dns === undefined ? undefined : resolveDns(options.dns, common.clock, random);
  const staticWorkers = options.static === undefined ? undefined : resolveStatic(options.static);
  const logger = options.logger === undefined ? debugLogger : safeLogger(options.logger);
  const userObservers: unknown = options.observers ?? [];
  if (!Array.isArray(userObservers) || !userObservers.every((o) => typeof o === 'object' && o !== null)) {
    throw new InvalidOptionError('observers', 'must be an array of observer objects');
  }
  const maxTasksPerStage = numberOption(options.maxTasksPerStage, 'maxTasksPerStage', 0, 0, 1_000_000, true);
  const failoverAfterFailures = numberOption(options.failoverAfter, 'failoverAfter', 3, 1, 1_000_000, true);
  const failoverAfterMs =
    options.failoverAfterMs === undefined
      ? undefined
      : durationOption(options.failoverAfterMs, 'failoverAfterMs', 0, 1);
  // −1: the stale timer waits up to maxStalenessMs + 1.
  const maxStalenessMs = durationOption(
    options.maxStalenessMs,
    'maxStalenessMs',
    defaultMaxStalenessMs(consul, dns),
    1,
    MAX_TIMER_MS - 1,
  );
  const guard = resolveGuard(options.massFailureGuard);
  const minPublishIntervalMs = durationOption(options.minPublishIntervalMs, 'minPublishIntervalMs', 250, 0);
  // Everything is validated: from here on, nothing throws and things start to exist.
  const metrics: ResolverMetrics | undefined =
    options.registry === undefined
      ? undefined
      : createResolverMetrics({ registry: options.registry, service: common.service, maxTasksPerStage });
  const tracing: ResolverTracing | undefined =
    options.tracerProvider === undefined
      ? undefined
      : createResolverTracing({ tracerProvider: options.tracerProvider, service: common.service });
  const observers: ResolverObserver[] = [
    ...(metrics === undefined ? [] : [metrics]),
    ...(tracing === undefined ? [] : [tracing]),
    ...(userObservers as readonly ResolverObserver[]),
  ];
  const engine = new Engine({
    service: common.service,
    consul: consul === undefined ? undefined : new ConsulSource(consul),
    dns: dns === undefined ? undefined : new DnsSrvSource(dns),
    staticWorkers,
    failoverAfterFailures,
    failoverAfterMs,
    maxStalenessMs,
    guard,
    minPublishIntervalMs,
    clock: common.clock,
    logger,
    observers,
  });
  metrics?.attach(() => engine.current);
  const planner = new Planner({
    service: common.service,
    maxTasksPerStage,
    ...(metrics === undefined ? {} : { metrics }),
    ...(tracing === undefined ? {} : { tracing }),
  });
  const resolver = new DiscoveringResolver(common.service, engine, planner);
  engine.start();
  return resolver;
}

/**
 * A resolver over a fixed list of URLs, for tests and simple setups. Its snapshot is
 * published at construction (version 1, source `static`).
 */
export class StaticWorkerResolver implements WorkerResolver {
  /** Frozen at construction; never replaced. */
  private readonly current: WorkerSnapshot;

  /** @throws {InvalidOptionError} when an entry is not an absolute URL with a host. */
  constructor(urls: readonly (string | URL)[]) {
    const set = buildWorkerSet(resolveStatic(urls, 'urls'));
    const now = Date.now();
    this.current = makeSnapshot({
      version: 1,
      source: 'static',
      workers: set.workers,
      urls: set.urls,
      updatedAt: now,
      lastContactAt: now,
      stale: false,
      guarded: false,
      consulIndex: undefined,
    });
  }

  getUrls(): readonly URL[] {
    return this.current.urls;
  }

  /** The fixed snapshot. */
  snapshot(): WorkerSnapshot {
    return this.current;
  }
}

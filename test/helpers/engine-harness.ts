/** An Engine driven by fake sources on a manual clock, with test defaults any test can override. */
import { Engine } from '../../src/engine.js';
import type { EngineConfig } from '../../src/engine.js';
import type { FailoverEvent, GuardEvent, PublishEvent, StaleEvent } from '../../src/events.js';
import { silentLogger } from './dev-workers.js';
import { FakeSource } from './fake-source.js';
import { ManualClock } from './manual-clock.js';

export interface EngineHarness {
  readonly engine: Engine;
  readonly clock: ManualClock;
  /** The fake sources (present even when an override leaves one out of the engine). */
  readonly consul: FakeSource;
  readonly dns: FakeSource;
}

/** Creates and starts an engine: Consul + DNS fakes, failover after 3, no guard, no damping. */
export function startEngine(overrides: Partial<EngineConfig> = {}): EngineHarness {
  const clock = new ManualClock();
  const consul = new FakeSource('consul');
  const dns = new FakeSource('dns');
  const engine = new Engine({
    service: 'svc',
    consul,
    dns,
    staticWorkers: undefined,
    failoverAfterFailures: 3,
    failoverAfterMs: undefined,
    maxStalenessMs: 60_000,
    guard: undefined,
    minPublishIntervalMs: 0,
    clock,
    logger: silentLogger,
    observers: [],
    ...overrides,
  });
  engine.start();
  return { engine, clock, consul, dns };
}

/** An {@link EngineHarness} that also records the engine's publish, failover, stale and guard events. */
export interface RecordingHarness extends EngineHarness {
  publishes: PublishEvent[];
  failovers: FailoverEvent[];
  stale: StaleEvent[];
  guards: GuardEvent[];
}

/** {@link startEngine} with an observer recording its events. */
export function recordingEngine(overrides: Partial<EngineConfig> = {}): RecordingHarness {
  const publishes: PublishEvent[] = [];
  const failovers: FailoverEvent[] = [];
  const stale: StaleEvent[] = [];
  const guards: GuardEvent[] = [];
  const recorder = {
    onPublish: (e: PublishEvent) => publishes.push(e),
    onFailover: (e: FailoverEvent) => failovers.push(e),
    onStaleChange: (e: StaleEvent) => stale.push(e),
    onGuardChange: (e: GuardEvent) => guards.push(e),
  };
  return { ...startEngine({ observers: [recorder], ...overrides }), publishes, failovers, stale, guards };
}

/** The hosts of the published URLs, in snapshot order. */
export const hosts = (h: EngineHarness): string[] => h.engine.current.urls.map((u) => u.host);

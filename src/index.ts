/**
 * worker-resolver: healthy-worker discovery for distributed query coordinators.
 * Every public name is exported here explicitly; `worker-resolver/testing` holds the test kit.
 */
export { ErrorCode, InvalidOptionError, WorkerResolverError, isWorkerResolverError } from './errors.js';
export type { ErrorCodeValue, ErrorDetails, ErrorType } from './errors.js';
export { createWorkerResolver, StaticWorkerResolver, debugLogger } from './resolver.js';
export type { DiscoveringWorkerResolver, ReadyOptions, WorkerResolver } from './resolver.js';
export type { ConsulOptions, DnsOptions, WorkerResolverOptions } from './options.js';
export { EMPTY_SNAPSHOT } from './snapshot.js';
export { diffWorkers } from './worker-diff.js';
export { ImmutableUrl, ImmutableUrlError } from './immutable-url.js';
export type { Worker, WorkerDiff, WorkerSnapshot } from './snapshot.js';
export type {
  ConsulLeaderState,
  SourceKind,
  SourceOutcome,
  SourceAnswer,
  SourceFailure,
  WorkerStatus,
} from './source.js';
export type {
  FailoverEvent,
  GuardEvent,
  ConsulLeaderEvent,
  Logger,
  PublishEvent,
  RefreshEvent,
  ResolverObserver,
  StaleEvent,
} from './events.js';
export { planStage, routeTasks, taskCap } from './planner.js';
export type { RouteOptions, RoutingStrategy, StagePlan, TaskCapOptions } from './planner.js';
export { systemClock } from './clock.js';
export type { Clock, TimerHandle } from './clock.js';
export { formatDuration, parseDuration } from './duration.js';
export { createResolverMetrics } from './metrics.js';
export type { ResolverMetrics, ResolverMetricsOptions } from './metrics.js';
export { createResolverTracing } from './tracing.js';
export type { ResolverTracing, ResolverTracingOptions, StageRequest } from './tracing.js';
export { Planner } from './planner-instrumented.js';
export type { PlannerOptions, PlannerRouteOptions } from './planner-instrumented.js';
export type { RefreshOutcome } from './semconv.js';
export { startSidecar } from './sidecar.js';
export type { Sidecar, SidecarOptions } from './sidecar.js';

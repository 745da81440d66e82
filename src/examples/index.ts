/**
 * `worker-resolver/examples`: the example worker and coordinator behind `worker-resolver
 * demo`, the `examples/` entry points and the docker-compose cluster. Reference code to
 * read and copy, exported so the entry points can import it by the package name; it is not
 * part of the library's stable API.
 */
export { startExampleWorker } from './worker.js';
export type { ExampleWorker, ExampleWorkerOptions, HealthCheckKind } from './worker.js';
export { runJob, runJobs } from './coordinator.js';
export type {
  JobLoopOptions,
  JobOptions,
  JobPlanner,
  JobReport,
  StageRun,
  TaskAttempt,
  TaskRun,
} from './coordinator.js';
export {
  DATASET_LIMITS,
  DEFAULT_DATASET,
  aggregatePartitions,
  checkDatasetSpec,
  checkGroups,
  expectedResult,
  mergeGroups,
  sameResult,
} from './dataset.js';
export type { DatasetSpec, Group } from './dataset.js';
export { formatJob, formatSnapshot } from './report.js';
export type { WorkerNamer } from './report.js';

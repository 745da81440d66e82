/**
 * Plain-text rendering of jobs and worker sets for terminals: one compact block per job,
 * one line per worker-set change. Shared by the demo and the example coordinator so both
 * print the same thing.
 */
import type { WorkerSnapshot } from '../snapshot.js';
import type { JobReport, StageRun } from './coordinator.js';

/**
 * The name shown for a worker, from its URL and its instance id in the snapshot. The
 * default is the id; the demo maps URLs to its own names so that a DNS answer (whose ids
 * are `target:port`) shows the same names as a Consul one.
 */
export type WorkerNamer = (url: string, id: string | undefined) => string;

const byId: WorkerNamer = (url, id) => id ?? url;

/** The names of a snapshot's workers in natural order (`worker-2` before `worker-10`). */
function names(snapshot: WorkerSnapshot, name: WorkerNamer): string[] {
  return snapshot.workers
    .map((w) => name(w.url.href, w.id))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

/** One line describing a published snapshot and, given the previous one, what changed. */
export function formatSnapshot(snapshot: WorkerSnapshot, previous?: WorkerSnapshot, name: WorkerNamer = byId): string {
  const now = names(snapshot, name);
  let line = `workers v${snapshot.version} ${snapshot.source}: ${now.length} healthy  [${now.join(' ') || 'none'}]`;
  if (previous !== undefined) {
    const before = new Set(names(previous, name));
    const after = new Set(now);
    const changes = [
      ...now.filter((n) => !before.has(n)).map((n) => `+${n}`),
      ...[...before].filter((n) => !after.has(n)).map((n) => `-${n}`),
    ];
    if (previous.source !== snapshot.source) changes.push(`(source ${previous.source} -> ${snapshot.source})`);
    if (changes.length > 0) line += `  ${changes.join(' ')}`;
  }
  if (snapshot.stale) line += '  STALE';
  if (snapshot.guarded) line += '  GUARDED (mass-failure guard holds the last good set)';
  return line;
}

/** The task → worker assignments of a stage: `t0→worker-1 t1→worker-3✗→worker-4`. */
function formatTasks(stage: StageRun, name: WorkerNamer): string {
  return stage.tasks
    .map((t) => {
      if (t.worker === 'local') return `t${t.index}→local`;
      const hops = t.attempts.map((a) => `${name(a.url, a.worker)}${a.error === undefined ? '' : '✗'}`);
      return `t${t.index}→${hops.join('→')}`;
    })
    .join(' ');
}

/** A compact block: the job's verdict, one line per stage (its plan and routing), then its retries. */
export function formatJob(report: JobReport, name: WorkerNamer = byId): string {
  const verdict = report.status === 'ok' ? 'OK' : report.status === 'mismatch' ? 'MISMATCH' : 'FAILED';
  const retries = report.retries === 0 ? '' : `  ${report.retries} retr${report.retries === 1 ? 'y' : 'ies'}`;
  const lines = [
    `job ${report.queryId}  snapshot v${report.snapshotVersion} (${report.source}, ${report.workers} workers)  ` +
      `${verdict}  ${report.durationMs.toFixed(0)} ms  ${report.result.length} groups${retries}` +
      (report.error === undefined ? '' : `  ${report.error}`),
  ];
  for (const stage of report.stages) {
    const p = stage.plan;
    lines.push(
      `  stage ${p.stageId} ${stage.name.padEnd(17)} desired ${p.desiredTasks} cap ${p.cap} planned ${p.plannedTasks}` +
        `${p.capped ? ' (capped)' : ''}  ${formatTasks(stage, name)}`,
    );
  }
  for (const stage of report.stages) {
    for (const task of stage.tasks) {
      const failed = task.attempts.filter((a) => a.error !== undefined);
      if (failed.length === 0) continue;
      const why = failed.map((a) => `${name(a.url, a.worker)} ${a.error ?? ''}`).join(', ');
      const last = task.attempts.at(-1);
      const to = task.worker === undefined || last === undefined ? 'no worker left' : name(last.url, last.worker);
      lines.push(`  retry stage ${stage.plan.stageId} t${task.index}: ${why} → ${to}`);
    }
  }
  return lines.join('\n');
}

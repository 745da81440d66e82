/**
 * Comparing workers and diffing two URL-sorted worker lists: what changed between two
 * snapshots (the engine's publish rule, the `onPublish` diff, `serve`'s log lines).
 */
import type { Worker, WorkerDiff } from './snapshot.js';

/** The empty diff (shared, frozen). */
export const NO_CHANGES: WorkerDiff = Object.freeze({
  added: Object.freeze([]),
  removed: Object.freeze([]),
  updated: Object.freeze([]),
});

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
  return true;
}

function sameMeta(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) if (a[k] !== b[k] || !Object.hasOwn(b, k)) return false;
  return true;
}

/** The fields compared for change detection; the URL is compared by the caller. */
type Comparable = Omit<Worker, 'url'>;

/** True if a worker carries exactly the candidate's fields. */
export function sameAsCandidate(w: Comparable, c: Comparable): boolean {
  return (
    w.id === c.id &&
    w.node === c.node &&
    w.address === c.address &&
    w.port === c.port &&
    w.status === c.status &&
    w.weight === c.weight &&
    sameStrings(w.tags, c.tags) &&
    sameMeta(w.meta, c.meta)
  );
}

/** True if two workers with the same URL differ in none of their published fields. */
export function sameWorker(a: Worker, b: Worker): boolean {
  return a === b || sameAsCandidate(a, b);
}

/** Diffs two URL-sorted worker lists in one linear merge pass. */
export function diffWorkers(before: readonly Worker[], after: readonly Worker[]): WorkerDiff {
  if (before === after) return NO_CHANGES;
  const added: Worker[] = [];
  const removed: Worker[] = [];
  const updated: Worker[] = [];
  let i = 0;
  let j = 0;
  while (i < before.length || j < after.length) {
    const b = before[i];
    const a = after[j];
    if (a === undefined || (b !== undefined && b.url.href < a.url.href)) {
      removed.push(b as Worker);
      i += 1;
    } else if (b === undefined || a.url.href < b.url.href) {
      added.push(a);
      j += 1;
    } else {
      if (!sameWorker(a, b)) updated.push(a);
      i += 1;
      j += 1;
    }
  }
  return { added, removed, updated };
}

/** True if the diff is empty. */
export function isEmptyDiff(diff: WorkerDiff): boolean {
  return diff.added.length === 0 && diff.removed.length === 0 && diff.updated.length === 0;
}

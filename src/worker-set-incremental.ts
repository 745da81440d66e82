/**
 * The incremental build of a worker set (large answers, docs/performance.md): when a source hands back the very
 * candidate objects of its previous answer for unchanged entries, the next build costs what
 * changed — the removed workers are dropped from the previous sorted list and the new ones
 * inserted by binary search on the hrefs, the new lists made of slices of the previous ones,
 * and the diff comes with it. Whenever that cannot give exactly what a full build would, it
 * answers undefined and the caller (`worker-set.ts`) makes a full build.
 */
import { ImmutableUrl } from './immutable-url.js';
import type { Worker } from './snapshot.js';
import type { CandidateEdit, WorkerCandidate } from './source.js';
import { WorkerCache, freezeWorker, nextStamp, publish } from './worker-cache.js';
import type { BuiltWorkerSet, CacheEntry, SortedLists } from './worker-cache.js';
import { NO_CHANGES, sameAsCandidate, sameWorker } from './worker-diff.js';

/** Above this share of changed candidates a full build is cheaper than an incremental one. */
const INCREMENTAL_MAX_CHANGED = 0.25;

/** First index whose href is ≥ `href`. */
function lowerBound(hrefs: readonly string[], href: string): number {
  let lo = 0;
  let hi = hrefs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((hrefs[mid] as string) < href) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A worker the incremental build inserts: from which candidate, and where in the previous list. */
interface Added {
  readonly candidate: WorkerCandidate;
  readonly worker: Worker;
  readonly href: string;
  readonly at: number;
}

/** What changed from the cache's candidates: entries dropped, candidates new to it. */
interface Delta {
  readonly removed: readonly (readonly [WorkerCandidate, CacheEntry])[];
  readonly fresh: readonly WorkerCandidate[];
}

/**
 * The delta by looking at every candidate: one map lookup each (stamping the entries it
 * finds), then the unstamped entries are the removed ones. Undefined when a full build is
 * due (a candidate twice, too many changes).
 */
function scanDelta(
  candidates: readonly WorkerCandidate[],
  byCandidate: Map<WorkerCandidate, CacheEntry>,
  stamp: number,
  limit: number,
): Delta | undefined {
  const fresh: WorkerCandidate[] = [];
  let kept = 0;
  for (const candidate of candidates) {
    const entry = byCandidate.get(candidate);
    if (entry === undefined) {
      fresh.push(candidate);
      if (fresh.length > limit) return undefined;
    } else {
      // The same object twice in one answer: a duplicate URL; the full build dedupes.
      if (entry.stamp === stamp) return undefined;
      entry.stamp = stamp;
      kept += 1;
    }
  }
  if (byCandidate.size - kept + fresh.length > limit) return undefined;
  const removed: [WorkerCandidate, CacheEntry][] = [];
  if (kept < byCandidate.size) {
    for (const [candidate, entry] of byCandidate) if (entry.stamp !== stamp) removed.push([candidate, entry]);
  }
  return { removed, fresh };
}

/**
 * The delta from the source's own edit, checked against the cache: every removed candidate
 * must be one of its entries (an added one that is kept is a URL that stays, which the
 * build below refuses). Costs what changed. Undefined when the edit does not fit (the
 * caller then scans).
 */
function editDelta(
  edit: CandidateEdit,
  byCandidate: Map<WorkerCandidate, CacheEntry>,
  limit: number,
): Delta | undefined {
  if (edit.removed.length + edit.added.length > limit) return undefined;
  const removed: [WorkerCandidate, CacheEntry][] = [];
  for (const candidate of edit.removed) {
    const entry = byCandidate.get(candidate);
    if (entry === undefined) return undefined;
    removed.push([candidate, entry]);
  }
  return { removed, fresh: edit.added };
}

/**
 * The previous sorted list with the entries at `removedAt` dropped and `added` inserted
 * before the entries at their `at`, built from slices (a few copies, not one push per
 * element). `removedAt` and `added` are sorted by position.
 */
function spliceSorted<T>(
  previous: readonly T[],
  removedAt: readonly number[],
  added: readonly (readonly [number, T])[],
): T[] {
  const parts: (readonly T[])[] = [];
  let from = 0;
  let r = 0;
  let a = 0;
  while (r < removedAt.length || a < added.length) {
    const insert =
      a < added.length && (r >= removedAt.length || (added[a] as [number, T])[0] <= (removedAt[r] as number));
    const at = insert ? (added[a] as [number, T])[0] : (removedAt[r] as number);
    if (at > from) parts.push(previous.slice(from, at));
    if (insert) {
      parts.push([(added[a] as [number, T])[1]]);
      from = at;
      a += 1;
    } else {
      from = at + 1;
      r += 1;
    }
  }
  if (from < previous.length) parts.push(previous.slice(from));
  return ([] as T[]).concat(...parts);
}

/** The incremental build (see the file comment); undefined when a full build must be done. */
export function buildIncremental(
  candidates: readonly WorkerCandidate[],
  cache: WorkerCache,
  edit: CandidateEdit | undefined,
): BuiltWorkerSet | undefined {
  const byCandidate = cache.byCandidate;
  if (byCandidate === undefined) return undefined;
  const stamp = nextStamp();
  const limit = Math.max(16, Math.floor(candidates.length * INCREMENTAL_MAX_CHANGED));
  const delta =
    (edit !== undefined && edit.from === cache.candidates ? editDelta(edit, byCandidate, limit) : undefined) ??
    scanDelta(candidates, byCandidate, stamp, limit);
  if (delta === undefined) return undefined;
  if (delta.fresh.length === 0 && delta.removed.length === 0) {
    // The very same candidates: the very same workers.
    cache.spent = true;
    const { sorted, published } = cache;
    return {
      ...published,
      rejected: 0,
      cache: new WorkerCache(cache.byUrl, byCandidate, sorted, published, candidates, stamp),
      changes: { from: published.workers, diff: NO_CHANGES },
    };
  }

  const { hrefs } = cache.sorted;
  const removedAt = new Set<number>();
  for (const [, entry] of delta.removed) {
    const at = lowerBound(hrefs, entry.worker.url.href);
    if (cache.sorted.workers[at] !== entry.worker) return undefined;
    removedAt.add(at);
  }
  const added: Added[] = [];
  for (const candidate of delta.fresh) {
    let worker = cache.byUrl.get(candidate.url);
    if (worker === undefined || !sameAsCandidate(worker, candidate)) {
      let url: URL;
      try {
        url = new ImmutableUrl(candidate.url);
      } catch {
        return undefined;
      }
      worker = freezeWorker(url, candidate);
    }
    const href = worker.url.href;
    const at = lowerBound(hrefs, href);
    // A URL that stays in the set: a duplicate, which the full build resolves.
    if (hrefs[at] === href && !removedAt.has(at)) return undefined;
    added.push({ candidate, worker, href, at });
  }
  added.sort((a, b) => (a.href < b.href ? -1 : a.href > b.href ? 1 : 0));
  for (let i = 1; i < added.length; i += 1) {
    if ((added[i] as Added).href === (added[i - 1] as Added).href) return undefined;
  }

  // The previous sorted lists without the removed, with the added at their places.
  const previous = cache.sorted.workers;
  const removedSorted = [...removedAt].sort((x, y) => x - y);
  const sorted: SortedLists = {
    workers: spliceSorted(
      previous,
      removedSorted,
      added.map((x) => [x.at, x.worker] as const),
    ),
    hrefs: spliceSorted(
      hrefs,
      removedSorted,
      added.map((x) => [x.at, x.href] as const),
    ),
    urls: spliceSorted(
      cache.sorted.urls,
      removedSorted,
      added.map((x) => [x.at, x.worker.url] as const),
    ),
  };
  const published = publish(sorted);

  // The diff, as diffWorkers would find it: a URL both removed and added is an update (or nothing).
  const diffAdded: Worker[] = [];
  const diffUpdated: Worker[] = [];
  const replaced = new Set<number>();
  for (const { worker, href, at } of added) {
    const old = previous[at];
    if (hrefs[at] === href && old !== undefined) {
      replaced.add(at);
      if (!sameWorker(old, worker)) diffUpdated.push(worker);
    } else diffAdded.push(worker);
  }
  const diffRemoved: Worker[] = [];
  for (const at of removedSorted) {
    if (!replaced.has(at)) diffRemoved.push(previous[at] as Worker);
  }

  // Commit: from here on the maps belong to the new cache.
  cache.spent = true;
  for (const [candidate, entry] of delta.removed) {
    byCandidate.delete(candidate);
    if (cache.byUrl.get(candidate.url) === entry.worker) cache.byUrl.delete(candidate.url);
  }
  for (const { candidate, worker } of added) {
    byCandidate.set(candidate, { worker, stamp });
    cache.byUrl.set(candidate.url, worker);
  }
  return {
    ...published,
    rejected: 0,
    cache: new WorkerCache(cache.byUrl, byCandidate, sorted, published, candidates, stamp),
    changes: { from: cache.published.workers, diff: { added: diffAdded, removed: diffRemoved, updated: diffUpdated } },
  };
}

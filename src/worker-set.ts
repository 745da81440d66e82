/**
 * Building a published worker set from a source's candidates: frozen workers with parsed
 * URLs, deduplicated and sorted by URL (see `snapshot.ts` for the invariants), incrementally
 * when the source hands back the same candidate objects for unchanged entries (issue #13);
 * and diffing two sets.
 */
import { ImmutableUrl } from './immutable-url.js';
import type { WorkerSet, Worker, WorkerDiff } from './snapshot.js';
import type { CandidateEdit, WorkerCandidate } from './source.js';
import { finishNow } from './turns.js';

/**
 * A build's workers sorted by href, their hrefs (`hrefs[i] === workers[i].url.href`) and
 * URLs. Never changed once built, but not frozen: V8 slices a frozen array on a slow path
 * (≈ 50× slower at 10,000 elements), and the next build is made of slices of these.
 */
interface SortedLists {
  readonly workers: readonly Worker[];
  readonly hrefs: readonly string[];
  readonly urls: readonly URL[];
}

/** Frozen copies of a build's sorted workers and URLs, as handed out. */
function publish(sorted: SortedLists): WorkerCache['published'] {
  return { workers: Object.freeze(sorted.workers.slice()), urls: Object.freeze(sorted.urls.slice()) };
}

/** A candidate of the previous build and the worker it became; `stamp` = the last build that saw it. */
interface CacheEntry {
  readonly worker: Worker;
  stamp: number;
}

/**
 * What a build leaves for the next build of the same source (opaque to callers): the frozen
 * workers by candidate URL string (an answer that repeats most of the previous one reuses
 * them: no URL parsing, no freezing, and an identity fast path in {@link diffWorkers}), and,
 * when the build had no duplicate URL and no rejected URL, the sorted result with its hrefs
 * and its workers by candidate object, which lets the next build be incremental (see
 * {@link buildWorkerSet}).
 *
 * A cache is used once: the incremental build takes over its maps for the cache it returns,
 * so a cache passed a second time only makes an ordinary (full) build.
 */
export class WorkerCache {
  /** Workers by candidate URL string, for reuse of equal candidates that are new objects. */
  readonly byUrl: Map<string, Worker>;
  /** Workers by candidate object; undefined when the next build cannot be incremental. */
  readonly byCandidate: Map<WorkerCandidate, CacheEntry> | undefined;
  /** The build's sorted lists, unfrozen (what the next incremental build slices). */
  readonly sorted: SortedLists;
  /** The build's frozen `workers` and `urls`, as handed out. */
  readonly published: { readonly workers: readonly Worker[]; readonly urls: readonly URL[] };
  /** The candidates the build was given (what a source's {@link CandidateEdit} must start from). */
  readonly candidates: readonly WorkerCandidate[];
  /** The build that made this cache; stamps of entries it saw. */
  readonly stamp: number;
  /** Set once a build took over the maps: they now belong to a newer cache. */
  spent = false;

  constructor(
    byUrl: Map<string, Worker>,
    byCandidate: Map<WorkerCandidate, CacheEntry> | undefined,
    sorted: SortedLists,
    published: WorkerCache['published'],
    candidates: readonly WorkerCandidate[],
    stamp: number,
  ) {
    this.byUrl = byUrl;
    this.byCandidate = byCandidate;
    this.sorted = sorted;
    this.published = published;
    this.candidates = candidates;
    this.stamp = stamp;
  }
}

/** A worker set and the cache to pass to the next {@link buildWorkerSet} of the same source. */
export interface BuiltWorkerSet extends WorkerSet {
  readonly cache: WorkerCache;
  /** `workers[i].url`, frozen: the snapshot's `urls`. */
  readonly urls: readonly URL[];
  /**
   * Set by an incremental build: the diff from the previous build's workers (`from`) to these,
   * exactly what `diffWorkers(from, workers)` returns, without walking both lists.
   */
  readonly changes?: { readonly from: readonly Worker[]; readonly diff: WorkerDiff };
}

/** The empty diff (shared, frozen). */
export const NO_CHANGES: WorkerDiff = Object.freeze({
  added: Object.freeze([]),
  removed: Object.freeze([]),
  updated: Object.freeze([]),
});

/** Above this share of changed candidates a full build is cheaper than an incremental one. */
const INCREMENTAL_MAX_CHANGED = 0.25;

/**
 * Turns source candidates into frozen, deduplicated, URL-sorted workers. The URL is parsed
 * once here; a candidate whose URL does not parse is counted in `rejected`, never thrown.
 * On duplicate URLs the candidate with the smallest id wins, so the result does not depend
 * on the order the source listed them in. With `cache` (from the previous build of the same
 * source), unchanged candidates reuse their frozen worker.
 *
 * Incremental path: a source that hands back the very candidate objects of its previous
 * answer for unchanged entries (the Consul source does, see `consul-health-incremental.ts`)
 * gets a build that costs one map lookup per candidate plus the work for the changed ones:
 * the removed workers are dropped from the previous sorted list and the new ones inserted
 * by binary search on the hrefs, the new sorted lists made of slices of the previous ones.
 * With `edit` (the source's own account of what changed since the candidates of `cache`,
 * see {@link CandidateEdit}) even the lookups go: the build costs what changed. Whenever
 * that cannot give exactly what a full build would (a duplicate URL, a rejected URL, many
 * changes, an edit that does not match the cache) it scans, or makes a full build.
 */
export function buildWorkerSet(
  candidates: readonly WorkerCandidate[],
  cache?: WorkerCache,
  edit?: CandidateEdit,
): BuiltWorkerSet {
  const usable = cache !== undefined && !cache.spent ? cache : undefined;
  const incremental = usable === undefined ? undefined : buildIncremental(candidates, usable, edit);
  return incremental ?? buildFull(candidates, usable);
}

/**
 * A build that may need more than one event-loop turn ({@link startBuild}): either done, or
 * the steps of a full build, for `finishInTurns` (`turns.ts`). Until the steps return, the
 * build changes nothing: its cache may still be given to {@link buildWorkerSet}.
 */
export type WorkerSetBuild =
  | { readonly set: BuiltWorkerSet; readonly steps?: undefined }
  | { readonly set?: undefined; readonly steps: Generator<void, BuiltWorkerSet> };

/**
 * {@link buildWorkerSet} for a caller that keeps its event loop free (the engine, issue #13):
 * an incremental build (it costs what changed) and any build of fewer than `slicedFrom`
 * candidates are done at once; a full build of more (a source's first answer: ≈ 2 µs per
 * candidate, 20 ms at 10,000) comes back as steps that yield whenever `sliceMs` of work were
 * done. The result is exactly what {@link buildWorkerSet} returns.
 */
export function startBuild(
  candidates: readonly WorkerCandidate[],
  cache: WorkerCache | undefined,
  edit: CandidateEdit | undefined,
  slicedFrom: number,
  sliceMs: number,
): WorkerSetBuild {
  const usable = cache !== undefined && !cache.spent ? cache : undefined;
  const incremental = usable === undefined ? undefined : buildIncremental(candidates, usable, edit);
  if (incremental !== undefined) return { set: incremental };
  if (candidates.length < slicedFrom) return { set: buildFull(candidates, usable) };
  return { steps: fullBuildSteps(candidates, usable, sliceMs) };
}

let stamps = 0;

/** How often (in candidates) a full build in steps looks at the clock. */
const CHECK_EVERY = 64;

function buildFull(candidates: readonly WorkerCandidate[], cache: WorkerCache | undefined): BuiltWorkerSet {
  return finishNow(fullBuildSteps(candidates, cache, Number.POSITIVE_INFINITY));
}

/**
 * The full build, yielding when a slice of `sliceMs` is used up (never, for `Infinity`).
 * Reads `cache` and writes nothing shared until it returns.
 */
function* fullBuildSteps(
  candidates: readonly WorkerCandidate[],
  cache: WorkerCache | undefined,
  sliceMs: number,
): Generator<void, BuiltWorkerSet> {
  let sliceStart = performance.now();
  const byHref = new Map<string, Worker>();
  const byUrl = new Map<string, Worker>();
  const stamp = (stamps += 1);
  let byCandidate: Map<WorkerCandidate, CacheEntry> | undefined = new Map();
  let rejected = 0;
  for (let i = 0; i < candidates.length; i += 1) {
    if (i % CHECK_EVERY === CHECK_EVERY - 1 && performance.now() - sliceStart >= sliceMs) {
      yield;
      sliceStart = performance.now();
    }
    const candidate = candidates[i] as WorkerCandidate;
    let worker = cache?.byUrl.get(candidate.url);
    if (worker === undefined || !sameAsCandidate(worker, candidate)) {
      let url: URL;
      try {
        url = new ImmutableUrl(candidate.url);
      } catch {
        rejected += 1;
        byCandidate = undefined;
        continue;
      }
      worker = freezeWorker(url, candidate);
    }
    byUrl.set(candidate.url, worker);
    if (byCandidate !== undefined) {
      if (byCandidate.has(candidate)) byCandidate = undefined;
      else byCandidate.set(candidate, { worker, stamp });
    }
    const href = worker.url.href;
    const existing = byHref.get(href);
    if (existing !== undefined) {
      byCandidate = undefined;
      if (existing.id <= worker.id) continue;
    }
    byHref.set(href, worker);
  }
  // The sort and the copies (≈ 4 ms at 10,000) start a slice of their own when this one was long.
  if (performance.now() - sliceStart >= sliceMs / 2) yield;
  const hrefs = [...byHref.keys()].sort();
  const workers = hrefs.map((href) => byHref.get(href) as Worker);
  const sorted = { workers, hrefs, urls: workers.map((w) => w.url) };
  const published = publish(sorted);
  return { ...published, rejected, cache: new WorkerCache(byUrl, byCandidate, sorted, published, candidates, stamp) };
}

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

/** The incremental build (see {@link buildWorkerSet}); undefined when a full build must be done. */
function buildIncremental(
  candidates: readonly WorkerCandidate[],
  cache: WorkerCache,
  edit: CandidateEdit | undefined,
): BuiltWorkerSet | undefined {
  const byCandidate = cache.byCandidate;
  if (byCandidate === undefined) return undefined;
  const stamp = (stamps += 1);
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

function freezeWorker(url: URL, c: WorkerCandidate): Worker {
  return Object.freeze({
    url,
    id: c.id,
    node: c.node,
    address: c.address,
    port: c.port,
    tags: Object.freeze([...c.tags]),
    meta: Object.freeze({ ...c.meta }),
    status: c.status,
    weight: c.weight,
  });
}

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
function sameAsCandidate(w: Comparable, c: Comparable): boolean {
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

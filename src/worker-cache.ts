/**
 * What one build of a source's worker set leaves for the next build of the same source
 * (`worker-set.ts` builds, `worker-set-incremental.ts` reuses): the frozen workers by
 * candidate, the sorted lists the next build slices, and the build's result type.
 */
import type { WorkerSet, Worker, WorkerDiff } from './snapshot.js';
import type { WorkerCandidate } from './source.js';

/**
 * A build's workers sorted by href, their hrefs (`hrefs[i] === workers[i].url.href`) and
 * URLs. Never changed once built, but not frozen: V8 slices a frozen array on a slow path
 * (much slower at 10,000 elements: docs/performance.md), and the next build is made of slices
 * of these.
 */
export interface SortedLists {
  readonly workers: readonly Worker[];
  readonly hrefs: readonly string[];
  readonly urls: readonly URL[];
}

/** Frozen copies of a build's sorted workers and URLs, as handed out. */
export function publish(sorted: SortedLists): WorkerCache['published'] {
  return { workers: Object.freeze(sorted.workers.slice()), urls: Object.freeze(sorted.urls.slice()) };
}

/** A candidate of the previous build and the worker it became; `stamp` = the last build that saw it. */
export interface CacheEntry {
  readonly worker: Worker;
  stamp: number;
}

/**
 * What a build leaves for the next build of the same source (opaque to callers): the frozen
 * workers by candidate URL string (an answer that repeats most of the previous one reuses
 * them: no URL parsing, no freezing, and an identity fast path in `diffWorkers`), and,
 * when the build had no duplicate URL and no rejected URL, the sorted result with its hrefs
 * and its workers by candidate object, which lets the next build be incremental (see
 * `buildWorkerSet` and `worker-set-incremental.ts`).
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

let stamps = 0;

/** A new build's stamp: larger than every earlier one (entries carry the last build that saw them). */
export function nextStamp(): number {
  stamps += 1;
  return stamps;
}

/** A candidate's published worker: frozen, with its own frozen copies of tags and meta. */
export function freezeWorker(url: URL, c: WorkerCandidate): Worker {
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

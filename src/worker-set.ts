/**
 * Building a published worker set from a source's candidates: frozen workers with parsed
 * URLs, deduplicated and sorted by URL (see `snapshot.ts` for the invariants), incrementally
 * when the source hands back the same candidate objects for unchanged entries (issue #13).
 */
import { ImmutableUrl } from './immutable-url.js';
import type { WorkerSet, Worker, WorkerDiff } from './snapshot.js';
import type { WorkerCandidate } from './source.js';

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
  /** The build's sorted workers and their hrefs (`hrefs[i] === workers[i].url.href`). */
  readonly workers: readonly Worker[];
  readonly hrefs: readonly string[];
  /** The build that made this cache; stamps of entries it saw. */
  readonly stamp: number;
  /** Set once a build took over the maps: they now belong to a newer cache. */
  spent = false;

  constructor(
    byUrl: Map<string, Worker>,
    byCandidate: Map<WorkerCandidate, CacheEntry> | undefined,
    workers: readonly Worker[],
    hrefs: readonly string[],
    stamp: number,
  ) {
    this.byUrl = byUrl;
    this.byCandidate = byCandidate;
    this.workers = workers;
    this.hrefs = hrefs;
    this.stamp = stamp;
  }
}

/** A worker set and the cache to pass to the next {@link buildWorkerSet} of the same source. */
export interface BuiltWorkerSet extends WorkerSet {
  readonly cache: WorkerCache;
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
 * by binary search on the hrefs. Whenever that cannot give exactly what a full build would
 * (a duplicate URL, a rejected URL, many changes) it is a full build.
 */
export function buildWorkerSet(candidates: readonly WorkerCandidate[], cache?: WorkerCache): BuiltWorkerSet {
  const usable = cache !== undefined && !cache.spent ? cache : undefined;
  const incremental = usable === undefined ? undefined : buildIncremental(candidates, usable);
  return incremental ?? buildFull(candidates, usable);
}

let stamps = 0;

function buildFull(candidates: readonly WorkerCandidate[], cache: WorkerCache | undefined): BuiltWorkerSet {
  const byHref = new Map<string, Worker>();
  const byUrl = new Map<string, Worker>();
  const stamp = (stamps += 1);
  let byCandidate: Map<WorkerCandidate, CacheEntry> | undefined = new Map();
  let rejected = 0;
  for (const candidate of candidates) {
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
  const hrefs = [...byHref.keys()].sort();
  const workers = hrefs.map((href) => byHref.get(href) as Worker);
  Object.freeze(workers);
  return { workers, rejected, cache: new WorkerCache(byUrl, byCandidate, workers, hrefs, stamp) };
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

/** The incremental build (see {@link buildWorkerSet}); undefined when a full build must be done. */
function buildIncremental(candidates: readonly WorkerCandidate[], cache: WorkerCache): BuiltWorkerSet | undefined {
  const byCandidate = cache.byCandidate;
  if (byCandidate === undefined) return undefined;
  const stamp = (stamps += 1);
  const limit = Math.max(16, Math.floor(candidates.length * INCREMENTAL_MAX_CHANGED));
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
  if (fresh.length === 0 && kept === byCandidate.size) {
    // The very same candidates: the very same workers.
    cache.spent = true;
    return {
      workers: cache.workers,
      rejected: 0,
      cache: new WorkerCache(cache.byUrl, byCandidate, cache.workers, cache.hrefs, stamp),
      changes: { from: cache.workers, diff: NO_CHANGES },
    };
  }
  if (byCandidate.size - kept + fresh.length > limit) return undefined;

  const { hrefs } = cache;
  const removedAt = new Set<number>();
  const removedEntries: [WorkerCandidate, Worker][] = [];
  for (const [candidate, entry] of kept === byCandidate.size ? [] : byCandidate) {
    if (entry.stamp === stamp) continue;
    const at = lowerBound(hrefs, entry.worker.url.href);
    if (cache.workers[at] !== entry.worker) return undefined;
    removedAt.add(at);
    removedEntries.push([candidate, entry.worker]);
  }
  const added: Added[] = [];
  for (const candidate of fresh) {
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

  // Merge: the previous sorted list without the removed, with the added at their places.
  const previous = cache.workers;
  const workers: Worker[] = [];
  const nextHrefs: string[] = [];
  let a = 0;
  for (let i = 0; i <= previous.length; i += 1) {
    while (a < added.length && (added[a] as Added).at === i) {
      const { worker, href } = added[a] as Added;
      workers.push(worker);
      nextHrefs.push(href);
      a += 1;
    }
    if (i < previous.length && !removedAt.has(i)) {
      workers.push(previous[i] as Worker);
      nextHrefs.push(hrefs[i] as string);
    }
  }
  Object.freeze(workers);

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
  for (const at of [...removedAt].sort((x, y) => x - y)) {
    if (!replaced.has(at)) diffRemoved.push(previous[at] as Worker);
  }

  // Commit: from here on the maps belong to the new cache.
  cache.spent = true;
  for (const [candidate, worker] of removedEntries) {
    byCandidate.delete(candidate);
    const byUrl = cache.byUrl.get(candidate.url);
    if (byUrl === worker) cache.byUrl.delete(candidate.url);
  }
  for (const { candidate, worker } of added) {
    byCandidate.set(candidate, { worker, stamp });
    cache.byUrl.set(candidate.url, worker);
  }
  return {
    workers,
    rejected: 0,
    cache: new WorkerCache(cache.byUrl, byCandidate, workers, nextHrefs, stamp),
    changes: { from: previous, diff: { added: diffAdded, removed: diffRemoved, updated: diffUpdated } },
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

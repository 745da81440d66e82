/**
 * Building a published worker set from a source's candidates: frozen workers with parsed
 * URLs, deduplicated and sorted by URL (see `snapshot.ts` for the invariants) — in one go,
 * in event-loop turns for a large first answer, or incrementally from the previous build
 * (`worker-set-incremental.ts`, for large answers: docs/performance.md).
 */
import { ImmutableUrl } from './immutable-url.js';
import type { Worker } from './snapshot.js';
import type { CandidateEdit, WorkerCandidate } from './source.js';
import { finishNow } from './event-loop-turns.js';
import { WorkerCache, freezeWorker, nextStamp, publish } from './worker-cache.js';
import type { BuiltWorkerSet, CacheEntry } from './worker-cache.js';
import { sameAsCandidate } from './worker-diff.js';
import { buildIncremental } from './worker-set-incremental.js';

/**
 * Turns source candidates into frozen, deduplicated, URL-sorted workers. The URL is parsed
 * once here; a candidate whose URL does not parse is counted in `rejected`, never thrown.
 * On duplicate URLs the candidate with the smallest id wins, so the result does not depend
 * on the order the source listed them in. With `cache` (from the previous build of the same
 * source), unchanged candidates reuse their frozen worker.
 *
 * Incremental path: a source that hands back the very candidate objects of its previous
 * answer for unchanged entries (the Consul source does, see `consul/health-incremental.ts`)
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
  const build = startBuild(candidates, cache, edit, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY);
  return build.set ?? finishNow(build.steps);
}

/**
 * A build that may need more than one event-loop turn ({@link startBuild}): either done, or
 * the steps of a full build, for `finishInTurns` (`event-loop-turns.ts`). Until the steps return, the
 * build changes nothing: its cache may still be given to {@link buildWorkerSet}.
 */
export type WorkerSetBuild =
  | { readonly set: BuiltWorkerSet; readonly steps?: undefined }
  | { readonly set?: undefined; readonly steps: Generator<void, BuiltWorkerSet> };

/**
 * {@link buildWorkerSet} for a caller that keeps its event loop free (the engine): an
 * incremental build (it costs what changed) and any build of fewer than `slicedFrom`
 * candidates are done at once; a full build of more (a source's first answer, whose cost grows
 * with its size: docs/performance.md, "Processing at 10,000 instances") comes back as steps
 * that yield whenever `sliceMs` of work were done. The result is exactly what
 * {@link buildWorkerSet} returns.
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
  const stamp = nextStamp();
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
  // The sort and the copies (several ms at 10,000) start a slice of their own when this one was long.
  if (performance.now() - sliceStart >= sliceMs / 2) yield;
  const hrefs = [...byHref.keys()].sort();
  const workers = hrefs.map((href) => byHref.get(href) as Worker);
  const sorted = { workers, hrefs, urls: workers.map((w) => w.url) };
  const published = publish(sorted);
  return { ...published, rejected, cache: new WorkerCache(byUrl, byCandidate, sorted, published, candidates, stamp) };
}

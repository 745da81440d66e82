/**
 * The immutable worker snapshot: what `getUrls()` and `snapshot()` hand out.
 *
 * Invariants (docs/design.md §3): a snapshot and everything reachable from it is frozen (URLs are
 * {@link ImmutableUrl}s, since `Object.freeze` cannot stop `URL` setters); workers
 * are deduplicated by URL and sorted by URL, so equal sets compare equal element by
 * element; `urls[i]` is `workers[i].url`. The engine swaps snapshots by reference in one
 * assignment, so a reader never observes a half-built state.
 */
import type { SourceKind, WorkerCandidate } from './source.js';

/**
 * A worker in a published snapshot: the fields a source reported (see {@link WorkerCandidate}:
 * `id`, `node`, `address`, `port`, `tags`, `meta`, `status`, `weight`), frozen, with the URL parsed.
 */
export interface Worker extends Omit<WorkerCandidate, 'url'> {
  /** Base URL of the worker (scheme, host, port), shared with `snapshot.urls`: an {@link ImmutableUrl} whose setters throw. */
  readonly url: URL;
}

/** An immutable, versioned view of the healthy workers. */
export interface WorkerSnapshot {
  /** Starts at 1 with the first publish and grows by exactly 1 per publish. 0 = nothing published yet. */
  readonly version: number;
  /** The source whose answer these workers came from. */
  readonly source: SourceKind;
  /** The workers, sorted by URL. */
  readonly workers: readonly Worker[];
  /** `workers.map(w => w.url)`, precomputed: `getUrls()` returns this very array. */
  readonly urls: readonly URL[];
  /** When this worker set was published (epoch milliseconds). */
  readonly updatedAt: number;
  /** When the snapshot's source last answered successfully (epoch milliseconds; 0 = never). */
  readonly lastContactAt: number;
  /** True when the source has not answered for longer than `maxStalenessMs`. The workers are still the last good ones. */
  readonly stale: boolean;
  /**
   * True while the mass-failure guard holds this set although the source reports far fewer
   * workers (see `massFailureGuard`).
   */
  readonly guarded: boolean;
  /** Consul's `X-Consul-Index` of the answer behind this set (Consul source only). */
  readonly consulIndex?: number;
}

/** The snapshot before anything was published: version 0, no workers, never throws on read. */
export const EMPTY_SNAPSHOT: WorkerSnapshot = Object.freeze({
  version: 0,
  source: 'static',
  workers: Object.freeze([]),
  urls: Object.freeze([]),
  updatedAt: 0,
  lastContactAt: 0,
  stale: false,
  guarded: false,
});

/** A worker set computed from a source answer, not yet published. */
export interface WorkerSet {
  readonly workers: readonly Worker[];
  /** Candidates dropped because their URL did not parse. */
  readonly rejected: number;
}

/** What changed between two worker sets, by URL. */
export interface WorkerDiff {
  /** Workers whose URL is new. */
  readonly added: readonly Worker[];
  /** Workers whose URL is gone. */
  readonly removed: readonly Worker[];
  /** Workers whose URL stayed but whose id, tags, meta, status or weight changed. */
  readonly updated: readonly Worker[];
}

/** Fields of a snapshot that the engine sets; `urls` is derived. */
export interface SnapshotFields {
  readonly version: number;
  readonly source: SourceKind;
  readonly workers: readonly Worker[];
  readonly updatedAt: number;
  readonly lastContactAt: number;
  readonly stale: boolean;
  readonly guarded: boolean;
  readonly consulIndex: number | undefined;
  /** Reuse this frozen URL array when the workers are unchanged (keeps `getUrls()` identity stable). */
  readonly urls?: readonly URL[];
}

/** Creates a frozen snapshot. */
export function makeSnapshot(fields: SnapshotFields): WorkerSnapshot {
  const urls = fields.urls ?? Object.freeze(fields.workers.map((w) => w.url));
  const base = {
    version: fields.version,
    source: fields.source,
    workers: fields.workers,
    urls,
    updatedAt: fields.updatedAt,
    lastContactAt: fields.lastContactAt,
    stale: fields.stale,
    guarded: fields.guarded,
  };
  return Object.freeze({
    ...base,
    ...(fields.consulIndex === undefined ? {} : { consulIndex: fields.consulIndex }),
  });
}

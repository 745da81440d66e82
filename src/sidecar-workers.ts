/**
 * The `/v1/workers` resource of the sidecar (docs/design.md §8): its query parameters, and its
 * answer as bytes. A snapshot's answer is serialised and UTF-8 encoded once, with its
 * headers, and the same bytes go to every response (see `sidecar.ts` for why); each worker's
 * JSON is kept with its frozen worker object, so an answer where one worker changed
 * stringifies that one.
 */
import { parseDuration } from './duration.js';
import type { Worker, WorkerSnapshot } from './snapshot.js';
import type { ConsulLeaderState } from './source.js';

/** Consul's default blocking wait. */
const DEFAULT_WAIT_MS = 300_000;
/** `index` and `wait` fit in far less; anything longer is not a request we serve. */
const MAX_QUERY_LENGTH = 256;
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** What a client is told to wait before asking again while no snapshot exists, in seconds. */
export const NOT_READY_RETRY_AFTER_S = 1;
/** The `/v1/workers` answer while no snapshot exists (the same for every request). */
export const NOT_READY_BODY = `${JSON.stringify({
  error: 'no worker snapshot yet: the resolver has not had a first answer from any source',
  code: 'ERR_NOT_READY',
  index: 0,
})}\n`;

/** `/v1/workers` for one snapshot, built once and sent to every poll it answers. */
export interface WorkersAnswer {
  readonly snapshot: WorkerSnapshot;
  /**
   * `consulLeader` as written in the body (it changes without a publish: a new value is a new
   * body, same index). Compared by content: a healthy cluster's checks keep the same bytes.
   */
  readonly leader: string;
  /** The JSON body, UTF-8. */
  readonly body: Buffer;
  /** Headers for `writeHead`, as a flat name/value list. */
  readonly headers: readonly string[];
}

/** The answer to `/v1/workers` for a snapshot of version ≥ 1 (before, the answer is a 503). */
export function workersAnswer(snapshot: WorkerSnapshot, leader: ConsulLeaderState | undefined): WorkersAnswer {
  const leaderJsonText = leaderText(leader);
  const body = Buffer.from(workersBody(snapshot, leaderJsonText));
  return {
    snapshot,
    leader: leaderJsonText,
    body,
    headers: [
      'Content-Type',
      JSON_CONTENT_TYPE,
      'Content-Length',
      String(body.length),
      'Cache-Control',
      'no-store',
      'X-Worker-Resolver-Index',
      String(snapshot.version),
    ],
  };
}

/**
 * Each worker's JSON in `/v1/workers`, by worker object. Workers are frozen and the engine
 * keeps the objects of unchanged workers from one snapshot to the next, so a body for 10,000
 * workers where one changed stringifies one worker and joins the rest (3 ms instead of 7.5 ms
 * on this machine); entries go with their workers.
 */
const workerJson = new WeakMap<Worker, string>();

function workerEntry(w: Worker): string {
  let json = workerJson.get(w);
  if (json === undefined) {
    json = JSON.stringify({ url: w.url.href, id: w.id, node: w.node, tags: w.tags, meta: w.meta, status: w.status });
    workerJson.set(w, json);
  }
  return json;
}

/**
 * `consulLeader` of the `/v1/workers` and `/readyz` bodies: `{"leader":"known"|"none"|"unknown",
 * "lastContactSeconds"}` — "no leader / last contact N s" during a quorum loss. No check time:
 * a healthy cluster's body stays byte-identical from one leader check to the next.
 */
export function leaderJson(leader: ConsulLeaderState): {
  leader: ConsulLeaderState['leader'];
  lastContactSeconds: number;
} {
  return { leader: leader.leader, lastContactSeconds: Math.round(leader.lastContactMs / 1000) };
}

/** `consulLeader` as the body writes it ('' when there is none), for comparing answers by content. */
export function leaderText(leader: ConsulLeaderState | undefined): string {
  return leader === undefined ? '' : JSON.stringify(leaderJson(leader));
}

/**
 * The JSON body of `/v1/workers`: `{"index","source","stale","updatedAt"[,"consulLeader"],"workers":[…]}`
 * and a newline (`consulLeader` once the resolver has a Consul leader state).
 */
function workersBody(s: WorkerSnapshot, leader: string): string {
  const head = JSON.stringify({
    index: s.version,
    source: s.source,
    stale: s.stale,
    updatedAt: new Date(s.updatedAt).toISOString(),
  });
  const consul = leader === '' ? '' : `,"consulLeader":${leader}`;
  return `${head.slice(0, -1)}${consul},"workers":[${s.workers.map(workerEntry).join(',')}]}\n`;
}

/** A rejected request parameter; becomes a 400. */
export class BadRequest extends Error {}

/** Parses `/v1/workers` parameters; `index` undefined = answer at once. */
export function parseWorkersQuery(search: string, maxWaitMs: number): { index: number | undefined; waitMs: number } {
  if (search.length > MAX_QUERY_LENGTH) throw new BadRequest(`query string longer than ${MAX_QUERY_LENGTH} bytes`);
  const params = new URLSearchParams(search);
  const seen = new Set<string>();
  for (const key of params.keys()) {
    if (key !== 'index' && key !== 'wait') throw new BadRequest(`unknown parameter "${key.slice(0, 40)}"`);
    if (seen.has(key)) throw new BadRequest(`parameter "${key}" given more than once`);
    seen.add(key);
  }
  const indexText = params.get('index');
  let index: number | undefined;
  if (indexText !== null) {
    index = /^\d{1,16}$/.test(indexText) ? Number(indexText) : Number.NaN;
    if (!Number.isSafeInteger(index)) throw new BadRequest('index must be a non-negative integer');
  }
  const waitText = params.get('wait');
  let waitMs = DEFAULT_WAIT_MS;
  if (waitText !== null) {
    const parsed = parseDuration(waitText);
    if (parsed === undefined) throw new BadRequest('wait must be a duration such as 300ms, 30s or 5m');
    // Consul: a zero wait means the default one, not "do not block".
    if (parsed > 0) waitMs = parsed;
  }
  return { index, waitMs: Math.min(waitMs, maxWaitMs) };
}

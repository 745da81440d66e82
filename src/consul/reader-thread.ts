/**
 * The Consul reader thread, main-thread side: health requests made, received, compared and
 * read in a `worker_threads` worker (`consul/reader-thread-entry.ts`), answered here as the same
 * values the in-thread reader produces (`consul/reader.ts`).
 *
 * ## Lifecycle
 * The thread starts on the first request and is kept (its parser holds the last
 * body); it is ref'd only while a request is in flight, so an idle reader never keeps the
 * process alive, and a held long poll does, as its socket would on the main thread.
 * `close()` terminates it. If it dies (an uncaught error, an exit), every pending request
 * ends with `ERR_CONSUL_READER` — the source backs off and keeps its last good set — and the
 * next request starts a new thread (which reads its first answer in full).
 *
 * ## Candidates
 * Candidates cross as runs (see the comment of `consul/reader-thread-entry.ts`): `last` holds the candidates of the
 * last answer read, so an unchanged entry is the same object on this side too, and the
 * answer carries its edit from `last` (what was removed, what was added) for the engine's
 * incremental build.
 */
import { Worker } from 'node:worker_threads';
import { answerHead } from './client.js';
import type { ConsulClientConfig, ConsulTlsOptions, HealthQuery } from './client.js';
import type { ConsulWorkerPolicy } from './health.js';
import type { ConsulReader, Head, ReadRequest, ReaderAnswer } from './reader.js';
import { ErrorCode, WorkerResolverError } from '../errors.js';
import type { ErrorCodeValue } from '../errors.js';
import type { CandidateEdit, WorkerCandidate } from '../source.js';

/** What the thread is started with. */
export interface ReaderData {
  readonly address: string;
  readonly token: string | undefined;
  readonly tls: ConsulTlsOptions | undefined;
  readonly maxResponseBytes: number;
  readonly policy: ConsulWorkerPolicy;
}

/** Main → thread. */
export type ReaderRequest =
  | {
      readonly type: 'health';
      readonly id: number;
      readonly query: HealthQuery;
      readonly index: number;
      readonly waitMs: number;
      readonly timeoutMs: number;
      readonly compareBody: boolean;
    }
  | { readonly type: 'abort'; readonly id: number }
  /** The main thread took a `fresh` message of this request: the thread may send the next. */
  | { readonly type: 'took'; readonly id: number }
  /** Read this body as the last one (the main thread holds its candidates, in order). */
  | { readonly type: 'prime'; readonly body: Uint8Array }
  | { readonly type: 'reset' }
  /** Tests: fail as a bug would, by throwing or by posting a reply that cannot be cloned. */
  | { readonly type: 'crash'; readonly how: 'throw' | 'unsendable' };

/** Thread → main. */
export type ReaderReply =
  | { readonly type: 'fresh'; readonly id: number; readonly fresh: readonly WorkerCandidate[] }
  | (Head & { readonly type: 'answer'; readonly id: number; readonly body: 'unread' })
  | (Head & { readonly type: 'answer'; readonly id: number; readonly body: 'same' })
  | (Head & {
      readonly type: 'answer';
      readonly id: number;
      readonly body: 'read';
      /**
       * The answer's candidates in order, as pairs (from, length): `length` candidates of the
       * previous answer read from position `from`, or, for `from` = -1, the next `length`
       * fresh candidates (those sent ahead in `fresh` messages, then this message's).
       */
      readonly runs: Int32Array;
      readonly fresh: readonly WorkerCandidate[];
      readonly rejected: number;
    })
  | {
      readonly type: 'error';
      readonly id: number;
      readonly code: string;
      readonly message: string;
      readonly status?: number;
      readonly retryAfterMs?: number;
      readonly reachedNoServer?: boolean;
    };

interface Pending {
  readonly resolve: (answer: ReaderAnswer | WorkerResolverError) => void;
  readonly onAbort: () => void;
  readonly signal: AbortSignal;
}

/**
 * Where the thread's code is: the compiled `.js` next to this file, or the source under tsx.
 * The thread gets none of the process's `execArgv`: it needs no flag, and some that are fine
 * for the process make a worker fail at start (`--input-type`, for one, is only valid with
 * `--eval`: a coordinator started with `node --input-type=module -e …` had a thread that
 * died at once).
 */
function startWorker(data: ReaderData): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    // Running from source (tests, benchmarks): tsx's hooks are per thread, so register them here.
    const entry = new URL('./reader-thread-entry.ts', here).href;
    const api = import.meta.resolve('tsx/esm/api');
    const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
    return new Worker(code, { eval: true, workerData: data, execArgv: [] });
  }
  return new Worker(new URL('./reader-thread-entry.js', here), { workerData: data, execArgv: [] });
}

/** The reader thread (see the file comment). */
export class ConsulReaderThread implements ConsulReader {
  private readonly data: ReaderData;
  /** The running thread; undefined before the first request, after a crash and after close(). */
  private worker: Worker | undefined;
  /** Requests sent and not yet answered, by id. */
  private readonly pending = new Map<number, Pending>();
  /** Candidates of the last answer read by the current thread, in its order. */
  private last: readonly WorkerCandidate[] = [];
  /**
   * Candidates sent ahead of their answer, by request id (a large first answer comes in
   * several messages); kept even if the request was aborted meanwhile, since the answer
   * still becomes `last`.
   */
  private readonly ahead = new Map<number, WorkerCandidate[]>();
  private nextId = 1;
  private closed = false;
  /** True once the thread answered anything: a thread that never did may not be able to start here. */
  answered = false;

  constructor(config: ConsulClientConfig, policy: ConsulWorkerPolicy) {
    this.data = {
      address: config.address.href,
      token: config.token,
      tls: config.tls,
      maxResponseBytes: config.maxResponseBytes,
      policy,
    };
  }

  /**
   * `GET /v1/health/service/:service` through the thread. Resolves (never rejects) with the
   * answer or its coded error; an abort resolves at once with an error (the thread drops the request).
   */
  health(query: HealthQuery, r: ReadRequest): Promise<ReaderAnswer | WorkerResolverError> {
    if (this.closed) {
      return Promise.resolve(new WorkerResolverError(ErrorCode.CONSUL_READER, 'the Consul reader thread is closed'));
    }
    const worker = this.ensure();
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.settle(id, new WorkerResolverError(ErrorCode.CONSUL_UNREACHABLE, 'Consul request aborted'));
        this.worker?.postMessage({ type: 'abort', id } satisfies ReaderRequest);
      };
      this.pending.set(id, { resolve, onAbort, signal: r.signal });
      r.signal.addEventListener('abort', onAbort, { once: true });
      worker.ref();
      worker.postMessage({
        type: 'health',
        id,
        query,
        index: r.index,
        waitMs: r.waitMs,
        timeoutMs: r.timeoutMs,
        compareBody: r.compareBody,
      } satisfies ReaderRequest);
      if (r.signal.aborted) onAbort();
    });
  }

  /**
   * Starts from a body another reader read, whose candidates (in order) this side already
   * holds: the thread parses it as its last body, so its next answer comes as runs over
   * `workers`. If the thread cannot read it, its next answer is simply all fresh.
   */
  prime(body: Buffer, workers: readonly WorkerCandidate[]): void {
    if (this.closed) return;
    const worker = this.ensure();
    this.last = workers;
    worker.postMessage({ type: 'prime', body } satisfies ReaderRequest);
  }

  /** Makes the thread forget its last body (the next answer is read in full). */
  reset(): void {
    this.worker?.postMessage({ type: 'reset' } satisfies ReaderRequest);
  }

  /** Tests: makes the thread fail as a bug in it would (see {@link ReaderRequest}). */
  crashForTests(how: 'throw' | 'unsendable' = 'throw'): void {
    this.worker?.postMessage({ type: 'crash', how } satisfies ReaderRequest);
  }

  /** Ends every pending request and terminates the thread. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    this.fail(new WorkerResolverError(ErrorCode.CONSUL_READER, 'the Consul reader thread is closed'));
    if (worker !== undefined) await worker.terminate();
  }

  private ensure(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = startWorker(this.data);
    worker.unref();
    this.last = [];
    this.ahead.clear();
    worker.on('message', (m: ReaderReply) => this.onMessage(m));
    const lost = (why: string): void => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.fail(new WorkerResolverError(ErrorCode.CONSUL_READER, `the Consul reader thread stopped (${why})`));
    };
    worker.on('error', (err: Error) => lost(err.message));
    worker.on('exit', (code) => lost(`exit code ${code}`));
    this.worker = worker;
    return worker;
  }

  private fail(error: WorkerResolverError): void {
    for (const id of [...this.pending.keys()]) this.settle(id, error);
  }

  private settle(id: number, value: ReaderAnswer | WorkerResolverError): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    p.signal.removeEventListener('abort', p.onAbort);
    if (this.pending.size === 0) this.worker?.unref();
    p.resolve(value);
  }

  private onMessage(m: ReaderReply): void {
    this.answered = true;
    if (m.type === 'fresh') {
      this.worker?.postMessage({ type: 'took', id: m.id } satisfies ReaderRequest);
      const ahead = this.ahead.get(m.id);
      if (ahead === undefined) this.ahead.set(m.id, [...m.fresh]);
      else ahead.push(...m.fresh);
      return;
    }
    const ahead = this.ahead.get(m.id);
    this.ahead.delete(m.id);
    if (m.type === 'error') {
      const details = {
        ...(m.status === undefined ? {} : { status: m.status }),
        ...(m.retryAfterMs === undefined ? {} : { retryAfterMs: m.retryAfterMs }),
        ...(m.reachedNoServer === true ? { reachedNoServer: true } : {}),
      };
      return this.settle(m.id, new WorkerResolverError(m.code as ErrorCodeValue, m.message, details));
    }
    const head: Head = answerHead(m);
    if (m.body === 'unread') return this.settle(m.id, { ...head, body: 'unread' });
    if (m.body === 'same') return this.settle(m.id, { ...head, body: 'same' });
    // The thread read this body: its candidates are now the reference, whether or not this
    // request is still wanted.
    const fresh = ahead === undefined ? m.fresh : ahead.concat(m.fresh);
    const read = applyRuns(this.last, m.runs, fresh);
    if (read === undefined) {
      // Cannot happen with one thread; if it did, the two sides are out of step: start over.
      this.reset();
      this.last = [];
      return this.settle(
        m.id,
        new WorkerResolverError(ErrorCode.CONSUL_READER, 'the Consul reader thread referred to an unknown entry'),
      );
    }
    this.last = read.workers;
    this.settle(m.id, {
      ...head,
      body: 'read',
      workers: read.workers,
      rejected: m.rejected,
      ...(read.edit === undefined ? {} : { edit: read.edit }),
    });
  }
}

/**
 * Rebuilds an answer from its runs over `last` (see {@link ReaderReply}) with slices, and
 * its edit from `last` when the runs copy no entry of `last` twice (otherwise the engine
 * finds the changes itself). Undefined if the runs do not fit `last` and `fresh`.
 */
export function applyRuns(
  last: readonly WorkerCandidate[],
  runs: Int32Array,
  fresh: readonly WorkerCandidate[],
): { workers: WorkerCandidate[]; edit: CandidateEdit | undefined } | undefined {
  const parts: (readonly WorkerCandidate[])[] = [];
  const copied = new Uint8Array(last.length);
  let overlap = false;
  let next = 0;
  for (let r = 0; r + 1 < runs.length; r += 2) {
    const from = runs[r] as number;
    const length = runs[r + 1] as number;
    if (length <= 0) return undefined;
    if (from === -1) {
      if (next + length > fresh.length) return undefined;
      parts.push(fresh.slice(next, next + length));
      next += length;
    } else {
      if (from < 0 || from + length > last.length) return undefined;
      parts.push(last.slice(from, from + length));
      if (copied.subarray(from, from + length).includes(1)) overlap = true;
      copied.fill(1, from, from + length);
    }
  }
  if (next !== fresh.length || runs.length % 2 !== 0) return undefined;
  const workers = parts.length === 1 ? (parts[0] as WorkerCandidate[]) : ([] as WorkerCandidate[]).concat(...parts);
  if (overlap) return { workers, edit: undefined };
  const removed: WorkerCandidate[] = [];
  for (let at = copied.indexOf(0); at !== -1; at = copied.indexOf(0, at + 1)) removed.push(last[at] as WorkerCandidate);
  return { workers, edit: { from: last, removed, added: fresh } };
}

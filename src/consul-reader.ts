/**
 * Reading Consul health answers: one request, its body compared with the last one used and
 * read incrementally, as a value ({@link ReaderAnswer} or a coded error). Two readers with the
 * same results: {@link InThreadConsulReader} (the default: the HTTP client and the parser on
 * the event loop, reading in turns of at most 5 ms) and {@link ConsulReadThread}
 * (`consul.readInThread`: all of it in a `worker_threads` worker, `consul-read-worker.ts`).
 *
 * The thread: health requests are made, received, compared and read there, and answered here
 * as the same values the in-thread reader produces.
 *
 * Lifecycle: the thread starts on the first request and is kept (its parser holds the last
 * body); it is ref'd only while a request is in flight, so an idle reader never keeps the
 * process alive, and a held long poll does, as its socket would on the main thread.
 * `close()` terminates it. If it dies (an uncaught error, an exit), every pending request
 * ends with `ERR_CONSUL_READER` — the source backs off and keeps its last good set — and the
 * next request starts a new thread (which reads its first answer in full).
 *
 * Candidates cross as ids (see the worker's comment): `known` holds the candidates of the
 * last answer read, so an unchanged entry is the same object on this side too.
 */
import { Worker } from 'node:worker_threads';
import { ConsulHealthClient } from './consul-client.js';
import type { ConsulClientConfig, ConsulTlsOptions, HealthQuery } from './consul-client.js';
import type { ConsulWorkerPolicy } from './consul-health.js';
import { IncrementalHealthParser } from './consul-health-incremental.js';
import { ErrorCode, WorkerResolverError } from './errors.js';
import type { ErrorCodeValue } from './errors.js';
import type { WorkerCandidate } from './source.js';

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
  | { readonly type: 'reset' }
  | { readonly type: 'crash' };

interface Head {
  readonly index: number | undefined;
  readonly knownLeader: boolean | undefined;
  readonly lastContactMs: number | undefined;
  readonly filteredByAcls: boolean;
}

/** Thread → main. */
export type ReaderReply =
  | { readonly type: 'fresh'; readonly id: number; readonly fresh: readonly [number, WorkerCandidate][] }
  | (Head & { readonly type: 'answer'; readonly id: number; readonly body: 'unread' })
  | (Head & { readonly type: 'answer'; readonly id: number; readonly body: 'same' })
  | (Head & {
      readonly type: 'answer';
      readonly id: number;
      readonly body: 'read';
      readonly order: Int32Array;
      readonly fresh: readonly [number, WorkerCandidate][];
      /** Ids of the previous answer read that this one no longer has. */
      readonly removed: Int32Array;
      readonly rejected: number;
    })
  | {
      readonly type: 'error';
      readonly id: number;
      readonly code: string;
      readonly message: string;
      readonly status?: number;
      readonly retryAfterMs?: number;
    };

/** One answer as the source uses it. */
export type ReaderAnswer = Head &
  (
    | { readonly body: 'unread' }
    | { readonly body: 'same' }
    | { readonly body: 'read'; readonly workers: WorkerCandidate[]; readonly rejected: number }
  );

/** One request's settings. */
export interface ReadRequest {
  /** Blocking index; 0 = answer at once. */
  readonly index: number;
  readonly waitMs: number;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  /** Report a body byte-identical to the last one read as `same` (not for a leader re-read). */
  readonly compareBody: boolean;
}

/** What reads Consul's answers for a {@link ConsulSource}: one instance per running loop. */
export interface ConsulReader {
  /**
   * One request. Resolves (never rejects) with the answer or its coded error. An answer is
   * left `unread` when it has no index, is ACL-filtered, or its index did not move.
   */
  health(query: HealthQuery, r: ReadRequest): Promise<ReaderAnswer | WorkerResolverError>;
  /** Forget the last body (after a read whose answer was not used). */
  reset(): void;
  /** Releases sockets (and the thread). Idempotent. */
  close(): Promise<void>;
}

/** Longest stretch of body reading done in one event-loop turn by the in-thread reader, in ms. */
const READ_SLICE_MS = 5;

/** The default reader: the HTTP client and the incremental parser on the event loop. */
export class InThreadConsulReader implements ConsulReader {
  private readonly client: ConsulHealthClient;
  /** Holds the last body read, so the next one is compared, not re-parsed. */
  private readonly parser: IncrementalHealthParser;
  /** Size of the last 2xx body received, in bytes. */
  lastBodyBytes = 0;

  constructor(client: ConsulHealthClient, policy: ConsulWorkerPolicy) {
    this.client = client;
    this.parser = new IncrementalHealthParser(policy);
  }

  async health(query: HealthQuery, r: ReadRequest): Promise<ReaderAnswer | WorkerResolverError> {
    let response;
    try {
      response = await this.client.healthService(query, r);
    } catch (err) {
      return err instanceof WorkerResolverError
        ? err
        : new WorkerResolverError(ErrorCode.CONSUL_UNREACHABLE, 'Consul request failed', { cause: err });
    }
    this.lastBodyBytes = response.body.length;
    const head: Head = {
      index: response.index,
      knownLeader: response.knownLeader,
      lastContactMs: response.lastContactMs,
      filteredByAcls: response.filteredByAcls,
    };
    if (
      response.index === undefined ||
      response.filteredByAcls ||
      (r.index > 0 && Math.max(1, response.index) === r.index)
    ) {
      return { ...head, body: 'unread' };
    }
    if (r.compareBody && this.parser.isLastBody(response.body)) return { ...head, body: 'same' };
    try {
      const parsed = await this.parser.parseChunked(response.body, READ_SLICE_MS, r.signal);
      if (parsed === undefined) {
        return new WorkerResolverError(ErrorCode.CONSUL_UNREACHABLE, 'Consul request aborted while reading its answer');
      }
      return { ...head, body: 'read', workers: parsed.workers, rejected: parsed.rejected };
    } catch (err) {
      return err as WorkerResolverError;
    }
  }

  reset(): void {
    this.parser.reset();
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }
}

interface Pending {
  readonly resolve: (answer: ReaderAnswer | WorkerResolverError) => void;
  /** Candidates received ahead of the answer (a large first answer comes in several messages). */
  readonly fresh: Map<number, WorkerCandidate>;
  readonly onAbort: () => void;
  readonly signal: AbortSignal;
}

/** Where the thread's code is: the compiled `.js` next to this file, or the source under tsx. */
function startWorker(data: ReaderData): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    // Running from source (tests, benchmarks): tsx's hooks are per thread, so register them here.
    const entry = new URL('./consul-read-worker.ts', here).href;
    const api = import.meta.resolve('tsx/esm/api');
    const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
    return new Worker(code, { eval: true, workerData: data });
  }
  return new Worker(new URL('./consul-read-worker.js', here), { workerData: data });
}

/** The reader thread (see the file comment). */
export class ConsulReadThread implements ConsulReader {
  private readonly data: ReaderData;
  /** The running thread; undefined before the first request, after a crash and after close(). */
  private worker: Worker | undefined;
  /** Requests sent and not yet answered, by id. */
  private readonly pending = new Map<number, Pending>();
  /** Candidates of the last answer read by the current thread, by the thread's ids. */
  private known = new Map<number, WorkerCandidate>();
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
      this.pending.set(id, { resolve, fresh: new Map(), onAbort, signal: r.signal });
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

  /** Makes the thread forget its last body (the next answer is read in full). */
  reset(): void {
    this.worker?.postMessage({ type: 'reset' } satisfies ReaderRequest);
  }

  /** Tests: makes the thread throw, as a bug in it would. */
  crashForTests(): void {
    this.worker?.postMessage({ type: 'crash' } satisfies ReaderRequest);
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
    this.known = new Map();
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
    const p = this.pending.get(m.id);
    if (m.type === 'fresh') {
      if (p !== undefined) for (const [id, c] of m.fresh) p.fresh.set(id, c);
      else for (const [id, c] of m.fresh) this.known.set(id, c);
      return;
    }
    if (m.type === 'error') {
      const details = {
        ...(m.status === undefined ? {} : { status: m.status }),
        ...(m.retryAfterMs === undefined ? {} : { retryAfterMs: m.retryAfterMs }),
      };
      return this.settle(m.id, new WorkerResolverError(m.code as ErrorCodeValue, m.message, details));
    }
    const head: Head = {
      index: m.index,
      knownLeader: m.knownLeader,
      lastContactMs: m.lastContactMs,
      filteredByAcls: m.filteredByAcls,
    };
    if (m.body === 'unread') return this.settle(m.id, { ...head, body: 'unread' });
    if (m.body === 'same') return this.settle(m.id, { ...head, body: 'same' });
    // The thread read this body: its candidates are now the reference, whether or not this
    // request is still wanted. `known` is updated in place (no per-answer map of 10,000).
    const known = this.known;
    if (p !== undefined) for (const [id, c] of p.fresh) known.set(id, c);
    for (const [id, c] of m.fresh) known.set(id, c);
    for (const id of m.removed) known.delete(id);
    const workers: WorkerCandidate[] = new Array<WorkerCandidate>(m.order.length);
    for (let i = 0; i < m.order.length; i += 1) {
      const c = known.get(m.order[i] as number);
      if (c === undefined) {
        // Cannot happen with one thread; if it did, the ids are out of step: start over.
        this.reset();
        this.known = new Map();
        return this.settle(
          m.id,
          new WorkerResolverError(ErrorCode.CONSUL_READER, 'the Consul reader thread referred to an unknown entry'),
        );
      }
      workers[i] = c;
    }
    this.settle(m.id, { ...head, body: 'read', workers, rejected: m.rejected });
  }
}

/**
 * `readInThread: 'auto'` (the default): the in-thread reader until an answer of at least
 * `thresholdBytes` arrives, then the thread for the rest of the loop. Small services pay no
 * thread; a service whose answers are megabytes keeps its buffers and their collections off
 * the event loop. If the thread cannot start here (it fails before its first answer), the
 * loop goes back to the in-thread reader for good.
 */
export class AutoConsulReader implements ConsulReader {
  private readonly config: ConsulClientConfig;
  private readonly policy: ConsulWorkerPolicy;
  private readonly thresholdBytes: number;
  /** The in-thread reader; undefined while the thread reads. */
  private local: InThreadConsulReader | undefined;
  /** The thread; undefined until an answer reached the threshold, and after it failed to start. */
  private thread: ConsulReadThread | undefined;
  /** Set when the thread failed before its first answer: never try it again in this loop. */
  private threadUnusable = false;

  constructor(config: ConsulClientConfig, policy: ConsulWorkerPolicy, thresholdBytes: number) {
    this.config = config;
    this.policy = policy;
    this.thresholdBytes = thresholdBytes;
    this.local = new InThreadConsulReader(new ConsulHealthClient(config), policy);
  }

  /** Which reader answers the next request (tests, benchmarks). */
  get mode(): 'in-thread' | 'thread' {
    return this.thread === undefined ? 'in-thread' : 'thread';
  }

  async health(query: HealthQuery, r: ReadRequest): Promise<ReaderAnswer | WorkerResolverError> {
    const thread = this.thread;
    if (thread !== undefined) {
      const answer = await thread.health(query, r);
      if (answer instanceof WorkerResolverError && answer.code === ErrorCode.CONSUL_READER && !thread.answered) {
        this.threadUnusable = true;
        this.thread = undefined;
        void thread.close();
        this.local = new InThreadConsulReader(new ConsulHealthClient(this.config), this.policy);
      }
      return answer;
    }
    const local = this.local as InThreadConsulReader;
    const answer = await local.health(query, r);
    if (!this.threadUnusable && local.lastBodyBytes >= this.thresholdBytes && !r.signal.aborted) {
      // No request is in flight (the loop is sequential): hand over. The thread reads its
      // first answer in full, so the next answer is a full read once.
      this.thread = new ConsulReadThread(this.config, this.policy);
      this.local = undefined;
      await local.close();
    }
    return answer;
  }

  reset(): void {
    this.local?.reset();
    this.thread?.reset();
  }

  async close(): Promise<void> {
    await this.local?.close();
    await this.thread?.close();
  }
}

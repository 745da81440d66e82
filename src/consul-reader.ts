/**
 * Reading Consul health answers: one request, its body compared with the last one used and
 * read incrementally, as a value ({@link ReaderAnswer} or a coded error). Readers with the
 * same results: {@link InThreadConsulReader} (the HTTP client and the parser on the event
 * loop, reading in turns of at most 5 ms), `ConsulReadThread` (`consul-read-thread.ts`: all
 * of it in a `worker_threads` worker) and {@link AutoConsulReader} (the default: in-thread
 * until an answer of 1 MiB, then the thread).
 */
import { ConsulHealthClient, answerHead, leaveUnread } from './consul-client.js';
import type { AnswerHead, ConsulClientConfig, HealthQuery } from './consul-client.js';
import type { ConsulWorkerPolicy } from './consul-health.js';
import { IncrementalHealthParser } from './consul-health-incremental.js';
import { ConsulReadThread } from './consul-read-thread.js';
import { ErrorCode, WorkerResolverError } from './errors.js';
import type { CandidateEdit, WorkerCandidate } from './source.js';

/** The headers every answer carries. */
export type Head = AnswerHead;

/** One answer as the source uses it. */
export type ReaderAnswer = Head &
  (
    | { readonly body: 'unread' }
    | { readonly body: 'same' }
    | {
        readonly body: 'read';
        readonly workers: WorkerCandidate[];
        readonly rejected: number;
        /** From the reader thread: the answer as an edit of the previous one read. */
        readonly edit?: CandidateEdit;
      }
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
  /** The last body read and the candidates read from it (what a thread taking over starts from). */
  lastRead: { readonly body: Buffer; readonly workers: readonly WorkerCandidate[] } | undefined;

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
    const head = answerHead(response);
    if (leaveUnread(head, r.index)) return { ...head, body: 'unread' };
    if (r.compareBody && this.parser.isLastBody(response.body)) return { ...head, body: 'same' };
    try {
      const parsed = await this.parser.parseChunked(response.body, READ_SLICE_MS, r.signal);
      if (parsed === undefined) {
        return new WorkerResolverError(ErrorCode.CONSUL_UNREACHABLE, 'Consul request aborted while reading its answer');
      }
      this.lastRead = { body: response.body, workers: parsed.workers };
      return { ...head, body: 'read', workers: parsed.workers, rejected: parsed.rejected };
    } catch (err) {
      return err as WorkerResolverError;
    }
  }

  reset(): void {
    this.parser.reset();
    this.lastRead = undefined;
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
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
      // No request is in flight (the loop is sequential): hand over, with the last body and
      // its candidates, so the thread's first answer is an edit of them like any other (not
      // a full read, and not a full build on this thread).
      this.thread = new ConsulReadThread(this.config, this.policy);
      if (local.lastRead !== undefined) this.thread.prime(local.lastRead.body, local.lastRead.workers);
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

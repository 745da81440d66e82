/**
 * Reading Consul health answers: one request, its body compared with the last one used and
 * read incrementally, as a value ({@link ReaderAnswer} or a coded error). Readers with the
 * same results: {@link InThreadConsulReader} (the HTTP client and the parser on the event
 * loop, reading in turns of at most 5 ms), `ConsulReaderThread` (`consul/reader-thread.ts`: all
 * of it in a `worker_threads` worker) and `AutoConsulReader` (`consul/reader-auto.ts`, the
 * default: in-thread until an answer of 1 MiB, then the thread).
 */
import { answerHead, leaveUnread } from './client.js';
import type { AnswerHead, ConsulHealthClient, HealthQuery } from './client.js';
import type { ConsulWorkerPolicy } from './health.js';
import { IncrementalHealthParser } from './health-incremental.js';
import { ErrorCode, WorkerResolverError } from '../errors.js';
import type { CandidateEdit, WorkerCandidate } from '../source.js';

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

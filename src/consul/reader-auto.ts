/**
 * The default Consul reader (`consul.readInThread: 'auto'`): {@link InThreadConsulReader}
 * until an answer of 1 MiB, then `ConsulReaderThread`, handed the last body so it goes on from
 * there. Its own file so the two readers do not import each other.
 */
import { ConsulHealthClient } from './client.js';
import type { ConsulClientConfig, HealthQuery } from './client.js';
import type { ConsulWorkerPolicy } from './health.js';
import { ConsulReaderThread } from './reader-thread.js';
import { InThreadConsulReader } from './reader.js';
import type { ConsulReader, ReadRequest, ReaderAnswer } from './reader.js';
import { ErrorCode, WorkerResolverError } from '../errors.js';

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
  private thread: ConsulReaderThread | undefined;
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
      this.thread = new ConsulReaderThread(this.config, this.policy);
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

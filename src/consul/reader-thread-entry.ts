/**
 * The body of the Consul reader thread (see `consul/reader-thread.ts`): it makes the health
 * requests, receives their bodies, compares them with the last one and reads what changed,
 * and posts back only what the main thread needs: the answer as runs over the previous
 * answer read (see `runs` in `consul/reader-thread.ts`) and the candidates it does not have.
 *
 * Why a thread: receiving a 10 MiB body allocates ~20 MiB outside the V8 heap (the HTTP
 * chunks, then their concatenation). On the main thread that external-memory pressure makes
 * V8 mark-compact the whole heap every few answers, and those pauses, not the reading, were
 * the longest event-loop stalls at 10,000 instances. Here they happen in this isolate's own
 * heap and GC.
 *
 * Runs: the incremental reader reuses the candidate object of an unchanged entry, so the
 * position of each candidate in the previous answer (`lastPosition`) says which of the main
 * thread's objects it is. An answer where one entry changed is then three runs and one
 * candidate, whatever the number of instances, and the main thread's work per answer is
 * proportional to what changed (large answers, docs/performance.md).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ConsulHealthClient, answerHead, leaveUnread } from './client.js';
import type { HealthQuery } from './client.js';
import { IncrementalHealthParser } from './health-incremental.js';
import type { ReaderData, ReaderReply, ReaderRequest } from './reader-thread.js';
import { isWorkerResolverError } from '../errors.js';
import type { WorkerCandidate } from '../source.js';

/**
 * Candidates sent per message: bounds the main thread's deserialising turn (a first answer of
 * 10,000 is many messages; docs/performance.md). The next message goes once the main thread took the last one
 * (`took`): Node's MessagePort hands every queued message over in one turn, so ten queued
 * messages would be one 40 ms turn again.
 */
const FRESH_PER_MESSAGE = 1_000;

const port = parentPort;
const data = workerData as ReaderData;
if (port === null) throw new Error('consul reader thread: must run as a worker thread');

const client = new ConsulHealthClient({
  address: new URL(data.address),
  token: data.token,
  tls: data.tls,
  maxResponseBytes: data.maxResponseBytes,
});
const parser = new IncrementalHealthParser(data.policy);
/** Positions of the candidates of the last answer posted (what the main thread holds). */
let lastPosition = new Map<WorkerCandidate, number>();
const inFlight = new Map<number, AbortController>();
/** Every reply goes out through this chain, in order: an answer's fresh batches wait for `took`. */
let outbox = Promise.resolve();
/** Resolvers of the batch the main thread has not taken yet, by request id. */
const taken = new Map<number, () => void>();

/** Appends a step to the reply chain; a step that fails ends the thread ({@link die}). */
function enqueue(step: () => void | Promise<void>): void {
  outbox = outbox.then(step).catch(die);
}

function send(reply: ReaderReply): void {
  enqueue(() => port?.postMessage(reply));
}

/**
 * A reply that cannot be posted (it would be a bug: replies are plain data) would otherwise
 * reject the chain and silence the thread for good, its requests never answered. Thrown out
 * of the chain instead, it ends the thread, which the main thread handles as any crash:
 * `ERR_CONSUL_READER` for every pending request, and a new thread for the next one.
 */
function die(err: unknown): void {
  queueMicrotask(() => {
    throw err;
  });
}

/** Sends `fresh` ahead of its answer and holds the replies behind it until the main thread took it. */
function sendFresh(id: number, fresh: readonly WorkerCandidate[]): void {
  enqueue(
    () =>
      new Promise<void>((resolve) => {
        taken.set(id, resolve);
        port?.postMessage({ type: 'fresh', id, fresh } satisfies ReaderReply);
      }),
  );
}

async function health(id: number, query: HealthQuery, m: Extract<ReaderRequest, { type: 'health' }>): Promise<void> {
  const abort = new AbortController();
  inFlight.set(id, abort);
  try {
    const r = await client.healthService(query, {
      index: m.index,
      waitMs: m.waitMs,
      timeoutMs: m.timeoutMs,
      signal: abort.signal,
    });
    const head = answerHead(r);
    if (leaveUnread(head, m.index)) return send({ type: 'answer', id, ...head, body: 'unread' });
    if (m.compareBody && parser.isLastBody(r.body)) return send({ type: 'answer', id, ...head, body: 'same' });
    const parsed = parser.parse(r.body);
    const position = new Map<WorkerCandidate, number>();
    const runs: number[] = [];
    let fresh: WorkerCandidate[] = [];
    // The current run: from position `runFrom` of the last answer (-1: fresh candidates), `runLength` long.
    let runFrom = -1;
    let runLength = 0;
    for (let i = 0; i < parsed.workers.length; i += 1) {
      const c = parsed.workers[i] as WorkerCandidate;
      position.set(c, i);
      const at = lastPosition.get(c) ?? -1;
      if (runLength > 0 && (at === -1 ? runFrom === -1 : runFrom !== -1 && runFrom + runLength === at)) {
        runLength += 1;
      } else {
        if (runLength > 0) runs.push(runFrom, runLength);
        runFrom = at;
        runLength = 1;
      }
      if (at === -1) {
        fresh.push(c);
        if (fresh.length === FRESH_PER_MESSAGE) {
          sendFresh(id, fresh);
          fresh = [];
        }
      }
    }
    if (runLength > 0) runs.push(runFrom, runLength);
    lastPosition = position;
    send({ type: 'answer', id, ...head, body: 'read', runs: Int32Array.from(runs), fresh, rejected: parsed.rejected });
  } catch (err) {
    const e = isWorkerResolverError(err)
      ? err
      : { code: 'ERR_CONSUL_UNREACHABLE', message: `Consul request failed: ${String(err)}` };
    send({
      type: 'error',
      id,
      code: e.code,
      message: e.message,
      ...('status' in e && e.status !== undefined ? { status: e.status } : {}),
      ...('retryAfterMs' in e && e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}),
      ...('reachedNoServer' in e && e.reachedNoServer ? { reachedNoServer: true } : {}),
    });
  } finally {
    inFlight.delete(id);
  }
}

port.on('message', (m: ReaderRequest) => {
  if (m.type === 'health') void health(m.id, m.query, m);
  else if (m.type === 'abort') inFlight.get(m.id)?.abort();
  else if (m.type === 'took') {
    taken.get(m.id)?.();
    taken.delete(m.id);
  } else if (m.type === 'prime') {
    // The main thread holds the candidates of this body in order: position i is entry i.
    try {
      const parsed = parser.parse(Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength));
      lastPosition = new Map(parsed.workers.map((c, i) => [c, i]));
    } catch {
      parser.reset();
      lastPosition = new Map();
    }
  } else if (m.type === 'reset') {
    parser.reset();
    lastPosition = new Map();
  } else if (m.type === 'crash') {
    if (m.how === 'throw') throw new Error('consul reader thread: crash requested (tests)');
    // A reply postMessage cannot clone, as a bug in building one would make.
    send({ type: 'error', id: 0, code: 'ERR_CONSUL_READER', message: 'unsendable', status: die as unknown as number });
  }
});

/**
 * The body of the Consul reader thread (see `consul-read-thread.ts`): it makes the health
 * requests, receives their bodies, compares them with the last one and reads what changed,
 * and posts back only what the main thread needs — the order of the answer's candidates as
 * ids, and the candidates it has not sent before.
 *
 * Why a thread: receiving a 10 MiB body allocates ~20 MiB outside the V8 heap (the HTTP
 * chunks, then their concatenation). On the main thread that external-memory pressure makes
 * V8 mark-compact the whole heap every few answers, and those pauses, not the reading, were
 * the longest event-loop stalls at 10,000 instances. Here they happen in this isolate's own
 * heap and GC.
 *
 * Ids: a candidate object is reused by the incremental reader for an unchanged entry, so it
 * keeps its id (a WeakMap from candidate to id); the main thread keeps the candidates of the
 * last answer by id and thereby hands the engine the same objects, which keeps its build
 * incremental.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ConsulHealthClient, answerHead, leaveUnread } from './consul-client.js';
import type { HealthQuery } from './consul-client.js';
import { IncrementalHealthParser } from './consul-health-incremental.js';
import type { ReaderData, ReaderReply, ReaderRequest } from './consul-read-thread.js';
import { isWorkerResolverError } from './errors.js';
import type { WorkerCandidate } from './source.js';

/** Candidates sent per message: bounds the main thread's deserialising turn (a first answer of 10,000). */
const FRESH_PER_MESSAGE = 1_000;

const port = parentPort;
const data = workerData as ReaderData;
if (port === null) throw new Error('consul-read-worker: must run as a worker thread');

const client = new ConsulHealthClient({
  address: new URL(data.address),
  token: data.token,
  tls: data.tls,
  maxResponseBytes: data.maxResponseBytes,
});
const parser = new IncrementalHealthParser(data.policy);
const ids = new WeakMap<WorkerCandidate, number>();
let nextId = 1;
/** Ids of the last answer posted: what the main thread holds. */
let lastIds = new Set<number>();
const inFlight = new Map<number, AbortController>();

function send(reply: ReaderReply): void {
  port?.postMessage(reply);
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
    const order = new Int32Array(parsed.workers.length);
    let fresh: [number, WorkerCandidate][] = [];
    for (let i = 0; i < parsed.workers.length; i += 1) {
      const c = parsed.workers[i] as WorkerCandidate;
      let cid = ids.get(c);
      if (cid === undefined) {
        cid = nextId;
        nextId += 1;
        ids.set(c, cid);
        fresh.push([cid, c]);
        if (fresh.length === FRESH_PER_MESSAGE) {
          send({ type: 'fresh', id, fresh });
          fresh = [];
        }
      }
      order[i] = cid;
    }
    // What the main thread can drop: ids of the last answer that this one no longer has.
    const now = new Set(order);
    const removed: number[] = [];
    for (const old of lastIds) if (!now.has(old)) removed.push(old);
    lastIds = now;
    send({
      type: 'answer',
      id,
      ...head,
      body: 'read',
      order,
      fresh,
      removed: Int32Array.from(removed),
      rejected: parsed.rejected,
    });
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
    });
  } finally {
    inFlight.delete(id);
  }
}

port.on('message', (m: ReaderRequest) => {
  if (m.type === 'health') void health(m.id, m.query, m);
  else if (m.type === 'abort') inFlight.get(m.id)?.abort();
  else if (m.type === 'reset') parser.reset();
  else if (m.type === 'crash') throw new Error('consul-read-worker: crash requested (tests)');
});

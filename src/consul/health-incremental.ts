/**
 * An incremental reader of `GET /v1/health/service/:service` bodies: it keeps the previous
 * body and re-parses only the entries whose bytes changed, giving the same candidates (or the
 * same coded error) as the whole-body parser of `consul/health.ts`.
 *
 * ## Why
 * A blocking query answers the whole service every time one instance changes, so an answer
 * of 10,000 instances (about 10 MiB) is 9,999 entries that are byte-for-byte the ones of the
 * previous answer (Consul encodes each entry the same way every time, in a stable order) and
 * one that is not. Comparing bytes costs a small fraction of parsing the whole body on the
 * event loop (figures: docs/performance.md, "Processing at 10,000 instances").
 *
 * ## How
 * The body is read as the JSON array it must be. At each element the previous answer's
 * next few elements are compared byte for byte (`Buffer#compare`, native); a match reuses
 * that element's result — the very same candidate object, which also lets the engine skip
 * its own work for it. An element that matches none is delimited by a small string-aware
 * scanner and parsed on its own with `JSON.parse`, then validated by the same
 * {@link entryToWorker} as the whole-body parser. Reuse is exact: an element whose bytes equal
 * a complete JSON value is that value, and the separator that must follow it (`,` or `]`) is
 * checked, so a longer number or literal cannot hide behind a shorter one; JSON's grammar
 * composes, so a body whose skeleton (`[`, elements, commas, `]`) is right and whose every
 * element is valid JSON is valid JSON.
 *
 * ## Malformed bodies
 * Anything unexpected (not an array, a bad separator, an element that does not parse, bytes
 * after the array) is handed to {@link parseHealthBody}, the whole-body parser, which gives
 * the answer or throws its coded error; the reader's state is then left as it was (error)
 * or reset (success), so a malformed body never changes what the next answer is compared to.
 */
import { entryToWorker, parseHealthBody } from './health.js';
import type { ConsulWorkerPolicy, ParsedHealth } from './health.js';
import type { WorkerCandidate } from '../source.js';
import { finishInTurns, finishNow, nextTurn } from '../event-loop-turns.js';

type EntryResult = WorkerCandidate | 'rejected' | 'filtered';

/** The previous successfully read body and what each of its elements became. */
interface Previous {
  readonly body: Buffer;
  /** Byte offset of element i's first byte. */
  readonly starts: Int32Array;
  /** Byte offset just past element i's last byte. */
  readonly ends: Int32Array;
  readonly results: readonly EntryResult[];
}

/** How one {@link IncrementalHealthParser.parse} went, for benchmarks and tests. */
export interface IncrementalStats {
  /** Elements in the body. */
  readonly elements: number;
  /** Elements parsed with `JSON.parse` (new or changed); the others were reused. */
  readonly parsed: number;
  /** True when the whole-body parser was used instead (first answer: false; it is parsed element by element). */
  readonly fallback: boolean;
}

/** Elements of the previous answer tried at each position: same, one removed, two removed. */
const LOOKAHEAD = 3;
/** A body at least this large starts its chunked read in a turn of its own. */
const LARGE_BODY_BYTES = 1024 * 1024;
/** How often (in elements) a chunked read looks at the clock. */
const CHECK_EVERY = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const LBRACE = 0x7b;
const RBRACE = 0x7d;

function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function isWs(c: number | undefined): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function isSeparator(c: number | undefined): boolean {
  return c === COMMA || c === RBRACKET;
}

function skipWs(b: Buffer, i: number): number {
  while (isWs(b[i])) i += 1;
  return i;
}

/**
 * The offset just past the JSON value starting at `p`, found by counting brackets outside
 * strings; −1 if it does not end. Not a validator: the caller parses the span.
 */
function valueEnd(b: Buffer, p: number): number {
  const n = b.length;
  let depth = 0;
  let inString = false;
  for (let i = p; i < n; i += 1) {
    const c = b[i];
    if (inString) {
      if (c === BACKSLASH) i += 1;
      else if (c === QUOTE) {
        inString = false;
        if (depth === 0) return i + 1;
      }
    } else if (c === QUOTE) inString = true;
    else if (c === LBRACE || c === LBRACKET) depth += 1;
    else if (c === RBRACE || c === RBRACKET) {
      depth -= 1;
      if (depth === 0) return i + 1;
      if (depth < 0) return i === p ? -1 : i;
    } else if (depth === 0 && (c === COMMA || isWs(c))) return i === p ? -1 : i;
  }
  return -1;
}

/**
 * Parses health bodies like {@link parseHealthBody}, with the same results and errors, but
 * re-parses only what changed since the previous body (see the file comment). One instance
 * per blocking-query loop: it holds the last good body (off-heap) and its entries' results.
 */
export class IncrementalHealthParser {
  private readonly policy: ConsulWorkerPolicy;
  /** The last body read successfully; undefined before the first and after a fallback. */
  private previous: Previous | undefined;
  /** What the last parse() did. */
  lastStats: IncrementalStats = { elements: 0, parsed: 0, fallback: false };

  constructor(policy: ConsulWorkerPolicy) {
    this.policy = policy;
  }

  /**
   * True if `body` is byte-identical to the last body read successfully: its answer is the
   * same worker set, and nothing needs parsing (one `memcmp`).
   */
  isLastBody(body: Buffer): boolean {
    const last = this.previous?.body;
    return last !== undefined && last.length === body.length && last.equals(body);
  }

  /** Forgets the previous body (the next parse reads everything). */
  reset(): void {
    this.previous = undefined;
  }

  /** Parses `body` in one go. Throws `ERR_CONSUL_MALFORMED` exactly when {@link parseHealthBody} does. */
  parse(body: Buffer): ParsedHealth {
    return finishNow(this.read(body, Number.POSITIVE_INFINITY)) ?? this.whole(body);
  }

  /**
   * Parses `body` like {@link parse}, giving the event loop back (a `setImmediate` hop)
   * whenever a slice of work has taken `sliceMs`: a body with many new entries (the first
   * answer of 10,000 instances: every entry parsed; docs/performance.md) never holds the loop for longer
   * than about one slice. Resolves undefined if `signal` aborts in between. One call at a
   * time per parser (the source's loop is sequential).
   */
  async parseChunked(body: Buffer, sliceMs: number, signal?: AbortSignal): Promise<ParsedHealth | undefined> {
    // A large body arrives in the turn that assembled it (a 10 MiB copy): start in a fresh one.
    if (body.length >= LARGE_BODY_BYTES) await nextTurn();
    if (isAborted(signal)) return undefined;
    const read = await finishInTurns(this.read(body, sliceMs), () => isAborted(signal));
    if (isAborted(signal)) return undefined;
    return read ?? this.whole(body);
  }

  /** The whole-body parser decides; it throws for a malformed body (state kept as it was). */
  private whole(body: Buffer): ParsedHealth {
    const parsed = parseHealthBody(body, this.policy);
    this.previous = undefined;
    this.lastStats = {
      elements: parsed.workers.length + parsed.rejected + parsed.filtered,
      parsed: -1,
      fallback: true,
    };
    return parsed;
  }

  /**
   * The incremental read; returns undefined when the body must go to the whole-body parser.
   * Yields when a slice of `sliceMs` is used up (checked every {@link CHECK_EVERY} elements);
   * the state is only written at the end, so an abandoned read changes nothing.
   */
  private *read(b: Buffer, sliceMs: number): Generator<void, ParsedHealth | undefined> {
    const prev = this.previous;
    let sliceStart = performance.now();
    const n = b.length;
    let p = skipWs(b, 0);
    if (b[p] !== LBRACKET) return undefined;
    p = skipWs(b, p + 1);
    const starts: number[] = [];
    const ends: number[] = [];
    const results: EntryResult[] = [];
    let parsed = 0;
    if (b[p] === RBRACKET) {
      if (skipWs(b, p + 1) !== n) return undefined;
    } else {
      const prevCount = prev === undefined ? 0 : prev.results.length;
      /** Next element of the previous answer expected to come (order is stable). */
      let j = 0;
      for (;;) {
        let end = -1;
        let result: EntryResult | undefined;
        if (prev !== undefined) {
          for (let k = j; k < j + LOOKAHEAD && k < prevCount; k += 1) {
            const s = prev.starts[k] as number;
            const e = prev.ends[k] as number;
            const to = p + (e - s);
            // Equal bytes and then a separator: this element is that one (a longer number or
            // literal that merely starts with it is not followed by one).
            if (to <= n && b.compare(prev.body, s, e, p, to) === 0 && isSeparator(b[skipWs(b, to)])) {
              end = to;
              result = prev.results[k];
              j = k + 1;
              break;
            }
          }
        }
        if (result === undefined) {
          end = valueEnd(b, p);
          if (end < 0) return undefined;
          let entry: unknown;
          try {
            entry = JSON.parse(b.toString('utf8', p, end));
          } catch {
            return undefined;
          }
          result = entryToWorker(entry, this.policy);
          parsed += 1;
        }
        starts.push(p);
        ends.push(end);
        results.push(result);
        if (results.length % CHECK_EVERY === 0 && performance.now() - sliceStart >= sliceMs) {
          yield;
          sliceStart = performance.now();
        }
        const q = skipWs(b, end);
        if (b[q] === COMMA) {
          p = skipWs(b, q + 1);
          continue;
        }
        if (b[q] !== RBRACKET || skipWs(b, q + 1) !== n) return undefined;
        break;
      }
    }
    // What comes next (the engine's build and publish) gets a fresh turn when this slice was long.
    if (performance.now() - sliceStart >= sliceMs / 2) yield;
    const workers: WorkerCandidate[] = [];
    let rejected = 0;
    let filtered = 0;
    for (const r of results) {
      if (r === 'rejected') rejected += 1;
      else if (r === 'filtered') filtered += 1;
      else workers.push(r);
    }
    this.previous = { body: b, starts: Int32Array.from(starts), ends: Int32Array.from(ends), results };
    this.lastStats = { elements: results.length, parsed, fallback: false };
    return { workers, rejected, filtered };
  }
}

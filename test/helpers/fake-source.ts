/** A source driven by the test: it reports exactly the outcomes the test pushes. */
import type { Source, SourceKind, SourceSink, WorkerCandidate } from '../../src/source.js';
import { ErrorCode, WorkerResolverError } from '../../src/errors.js';
import type { ErrorCodeValue } from '../../src/errors.js';

export class FakeSource implements Source {
  sink: SourceSink | undefined;
  starts = 0;
  stops = 0;

  constructor(readonly kind: SourceKind) {}

  start(sink: SourceSink): void {
    if (this.sink !== undefined) return;
    this.sink = sink;
    this.starts += 1;
  }

  stop(): Promise<void> {
    if (this.sink !== undefined) this.stops += 1;
    this.sink = undefined;
    return Promise.resolve();
  }

  get running(): boolean {
    return this.sink !== undefined;
  }

  answer(workers: readonly WorkerCandidate[], extra: { index?: number; unchanged?: boolean } = {}): void {
    if (this.sink === undefined) throw new Error(`${this.kind} source is not running`);
    this.sink.onOutcome({
      ok: true,
      source: this.kind,
      workers,
      rejected: 0,
      ...(extra.index === undefined ? {} : { index: extra.index }),
      unchanged: extra.unchanged ?? false,
      durationMs: 1,
      blocking: false,
    });
  }

  fail(code: ErrorCodeValue = ErrorCode.CONSUL_UNREACHABLE): void {
    if (this.sink === undefined) throw new Error(`${this.kind} source is not running`);
    this.sink.onOutcome({
      ok: false,
      source: this.kind,
      error: new WorkerResolverError(code, `injected ${code}`),
      durationMs: 1,
      blocking: false,
      retryInMs: 10,
    });
  }
}

/** A worker candidate on 10.0.0.<n>:8080. */
export function worker(n: number, extra: Partial<WorkerCandidate> = {}): WorkerCandidate {
  return {
    url: `http://10.0.0.${n}:8080`,
    id: `w${n}`,
    node: `node${n}`,
    address: `10.0.0.${n}`,
    port: 8080,
    tags: [],
    meta: {},
    status: 'passing',
    weight: 1,
    ...extra,
  };
}

/** Workers 1..n. */
export function workers(n: number, from = 1): WorkerCandidate[] {
  return Array.from({ length: n }, (_, i) => worker(i + from));
}

/**
 * Memory measurement: bytes allocated by a piece of synchronous code, and heap/RSS
 * snapshots.
 *
 * `heapUsed` deltas alone undercount whenever a garbage collection runs in between (the
 * collected bytes vanish from the delta). `v8.GCProfiler` reports the heap before and after
 * every collection, so allocated = (used after − used before) + Σ (freed by each GC). That
 * is exact up to the profiler's own few hundred bytes, which vanish when divided by a
 * large iteration count.
 */
import v8 from 'node:v8';

/** `global.gc` when the process runs with `--expose-gc`. */
export function forceGc(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return false;
  gc();
  gc();
  return true;
}

/** True when `--expose-gc` is on (the byte counts are then taken from a clean heap). */
export function gcExposed(): boolean {
  return typeof (globalThis as { gc?: unknown }).gc === 'function';
}

function used(stats: unknown): number {
  const s = stats as Record<string, number | undefined>;
  return s['usedHeapSize'] ?? s['used_heap_size'] ?? 0;
}

/** What {@link measureAllocation} found. */
export interface Allocation {
  /** Bytes allocated on the V8 heap while `run` ran (collected or not). */
  readonly allocatedBytes: number;
  /** Heap growth that survived: used heap after `run` and a full GC, minus before. */
  readonly retainedBytes: number;
  /** Garbage collections that ran during `run`. */
  readonly gcCount: number;
  /** Largest used heap observed (before a GC or at the end) minus the used heap at the start. */
  readonly peakGrowthBytes: number;
}

/** Runs `run` once and reports what it allocated (see the file comment). */
export function measureAllocation(run: () => void): Allocation {
  forceGc();
  const profiler = new v8.GCProfiler();
  profiler.start();
  const before = v8.getHeapStatistics().used_heap_size;
  run();
  const after = v8.getHeapStatistics().used_heap_size;
  const { statistics } = profiler.stop();
  let freed = 0;
  let peak = after;
  for (const s of statistics) {
    const b = used(s.beforeGC.heapStatistics);
    freed += b - used(s.afterGC.heapStatistics);
    peak = Math.max(peak, b);
  }
  forceGc();
  const settled = v8.getHeapStatistics().used_heap_size;
  return {
    allocatedBytes: Math.max(0, after - before + freed),
    retainedBytes: settled - before,
    gcCount: statistics.length,
    peakGrowthBytes: peak - before,
  };
}

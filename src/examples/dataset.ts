/**
 * The example job's data: a synthetic table `t(key, v)` cut into partitions, each generated
 * from a seed, so a worker and the coordinator produce byte-identical rows without sharing
 * any storage. The job is
 *
 *     SELECT key, count(*), sum(v) FROM t GROUP BY key ORDER BY key
 *
 * computed in two stages like a distributed engine would: partial aggregates per partition
 * set on the workers (stage 1), then final aggregates per key bucket (stage 2).
 * Counts and sums stay far below 2^53, so plain numbers are exact and results compare with
 * `===`.
 */

/** Describes the synthetic table; every field is part of the row generator's input. */
export interface DatasetSpec {
  /** Changes every row; two datasets with the same spec are identical. */
  readonly seed: number;
  /** Number of partitions (the scan stage's natural task count). */
  readonly partitions: number;
  readonly rowsPerPartition: number;
  /** Distinct values of `key` (`k00`, `k01`, ...). */
  readonly keys: number;
}

/** One output row of the aggregate. */
export interface Group {
  readonly key: string;
  readonly count: number;
  readonly sum: number;
}

/** Bounds a worker enforces on a task, so a bad request cannot make it spin for minutes. */
export const DATASET_LIMITS = Object.freeze({ partitions: 4096, rowsPerPartition: 1_000_000, keys: 1000 });

/** The demo's default table: 8 partitions × 25 000 rows, 16 keys. */
export const DEFAULT_DATASET: DatasetSpec = Object.freeze({
  seed: 42,
  partitions: 8,
  rowsPerPartition: 25_000,
  keys: 16,
});

/** 32-bit FNV-1a of a string: seeds the generator and buckets keys for stage 2. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** mulberry32: a tiny, fast, well-distributed 32-bit PRNG; plenty for synthetic rows. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The name of key number `i`, zero-padded so that string order is numeric order. */
export function keyName(i: number): string {
  return `k${String(i).padStart(2, '0')}`;
}

/**
 * Validates an untrusted spec (a task body) and returns it typed.
 * @throws {TypeError} naming the first bad field.
 */
export function checkDatasetSpec(value: unknown): DatasetSpec {
  if (typeof value !== 'object' || value === null) throw new TypeError('dataset must be an object');
  const v = value as Record<string, unknown>;
  const int = (name: string, min: number, max: number): number => {
    const n = v[name];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      throw new TypeError(`dataset.${name} must be an integer in [${min}, ${max}]`);
    }
    return n;
  };
  return {
    seed: int('seed', 0, 0xffffffff),
    partitions: int('partitions', 1, DATASET_LIMITS.partitions),
    rowsPerPartition: int('rowsPerPartition', 1, DATASET_LIMITS.rowsPerPartition),
    keys: int('keys', 1, DATASET_LIMITS.keys),
  };
}

/**
 * `SELECT key, count(*), sum(v) FROM t WHERE partition IN (partitions) GROUP BY key`,
 * sorted by key: what one scan task computes. Keys are skewed on purpose (a square of a
 * uniform draw), as real group-by keys usually are.
 */
export function aggregatePartitions(spec: DatasetSpec, partitions: readonly number[]): Group[] {
  const counts = new Array<number>(spec.keys).fill(0);
  const sums = new Array<number>(spec.keys).fill(0);
  for (const p of partitions) {
    if (!Number.isInteger(p) || p < 0 || p >= spec.partitions) {
      throw new RangeError(`partition ${String(p)} is not in [0, ${spec.partitions})`);
    }
    const next = mulberry32(fnv1a(`${spec.seed}/${p}`));
    for (let row = 0; row < spec.rowsPerPartition; row += 1) {
      const u = next() / 4294967296;
      const k = Math.floor(u * u * spec.keys);
      counts[k] = (counts[k] ?? 0) + 1;
      sums[k] = (sums[k] ?? 0) + (next() % 1000);
    }
  }
  const out: Group[] = [];
  for (let k = 0; k < spec.keys; k += 1) {
    const count = counts[k] ?? 0;
    if (count > 0) out.push({ key: keyName(k), count, sum: sums[k] ?? 0 });
  }
  return out;
}

/** Merges partial aggregates (sums the counts and sums of equal keys); sorted by key. */
export function mergeGroups(parts: readonly (readonly Group[])[]): Group[] {
  const byKey = new Map<string, { count: number; sum: number }>();
  for (const part of parts) {
    for (const g of part) {
      const acc = byKey.get(g.key);
      if (acc === undefined) byKey.set(g.key, { count: g.count, sum: g.sum });
      else {
        acc.count += g.count;
        acc.sum += g.sum;
      }
    }
  }
  return [...byKey.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, acc]) => ({ key, count: acc.count, sum: acc.sum }));
}

/** The whole query computed locally: what the distributed answer must equal. */
export function expectedResult(spec: DatasetSpec): Group[] {
  return aggregatePartitions(
    spec,
    Array.from({ length: spec.partitions }, (_, p) => p),
  );
}

/** True when two results have the same rows in the same order. */
export function sameResult(a: readonly Group[], b: readonly Group[]): boolean {
  return (
    a.length === b.length && a.every((g, i) => g.key === b[i]?.key && g.count === b[i].count && g.sum === b[i].sum)
  );
}

/**
 * Validates an untrusted list of groups (a task body or a worker's answer).
 * @throws {TypeError} when it is not an array of `{ key, count, sum }`.
 */
export function checkGroups(value: unknown, what = 'groups'): Group[] {
  if (!Array.isArray(value)) throw new TypeError(`${what} must be an array`);
  return value.map((g: unknown, i) => {
    const r = g as Partial<Record<keyof Group, unknown>> | null;
    if (
      typeof r !== 'object' ||
      r === null ||
      typeof r.key !== 'string' ||
      !Number.isSafeInteger(r.count) ||
      !Number.isSafeInteger(r.sum)
    ) {
      throw new TypeError(`${what}[${i}] must be { key: string, count: integer, sum: integer }`);
    }
    return { key: r.key, count: r.count as number, sum: r.sum as number };
  });
}

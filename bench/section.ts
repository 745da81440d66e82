/**
 * The contract between `bench/run.ts` and each benchmark family: a family gets a context
 * (size, time budget, logger) and returns tables for people and data for machines.
 */
import type { GoalCheck, Table } from './table.js';

/** Identifiers of the benchmark families, in the order they run; `--only` takes these. */
export const SECTION_IDS = [
  'get-urls',
  'propagation',
  'propagation-consul',
  'failover',
  'processing',
  'consul-load',
  'sidecar-fanout',
  'sidecar-rss',
] as const;
export type SectionId = (typeof SECTION_IDS)[number];

/** What a benchmark family receives. */
export interface BenchContext {
  /** The CI smoke size: tiny worker counts, few samples; numbers are not meaningful. */
  readonly quick: boolean;
  /** Capture a CPU profile of the expensive paths and print its top frames. */
  readonly profile: boolean;
  /** Where profiles are written (`.cpuprofile`, open in Chrome DevTools). */
  readonly profileDir: string;
  /** Progress lines (stderr), so stdout stays the report. */
  readonly log: (message: string) => void;
  /** Aborted when the family's time budget is over: stop taking samples and report what you have. */
  readonly signal: AbortSignal;
}

/** What a benchmark family returns. `data` is plain JSON (numbers in ms/ns/bytes as named). */
export interface SectionOutput {
  readonly tables: readonly Table[];
  readonly goals: readonly GoalCheck[];
  /** Present when the family could not run (e.g. a missing component); tables may then be empty. */
  readonly skipped?: string;
  readonly data: Record<string, unknown>;
}

/** A benchmark family. */
export interface BenchSection {
  readonly id: SectionId;
  readonly title: string;
  /** Hard time budget (ms): the signal aborts at this point; the runner gives up 30 s later. */
  readonly budgetMs: { readonly quick: number; readonly full: number };
  run(ctx: BenchContext): Promise<SectionOutput>;
}

/** A section's result as `--json` writes it. */
export interface SectionResult extends SectionOutput {
  readonly id: SectionId;
  readonly title: string;
  readonly durationMs: number;
  /** Set when the family threw or overran its budget; the run continues with the next family. */
  readonly error?: string;
}

/** Resolves after `ms`; resolves early (false) when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Polls `predicate` every `everyMs` until it holds; throws after `timeoutMs`. */
export async function until(predicate: () => boolean, what: string, timeoutMs = 30_000, everyMs = 1): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((resolve) => (everyMs <= 0 ? setImmediate(resolve) : setTimeout(resolve, everyMs)));
  }
}

/** A silent logger for resolvers under measurement. */
export const silentLogger = {
  debug(): void {},
  info(): void {},
  warn(): void {},
  error(): void {},
};

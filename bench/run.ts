/**
 * The benchmark suite of worker-resolver (issue #6): `npm run bench`.
 *
 *   node --expose-gc --import tsx bench/run.ts [--quick] [--only a,b] [--json [file|-]] [--markdown] [--profile]
 *
 * --quick      the CI smoke size: tiny worker counts and few samples, a few seconds per family
 * --only       run only these families (see SECTION_IDS), comma-separated or repeated
 * --json       also write machine-readable results: to `file`, to stdout with `-`, default bench/results.json
 * --markdown   print the tables as Markdown (what the README's Performance section holds)
 * --profile    record CPU profiles of the expensive paths (bench/profiles/*.cpuprofile) and print their top frames
 *
 * Benchmarks, not timed tests: a missed goal is printed as ✗ and never changes the exit
 * code. The exit code is 1 only when a family crashed.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { consulLoadBench } from './consul-load.js';
import { failoverBench } from './failover.js';
import { getUrlsBench } from './get-urls.js';
import { gcExposed } from './memory.js';
import { processingBench } from './processing.js';
import { propagationBench } from './propagation.js';
import { propagationConsulBench } from './propagation-consul.js';
import { SECTION_IDS } from './section.js';
import type { BenchSection, SectionId, SectionResult } from './section.js';
import { sidecarFanoutBench } from './sidecar-fanout.js';
import { sidecarRssBench } from './sidecar.js';
import { renderMarkdown, renderText } from './table.js';
import type { Table } from './table.js';

const SECTIONS: readonly BenchSection[] = [
  getUrlsBench,
  propagationBench,
  propagationConsulBench,
  failoverBench,
  processingBench,
  consulLoadBench,
  sidecarFanoutBench,
  sidecarRssBench,
];

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

/** Parsed command line. */
export interface RunOptions {
  readonly quick: boolean;
  readonly only: readonly SectionId[];
  /** undefined = no JSON; '-' = stdout; else a path. */
  readonly json: string | undefined;
  readonly markdown: boolean;
  readonly profile: boolean;
}

/** Parses argv (without node and the script). Throws on unknown flags or family names. */
export function parseRunArgs(argv: readonly string[]): RunOptions {
  // `--json` takes an optional value: a following argument that is not a flag.
  const args = [...argv];
  let json: string | undefined;
  const at = args.indexOf('--json');
  if (at >= 0) {
    const next = args[at + 1];
    json = next !== undefined && (next === '-' || !next.startsWith('-')) ? next : resolve(BENCH_DIR, 'results.json');
    args.splice(at, next === json ? 2 : 1);
  }
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string', multiple: true },
      markdown: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(
      'usage: node --expose-gc --import tsx bench/run.ts [--quick] [--only a,b] [--json [file|-]] [--markdown] [--profile]\n' +
        `families: ${SECTION_IDS.join(', ')}\n`,
    );
    process.exit(0);
  }
  const only = (values.only ?? []).flatMap((v) => v.split(',')).filter((v) => v !== '');
  for (const name of only) {
    if (!(SECTION_IDS as readonly string[]).includes(name)) {
      throw new Error(`unknown benchmark "${name}"; known: ${SECTION_IDS.join(', ')}`);
    }
  }
  return {
    quick: values.quick === true,
    only: only as SectionId[],
    json,
    markdown: values.markdown === true,
    profile: values.profile === true,
  };
}

/** Everything `--json` writes. */
export interface RunReport {
  readonly meta: {
    readonly date: string;
    readonly node: string;
    readonly v8: string;
    readonly platform: string;
    readonly cpu: string;
    readonly cores: number;
    readonly memoryBytes: number;
    readonly loadAverageBefore: readonly number[];
    readonly loadAverageAfter: readonly number[];
    readonly quick: boolean;
    readonly gcExposed: boolean;
    readonly durationMs: number;
  };
  readonly sections: Record<string, SectionResult>;
}

async function runSection(section: BenchSection, options: RunOptions): Promise<SectionResult> {
  const budget = options.quick ? section.budgetMs.quick : section.budgetMs.full;
  const abort = new AbortController();
  const soft = setTimeout(() => abort.abort(), budget);
  let hard: NodeJS.Timeout | undefined;
  const started = performance.now();
  const log = (message: string): void => {
    process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
  };
  try {
    const overrun = new Promise<never>((_, reject) => {
      hard = setTimeout(() => reject(new Error(`overran its budget of ${budget} ms by 30 s`)), budget + 30_000);
    });
    const output = await Promise.race([
      section.run({
        quick: options.quick,
        profile: options.profile,
        profileDir: resolve(BENCH_DIR, 'profiles'),
        log,
        signal: abort.signal,
      }),
      overrun,
    ]);
    return { id: section.id, title: section.title, durationMs: performance.now() - started, ...output };
  } catch (err) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`${section.id} failed: ${message}`);
    return {
      id: section.id,
      title: section.title,
      durationMs: performance.now() - started,
      tables: [],
      goals: [],
      data: {},
      error: err instanceof Error ? err.message : String(err),
    };
  } finally {
    clearTimeout(soft);
    clearTimeout(hard);
  }
}

function summaryTable(results: readonly SectionResult[]): Table {
  const rows: string[][] = [];
  for (const r of results) {
    if (r.error !== undefined) rows.push([r.id, 'ran to completion', `error: ${r.error}`, '✗']);
    else if (r.skipped !== undefined) rows.push([r.id, '—', `skipped: ${r.skipped}`, '—']);
    for (const g of r.goals) rows.push([r.id, g.goal, g.actual, g.met ? '✓' : '✗']);
  }
  return { title: 'Goals', columns: ['benchmark', 'goal', 'measured', 'met'], rows };
}

/** Runs the selected families in order and prints/writes the report. Returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const options = parseRunArgs(argv);
  const started = performance.now();
  const loadBefore = os.loadavg();
  const selected = SECTIONS.filter((s) => options.only.length === 0 || options.only.includes(s.id));
  const toStdout = options.json === '-';
  const print = (text: string): void => {
    // With `--json -` stdout carries the JSON only; the tables go to stderr.
    (toStdout ? process.stderr : process.stdout).write(`${text}\n`);
  };
  const render = options.markdown ? renderMarkdown : renderText;
  const cpus = os.cpus();
  const header =
    `worker-resolver benchmarks — ${new Date().toISOString()} — Node ${process.version}, ` +
    `${os.availableParallelism()} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${os.platform()} ${os.arch()}, ` +
    `load avg ${loadBefore.map((l) => l.toFixed(2)).join(' ')}${options.quick ? ' — QUICK (smoke size, numbers not meaningful)' : ''}`;
  print(header);
  if (!gcExposed()) print('warning: run with --expose-gc (npm run bench does) for clean allocation and heap figures');
  const results: SectionResult[] = [];
  for (const section of selected) {
    const result = await runSection(section, options);
    results.push(result);
    print('');
    if (result.skipped !== undefined) print(`${section.title}: skipped — ${result.skipped}`);
    if (result.error !== undefined) print(`${section.title}: FAILED — ${result.error}`);
    for (const table of result.tables) print(`${render(table)}\n`);
  }
  print(render(summaryTable(results)));

  const report: RunReport = {
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      v8: process.versions.v8,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      cpu: cpus[0]?.model.trim() ?? 'unknown',
      cores: os.availableParallelism(),
      memoryBytes: os.totalmem(),
      loadAverageBefore: loadBefore,
      loadAverageAfter: os.loadavg(),
      quick: options.quick,
      gcExposed: gcExposed(),
      durationMs: performance.now() - started,
    },
    sections: Object.fromEntries(results.map((r) => [r.id, r])),
  };
  if (options.json !== undefined) {
    const text = `${JSON.stringify(report, null, 2)}\n`;
    if (toStdout) process.stdout.write(text);
    else {
      await mkdir(dirname(options.json), { recursive: true });
      await writeFile(options.json, text);
      print(`\nJSON results: ${options.json}`);
    }
  }
  return results.some((r) => r.error !== undefined) ? 1 : 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Every family stops its servers and timers; if something still holds the loop, say so and leave.
      setTimeout(() => {
        process.stderr.write('bench: handles still open after the run; exiting anyway\n');
        process.exit(code);
      }, 5_000).unref();
    },
    (err: unknown) => {
      process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(2);
    },
  );
}

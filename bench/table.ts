/**
 * Result tables: what each benchmark family prints, as aligned text for the terminal and as
 * Markdown for the README. A table has a Goal column where the issue states a goal: the
 * goal, then ✓ (met) or ✗ (missed) — a missed goal is printed, never hidden, and never
 * fails the run (these are benchmarks, not timed tests).
 */

/** One printed table. `rows[i][j]` is the cell of column `columns[j]`. */
export interface Table {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** Printed under the table: configuration, how a number was obtained, caveats. */
  readonly notes?: readonly string[];
}

/** A goal and whether this run met it. */
export interface GoalCheck {
  /** E.g. `p99 ≤ 10 ms at 1,000 workers`. */
  readonly goal: string;
  readonly met: boolean;
  /** The measured value, formatted. */
  readonly actual: string;
}

/** The Goal cell: `≤ 10 ns ✓`; `—` when the row has no goal. */
export function goalCell(check: { goal: string; met: boolean } | undefined): string {
  if (check === undefined) return '—';
  return `${check.goal} ${check.met ? '✓' : '✗'}`;
}

/** A duration given in nanoseconds, in the most readable unit. */
export function fmtNs(ns: number): string {
  if (!Number.isFinite(ns)) return 'n/a';
  if (ns < 999.5) return `${ns < 10 ? ns.toFixed(2) : ns < 100 ? ns.toFixed(1) : ns.toFixed(0)} ns`;
  return fmtMs(ns / 1e6);
}

/** A duration given in milliseconds, in the most readable unit. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms < 0.001) return fmtNs(ms * 1e6);
  if (ms < 0.9995) return `${(ms * 1000).toFixed(ms < 0.01 ? 2 : ms < 0.1 ? 1 : 0)} µs`;
  if (ms < 999.5) return `${ms.toFixed(ms < 10 ? 2 : ms < 100 ? 1 : 0)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** A byte count. Values below 1 (per-call averages) keep two decimals. */
export function fmtBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'n/a';
  const abs = Math.abs(bytes);
  if (abs < 1) return `${bytes.toFixed(2)} B`;
  if (abs < 1024) return `${bytes.toFixed(0)} B`;
  if (abs < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (abs < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/** A ratio such as `12.3×`; `—` when undefined. */
export function fmtRatio(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  if (value >= 100) return `${value.toFixed(0)}×`;
  if (value >= 10) return `${value.toFixed(1)}×`;
  return `${value.toFixed(2)}×`;
}

/** An integer with thousands separators (1,000). */
export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** A rate, e.g. requests per minute. */
export function fmtRate(value: number, unit: string): string {
  if (!Number.isFinite(value)) return 'n/a';
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${unit}`;
}

/** Display width of a cell (code points; the symbols used here are all one column wide). */
function width(text: string): number {
  return [...text].length;
}

function pad(text: string, to: number, right: boolean): string {
  const fill = ' '.repeat(Math.max(0, to - width(text)));
  return right ? fill + text : text + fill;
}

/** True for cells that read as numbers, which are right-aligned. */
function numeric(text: string): boolean {
  return /^[~≈<>]?\s?[-+]?[\d.,]+\s?([a-zA-Zµ%×]+)?(\s?\/\s?[a-zA-Z]+)?$/.test(text.trim());
}

/** Renders a table as aligned text (box-drawing separators), notes underneath. */
export function renderText(table: Table): string {
  const widths = table.columns.map((c, j) => Math.max(width(c), ...table.rows.map((r) => width(r[j] ?? ''))));
  const line = (cells: readonly string[], header: boolean): string =>
    cells.map((c, j) => pad(c, widths[j] ?? 0, !header && numeric(c))).join(' │ ');
  const rule = widths.map((w) => '─'.repeat(w)).join('─┼─');
  const out = [table.title, line(table.columns, true), rule, ...table.rows.map((r) => line(r, false))];
  for (const note of table.notes ?? []) out.push(`  · ${note}`);
  return out.join('\n');
}

/** Renders a table as GitHub Markdown (numbers right-aligned), notes as a list underneath. */
export function renderMarkdown(table: Table): string {
  const esc = (t: string): string => t.replace(/\|/g, '\\|');
  const align = table.columns.map((_, j) =>
    table.rows.length > 0 && table.rows.every((r) => numeric(r[j] ?? '') || (r[j] ?? '') === '—') ? '---:' : '---',
  );
  const out = [
    `**${table.title}**`,
    '',
    `| ${table.columns.map(esc).join(' | ')} |`,
    `| ${align.join(' | ')} |`,
    ...table.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ];
  if ((table.notes ?? []).length > 0) {
    out.push('');
    for (const note of table.notes ?? []) out.push(`- ${note}`);
  }
  return out.join('\n');
}

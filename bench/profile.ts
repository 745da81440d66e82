/**
 * CPU profiles for `--profile`: records a V8 CPU profile of an async piece of work through
 * the inspector protocol, writes it as a `.cpuprofile` (open it in Chrome DevTools or
 * speedscope), and reduces it to the functions with the most self time — the "why" behind
 * a missed goal, printed next to the table.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

/** One line of a profile summary. */
export interface HotFunction {
  /** `name (file:line)`, relative to the project. */
  readonly frame: string;
  /** Self time, in milliseconds. */
  readonly selfMs: number;
  /** Share of all sampled time, 0..1. */
  readonly share: number;
}

/** A summarized profile. */
export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  readonly top: readonly HotFunction[];
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function frameName(node: ProfileNode): string {
  // No line numbers: modules run through the tsx loader, whose generated lines do not match the sources.
  const { functionName, url } = node.callFrame;
  const name = functionName === '' ? '(anonymous)' : functionName;
  if (url === '') return name;
  const path = url.startsWith('file://') ? relative(ROOT, fileURLToPath(url)) : url;
  return `${name} (${path})`;
}

/** Profiles `work` (sampling every 100 µs), writes `<dir>/<name>.cpuprofile`, returns the top frames. */
export async function profile<T>(
  dir: string,
  name: string,
  work: () => Promise<T>,
  topN = 12,
): Promise<{ result: T; summary: ProfileSummary }> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
    await session.post('Profiler.start');
    const result = await work();
    const { profile: raw } = (await session.post('Profiler.stop')) as { profile: CpuProfile };
    await mkdir(dir, { recursive: true });
    const file = join(dir, `${name}.cpuprofile`);
    await writeFile(file, JSON.stringify(raw));
    return { result, summary: summarizeProfile(raw, relative(process.cwd(), file), topN) };
  } finally {
    session.disconnect();
  }
}

function summarizeProfile(raw: CpuProfile, file: string, topN = 12): ProfileSummary {
  const byId = new Map(raw.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const samples = raw.samples ?? [];
  const deltas = raw.timeDeltas ?? [];
  let total = 0;
  for (let i = 0; i < samples.length; i += 1) {
    const node = byId.get(samples[i] ?? -1);
    const us = deltas[i] ?? 0;
    if (node === undefined) continue;
    total += us;
    const key = frameName(node);
    self.set(key, (self.get(key) ?? 0) + us);
  }
  const top = [...self.entries()]
    .filter(([frame]) => frame !== '(idle)' && frame !== '(program)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([frame, us]) => ({ frame, selfMs: us / 1000, share: total === 0 ? 0 : us / total }));
  return { file, totalMs: total / 1000, top };
}

/** The summary as note lines: `31.2% 12.3 ms JSON.parse`. */
export function profileNotes(title: string, summary: ProfileSummary): string[] {
  return [
    `${title}: CPU profile ${summary.file} (${summary.totalMs.toFixed(0)} ms sampled), top self time:`,
    ...summary.top.map(
      (h) => `  ${(h.share * 100).toFixed(1).padStart(5)}% ${h.selfMs.toFixed(1).padStart(8)} ms  ${h.frame}`,
    ),
  ];
}

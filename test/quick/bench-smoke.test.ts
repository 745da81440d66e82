/**
 * Keeps the benchmark suite working: runs `bench/run.ts --quick` (the smoke size) in a child
 * process, as `npm run bench` does, and checks that it completes and writes JSON with every
 * section, that each propagation row names its server, and that the real-Consul family
 * either ran (10 instances at this size) or said loudly that the binary is missing. Never
 * asserts on a timing: the numbers of a smoke run mean nothing, and a slow CI machine must
 * not fail here.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SECTION_IDS } from '../../bench/section.js';
import type { RunReport } from '../../bench/run.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('benchmark suite (smoke size)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'worker-resolver-bench-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('runs every benchmark with --quick and writes JSON with every section', { timeout: 300_000 }, async () => {
    const file = join(dir, 'results.json');
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', 'bench/run.ts', '--quick', '--json', file],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0, `bench exited with ${code}\n${stdout}\n${stderr}`);

    const report = JSON.parse(await readFile(file, 'utf8')) as RunReport;
    assert.equal(report.meta.quick, true);
    assert.equal(report.meta.node, process.version);
    assert.ok(report.meta.cores >= 1);
    for (const id of SECTION_IDS) {
      const section = report.sections[id];
      assert.ok(section !== undefined, `section ${id} missing from the JSON`);
      assert.equal(section.error, undefined, `section ${id} failed: ${section.error}`);
      assert.equal(typeof section.data, 'object');
      if (section.skipped === undefined) {
        assert.ok(section.tables.length > 0, `section ${id} printed no table`);
        assert.ok(
          section.tables.every((t) => t.rows.length > 0),
          `section ${id} has an empty table`,
        );
      }
    }
    // Every propagation row names its server; the real-agent family ran, or says loudly why not.
    const devRows = report.sections['propagation']?.tables[0]?.rows ?? [];
    assert.ok(
      devRows.every((row) => row[1] === 'dev server (test double)'),
      JSON.stringify(devRows),
    );
    const real = report.sections['propagation-consul'];
    if (real?.skipped === undefined) {
      const rows = real?.tables[0]?.rows ?? [];
      assert.ok(rows.length > 0 && rows.every((row) => /^Consul \d+\.\d+\.\d+ \(agent -dev\)$/.test(row[1] ?? '')));
    } else {
      assert.match(real.skipped, /NO CONSUL BINARY/);
      assert.match(stdout, /skipped — NO CONSUL BINARY/);
    }
    // The human report went to stdout: one title per section, and the goals summary.
    assert.match(stdout, /1\. getUrls\(\) per call/);
    assert.match(stdout, /Goals/);
  });

  it('rejects an unknown benchmark name', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--only', 'nope'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 2);
    assert.match(stderr, /unknown benchmark "nope"/);
  });
});

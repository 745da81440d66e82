/**
 * The one-way data flow of docs/design.md §12, as the lint holds it (`eslint.architecture.js`): every library module
 * belongs to a layer, the rule forbids the imports that cross layers or backends, and the import graph has no cycle.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const eslint = new ESLint({ cwd: ROOT });

interface Pattern {
  readonly regex: string;
}

/** The import specifiers the lint forbids in `file` (repository-relative), as regular expressions. */
async function forbidden(file: string): Promise<RegExp[]> {
  const config = (await eslint.calculateConfigForFile(path.join(ROOT, file))) as {
    rules?: Record<string, [number, { patterns?: Pattern[] }?]>;
  };
  const rule = config.rules?.['no-restricted-imports'];
  return (rule?.[1]?.patterns ?? []).map((p) => new RegExp(p.regex, 'u'));
}

async function allows(file: string, specifier: string): Promise<boolean> {
  return !(await forbidden(file)).some((r) => r.test(specifier));
}

const LIBRARY_DIRS = ['src', 'src/consul', 'src/dns'];
const libraryFiles = LIBRARY_DIRS.flatMap((dir) =>
  readdirSync(path.join(ROOT, dir))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => `${dir}/${f}`),
);

describe('architecture: the one-way data flow (lint)', () => {
  it('puts every library module in a layer or a backend', async () => {
    for (const file of libraryFiles) {
      assert.ok((await forbidden(file)).length > 0, `${file} is in no layer: add it to eslint.architecture.js`);
    }
  });

  it('forbids imports that cross layers, backends or leave the library', async () => {
    const crossing: [string, string][] = [
      ['src/dns/srv-answer.ts', '../consul/health.js'],
      ['src/consul/source.ts', '../dns/client.js'],
      ['src/consul/source.ts', '../metrics.js'],
      ['src/dns/source.ts', '../tracing.js'],
      ['src/consul/client.ts', '../sidecar.js'],
      ['src/source.ts', './dns/message.js'],
      ['src/engine.ts', './consul/source.js'],
      ['src/engine.ts', './metrics.js'],
      ['src/publisher.ts', './tracing.js'],
      ['src/planner.ts', './metrics.js'],
      ['src/errors.ts', './source.js'],
      ['src/resolver.ts', './sidecar.js'],
      ['src/resolver.ts', './testing/index.js'],
      ['src/sidecar.ts', './cli/config.js'],
      ['src/index.ts', './examples/index.js'],
    ];
    for (const [file, specifier] of crossing) {
      assert.equal(await allows(file, specifier), false, `${file} may not import ${specifier}`);
    }
  });

  it('allows the edges of the flow', async () => {
    const edges: [string, string][] = [
      ['src/dns/source.ts', '../source.js'],
      ['src/dns/srv-answer.ts', '../url-host.js'],
      ['src/consul/health.ts', '../errors.js'],
      ['src/engine.ts', './publisher.js'],
      ['src/metrics.ts', './planner.js'],
      ['src/resolver.ts', './consul/source.js'],
      ['src/sidecar.ts', './resolver.js'],
      ['src/index.ts', './sidecar.js'],
    ];
    for (const [file, specifier] of edges) assert.ok(await allows(file, specifier), `${file} → ${specifier}`);
  });

  it('has no import cycle in the library', () => {
    const imports = new Map<string, string[]>();
    for (const file of libraryFiles) {
      const text = readFileSync(path.join(ROOT, file), 'utf8');
      const targets = [...text.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)].map((m) =>
        path.posix.normalize(path.posix.join(path.posix.dirname(file), `${m[1]}.ts`)),
      );
      imports.set(
        file,
        targets.filter((t) => libraryFiles.includes(t)),
      );
    }
    const state = new Map<string, 'open' | 'done'>();
    const visit = (file: string, trail: string[]): void => {
      if (state.get(file) === 'done') return;
      assert.notEqual(state.get(file), 'open', `import cycle: ${[...trail, file].join(' → ')}`);
      state.set(file, 'open');
      for (const next of imports.get(file) ?? []) visit(next, [...trail, file]);
      state.set(file, 'done');
    };
    for (const file of libraryFiles) visit(file, []);
    assert.ok(state.size === libraryFiles.length && libraryFiles.length > 40);
  });
});

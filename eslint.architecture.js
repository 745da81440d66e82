// @ts-check
/**
 * The library's one-way data flow (docs/design.md §12), held by lint: a module may import its own layer and the
 * layers before it, never a later one. The two backends (src/consul/, src/dns/) sit beside the pipeline: they see
 * only the foundation and the source contract, never each other, and only the composition layer (options,
 * resolver) wires them in. The library never imports the CLI, the testing kit or the examples.
 */
export const LAYERS = [
  [
    'foundation',
    [
      'errors',
      'clock',
      'duration',
      'backoff',
      'token-bucket',
      'event-loop-turns',
      'url-host',
      'immutable-url',
      'option-checks',
      'version',
      'traceparent',
    ],
  ],
  ['source contract', ['source']],
  [
    'pipeline',
    [
      'snapshot',
      'worker-diff',
      'worker-cache',
      'worker-set-incremental',
      'worker-set',
      'guard',
      'events',
      'publisher',
      'engine',
    ],
  ],
  ['planner', ['planner']],
  ['observability', ['semconv', 'metric-families', 'metrics', 'tracing', 'planner-instrumented']],
  ['composition', ['options', 'resolver']],
  ['sidecar', ['sidecar-workers', 'sidecar']],
  ['entry point', ['index']],
];
export const BACKENDS = ['consul', 'dns'];
export const OUTSIDE = ['cli', 'testing', 'examples'];
const alt = (names) => `(${names.join('|')})`;
/** One rule: the import specifiers (relative, from `prefix`) a file of this place may not use, and why. */
export function forbid(prefix, modules, folders, why) {
  const patterns = [];
  if (modules.length > 0) patterns.push({ regex: `^${prefix}${alt(modules)}\\.js$`, message: why });
  if (folders.length > 0) patterns.push({ regex: `^${prefix}${alt(folders)}/`, message: why });
  return { 'no-restricted-imports': ['error', { patterns }] };
}
const later = (i) => LAYERS.slice(i + 1).flatMap(([, modules]) => modules);
/** One config object per layer and per backend, for eslint.config.js. */
export const layerRules = [
  ...LAYERS.map(([name, modules], i) => ({
    files: modules.map((m) => `src/${m}.ts`),
    rules: forbid(
      '\\./',
      later(i),
      name === 'composition' ? OUTSIDE : [...BACKENDS, ...OUTSIDE],
      `the ${name} layer imports only itself and earlier layers; backends are wired in by options/resolver (docs/design.md §12)`,
    ),
  })),
  ...BACKENDS.map((backend) => ({
    files: [`src/${backend}/**/*.ts`],
    rules: forbid(
      '\\.\\./',
      LAYERS.slice(2).flatMap(([, modules]) => modules),
      [...BACKENDS.filter((b) => b !== backend), ...OUTSIDE],
      `a backend (src/${backend}/) sees only the foundation and the source contract: no pipeline, observability, sidecar or other backend (docs/design.md §12)`,
    ),
  })),
];

/** The package's own version, for metrics, the tracer scope and `--version`. */
import { readFileSync } from 'node:fs';

let cachedVersion: string | undefined;

/**
 * The package version (for `worker_resolver_build_info` and the tracer's scope version),
 * read once from the package's own `package.json` (one level above both `src/` and `dist/`).
 * `unknown` if it cannot be read (a bundler moved the file).
 */
export function packageVersion(): string {
  if (cachedVersion === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
        version?: unknown;
      };
      cachedVersion = typeof pkg.version === 'string' ? pkg.version : 'unknown';
    } catch {
      cachedVersion = 'unknown';
    }
  }
  return cachedVersion;
}

#!/usr/bin/env node
/**
 * The `worker-resolver` command. This release ships the library and its testing kit; the
 * `serve`, `watch`, `doctor` and `demo` commands arrive with the sidecar (see the README).
 */
import { readFileSync } from 'node:fs';

const USAGE = `worker-resolver — healthy-worker discovery for distributed query coordinators

Usage:
  worker-resolver --help       this text
  worker-resolver --version    the package version
  worker-resolver demo         the embedded demo (arrives with the sidecar release)

The library is usable today: import { createWorkerResolver } from 'worker-resolver'.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function main(argv: readonly string[]): number {
  const [command] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (command === 'demo') {
    process.stdout.write(
      'worker-resolver demo: the embedded demo (Consul dev server, workers, sidecar, example coordinator) arrives with the sidecar issue.\n' +
        'Until then, run the tests (npm test) or use the library: see README.md.\n',
    );
    return 0;
  }
  process.stderr.write(`worker-resolver: unknown command "${command}" (ERR_USAGE); see worker-resolver --help\n`);
  return 2;
}

process.exitCode = main(process.argv.slice(2));

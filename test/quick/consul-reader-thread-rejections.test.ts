/**
 * The reader thread's crash handling must not depend on how the embedding process treats
 * unhandled rejections. A coordinator started with `--unhandled-rejections=warn` (through
 * NODE_OPTIONS, which its worker threads inherit) keeps a thread alive after a rejection
 * nobody handles; a failed reply must still end the thread, or its requests are never answered.
 * This runs the reply-that-cannot-be-posted case of `consul-reader-thread.test.ts` in such a process.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

describe('Consul reader thread under --unhandled-rejections=warn', () => {
  it('a reply that cannot be posted still ends the thread, and the next request restarts it', () => {
    const file = fileURLToPath(new URL('./consul-reader-thread.test.ts', import.meta.url));
    // Without the test runner's own marker, the child runs its tests instead of reporting to this one.
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '--unhandled-rejections=warn' };
    delete env['NODE_TEST_CONTEXT'];
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-name-pattern=cannot be posted', file],
      {
        encoding: 'utf8',
        timeout: 120_000,
        env,
      },
    );
    const out = `${run.stdout}\n${run.stderr}`;
    assert.equal(run.status, 0, out);
    assert.match(out, /^# pass 1$/m, out);
    assert.match(out, /^# fail 0$/m, out);
  });
});

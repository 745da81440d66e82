/**
 * `parseCli`: flags and their environment variables become the resolver options the library
 * validates; a bad value is a `CliUsageError` naming where it came from. (The processes
 * themselves, and their one-line errors, are in cli-serve / cli-watch / cli-wording.)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCli } from '../../src/cli/config.js';
import { CliUsageError } from '../../src/cli/flags.js';

const base = ['--service', 'worker'];

describe('parseCli: Consul reading flags', () => {
  it('--read-in-thread auto|on|off and WORKER_RESOLVER_READ_IN_THREAD become consul.readInThread', () => {
    assert.equal(parseCli('serve', base, {}).resolver?.consul?.readInThread, undefined, 'the library default');
    for (const [value, want] of [
      ['auto', 'auto'],
      ['on', true],
      ['off', false],
    ] as const) {
      assert.equal(parseCli('serve', [...base, '--read-in-thread', value], {}).resolver?.consul?.readInThread, want);
      assert.equal(
        parseCli('watch', base, { WORKER_RESOLVER_READ_IN_THREAD: value }).resolver?.consul?.readInThread,
        want,
      );
    }
    assert.throws(
      () => parseCli('serve', [...base, '--read-in-thread', 'sometimes'], {}),
      (e: unknown) =>
        e instanceof CliUsageError && /--read-in-thread: "sometimes" must be one of auto, on, off/.test(e.message),
    );
    assert.throws(
      () => parseCli('serve', base, { WORKER_RESOLVER_READ_IN_THREAD: 'yes' }),
      (e: unknown) => e instanceof CliUsageError && /WORKER_RESOLVER_READ_IN_THREAD/.test(e.message),
    );
  });

  it('--max-stale DURATION becomes consul.maxStaleMs', () => {
    assert.equal(parseCli('serve', base, {}).resolver?.consul?.maxStaleMs, undefined);
    assert.equal(parseCli('serve', [...base, '--max-stale', '10s'], {}).resolver?.consul?.maxStaleMs, 10_000);
    assert.equal(parseCli('watch', base, { WORKER_RESOLVER_MAX_STALE: '1m' }).resolver?.consul?.maxStaleMs, 60_000);
    assert.throws(
      () => parseCli('serve', [...base, '--max-stale', 'forever'], {}),
      (e: unknown) => e instanceof CliUsageError && /--max-stale: "forever" is not a duration/.test(e.message),
    );
  });

  it('--leader-check DURATION becomes consul.leaderCheckMs', () => {
    assert.equal(parseCli('serve', base, {}).resolver?.consul?.leaderCheckMs, undefined);
    assert.equal(parseCli('serve', [...base, '--leader-check', '5s'], {}).resolver?.consul?.leaderCheckMs, 5_000);
    assert.equal(
      parseCli('watch', base, { WORKER_RESOLVER_LEADER_CHECK: '1m' }).resolver?.consul?.leaderCheckMs,
      60_000,
    );
    assert.throws(
      () => parseCli('serve', [...base, '--leader-check', 'often'], {}),
      (e: unknown) => e instanceof CliUsageError && /--leader-check: "often" is not a duration/.test(e.message),
    );
  });

  it('doctor takes none of them (it reads once)', () => {
    for (const flag of ['--read-in-thread', '--max-stale', '--leader-check']) {
      assert.throws(() => parseCli('doctor', [...base, flag, 'on'], {}), CliUsageError);
    }
  });
});

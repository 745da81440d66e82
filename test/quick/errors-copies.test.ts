/**
 * Errors from two copies of the package (a monorepo that installs it twice): `instanceof` and
 * `isWorkerResolverError` answer by the shared `Symbol.for` brand, not by class identity. The
 * second copy is the same source loaded under another module URL, so its classes are distinct.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type * as Errors from '../../src/errors.js';
import { ErrorCode, InvalidOptionError, WorkerResolverError, isWorkerResolverError } from '../../src/errors.js';

const other = (await import(new URL('../../src/errors.ts?copy=2', import.meta.url).href)) as typeof Errors;

describe('errors across two copies of the package', () => {
  it('loads a second, distinct copy of the classes', () => {
    assert.notEqual(other.WorkerResolverError, WorkerResolverError);
  });

  it('recognises the other copy’s errors, both ways', () => {
    const theirs = new other.WorkerResolverError(other.ErrorCode.CONSUL_ACL, 'denied');
    const ours = new WorkerResolverError(ErrorCode.NO_WORKERS, 'none');
    assert.ok(theirs instanceof WorkerResolverError);
    assert.ok(ours instanceof other.WorkerResolverError);
    assert.ok(isWorkerResolverError(theirs, ErrorCode.CONSUL_ACL));
    assert.ok(other.isWorkerResolverError(ours, ErrorCode.NO_WORKERS));
    assert.equal(isWorkerResolverError(theirs, ErrorCode.NO_WORKERS), false, 'the code still has to match');
    assert.ok(new other.InvalidOptionError('waitMs', 'bad') instanceof InvalidOptionError);
  });

  it('still tells the classes and foreign errors apart', () => {
    const invalid = new other.InvalidOptionError('waitMs', 'bad');
    assert.equal(invalid instanceof WorkerResolverError, false);
    assert.equal(new WorkerResolverError(ErrorCode.NO_WORKERS, 'x') instanceof InvalidOptionError, false);
    assert.ok(invalid instanceof TypeError);
    for (const value of [new Error('x'), { code: 'ERR_NO_WORKERS' }, null, undefined, 'ERR_NO_WORKERS']) {
      assert.equal(value instanceof WorkerResolverError, false);
      assert.equal(isWorkerResolverError(value), false);
    }
  });
});

/**
 * Contract suite, mTLS on the HTTPS port: the dev server and a real Consul agent with
 * `tls.https.verify_incoming`, both with certificates from a CA this test makes (docs/design.md §11).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createWorkerResolver, ErrorCode } from '../../src/index.js';
import type { SourceFailure, WorkerResolverOptions } from '../../src/index.js';
import { backends } from '../helpers/contract-backends.js';
import type { Backend } from '../helpers/contract-backends.js';
import { makeTestPki } from '../helpers/certs.js';
import type { TestPki } from '../helpers/certs.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger } from '../helpers/dev-workers.js';

for (const factory of backends) {
  describe(`contract: mTLS on the HTTPS port (${factory.name})`, { timeout: 120_000 }, () => {
    let pki: TestPki;
    let backend: Backend;
    before(async () => {
      pki = makeTestPki();
      backend = await factory.start({ tls: pki });
      await backend.api.registerService({
        Name: 'secure',
        ID: 'secure-1',
        Address: '127.0.0.1',
        Port: 9001,
        Check: { CheckID: 'secure-1-ttl', TTL: '1h', Status: 'passing' },
      });
    });
    after(async () => {
      await backend?.stop();
      pki?.cleanup();
    });

    const run = (
      tls: NonNullable<NonNullable<WorkerResolverOptions['consul']>['tls']>,
    ): { failures: SourceFailure[]; close: () => Promise<void>; version: () => number } => {
      const failures: SourceFailure[] = [];
      const resolver = createWorkerResolver({
        service: 'secure',
        consul: { address: backend.address, tls, backoff: { baseMs: 50, capMs: 200 } },
        logger: silentLogger,
        env: {},
        observers: [{ onRefresh: (e) => (e.outcome.ok ? undefined : failures.push(e.outcome)) }],
      });
      return { failures, close: () => resolver.close(), version: () => resolver.snapshot().version };
    };

    it('the resolver reads health over HTTPS with the CA and a client certificate', async () => {
      assert.match(backend.address, /^https:\/\/127\.0\.0\.1:/);
      const resolver = createWorkerResolver({
        service: 'secure',
        consul: { address: backend.address, tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } },
        logger: silentLogger,
        env: {},
      });
      try {
        const snapshot = await resolver.ready({ timeoutMs: 20_000 });
        assert.deepEqual(
          snapshot.urls.map((u) => u.href),
          ['http://127.0.0.1:9001/'],
        );
      } finally {
        await resolver.close();
      }
    });

    it('a server certificate from another CA is an ERR_CONSUL_TLS error, nothing published', async () => {
      const r = run({ ca: pki.otherCa, cert: pki.clientCert, key: pki.clientKey });
      try {
        await waitFor(() => r.failures.length >= 1, 'the TLS failure', 20_000);
        assert.equal(r.failures[0]!.error.code, ErrorCode.CONSUL_TLS, r.failures[0]!.error.message);
        assert.equal(r.version(), 0);
      } finally {
        await r.close();
      }
    });

    it('without a client certificate the handshake is refused: ERR_CONSUL_TLS, nothing published', async () => {
      const r = run({ ca: pki.ca });
      try {
        await waitFor(() => r.failures.length >= 1, 'the handshake failure', 20_000);
        assert.equal(r.failures[0]!.error.code, ErrorCode.CONSUL_TLS, r.failures[0]!.error.message);
        assert.equal(r.version(), 0);
      } finally {
        await r.close();
      }
    });
  });
}

/**
 * Contract suite, ACLs: default deny, the anonymous token, tokens made from policies, per-node and
 * per-service filtering, revocation — the same tests against the dev server's ACL system and a
 * real Consul agent's (docs/design.md §11).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../../src/index.js';
import type { SourceFailure } from '../../src/index.js';
import { createWorkerResolver } from '../../src/index.js';
import { backends } from '../helpers/contract-backends.js';
import type { Backend } from '../helpers/contract-backends.js';
import type { AclToken, ConsulResponse } from '../helpers/consul-api.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger } from '../helpers/dev-workers.js';

const FILTERED = 'x-consul-results-filtered-by-acls';

for (const factory of backends) {
  describe(`contract: ACLs, default deny (${factory.name})`, { timeout: 120_000 }, () => {
    let backend: Backend;
    let serviceOnly: AclToken;
    let full: AclToken;
    let ownNode: AclToken;
    const read = (path: string, token: string | null): Promise<ConsulResponse> =>
      backend.api.request('GET', path, { token });
    const ids = (res: ConsulResponse): string[] =>
      (res.json as { Service: { ID: string } }[]).map((e) => e.Service.ID).sort();

    before(async () => {
      backend = await factory.start({ acl: true });
      for (const [id, port] of [
        ['acl-1', 9001],
        ['acl-2', 9002],
      ] as const) {
        await backend.api.registerService({
          Name: 'acl-svc',
          ID: id,
          Address: '127.0.0.1',
          Port: port,
          Check: { CheckID: `${id}-ttl`, TTL: '1h', Status: 'passing' },
        });
      }
      await backend.api.catalogRegister({
        Node: 'acl-other-node',
        Address: '127.0.14.1',
        Service: { ID: 'acl-3', Service: 'acl-svc', Port: 9000 },
      });
      await backend.api.registerService({ Name: 'acl-hidden', ID: 'hidden-1', Port: 9000 });
      await backend.api.createPolicy('svc-read', 'service "acl-svc" { policy = "read" }');
      await backend.api.createPolicy('nodes-read', 'node_prefix "" { policy = "read" }');
      await backend.api.createPolicy('own-node-read', `node "${backend.nodeName}" { policy = "read" }`);
      serviceOnly = await backend.api.createToken(['svc-read']);
      full = await backend.api.createToken(['svc-read', 'nodes-read']);
      ownNode = await backend.api.createToken(['svc-read', 'own-node-read']);
    });
    after(() => backend?.stop());

    it('no token is the anonymous token: its reads are filtered to [] (no flag), its writes are denied', async () => {
      const res = await read('/v1/health/service/acl-svc', null);
      assert.deepEqual([res.status, res.json], [200, []]);
      assert.equal(res.headers[FILTERED], undefined, 'Consul masks the flag for a request without a token');
      assert.ok(Number(res.headers['x-consul-index']) >= 1);
      assert.equal(res.headers['x-consul-default-acl-policy'], 'deny');
      const write = await backend.api.request('PUT', '/v1/agent/service/register', {
        token: null,
        body: { Name: 'intruder', Port: 1 },
      });
      assert.equal(write.status, 403);
      assert.match(write.text, /^Permission denied/);
      assert.equal((await read('/v1/status/leader', null)).status, 200, 'status endpoints are open');
    });

    it('an unknown token is 403 "ACL not found"', async () => {
      const res = await read('/v1/health/service/acl-svc', '00000000-dead-4bad-8bad-000000000000');
      assert.equal(res.status, 403);
      assert.match(res.text, /ACL not found/);
    });

    it('service:read without node:read: 200 [] with X-Consul-Results-Filtered-By-ACLs', async () => {
      const res = await read('/v1/health/service/acl-svc', serviceOnly.SecretID);
      assert.deepEqual([res.status, res.json, res.headers[FILTERED]], [200, [], 'true']);
      const catalog = await read('/v1/catalog/service/acl-svc', serviceOnly.SecretID);
      assert.deepEqual([catalog.status, catalog.json, catalog.headers[FILTERED]], [200, [], 'true']);
    });

    it('service:read and node:read on every node: the whole answer, no flag', async () => {
      const res = await read('/v1/health/service/acl-svc', full.SecretID);
      assert.equal(res.status, 200);
      assert.deepEqual(ids(res), ['acl-1', 'acl-2', 'acl-3']);
      assert.equal(res.headers[FILTERED], undefined);
    });

    it('filtering is per node and per service, not all-or-nothing', async () => {
      const res = await read('/v1/health/service/acl-svc', ownNode.SecretID);
      assert.deepEqual(ids(res), ['acl-1', 'acl-2'], 'only the instances on the node the token may read');
      assert.equal(res.headers[FILTERED], 'true');
      const hidden = await read('/v1/health/service/acl-hidden', full.SecretID);
      assert.deepEqual([hidden.status, hidden.json, hidden.headers[FILTERED]], [200, [], 'true'], 'no service:read');
      const services = await read('/v1/catalog/services', full.SecretID);
      const names = Object.keys(services.json as Record<string, unknown>);
      assert.ok(names.includes('acl-svc') && !names.includes('acl-hidden'), names.join());
      assert.equal(services.headers[FILTERED], 'true');
    });

    it('the anonymous token can be given policies', async () => {
      await backend.api.setAnonymousPolicies(['svc-read', 'nodes-read']);
      try {
        assert.deepEqual(ids(await read('/v1/health/service/acl-svc', null)), ['acl-1', 'acl-2', 'acl-3']);
      } finally {
        await backend.api.setAnonymousPolicies([]);
      }
      assert.deepEqual((await read('/v1/health/service/acl-svc', null)).json, []);
    });

    it('a revoked token is 403 "ACL not found" from then on', async () => {
      const doomed = await backend.api.createToken(['svc-read', 'nodes-read']);
      assert.equal((await read('/v1/health/service/acl-svc', doomed.SecretID)).status, 200);
      await backend.api.deleteToken(doomed.AccessorID);
      const res = await read('/v1/health/service/acl-svc', doomed.SecretID);
      assert.equal(res.status, 403);
      assert.match(res.text, /ACL not found/);
    });

    it('the resolver: a full token publishes; a token without node:read is an ACL error, never an empty list', async () => {
      const ok = createWorkerResolver({
        service: 'acl-svc',
        consul: { address: backend.address, token: full.SecretID },
        logger: silentLogger,
        env: {},
      });
      const failures: SourceFailure[] = [];
      const filtered = createWorkerResolver({
        service: 'acl-svc',
        consul: { address: backend.address, token: serviceOnly.SecretID, aclRetryMs: 60_000 },
        logger: silentLogger,
        env: {},
        observers: [{ onRefresh: (e) => (e.outcome.ok ? undefined : failures.push(e.outcome)) }],
      });
      try {
        assert.equal((await ok.ready({ timeoutMs: 20_000 })).urls.length, 3);
        await waitFor(() => failures.length >= 1, 'the filtered answer', 20_000);
        assert.equal(failures[0]!.error.code, ErrorCode.CONSUL_ACL);
        assert.equal(filtered.snapshot().version, 0, 'nothing published');
      } finally {
        await ok.close();
        await filtered.close();
      }
    });
  });
}

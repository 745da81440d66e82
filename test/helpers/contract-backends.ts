/**
 * The two backends of the contract suite (docs/design.md §11): the project's Consul dev server and a real
 * `consul agent -dev`. A contract test is written once, against `Backend`, and runs on both:
 *
 *   for (const backend of backends) describe(`… (${backend.name})`, () => { … });
 *
 * Setup goes through Consul's HTTP API (`backend.api`: agent registration, TTL checks,
 * maintenance, catalog registration, ACL policies and tokens), which both implement, so the
 * test body never knows which one it talks to. The real agent is never skipped: when its binary
 * is missing, `start()` fails with the provisioning command (see consul-agent.ts).
 */
import { join } from 'node:path';
import { ConsulDevServer } from '../../src/testing/index.js';
import { ConsulAgent, consulVersion } from './consul-agent.js';
import { ConsulApi } from './consul-api.js';
import type { TestPki } from './certs.js';

export interface Backend {
  /** `dev server` or `consul v1.16.1`. */
  readonly name: string;
  readonly kind: 'dev' | 'consul';
  /** Setup and raw requests over HTTP (or HTTPS with `tls`, using the client certificate). */
  readonly api: ConsulApi;
  /** Where a Consul client connects: `http://…`, or `https://…` with `tls`. */
  readonly address: string;
  /** `host:port` of the DNS interface. */
  readonly dnsAddr: string;
  /** The agent's own node (where agent-registered services live). */
  readonly nodeName: string;
  /** The management token when ACLs are on. */
  readonly managementToken: string | undefined;
  /**
   * Takes a snapshot of the state now; the function it returns restores it. Real Consul:
   * `GET /v1/snapshot`, then `PUT /v1/snapshot`. Dev server: the index now, then `resetIndex`
   * to it (the double keeps its content, so a test restores a state whose content is unchanged).
   */
  snapshot(): Promise<() => Promise<void>>;
  stop(): Promise<void>;
}

export interface BackendOptions {
  /** ACLs on, default deny, a management token. */
  readonly acl?: boolean;
  /** HTTPS with mTLS (a client certificate signed by the test CA is required). */
  readonly tls?: TestPki;
}

export interface BackendFactory {
  readonly name: string;
  readonly kind: 'dev' | 'consul';
  start(options?: BackendOptions): Promise<Backend>;
}

const MANAGEMENT = 'c0ffee00-0000-4000-8000-00000000a11d';

const devServer: BackendFactory = {
  name: 'dev server',
  kind: 'dev',
  async start(options = {}) {
    const pki = options.tls;
    const dev = await ConsulDevServer.start({
      ...(options.acl ? { aclToken: MANAGEMENT } : {}),
      ...(pki ? { tls: { key: pki.serverKey, cert: pki.serverCert, ca: pki.ca, requestCert: true } } : {}),
    });
    const token = options.acl ? MANAGEMENT : undefined;
    return {
      name: this.name,
      kind: 'dev',
      api: new ConsulApi(
        dev.httpAddr,
        token,
        pki ? { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } : undefined,
      ),
      address: dev.httpAddr,
      dnsAddr: dev.dnsAddr ?? '',
      nodeName: 'dev-node',
      managementToken: token,
      snapshot() {
        const index = dev.index;
        return Promise.resolve(() => {
          dev.resetIndex(index);
          return Promise.resolve();
        });
      },
      stop: () => dev.stop(),
    };
  },
};

const realConsul: BackendFactory = {
  name: `consul ${consulVersion()}`,
  kind: 'consul',
  async start(options = {}) {
    const pki = options.tls;
    const agent = await ConsulAgent.start({
      ...(options.acl ? { acl: { managementToken: MANAGEMENT } } : {}),
      ...(pki
        ? {
            tls: {
              caFile: join(pki.dir, 'ca.pem'),
              certFile: join(pki.dir, 'server.pem'),
              keyFile: join(pki.dir, 'server.key'),
              verifyIncoming: true,
            },
          }
        : {}),
    });
    return {
      name: this.name,
      kind: 'consul',
      api: agent,
      address: agent.httpsAddr ?? agent.httpAddr,
      dnsAddr: agent.dnsAddr,
      nodeName: agent.nodeName,
      managementToken: agent.managementToken,
      async snapshot() {
        const saved = (await agent.call('GET', '/v1/snapshot')).raw;
        return async () => {
          await agent.call('PUT', '/v1/snapshot', { body: saved });
        };
      },
      stop: () => agent.stop(),
    };
  },
};

/** Both backends, the dev server first. */
export const backends: readonly BackendFactory[] = [devServer, realConsul];

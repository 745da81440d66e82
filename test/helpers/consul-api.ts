/**
 * Consul's HTTP API as the tests use it: raw requests and the setup calls (services, checks,
 * maintenance, ACL policies and tokens), against a real agent (`consul-agent.ts`) or the dev
 * server alike.
 */
import http from 'node:http';
import https from 'node:https';

/** A raw answer of the agent's HTTP API. */
export interface ConsulResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
  /** The body's bytes (for binary answers such as `GET /v1/snapshot`). */
  readonly raw: Buffer;
  /** The body parsed as JSON (undefined when it is not JSON). */
  readonly json: unknown;
}

/** Options of {@link ConsulApi.request}. */
export interface ConsulRequestOptions {
  /** Sent as is when a string or a Buffer, JSON-encoded otherwise. */
  readonly body?: unknown;
  /** `X-Consul-Token`; default the management token (when ACLs are on); `null` sends none. */
  readonly token?: string | null;
  readonly query?: Readonly<Record<string, string | number | boolean | readonly string[]>>;
  readonly timeoutMs?: number;
}

/** A token as `PUT /v1/acl/token` answers it (the fields the tests use). */
export interface AclToken {
  readonly AccessorID: string;
  readonly SecretID: string;
}

type CheckStatus = 'passing' | 'warning' | 'critical';

/**
 * Consul's HTTP API as the tests use it (setup and raw requests), over plain HTTP. Works against
 * a real agent and against the dev server alike, so a contract test's setup is the same for both.
 */
export class ConsulApi {
  /**
   * @param httpAddr `http://host:port`
   * @param managementToken sent by default when set (ACLs on)
   */
  constructor(
    readonly httpAddr: string,
    readonly managementToken: string | undefined,
    /** CA and client certificate (PEM) for an `https://` address. */
    private readonly tlsClient?: { readonly ca: string; readonly cert?: string; readonly key?: string },
  ) {}

  /** One HTTP request. */
  request(method: string, path: string, opts: ConsulRequestOptions = {}): Promise<ConsulResponse> {
    const url = new URL(path, this.httpAddr);
    for (const [key, value] of Object.entries(opts.query ?? {})) {
      if (Array.isArray(value)) for (const v of value as readonly string[]) url.searchParams.append(key, v);
      else url.searchParams.set(key, String(value));
    }
    const headers: Record<string, string> = {};
    const token = opts.token === undefined ? this.managementToken : opts.token;
    if (token !== undefined && token !== null) headers['X-Consul-Token'] = token;
    const body =
      opts.body === undefined
        ? undefined
        : typeof opts.body === 'string' || Buffer.isBuffer(opts.body)
          ? opts.body
          : JSON.stringify(opts.body);
    if (body !== undefined && !Buffer.isBuffer(body)) headers['Content-Type'] = 'application/json';
    return new Promise<ConsulResponse>((resolve, reject) => {
      const lib = url.protocol === 'https:' ? https : http;
      const req = lib.request(url, { method, headers, agent: false, ...this.tlsClient }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          const text = raw.toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, raw, json });
        });
      });
      req.setTimeout(opts.timeoutMs ?? 15_000, () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Like `request`, but a non-2xx answer throws with its body. */
  async call(method: string, path: string, opts: ConsulRequestOptions = {}): Promise<ConsulResponse> {
    const res = await this.request(method, path, opts);
    if (res.status < 200 || res.status > 299) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
    return res;
  }

  /** `PUT /v1/agent/service/register` (a Consul service definition: Name, ID, Check(s), Tags, Meta, ...). */
  async registerService(def: Readonly<Record<string, unknown>>, opts: { token?: string | null } = {}): Promise<void> {
    await this.call('PUT', '/v1/agent/service/register', { ...opts, body: def });
  }

  async deregisterService(serviceId: string): Promise<void> {
    await this.call('PUT', `/v1/agent/service/deregister/${encodeURIComponent(serviceId)}`);
  }

  /** `PUT /v1/catalog/register`: another node (with address, meta, tagged addresses) and its service/checks. */
  async catalogRegister(body: Readonly<Record<string, unknown>>): Promise<void> {
    await this.call('PUT', '/v1/catalog/register', { body });
  }

  /** A TTL check's status through the agent's check endpoints (`pass`/`warn`/`fail`). */
  async setCheckStatus(checkId: string, status: CheckStatus, note = ''): Promise<void> {
    const verb = status === 'passing' ? 'pass' : status === 'warning' ? 'warn' : 'fail';
    await this.call('PUT', `/v1/agent/check/${verb}/${encodeURIComponent(checkId)}`, note ? { query: { note } } : {});
  }

  async setServiceMaintenance(serviceId: string, enable: boolean, reason = ''): Promise<void> {
    await this.call('PUT', `/v1/agent/service/maintenance/${encodeURIComponent(serviceId)}`, {
      query: { enable, ...(reason ? { reason } : {}) },
    });
  }

  async setNodeMaintenance(enable: boolean, reason = ''): Promise<void> {
    await this.call('PUT', '/v1/agent/maintenance', { query: { enable, ...(reason ? { reason } : {}) } });
  }

  /** `X-Consul-Index` of `GET /v1/health/service/:service` now. */
  async serviceIndex(service: string): Promise<number> {
    const res = await this.call('GET', `/v1/health/service/${encodeURIComponent(service)}`);
    return Number(res.headers['x-consul-index']);
  }

  /** Creates an ACL policy from rules (HCL) and returns its ID. */
  async createPolicy(name: string, rules: string): Promise<string> {
    const res = await this.call('PUT', '/v1/acl/policy', { body: { Name: name, Rules: rules } });
    return (res.json as { ID: string }).ID;
  }

  /** Creates a token linked to policies (by name); `policies: []` is a token with no rights. */
  async createToken(policies: readonly string[], description = 'worker-resolver test'): Promise<AclToken> {
    const res = await this.call('PUT', '/v1/acl/token', {
      body: { Description: description, Policies: policies.map((Name) => ({ Name })) },
    });
    const { AccessorID, SecretID } = res.json as AclToken;
    return { AccessorID, SecretID };
  }

  /** Revokes a token (by accessor ID). */
  async deleteToken(accessorId: string): Promise<void> {
    await this.call('DELETE', `/v1/acl/token/${encodeURIComponent(accessorId)}`);
  }

  /** Sets the anonymous token's policies (the rights of a request without a token). */
  async setAnonymousPolicies(policies: readonly string[]): Promise<void> {
    await this.call('PUT', '/v1/acl/token/00000000-0000-0000-0000-000000000002', {
      body: { Description: 'Anonymous Token', Policies: policies.map((Name) => ({ Name })) },
    });
  }
}

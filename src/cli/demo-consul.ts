/**
 * The Consul the demo runs against: the embedded dev server (the default), or a real agent
 * named by `--consul` / `CONSUL_HTTP_ADDR`. Both are reduced to what the demo needs — an
 * HTTP address, maybe a DNS address, the token the workers register with, and a fault
 * injector only the dev server has — so the rest of the demo does not care which it is.
 *
 * A real agent is checked before anything else starts (reachable, has a leader), so a wrong
 * address is one clear line and exit 1, not a resolver waiting for its first answer. Its
 * DNS address comes from `--consul-dns`, else from the agent itself (`/v1/agent/self`,
 * `DebugConfig.DNSAddrs`, which needs `agent:read`); when neither says, the demo runs
 * without the DNS fallback and says so.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { ConsulDevServer } from '../testing/index.js';

type Env = Readonly<Record<string, string | undefined>>;

/** The Consul of one demo run. */
export interface DemoConsul {
  /** `http(s)://host:port`. */
  readonly httpAddr: string;
  /** `host:port` of its DNS interface; undefined = no DNS fallback. */
  readonly dnsAddr: string | undefined;
  /** The embedded dev server (fault injection, its own DNS); undefined for a real agent. */
  readonly dev: ConsulDevServer | undefined;
  /** The ACL token the workers register with (real agent only); never printed. */
  readonly token: string | undefined;
  /** The header's name for it: `Consul dev server` or `Consul agent`. */
  readonly label: string;
  /** The header's note after the address, e.g. `Consul 1.16.1, from --consul`. */
  readonly note: string;
  /** Deregisters these instance IDs (a real agent keeps a crashed worker's registration); best effort. */
  deregister(ids: readonly string[]): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the embedded dev server on `port`/`dnsPort` (0 = ephemeral). */
export async function startEmbeddedConsul(port: number, dnsPort: number): Promise<DemoConsul> {
  const dev = await ConsulDevServer.start({ port, dns: { port: dnsPort } });
  return {
    httpAddr: dev.httpAddr,
    dnsAddr: dev.dnsAddr,
    dev,
    token: undefined,
    label: 'Consul dev server',
    note: `export CONSUL_HTTP_ADDR=${dev.httpAddr}`,
    deregister: () => Promise.resolve(),
    stop: () => dev.stop(),
  };
}

/** One answer of the agent's HTTP API. */
interface AgentAnswer {
  readonly status: number;
  readonly body: string;
}

/** A request to the agent with the user's token and CA (`CONSUL_CACERT`, client cert), bounded to 5 s. */
function agentRequest(
  base: URL,
  method: string,
  path: string,
  token: string | undefined,
  env: Env,
): Promise<AgentAnswer> {
  const tls =
    base.protocol === 'https:'
      ? {
          ...(env['CONSUL_CACERT'] ? { ca: readFileSync(env['CONSUL_CACERT']) } : {}),
          ...(env['CONSUL_CLIENT_CERT'] ? { cert: readFileSync(env['CONSUL_CLIENT_CERT']) } : {}),
          ...(env['CONSUL_CLIENT_KEY'] ? { key: readFileSync(env['CONSUL_CLIENT_KEY']) } : {}),
          ...(env['CONSUL_TLS_SERVER_NAME'] ? { servername: env['CONSUL_TLS_SERVER_NAME'] } : {}),
          ...(/^(0|false)$/i.test(env['CONSUL_HTTP_SSL_VERIFY'] ?? '') ? { rejectUnauthorized: false } : {}),
        }
      : {};
  const lib = base.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(
      new URL(path, base),
      {
        method,
        agent: false,
        headers: token === undefined ? {} : { 'X-Consul-Token': token },
        signal: AbortSignal.timeout(5_000),
        ...tls,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The token from `CONSUL_HTTP_TOKEN`, else the file `CONSUL_HTTP_TOKEN_FILE`, as Consul's CLI reads them. */
function tokenOf(env: Env): string | undefined {
  const token = env['CONSUL_HTTP_TOKEN'];
  if (token !== undefined && token !== '') return token;
  const file = env['CONSUL_HTTP_TOKEN_FILE'];
  if (file === undefined || file === '') return undefined;
  return readFileSync(file, 'utf8').trim() || undefined;
}

/** The agent's version and DNS address, from `/v1/agent/self` (both undefined if it will not say). */
async function describeAgent(
  base: URL,
  token: string | undefined,
  env: Env,
): Promise<{ version: string | undefined; dns: string | undefined }> {
  try {
    const self = await agentRequest(base, 'GET', '/v1/agent/self', token, env);
    if (self.status !== 200) return { version: undefined, dns: undefined };
    const parsed = JSON.parse(self.body) as {
      Config?: { Version?: unknown };
      DebugConfig?: { DNSAddrs?: unknown };
    };
    const version = typeof parsed.Config?.Version === 'string' ? parsed.Config.Version : undefined;
    const addrs = Array.isArray(parsed.DebugConfig?.DNSAddrs) ? (parsed.DebugConfig.DNSAddrs as unknown[]) : [];
    const udp = addrs.find((a): a is string => typeof a === 'string' && a.startsWith('udp://'));
    if (udp === undefined) return { version, dns: undefined };
    const hostPort = new URL(udp.replace(/^udp:/, 'http:'));
    // An agent listening on every interface is reached where its HTTP API was.
    const wildcard = hostPort.hostname === '0.0.0.0' || hostPort.hostname === '[::]';
    return { version, dns: `${wildcard ? base.hostname : hostPort.hostname}:${hostPort.port}` };
  } catch {
    return { version: undefined, dns: undefined };
  }
}

/**
 * Checks the real agent at `base` (reachable, with a leader) and finds its DNS address.
 * Throws an Error with one readable line when it cannot be used.
 */
export async function connectRealConsul(
  base: URL,
  opts: { dns: string | undefined; origin: string; env: Env },
): Promise<DemoConsul> {
  const { env } = opts;
  const token = tokenOf(env);
  let leader: AgentAnswer;
  try {
    leader = await agentRequest(base, 'GET', '/v1/status/leader', token, env);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`cannot reach Consul at ${base.origin} (${opts.origin}): ${e.code ?? e.message}`, { cause: err });
  }
  if (leader.status !== 200 || leader.body.trim() === '""' || leader.body.trim() === '') {
    throw new Error(`Consul at ${base.origin} has no leader (${leader.status} ${leader.body.trim().slice(0, 80)})`);
  }
  const self = await describeAgent(base, token, env);
  const httpAddr = base.origin;
  return {
    httpAddr,
    dnsAddr: opts.dns ?? self.dns,
    dev: undefined,
    token,
    label: 'Consul agent',
    note: `Consul ${self.version ?? 'of unknown version'}, from ${opts.origin}`,
    async deregister(ids) {
      await Promise.all(
        ids.map((id) =>
          agentRequest(base, 'PUT', `/v1/agent/service/deregister/${encodeURIComponent(id)}`, token, env).catch(
            () => undefined,
          ),
        ),
      );
    },
    stop: () => Promise.resolve(),
  };
}

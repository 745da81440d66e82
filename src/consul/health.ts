/**
 * Turns the body of `GET /v1/health/service/:service` into worker candidates.
 *
 * Defensive by design: the body is untrusted input. A body that is not a JSON array is a
 * malformed answer (the caller keeps its last good set); an entry that is not usable (wrong
 * types, bad address, bad port, unhealthy, in maintenance, filtered out) is skipped and
 * counted, never thrown. Nothing here does I/O.
 */
import { ErrorCode, WorkerResolverError } from '../errors.js';
import type { WorkerCandidate, WorkerStatus } from '../source.js';
import { urlHost } from '../url-host.js';

/** How a Consul health entry becomes a worker. */
export interface ConsulWorkerPolicy {
  /**
   * Tagged address to prefer (`lan`, `wan`, `lan_ipv4`, `wan_ipv6`, ...), in the HTTP API's
   * order: `Service.TaggedAddresses[t]`, then `Service.Address`, then `Node.TaggedAddresses[t]`,
   * then `Node.Address`. Undefined (the default): the address Consul's DNS answers
   * (`lan_ipv6`, `lan_ipv4`, `Service.Address`, then the node's), so DNS failover keeps URLs.
   */
  readonly taggedAddress: string | undefined;
  /** URL scheme of workers, e.g. `http`. */
  readonly scheme: string;
  /** A `Service.Meta` key whose value, when present and valid, overrides `scheme`. */
  readonly schemeMetaKey: string | undefined;
  /** Keep `warning` instances (by default only `passing`). Maintenance is excluded either way. */
  readonly includeWarning: boolean;
  /** Keep only instances whose `Service.Meta[key]` is one of `values`. */
  readonly metaMatch: { readonly key: string; readonly values: readonly string[] } | undefined;
}

/** The result of parsing one health answer. */
export interface ParsedHealth {
  readonly workers: WorkerCandidate[];
  /** Entries dropped because they were unusable (not counting healthy-filtering). */
  readonly rejected: number;
  /** Entries dropped by the status policy, maintenance or the meta filter. */
  readonly filtered: number;
}

type Json = Record<string, unknown>;

/** The CheckID of Consul's maintenance checks (service: `_service_maintenance:<id>`; node: `_node_maintenance`). */
export const MAINTENANCE_CHECK = /^(_service_maintenance:|_node_maintenance$)/;
const SCHEME = /^[a-z][a-z0-9+.-]*$/;
function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/**
 * Parses the raw body. Throws `ERR_CONSUL_MALFORMED` only when the body as a whole is
 * unusable (not JSON, not an array); individual bad entries are counted in `rejected`.
 */
export function parseHealthBody(body: Buffer | string, policy: ConsulWorkerPolicy): ParsedHealth {
  let data: unknown;
  try {
    data = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (cause) {
    throw new WorkerResolverError(ErrorCode.CONSUL_MALFORMED, 'Consul health answer is not valid JSON', { cause });
  }
  if (!Array.isArray(data)) {
    throw new WorkerResolverError(
      ErrorCode.CONSUL_MALFORMED,
      `Consul health answer is not a JSON array (got ${data === null ? 'null' : typeof data})`,
    );
  }
  const workers: WorkerCandidate[] = [];
  let rejected = 0;
  let filtered = 0;
  for (const entry of data) {
    const result = entryToWorker(entry, policy);
    if (result === 'rejected') rejected += 1;
    else if (result === 'filtered') filtered += 1;
    else workers.push(result);
  }
  return { workers, rejected, filtered };
}

/** Aggregated status of an entry's checks, or 'excluded' when it must not receive work. */
function entryStatus(checks: unknown, includeWarning: boolean): WorkerStatus | 'excluded' | 'rejected' {
  if (checks === null || checks === undefined) return 'passing';
  if (!Array.isArray(checks)) return 'rejected';
  let status: WorkerStatus = 'passing';
  for (const check of checks) {
    if (!isObject(check)) return 'rejected';
    const id = str(check['CheckID']) ?? '';
    // Maintenance is how operators drain a worker: excluded even if some client-side policy
    // would otherwise accept its (critical) check.
    if (MAINTENANCE_CHECK.test(id)) return 'excluded';
    const s = check['Status'];
    if (s === 'passing') continue;
    if (s === 'warning' && includeWarning) {
      status = 'warning';
      continue;
    }
    return 'excluded';
  }
  return status;
}

function validPort(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535 ? value : undefined;
}

interface Endpoint {
  readonly host: string;
  readonly port: unknown;
}

/** A service-level tagged address's host, or undefined when absent or empty. */
function serviceTagged(service: Json, name: string): Json | undefined {
  const all = service['TaggedAddresses'];
  if (!isObject(all)) return undefined;
  const t = all[name];
  return isObject(t) && typeof t['Address'] === 'string' && t['Address'] !== '' ? t : undefined;
}

/** A node-level tagged address (a plain string in Consul's node shape), or undefined when absent or empty. */
function nodeTagged(node: Json, name: string): string | undefined {
  const all = node['TaggedAddresses'];
  if (!isObject(all)) return undefined;
  const t = all[name];
  return typeof t === 'string' && t !== '' ? t : undefined;
}

/**
 * The default view: the address Consul's DNS puts behind an SRV answer for the local
 * datacenter (Consul 1.16 `agent/dns.go` `nodeServiceRecords` → `TranslateServiceAddress` /
 * `TranslateAddress` with "accept any"): the service's `lan_ipv6` tagged address, then its
 * `lan_ipv4`, then `Service.Address`; without any of those the node's `lan_ipv6`, `lan_ipv4`,
 * then `Node.Address`. The port is always `Service.Port` (a tagged address's port is used by
 * DNS only across datacenters, for `wan`). The DNS source reads the same instance under the
 * same host and port, so a worker keeps one URL when the resolver fails over to DNS and back
 * (docs/design.md §4.1; proven on a real agent by `test/real-consul/consul-cluster.test.ts`).
 */
function dnsViewEndpoint(node: Json, service: Json): Endpoint | undefined {
  const port = service['Port'];
  const host =
    (serviceTagged(service, 'lan_ipv6')?.['Address'] as string | undefined) ??
    (serviceTagged(service, 'lan_ipv4')?.['Address'] as string | undefined) ??
    nonEmpty(str(service['Address'])) ??
    nodeTagged(node, 'lan_ipv6') ??
    nodeTagged(node, 'lan_ipv4') ??
    nonEmpty(str(node['Address']));
  return host === undefined ? undefined : { host, port };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === '' ? undefined : value;
}

/**
 * With `taggedAddress` set, the HTTP API's view: Consul's `structs.CheckServiceNode.BestAddress`
 * order (docs/design.md §4.1) — the service-level tagged address, then `Service.Address`, then
 * the node-level tagged address, then `Node.Address`. A containerised worker registers its own
 * `Service.Address`; the node's tagged address must not override it. The port is the
 * service-level tagged address's port when that address was chosen and its port is not 0
 * (Consul's "use the service port"), else `Service.Port`. This view is what a caller asks for
 * by name (`wan` across datacenters, say); Consul's DNS does not follow it, so with a DNS
 * fallback a worker may change URL on failover (docs/reference.md, "Addresses").
 * Without `taggedAddress`: {@link dnsViewEndpoint}.
 */
function chooseEndpoint(node: Json, service: Json, tagged: string | undefined): Endpoint | undefined {
  if (tagged === undefined) return dnsViewEndpoint(node, service);
  const servicePort = service['Port'];
  const t = serviceTagged(service, tagged);
  if (t !== undefined) {
    const port = t['Port'];
    return {
      host: t['Address'] as string,
      port: port === undefined || port === null || port === 0 ? servicePort : port,
    };
  }
  const serviceAddress = nonEmpty(str(service['Address']));
  if (serviceAddress !== undefined) return { host: serviceAddress, port: servicePort };
  const nodeAddress = nodeTagged(node, tagged) ?? nonEmpty(str(node['Address']));
  return nodeAddress === undefined ? undefined : { host: nodeAddress, port: servicePort };
}

function stringMap(value: unknown): Record<string, string> | undefined {
  if (value === null || value === undefined) return {};
  if (!isObject(value)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') return undefined;
    out[k] = v;
  }
  return out;
}

function stringList(value: unknown): string[] | undefined {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value) || !value.every((t) => typeof t === 'string')) return undefined;
  return value;
}

function weightOf(service: Json, status: WorkerStatus): number {
  const weights = service['Weights'];
  if (!isObject(weights)) return 1;
  const w = status === 'warning' ? weights['Warning'] : weights['Passing'];
  return typeof w === 'number' && Number.isFinite(w) && w >= 0 ? w : 1;
}

/**
 * One parsed health entry as a worker candidate, or why it is not one: `rejected` (unusable:
 * wrong types, bad address or port) or `filtered` (status policy, maintenance, meta filter).
 */
export function entryToWorker(entry: unknown, policy: ConsulWorkerPolicy): WorkerCandidate | 'rejected' | 'filtered' {
  if (!isObject(entry)) return 'rejected';
  const node = entry['Node'];
  const service = entry['Service'];
  if (!isObject(node) || !isObject(service)) return 'rejected';
  const id = str(service['ID']);
  const nodeName = str(node['Node']);
  const tags = stringList(service['Tags']);
  const meta = stringMap(service['Meta']);
  if (id === undefined || id === '' || nodeName === undefined || tags === undefined || meta === undefined) {
    return 'rejected';
  }

  const status = entryStatus(entry['Checks'], policy.includeWarning);
  if (status === 'rejected') return 'rejected';
  if (status === 'excluded') return 'filtered';
  if (policy.metaMatch !== undefined) {
    const value = meta[policy.metaMatch.key];
    if (value === undefined || !policy.metaMatch.values.includes(value)) return 'filtered';
  }

  const endpoint = chooseEndpoint(node, service, policy.taggedAddress);
  if (endpoint === undefined) return 'rejected';
  const host = urlHost(endpoint.host);
  const port = validPort(endpoint.port);
  if (host === undefined || port === undefined) return 'rejected';

  const metaScheme = policy.schemeMetaKey === undefined ? undefined : meta[policy.schemeMetaKey]?.toLowerCase();
  const scheme = metaScheme !== undefined && SCHEME.test(metaScheme) ? metaScheme : policy.scheme;

  return {
    url: `${scheme}://${host}:${port}`,
    id,
    node: nodeName,
    address: host.startsWith('[') ? host.slice(1, -1) : host,
    port,
    tags,
    meta,
    status,
    weight: weightOf(service, status),
  };
}

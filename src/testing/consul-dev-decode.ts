/**
 * Decoding and validation of Consul request bodies for the dev server, shared by the HTTP
 * endpoints and the programmatic API. Bodies are decoded like Go's `encoding/json` does:
 * field names match case-insensitively (and, like Consul's `TranslateKeys`, snake_case
 * aliases are accepted). Map contents (`Meta`, `TaggedAddresses`) are user data and keep
 * their keys. Every failure is a {@link ConsulApiError} carrying Consul's status and text.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import type { CheckStatus, ServiceAddress } from './consul-api-types.js';
import type { CheckRunSpec } from './consul-dev-checks.js';
import { formatGoDuration, parseGoDuration } from '../duration.js';
import { sortedMap } from './consul-state.js';
import type { CheckInput, ConsulState } from './consul-state.js';

/** An API error with the HTTP status and plain-text body Consul would answer. */
export class ConsulApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }

  override get name(): string {
    return 'ConsulApiError';
  }
}

/** The check states a client may set. */
export const STATUSES: ReadonlySet<string> = new Set(['passing', 'warning', 'critical']);

/** A decoded JSON object. */
export type Json = Record<string, unknown>;

/** Case- and underscore-insensitive field lookup (Go JSON decoding + Consul's snake_case aliases). */
export function field(obj: Json, name: string): unknown {
  if (Object.hasOwn(obj, name)) return obj[name];
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(obj)) if (k.replace(/_/g, '').toLowerCase() === want) return v;
  return undefined;
}

/** A 400 with Consul's text. */
export const bad = (message: string): ConsulApiError => new ConsulApiError(400, message);

/** The value as a JSON object, or a 400. */
export function asObject(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw bad(`Request decode failed: ${what} must be an object`);
  return value as Json;
}
/** An optional string field, or a 400 if it has another type. */
export function optString(obj: Json, name: string): string | undefined {
  const v = field(obj, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(`Request decode failed: ${name} must be a string`);
  return v;
}
/** An optional integer field, or a 400 if it has another type. */
export function optInt(obj: Json, name: string): number | undefined {
  const v = field(obj, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(`Request decode failed: ${name} must be an integer`);
  return v;
}
/** A string map field (sorted, frozen), empty when absent. */
export function stringMap(obj: Json, name: string): Record<string, string> {
  const v = field(obj, name);
  if (v === undefined || v === null) return sortedMap({});
  const map = asObject(v, name);
  for (const [k, s] of Object.entries(map))
    if (typeof s !== 'string') throw bad(`Request decode failed: ${name}.${k} must be a string`);
  return sortedMap(map as Record<string, string>);
}
/** A string list field (frozen), empty when absent. */
export function stringList(obj: Json, name: string): string[] {
  const v = field(obj, name);
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string'))
    throw bad(`Request decode failed: ${name} must be a list of strings`);
  return Object.freeze([...(v as string[])]) as string[];
}

/** A stable UUID-shaped node ID derived from the node name, so answers are reproducible. */
export function nodeIdFor(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** A check record with defaults (a node-level check until the caller sets ServiceID). */
export function nodeCheck(
  node: string,
  checkId: string,
  name: string,
  status: CheckStatus,
  output: string,
  type: string,
): CheckInput {
  return {
    Node: node,
    CheckID: checkId,
    Name: name,
    Status: status,
    Notes: '',
    Output: output,
    ServiceID: '',
    ServiceName: '',
    ServiceTags: [],
    Type: type,
    Interval: '',
    Timeout: '',
  };
}

/** The 404 Consul answers for an unknown service ID. */
export function unknownService(serviceId: string): ConsulApiError {
  return new ConsulApiError(
    404,
    `Unknown service ID "${serviceId}". Ensure that the service ID is passed, not the service name.`,
  );
}

/**
 * Service tagged addresses: the given ones, plus (when the service has an IP address)
 * `lan_ipv4`/`wan_ipv4` or `lan_ipv6`/`wan_ipv6` defaults, as the agent adds them.
 */
export function serviceTaggedAddresses(value: unknown, address: string, port: number): Record<string, ServiceAddress> {
  const out: Record<string, ServiceAddress> = {};
  if (value !== undefined && value !== null) {
    for (const [k, v] of Object.entries(asObject(value, 'TaggedAddresses'))) {
      const a = asObject(v, `TaggedAddresses.${k}`);
      out[k] = { Address: optString(a, 'Address') ?? '', Port: optInt(a, 'Port') ?? 0 };
    }
  }
  const family = net.isIP(address);
  if (family !== 0) {
    const suffix = family === 4 ? 'ipv4' : 'ipv6';
    for (const scope of ['lan', 'wan']) out[`${scope}_${suffix}`] ??= { Address: address, Port: port };
  }
  return sortedMap(out);
}

/** Decodes one check of `PUT /v1/catalog/register` (passive: its status is whatever was sent). */
export function decodeCatalogCheck(state: ConsulState, node: string, c: Json): CheckInput {
  const status = optString(c, 'Status') || 'critical';
  if (!STATUSES.has(status)) throw bad(`Invalid check status: "${status}"`);
  const serviceId = optString(c, 'ServiceID') ?? '';
  const svc = serviceId === '' ? undefined : state.service(node, serviceId);
  if (serviceId !== '' && svc === undefined) throw bad(`Unknown service ID "${serviceId}" for check`);
  const checkId = optString(c, 'CheckID') || optString(c, 'Name') || '';
  if (checkId === '') throw bad('Missing check ID');
  return {
    ...nodeCheck(
      node,
      checkId,
      optString(c, 'Name') || checkId,
      status as CheckStatus,
      optString(c, 'Output') ?? '',
      '',
    ),
    Notes: optString(c, 'Notes') ?? '',
    ServiceID: serviceId,
    ServiceName: svc?.Service ?? '',
    ServiceTags: svc?.Tags ?? [],
  };
}

/** Decodes one check of a service definition into its catalog record and what the agent must run. */
export function decodeServiceCheck(
  c: Json,
  ctx: { node: string; id: string; name: string; tags: string[]; n: number; count: number },
): { check: CheckInput; spec: CheckRunSpec | undefined; explicitStatus: boolean } {
  const statusIn = optString(c, 'Status');
  if (statusIn !== undefined && statusIn !== '' && !STATUSES.has(statusIn))
    throw bad(`Invalid check status: "${statusIn}"`);
  const checkId =
    optString(c, 'CheckID') ||
    optString(c, 'ID') ||
    (ctx.count > 1 ? `service:${ctx.id}:${ctx.n + 1}` : `service:${ctx.id}`);
  const duration = (name: string): number | undefined => {
    const text = optString(c, name);
    if (text === undefined || text === '') return undefined;
    const ms = parseGoDuration(text);
    if (ms === undefined) throw bad(`Request decode failed: ${name}: invalid duration "${text}"`);
    return ms;
  };
  const ttl = duration('TTL');
  const interval = duration('Interval');
  const timeoutMs = duration('Timeout') ?? 10_000;
  const httpUrl = optString(c, 'HTTP');
  const tcp = optString(c, 'TCP');
  let spec: CheckRunSpec;
  let type: string;
  if (httpUrl !== undefined && httpUrl !== '') {
    if (interval === undefined || interval <= 0) throw bad('Invalid check: Interval must be > 0 for HTTP checks');
    const header = field(c, 'Header');
    spec = {
      kind: 'http',
      url: httpUrl,
      method: optString(c, 'Method') || 'GET',
      headers: header === undefined || header === null ? {} : (asObject(header, 'Header') as Record<string, string[]>),
      body: optString(c, 'Body'),
      intervalMs: interval,
      timeoutMs,
    };
    type = 'http';
  } else if (tcp !== undefined && tcp !== '') {
    if (interval === undefined || interval <= 0) throw bad('Invalid check: Interval must be > 0 for TCP checks');
    spec = { kind: 'tcp', target: tcp, intervalMs: interval, timeoutMs };
    type = 'tcp';
  } else if (ttl !== undefined) {
    if (ttl <= 0) throw bad('Invalid check: TTL must be > 0 for TTL checks');
    spec = { kind: 'ttl', ttlMs: ttl };
    type = 'ttl';
  } else {
    throw bad('Invalid check: the dev server supports TTL, HTTP+Interval and TCP+Interval checks only');
  }
  const check: CheckInput = {
    ...nodeCheck(
      ctx.node,
      checkId,
      optString(c, 'Name') || `Service '${ctx.name}' check`,
      (statusIn || 'critical') as CheckStatus,
      '',
      type,
    ),
    Notes: optString(c, 'Notes') ?? '',
    ServiceID: ctx.id,
    ServiceName: ctx.name,
    ServiceTags: ctx.tags,
    Interval: spec.kind === 'ttl' ? '' : formatGoDuration(spec.intervalMs),
    Timeout: spec.kind === 'ttl' ? '' : formatGoDuration(timeoutMs),
  };
  return { check, spec, explicitStatus: statusIn !== undefined && statusIn !== '' };
}

/** DNS SRV source options (docs/design.md §4.2): types, defaults and validation. */
import type { Clock } from '../clock.js';
import { parseDnsServer } from './client.js';
import { durationOption, fail, nonEmptyString, schemeOption } from '../option-checks.js';
import type { DnsSrvSourceConfig } from './source.js';

/** DNS SRV source options (docs/design.md §4.2). */
export interface DnsOptions {
  /** The SRV name, e.g. `_datafusion-worker._tcp.service.consul`. */
  readonly name: string;
  /** DNS servers as `host:port` (IP literals; `[v6]:port`). Default: the system's resolvers. */
  readonly servers?: readonly string[];
  /** `auto` (default): UDP with EDNS0, TCP when the answer is truncated or the server ignored EDNS. */
  readonly transport?: 'auto' | 'udp' | 'tcp';
  /** URL scheme of workers. Default `http`. */
  readonly scheme?: string;
  /** Per-attempt timeout. Default 2000. */
  readonly timeoutMs?: number;
  /** TTL bounds for the refresh interval. Default 1000 and 30000. */
  readonly minRefreshMs?: number;
  readonly maxRefreshMs?: number;
  /** Error backoff. Default base 250 ms, cap 30 s. */
  readonly backoff?: { readonly baseMs?: number; readonly capMs?: number };
}

/** Resolves and validates the DNS SRV options into the source's config. */
export function resolveDns(o: DnsOptions, clock: Clock, random: (() => number) | undefined): DnsSrvSourceConfig {
  if (typeof o !== 'object' || o === null) fail('dns', 'must be an object');
  const name = nonEmptyString(o.name, 'dns.name');
  if (!/^[A-Za-z0-9_.-]+\.?$/.test(name)) fail('dns.name', 'must be a DNS name such as _worker._tcp.service.consul');
  if (o.servers !== undefined && !Array.isArray(o.servers))
    fail('dns.servers', 'must be an array of host:port strings');
  const servers = (o.servers ?? []).map((s, i) => parseDnsServer(String(s), `dns.servers[${i}]`));
  const transport = o.transport ?? 'auto';
  if (!['auto', 'udp', 'tcp'].includes(transport)) fail('dns.transport', 'must be auto, udp or tcp');
  const minRefreshMs = durationOption(o.minRefreshMs, 'dns.minRefreshMs', 1000, 1);
  const maxRefreshMs = durationOption(o.maxRefreshMs, 'dns.maxRefreshMs', Math.max(30_000, minRefreshMs), minRefreshMs);
  const baseMs = durationOption(o.backoff?.baseMs, 'dns.backoff.baseMs', 250, 1);
  return {
    name,
    servers,
    transport,
    scheme: schemeOption(o.scheme, 'dns.scheme'),
    timeoutMs: durationOption(o.timeoutMs, 'dns.timeoutMs', 2000, 1),
    minRefreshMs,
    maxRefreshMs,
    backoff: { baseMs, capMs: durationOption(o.backoff?.capMs, 'dns.backoff.capMs', Math.max(30_000, baseMs), baseMs) },
    clock,
    ...(random === undefined ? {} : { random }),
  };
}

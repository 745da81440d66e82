/**
 * What an SRV answer means for the DNS SRV source (`dns/source.ts`, docs/design.md §4.2): the
 * records a name owns through its CNAME chain, each target's addresses (or its host name when
 * the server refuses it), the workers of the preferred records, and the TTLs that schedule
 * the next lookup (RFC 2308 for negative answers).
 */
import net from 'node:net';
import { urlHost } from '../url-host.js';
import { trimDot } from './message.js';
import type { AddressRecord, DnsRecord, DnsResponse, SrvRecord } from './message.js';
import { ErrorCode, isWorkerResolverError } from '../errors.js';
import type { WorkerCandidate } from '../source.js';

/** A target to publish by its host name (the server refused to resolve it): see the file comment. */
export const HOSTNAME = 'hostname' as const;

/**
 * A and AAAA for one target; fails only if neither gave an address and one of them failed —
 * unless both were REFUSED, which names a host outside the server's domain ({@link HOSTNAME}).
 */
export async function resolveTarget(
  target: string,
  ask: (name: string, type: 'A' | 'AAAA') => Promise<DnsResponse>,
): Promise<AddressRecord[] | typeof HOSTNAME> {
  const settled = await Promise.allSettled([ask(target, 'A'), ask(target, 'AAAA')]);
  const records = settled.flatMap((s) => (s.status === 'fulfilled' ? follow(s.value.answers, target) : []));
  const addresses = records.filter(isAddress);
  const failures = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (addresses.length > 0 || failures.length === 0) return addresses;
  const refused =
    failures.length === settled.length && failures.every((f) => isWorkerResolverError(f.reason, ErrorCode.DNS_REFUSED));
  if (refused && urlHost(target) !== undefined) return HOSTNAME;
  throw failures[0]?.reason as Error;
}

/**
 * The workers of the preferred SRV records, given each target's addresses: one per address
 * (an id of `target:port/address` when a target has several), or one by host name for a
 * target the server refused to resolve. A record with port 0, or a target without an
 * address, counts as rejected.
 */
export function toWorkers(
  scheme: string,
  preferred: readonly SrvRecord[],
  addresses: ReadonlyMap<string, readonly AddressRecord[] | typeof HOSTNAME>,
): { workers: WorkerCandidate[]; rejected: number } {
  const workers: WorkerCandidate[] = [];
  const ids = new Set<string>();
  let rejected = 0;
  const add = (srv: SrvRecord, id: string, urlHostPart: string, address: string): void => {
    if (ids.has(id)) return;
    ids.add(id);
    workers.push({
      url: `${scheme}://${urlHostPart}:${srv.port}`,
      id,
      node: srv.target,
      address,
      port: srv.port,
      tags: [],
      meta: {},
      status: 'passing',
      weight: srv.weight,
    });
  };
  for (const srv of preferred) {
    const found = addresses.get(srv.target) ?? [];
    const host = found === HOSTNAME ? urlHost(srv.target) : undefined;
    if (host !== undefined && srv.port !== 0) {
      add(srv, `${srv.target}:${srv.port}`, host, host);
      continue;
    }
    const unique = [...new Set((found === HOSTNAME ? [] : found).map((r) => r.address.toLowerCase()))];
    if (srv.port === 0 || unique.length === 0) {
      rejected += 1;
      continue;
    }
    for (const address of unique) {
      const id = unique.length > 1 ? `${srv.target}:${srv.port}/${address}` : `${srv.target}:${srv.port}`;
      add(srv, id, net.isIPv6(address) ? `[${address}]` : address, address);
    }
  }
  return { workers, rejected };
}

/** The records owned by `name` or by the names its CNAME chain leads to. */
export function follow(records: readonly DnsRecord[], name: string): DnsRecord[] {
  const names = new Set([trimDot(name).toLowerCase()]);
  for (let grew = true; grew;) {
    grew = false;
    for (const r of records) {
      if (r.type === 'CNAME' && names.has(r.name) && !names.has(r.target)) {
        names.add(r.target);
        grew = true;
      }
    }
  }
  return records.filter((r) => r.type !== 'CNAME' && names.has(r.name));
}

/** RFC 2308: a negative answer may be cached for min(SOA TTL, SOA MINIMUM). */
export function negativeTtl(response: DnsResponse): { ttl: number }[] {
  return response.authorities.flatMap((r) => (r.type === 'SOA' ? [{ ttl: Math.min(r.ttl, r.minimum) }] : []));
}

export function minTtl(records: readonly { readonly ttl: number }[]): number | undefined {
  return records.length === 0 ? undefined : Math.min(...records.map((r) => r.ttl));
}

export function isAddress(record: DnsRecord): record is AddressRecord {
  return record.type === 'A' || record.type === 'AAAA';
}

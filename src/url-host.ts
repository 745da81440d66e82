/**
 * The host part of a worker URL, as every source writes it: IPv6 in brackets, names in lower
 * case, and nothing that WHATWG URL parsing would read differently from what was meant.
 * Shared by the Consul and DNS backends and the option checks, so one worker gets one URL
 * whichever source named it.
 */
import { isIP } from 'node:net';

/** The last label is decimal or 0x-hex: WHATWG URL would parse the host as an IPv4 number. */
const ENDS_IN_NUMBER = /(^|\.)(\d+|0x[0-9a-f]*)$/i;
/**
 * Host names: labels of letters, digits, hyphens and underscores (RFC 1123 plus `_`, which
 * WHATWG URL accepts and Docker Compose service names use), optionally fully qualified.
 */
const HOSTNAME =
  /^(?=.{1,253}\.?$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;

/** Formats `host` for a URL authority: IPv6 in brackets, lower case. Undefined if not a valid host. */
export function urlHost(host: string): string | undefined {
  if (host.length === 0) return undefined;
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  // A zone id (fe80::1%eth0) is not representable in a URL authority.
  if (bare.includes('%')) return undefined;
  const family = isIP(bare);
  if (family === 6) return `[${bare.toLowerCase()}]`;
  if (family === 4) return bare;
  const name = bare.toLowerCase().replace(/\.$/, '');
  // WHATWG URL parsing reads a host whose last label is a number ("10", "0x1f", "1.2") as an
  // IPv4 address: "http://10:80" is 0.0.0.10. Such a name would silently route elsewhere.
  if (ENDS_IN_NUMBER.test(name)) return undefined;
  return HOSTNAME.test(bare) ? name : undefined;
}

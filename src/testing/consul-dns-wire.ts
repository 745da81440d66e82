/**
 * The wire side of the Consul DNS double (`consul-dns.ts`): rcodes, reply skeletons, record
 * shapes (Consul's `.addr.` hex names, A/AAAA records, the Additional section it keeps),
 * message sizes as Consul's DNS library counts them, and a UDP+TCP listener on one port.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer, Packet, RecordType } from 'dns-packet';

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
export type Rcode = keyof typeof RCODE;

/**
 * The length of `packet` as miekg/dns (Consul's DNS library) computes it with compression: a
 * name whose suffix was written before costs a 2-byte pointer from there. SRV targets are
 * written in full (RFC 2782 forbids compressing them) but can be pointed to by later names.
 */
export function compressedLength(packet: Packet): number {
  const plainNameLength = (name: string): number =>
    trimDot(name)
      .split('.')
      .filter(Boolean)
      .reduce((sum, label) => sum + label.length + 1, 1);
  const seen = new Set<string>();
  const nameLength = (name: string, compress: boolean): number => {
    const labels = trimDot(name).toLowerCase().split('.').filter(Boolean);
    let length = 0;
    for (let i = 0; i < labels.length; i += 1) {
      const suffix = labels.slice(i).join('.');
      if (compress && seen.has(suffix)) return length + 2;
      seen.add(suffix);
      length += (labels[i]?.length ?? 0) + 1;
    }
    return length + 1;
  };
  let length = 12;
  for (const q of packet.questions ?? []) length += nameLength(q.name, true) + 4;
  const sections = [packet.answers ?? [], packet.authorities ?? [], packet.additionals ?? []];
  for (const record of sections.flat()) {
    if (record.type === 'OPT') {
      length += 11;
      continue;
    }
    length += nameLength(record.name, true) + 10;
    if (record.type === 'SRV') length += 6 + nameLength(record.data.target, false);
    else if (record.type === 'CNAME') length += nameLength(record.data, true);
    else length += dnsPacket.encodingLength({ answers: [record] }) - 12 - 10 - plainNameLength(record.name);
  }
  return length;
}

/** A reply under construction, with its rcode (dns-packet keeps it inside `flags`). */
export interface Built {
  readonly packet: Packet;
  readonly rcode: Rcode;
}

export function reply(request: DecodedPacket, rcode: Rcode, opt?: OptAnswer): Packet {
  const recursionDesired = (request.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  return {
    type: 'response',
    id: request.id ?? 0,
    flags: dnsPacket.AUTHORITATIVE_ANSWER | recursionDesired | RCODE[rcode],
    questions: request.questions ?? [],
    answers: [],
    authorities: [],
    additionals: opt === undefined ? [] : [echoOpt(opt)],
  };
}

/** Consul's syncExtra: keep only the additional records an SRV answer still points to. */
export function syncExtra(answers: readonly Answer[], extras: readonly Answer[]): Answer[] {
  const targets = new Set(answers.flatMap((a) => (a.type === 'SRV' ? [trimDot(a.data.target).toLowerCase()] : [])));
  return extras.filter((extra) => targets.has(trimDot(extra.name).toLowerCase()));
}

export function echoOpt(opt: OptAnswer): OptAnswer {
  return {
    type: 'OPT',
    name: '.',
    udpPayloadSize: opt.udpPayloadSize,
    extendedRcode: 0,
    ednsVersion: 0,
    flags: 0,
    flag_do: false,
    options: [],
  };
}

export function addressType(address: string): RecordType {
  return net.isIPv6(address) ? 'AAAA' : 'A';
}

export function addressRecord(name: string, address: string, ttl: number): Answer {
  // dns-packet's IPv6 encoder mis-encodes "::" combined with an embedded IPv4 tail
  // ("::1:2:3.4.5.6"), so hand it the canonical form WHATWG URL produces (no dotted tail).
  const data = net.isIPv6(address) ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
  return { type: net.isIPv6(address) ? 'AAAA' : 'A', name, ttl, data };
}

/** Consul's `.addr.` form: 8 hex digits for IPv4, 32 for IPv6. */
export function hexAddress(address: string): string {
  if (net.isIPv4(address))
    return address
      .split('.')
      .map((octet) => Number(octet).toString(16).padStart(2, '0'))
      .join('');
  const [head = '', tail = ''] = address.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const zeros = Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = address.includes('::') ? [...headGroups, ...zeros, ...tailGroups] : headGroups;
  return groups
    .map((group) => group.padStart(4, '0'))
    .join('')
    .toLowerCase();
}

export function fromHex(hex: string): string | undefined {
  if (/^[0-9a-f]{8}$/.test(hex)) return (hex.match(/../g) ?? []).map((byte) => parseInt(byte, 16)).join('.');
  if (/^[0-9a-f]{32}$/.test(hex))
    return (hex.match(/.{4}/g) ?? []).map((group) => group.replace(/^0+(?=.)/, '')).join(':');
  return undefined;
}

export function trimDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/**
 * A UDP socket and a TCP server on the same port of `host` (DNS serves both). With `wanted`
 * 0 the port is the one the kernel gave the UDP socket; when TCP is taken there (by anything,
 * an outgoing connection's ephemeral port included), it tries a new one, up to 20 times.
 */
export async function bindUdpAndTcp(
  host: string,
  wanted: number,
): Promise<{ udp: dgram.Socket; tcp: net.Server; port: number }> {
  for (let attempt = 0; ; attempt += 1) {
    const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(wanted, host, () => resolve());
    });
    const port = udp.address().port;
    const tcp = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, host, () => resolve());
      });
      return { udp, tcp, port };
    } catch (error) {
      udp.close();
      const inUse = (error as NodeJS.ErrnoException).code === 'EADDRINUSE';
      if (wanted !== 0 || !inUse || attempt >= 20) throw error;
    }
  }
}

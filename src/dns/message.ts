/**
 * DNS messages as the client sees them: servers, questions, decoded records and responses,
 * and decoding one received message into a response (matching it to the question asked).
 * Packet encoding and decoding is dns-packet's; the transport is `dns/client.ts`.
 */
import * as dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer } from 'dns-packet';
import { ErrorCode, WorkerResolverError } from '../errors.js';
import type { DnsQuestionType } from '../source.js';

/** A DNS server address (an IP literal: resolving the resolver's own name would need DNS). */
export interface DnsServer {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** One question. */
export interface DnsQuestion {
  /** Domain name, with or without the trailing dot. */
  readonly name: string;
  readonly type: DnsQuestionType;
}

/** An SRV record (RFC 2782). Names are lower-case, without the trailing dot; the root is `.`. */
export interface SrvRecord {
  readonly type: 'SRV';
  readonly name: string;
  readonly ttl: number;
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  readonly target: string;
}

/** An A or AAAA record; `address` is the textual IP (IPv6 lower-case). */
export interface AddressRecord {
  readonly type: 'A' | 'AAAA';
  readonly name: string;
  readonly ttl: number;
  readonly address: string;
}

/** A CNAME record. */
export interface CnameRecord {
  readonly type: 'CNAME';
  readonly name: string;
  readonly ttl: number;
  readonly target: string;
}

/** An SOA record; only what negative caching (RFC 2308) needs. */
export interface SoaRecord {
  readonly type: 'SOA';
  readonly name: string;
  readonly ttl: number;
  readonly minimum: number;
}

/** Any other record, kept so callers can see it was there. */
export interface OtherRecord {
  readonly type: 'OTHER';
  readonly name: string;
  readonly ttl: number;
  /** The record type as dns-packet names it, e.g. `TXT`. */
  readonly rrtype: string;
}

/** A decoded resource record. */
export type DnsRecord = SrvRecord | AddressRecord | CnameRecord | SoaRecord | OtherRecord;

/** A usable answer: NOERROR (possibly without records) or NXDOMAIN. */
export interface DnsResponse {
  /** `NOERROR` or `NXDOMAIN`; every other rcode is thrown as a {@link WorkerResolverError}. */
  readonly rcode: string;
  readonly answers: readonly DnsRecord[];
  readonly authorities: readonly DnsRecord[];
  /** The Additional section without the OPT pseudo-record. */
  readonly additionals: readonly DnsRecord[];
  /** The TC flag of the answer that was returned. */
  readonly truncated: boolean;
  /** True if the answer carried an OPT record (the server speaks EDNS0). */
  readonly edns: boolean;
  readonly transport: 'udp' | 'tcp';
  /** Size of the DNS message on the wire, in bytes (without TCP framing). */
  readonly size: number;
  readonly server: DnsServer;
}

/** The UDP payload size we advertise; Consul caps what it sends to this. */
export const EDNS_UDP_PAYLOAD_SIZE = 4096;
/**
 * Decodes and matches one message (a datagram, or a TCP frame with its length prefix).
 * Returns undefined to keep waiting (a stray or spoofed UDP datagram), an error, or the
 * response. Over TCP there is no stray traffic, so a mismatch is the server's fault.
 */
export function interpret(
  packet: Buffer,
  id: number,
  question: DnsQuestion,
  server: DnsServer,
  transport: 'udp' | 'tcp',
  label: string,
): DnsResponse | WorkerResolverError | undefined {
  const framed = transport === 'tcp';
  const headerOffset = framed ? 2 : 0;
  const malformed = (why: string, cause?: unknown): WorkerResolverError =>
    new WorkerResolverError(
      ErrorCode.DNS_MALFORMED,
      `malformed DNS answer from ${label}: ${why}`,
      cause === undefined ? {} : { cause },
    );
  if (packet.length < headerOffset + 12) return framed ? malformed('shorter than a DNS header') : undefined;
  if (packet.readUInt16BE(headerOffset) !== id) return framed ? malformed('id does not match') : undefined;
  let decoded: DecodedPacket;
  try {
    decoded = (framed ? dnsPacket.streamDecode(packet) : dnsPacket.decode(packet)) as DecodedPacket;
  } catch (error) {
    // The id matched on a connected socket: this is the server's answer, and it is broken.
    return malformed(error instanceof Error ? error.message : 'undecodable', error);
  }
  const asked = decoded.questions ?? [];
  const echoed = asked.length === 1 && asked[0] !== undefined ? asked[0] : undefined;
  const matches =
    decoded.type === 'response' &&
    echoed !== undefined &&
    echoed.type === question.type &&
    trimDot(echoed.name).toLowerCase() === trimDot(question.name).toLowerCase();
  if (!matches) return framed ? malformed('it does not answer the question asked') : undefined;
  const additionals = decoded.additionals ?? [];
  return {
    rcode: rcodeOf(decoded),
    answers: (decoded.answers ?? []).map(toRecord),
    authorities: (decoded.authorities ?? []).map(toRecord),
    additionals: additionals.filter((record) => record.type !== 'OPT').map(toRecord),
    truncated: decoded.flag_tc,
    edns: additionals.some((record) => record.type === 'OPT'),
    size: packet.length - headerOffset,
    transport,
    server,
  };
}

function toRecord(answer: Answer): DnsRecord {
  const name = trimDot(answer.name).toLowerCase() || '.';
  const ttl = 'ttl' in answer && typeof answer.ttl === 'number' ? answer.ttl : 0;
  switch (answer.type) {
    case 'SRV':
      return {
        type: 'SRV',
        name,
        ttl,
        priority: answer.data.priority ?? 0,
        weight: answer.data.weight ?? 0,
        port: answer.data.port,
        target: trimDot(answer.data.target).toLowerCase() || '.',
      };
    case 'A':
    case 'AAAA':
      return { type: answer.type, name, ttl, address: answer.data.toLowerCase() };
    case 'CNAME':
      return { type: 'CNAME', name, ttl, target: trimDot(answer.data).toLowerCase() };
    case 'SOA':
      return { type: 'SOA', name, ttl, minimum: answer.data.minimum ?? 0 };
    default:
      return { type: 'OTHER', name, ttl, rrtype: answer.type };
  }
}

function rcodeOf(packet: DecodedPacket): string {
  // dns-packet decodes the rcode's name into `rcode`; @types/dns-packet does not declare it.
  const rcode = (packet as { rcode?: unknown }).rcode;
  return typeof rcode === 'string' ? rcode : `RCODE_${(packet.flags ?? 0) & 0xf}`;
}

export function ednsOpt(): OptAnswer {
  return {
    type: 'OPT',
    name: '.',
    udpPayloadSize: EDNS_UDP_PAYLOAD_SIZE,
    extendedRcode: 0,
    ednsVersion: 0,
    flags: 0,
    flag_do: false,
    options: [],
  };
}

/** `name` without its trailing dot. */
export function trimDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/** `host:port`, or `[host]:port` for IPv6. */
export function describeServer(server: DnsServer): string {
  return server.family === 6 ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`;
}

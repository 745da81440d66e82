/**
 * A test double of Consul's DNS interface, on UDP and TCP loopback. It is not a Consul:
 * it answers service, node and addr lookups from a callback, the way Consul's DNS
 * server shapes its answers, so clients can be tested against Consul's quirks:
 *
 * - SRV answers have priority 1 and the instance's weight; the target is
 *   `<hex-ip>.addr.<dc>.<domain>.` for a service IP address, `<node>.node.<dc>.<domain>.` for
 *   an instance without one on a node with an IP address, and the hostname itself when the
 *   address used (`Service.Address`, else `Node.Address`) is a hostname. A/AAAA records for IP
 *   targets go to the Additional section; a hostname gets none (its A lookup is a separate
 *   question, which Consul only answers through `recursors`). An A query of a service whose
 *   first instance has a hostname is answered with one CNAME to it, as Consul does.
 * - Answers are shuffled (Consul shuffles instances on every query).
 * - Unknown names in the domain, and services without a healthy instance, get NXDOMAIN
 *   with the domain's SOA in the Authority section; names outside the domain get
 *   REFUSED (what Consul answers when no `recursors` are configured).
 * - UDP answers are trimmed as Consul's `trimUDPResponse` does: a query without EDNS gets
 *   at most `min(8, udpAnswerLimit)` answers and at most 512 bytes; a query with EDNS gets
 *   whatever fits its advertised payload size. TC is set on a cut answer only with
 *   `enableTruncate`. TCP answers are never cut. An OPT record is echoed when the query
 *   had one.
 *
 * Differences from Consul: trimming removes answers one by one instead of by binary
 * search (it may keep a record or two more), measuring the size with name compression as
 * Consul does, while dns-packet writes the answer uncompressed (a trimmed EDNS answer can
 * be larger on the wire than the size it was trimmed to); Consul's TXT records of node
 * metadata in the Additional section are not produced; node names are learned from the instances
 * the callback returned (the double has no catalog), so `<node>.node` lookups work for
 * nodes that appeared in an earlier service answer.
 */
import type dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer, Packet, Question } from 'dns-packet';
import {
  addressRecord,
  addressType,
  bindUdpAndTcp,
  compressedLength,
  echoOpt,
  fromHex,
  hexAddress,
  reply,
  syncExtra,
  trimDot,
} from './consul-dns-wire.js';
import type { Built } from './consul-dns-wire.js';

/** One healthy instance, as the `lookup` callback reports it. */
export interface DnsServiceInstance {
  readonly node: string;
  readonly nodeAddress: string;
  /** The service's own IP address; empty means "use the node's address" (Consul's rule). */
  readonly serviceAddress: string;
  readonly port: number;
  readonly weight: number;
  readonly datacenter: string;
}

/** Options of {@link ConsulDnsServer.start}. */
export interface ConsulDnsOptions {
  /** Listen address; default `127.0.0.1`. */
  readonly host?: string;
  /** Port for both UDP and TCP; default 0 (a free port, the same for both). */
  readonly port?: number;
  /** DNS domain; default `consul`. */
  readonly domain?: string;
  /** The local datacenter (used when a name has none); default `dc1`. */
  readonly datacenter?: string;
  /** Consul's `dns_config.udp_answer_limit`; default 3 (capped at 8, as in Consul). */
  readonly udpAnswerLimit?: number;
  /** Consul's `dns_config.enable_truncate`; default false. */
  readonly enableTruncate?: boolean;
  /** TTL of every record, in seconds (Consul's service/node TTL); default 0. */
  readonly ttlSeconds?: number;
  /** Healthy instances of `service` (filtered by `tag` if given); undefined = unknown service. */
  readonly lookup: (service: string, tag: string | undefined) => readonly DnsServiceInstance[] | undefined;
}

/** One query the server received (recorded before any fault is applied). */
export interface ConsulDnsQuery {
  /** Question name as received, without the trailing dot. */
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
  /** True if the query carried an OPT record. */
  readonly edns: boolean;
}

/** Consul's `maxUDPAnswerLimit`: no configuration can raise the UDP answer limit above it. */
const MAX_UDP_ANSWER_LIMIT = 8;
const DEFAULT_MAX_UDP_SIZE = 512;
/** Consul's `maxUDPDatagramSize` (65535 minus IP and UDP headers). */
const MAX_UDP_DATAGRAM_SIZE = 65535 - 68;

/** A Consul-style DNS server for tests. Start it with {@link ConsulDnsServer.start}. */
export class ConsulDnsServer {
  /** Listen address. */
  readonly host: string;
  /** The UDP and TCP port. */
  readonly port: number;
  private readonly options: Required<Omit<ConsulDnsOptions, 'host' | 'port'>>;
  /** Every query received, in order. */
  private readonly received: ConsulDnsQuery[] = [];
  /** Pending injected failures; count 0 = none. */
  private failure: { count: number; rcode: 'SERVFAIL' | 'REFUSED' } = { count: 0, rcode: 'SERVFAIL' };
  /** Number of upcoming queries to swallow without answering. */
  private drops = 0;
  /** Node name → address, learned from service answers (the double has no node catalog). */
  private readonly nodes = new Map<string, string>();
  /** Open TCP connections, destroyed by stop(). */
  private readonly connections = new Set<net.Socket>();
  /** Set once stop() was called; makes it idempotent. */
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
    host: string,
    port: number,
    options: ConsulDnsOptions,
  ) {
    this.host = host;
    this.port = port;
    this.options = {
      domain: (options.domain ?? 'consul').toLowerCase().replace(/^\.|\.$/g, ''),
      datacenter: options.datacenter ?? 'dc1',
      udpAnswerLimit: options.udpAnswerLimit ?? 3,
      enableTruncate: options.enableTruncate ?? false,
      ttlSeconds: options.ttlSeconds ?? 0,
      lookup: options.lookup,
    };
    // A client that went away (ICMP unreachable) must not crash the test process.
    udp.on('error', () => undefined);
    udp.on('message', (message, remote) => {
      const reply = this.handle(() => dnsPacket.decode(message), 'udp');
      if (reply !== undefined && this.stopping === undefined) {
        udp.send(dnsPacket.encode(reply), remote.port, remote.address);
      }
    });
    tcp.on('connection', (socket) => this.serveTcp(socket));
  }

  /** Binds UDP and TCP on the same port (retrying when a free UDP port is taken on TCP). */
  static async start(options: ConsulDnsOptions): Promise<ConsulDnsServer> {
    const host = options.host ?? '127.0.0.1';
    const { udp, tcp, port } = await bindUdpAndTcp(host, options.port ?? 0);
    return new ConsulDnsServer(udp, tcp, host, port, options);
  }

  /** Every query received so far, in order. */
  get queries(): readonly ConsulDnsQuery[] {
    return this.received;
  }

  /** Answers the next `count` queries with `rcode` (SERVFAIL echoes EDNS, REFUSED does not, as Consul). */
  failNext(count: number, rcode: 'SERVFAIL' | 'REFUSED'): void {
    this.failure = { count, rcode };
  }

  /** Receives the next `count` queries and never answers them (the client times out). */
  dropNext(count: number): void {
    this.drops = count;
  }

  /** Disarms `failNext` and `dropNext`. */
  clearFaults(): void {
    this.failure = { count: 0, rcode: 'SERVFAIL' };
    this.drops = 0;
  }

  /** Closes both sockets and every open TCP connection. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const socket of this.connections) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => this.udp.close(() => resolve())),
        new Promise<void>((resolve) => this.tcp.close(() => resolve())),
      ]);
    })();
    return this.stopping;
  }

  private serveTcp(socket: net.Socket): void {
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      // A client may pipeline several length-prefixed queries on one connection.
      while (buffered.length >= 2 && buffered.length >= buffered.readUInt16BE(0) + 2) {
        const frameLength = buffered.readUInt16BE(0) + 2;
        const frame = buffered.subarray(0, frameLength);
        buffered = buffered.subarray(frameLength);
        const reply = this.handle(() => dnsPacket.streamDecode(frame) as DecodedPacket, 'tcp');
        if (reply !== undefined) socket.write(dnsPacket.streamEncode(reply));
      }
    });
  }

  /** Returns the reply to the query `decode` yields, or undefined to stay silent. */
  private handle(decode: () => DecodedPacket, transport: 'udp' | 'tcp'): Packet | undefined {
    let request: DecodedPacket;
    try {
      request = decode();
    } catch {
      return undefined; // Like miekg/dns: what cannot be parsed is not answered.
    }
    if (request.type !== 'query') return undefined;
    const question = request.questions?.[0];
    const opt = request.additionals?.find((record): record is OptAnswer => record.type === 'OPT');
    if (question === undefined) return reply(request, 'FORMERR', opt);
    this.received.push({ name: trimDot(question.name), type: question.type, transport, edns: opt !== undefined });
    if (this.drops > 0) {
      this.drops -= 1;
      return undefined;
    }
    if (this.failure.count > 0) {
      this.failure.count -= 1;
      return reply(request, this.failure.rcode, this.failure.rcode === 'SERVFAIL' ? opt : undefined);
    }
    const response = this.resolve(request, question);
    if (transport === 'udp') this.trimUdp(response, opt);
    // Consul adds the OPT record after trimming, so it never counts against the size.
    if (opt !== undefined && response.rcode !== 'REFUSED') response.packet.additionals?.push(echoOpt(opt));
    return response.packet;
  }

  private resolve(request: DecodedPacket, question: Question): Built {
    const { domain, datacenter, ttlSeconds: ttl } = this.options;
    const qname = trimDot(question.name).toLowerCase();
    if (qname !== domain && !qname.endsWith(`.${domain}`))
      return { packet: reply(request, 'REFUSED'), rcode: 'REFUSED' };
    const labels = qname === domain ? [] : qname.slice(0, -(domain.length + 1)).split('.');
    // `<...>.<kind>` uses the local datacenter, `<...>.<kind>.<dc>` names one.
    const isKind = (label: string | undefined): boolean => label === 'service' || label === 'node' || label === 'addr';
    const last = labels.length - 1;
    const kindAt = isKind(labels[last]) ? last : isKind(labels[last - 1]) ? last - 1 : -1;
    const kind = labels[kindAt];
    const dc = kindAt === last ? datacenter : (labels[last] ?? datacenter);
    const prefix = labels.slice(0, Math.max(0, kindAt));
    const wantsAddress = question.type === 'A' || question.type === 'AAAA';
    const answers: Answer[] = [];
    const extras: Answer[] = [];
    if (kind === 'service') {
      const instances = this.instances(prefix, dc);
      if (instances === undefined || instances.length === 0) return this.negative(request, 'NXDOMAIN');
      const seen = new Set<string>();
      for (const instance of instances) {
        const address = instance.serviceAddress || instance.nodeAddress;
        const key = `${instance.node}:${address}:${instance.port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        this.nodes.set(`${instance.node.toLowerCase()}|${instance.datacenter}`, instance.nodeAddress);
        const isIp = net.isIP(address) !== 0;
        if (question.type === 'SRV') {
          const target = !isIp
            ? `${trimDot(address)}.`
            : instance.serviceAddress
              ? `${hexAddress(instance.serviceAddress)}.addr.${instance.datacenter}.${domain}.`
              : `${instance.node}.node.${instance.datacenter}.${domain}.`;
          const data = { priority: 1, weight: instance.weight, port: instance.port, target };
          answers.push({ type: 'SRV', name: question.name, ttl, data });
          if (isIp) extras.push(addressRecord(target, address, ttl));
        } else if (!isIp) {
          // A CNAME cannot share its name with other records: Consul answers the first one only.
          if (wantsAddress && answers.length === 0) {
            answers.push({ type: 'CNAME', name: question.name, ttl, data: trimDot(address) });
            break;
          }
        } else if (question.type === addressType(address) && !seen.has(address)) {
          seen.add(address);
          answers.push(addressRecord(question.name, address, ttl));
        }
      }
    } else if ((kind === 'node' || kind === 'addr') && prefix.length === 1) {
      const label = prefix[0] ?? '';
      const address = kind === 'node' ? this.nodes.get(`${label}|${dc}`) : fromHex(label);
      if (address === undefined) return this.negative(request, 'NXDOMAIN');
      if (wantsAddress && addressType(address) === question.type) {
        answers.push(addressRecord(question.name, address, ttl));
      }
    } else if (labels.length > 0) {
      return this.negative(request, 'NXDOMAIN');
    }
    // A name that exists without records of the asked type is NODATA: NOERROR plus the SOA.
    if (answers.length === 0) return this.negative(request, 'NOERROR');
    const packet = reply(request, 'NOERROR');
    packet.answers = answers;
    packet.additionals = extras;
    return { packet, rcode: 'NOERROR' };
  }

  /** The instances a service name asks for, shuffled; undefined for a malformed name. */
  private instances(prefix: readonly string[], dc: string): DnsServiceInstance[] | undefined {
    let service: string | undefined;
    let tag: string | undefined;
    const [first, second] = prefix;
    if (prefix.length === 1) service = first;
    else if (prefix.length === 2 && first?.startsWith('_') === true && second?.startsWith('_') === true) {
      // RFC 2782 form: `_<service>._<tag>`, where the protocol label `_tcp` means "no tag".
      service = first.slice(1);
      tag = second === '_tcp' ? undefined : second.slice(1);
    } else if (prefix.length === 2) [tag, service] = [first, second];
    if (service === undefined || service === '') return undefined;
    const found = this.options.lookup(service, tag)?.filter((instance) => instance.datacenter === dc) ?? [];
    for (let i = found.length - 1; i > 0; i -= 1) {
      const j = Math.floor(Math.random() * (i + 1));
      [found[i], found[j]] = [found[j]!, found[i]!];
    }
    return found;
  }

  private negative(request: DecodedPacket, rcode: 'NXDOMAIN' | 'NOERROR'): Built {
    const packet = reply(request, rcode);
    const domain = this.options.domain;
    packet.authorities = [
      {
        type: 'SOA',
        name: `${domain}.`,
        ttl: 0,
        data: {
          mname: `ns.${domain}.`,
          rname: `hostmaster.${domain}.`,
          serial: Math.floor(Date.now() / 1000),
          refresh: 3600,
          retry: 600,
          expire: 86400,
          minimum: 0,
        },
      },
    ];
    return { packet, rcode };
  }

  /** Consul's trimUDPResponse, over dns-packet's (uncompressed) encoding length. */
  private trimUdp(response: Built, opt: OptAnswer | undefined): void {
    const packet = response.packet;
    const original = packet.answers ?? [];
    const extras = packet.additionals ?? [];
    let maxSize = DEFAULT_MAX_UDP_SIZE;
    if (opt !== undefined && opt.udpPayloadSize > maxSize)
      maxSize = Math.min(opt.udpPayloadSize, MAX_UDP_DATAGRAM_SIZE);
    const keep = (count: number): void => {
      packet.answers = original.slice(0, count);
      if (extras.length > 0) packet.additionals = syncExtra(packet.answers, extras);
    };
    const maxAnswers = Math.min(MAX_UDP_ANSWER_LIMIT, this.options.udpAnswerLimit);
    if (maxSize === DEFAULT_MAX_UDP_SIZE && original.length > maxAnswers) keep(maxAnswers);
    // Consul keeps at least one answer even when it alone is too large, and leaves 8 bytes for the UDP header.
    while ((packet.answers?.length ?? 0) > 1 && compressedLength(packet) > maxSize - 8) {
      packet.authorities = [];
      keep((packet.answers?.length ?? 1) - 1);
    }
    if ((packet.answers?.length ?? 0) < original.length && this.options.enableTruncate) {
      packet.flags = (packet.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE;
    }
  }
}

/** One hand-built DNS query over UDP or TCP, so a test controls EDNS and transport exactly. */
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet, RecordType } from 'dns-packet';

export interface DnsQueryOptions {
  readonly transport?: 'udp' | 'tcp';
  /** Advertise this EDNS UDP payload size (an OPT record); none when undefined. */
  readonly ednsSize?: number;
  readonly timeoutMs?: number;
}

/** The decoded answer, with its rcode and TC flag spelled out. */
export type DnsAnswer = DecodedPacket & { readonly rcode: string; readonly truncated: boolean; readonly size: number };

/** Asks `addr` (`host:port`) one question. */
export async function dnsQuery(
  addr: string,
  name: string,
  type: RecordType,
  { transport = 'udp', ednsSize, timeoutMs = 5000 }: DnsQueryOptions = {},
): Promise<DnsAnswer> {
  const at = addr.lastIndexOf(':');
  const host = addr.slice(0, at);
  const port = Number(addr.slice(at + 1));
  const query: Packet = {
    type: 'query',
    id: Math.floor(Math.random() * 65535),
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name }],
    additionals:
      ednsSize === undefined
        ? []
        : [
            {
              type: 'OPT',
              name: '.',
              udpPayloadSize: ednsSize,
              extendedRcode: 0,
              ednsVersion: 0,
              flags: 0,
              flag_do: false,
              options: [],
            },
          ],
  };
  const packet = dnsPacket.encode(query);
  const raw = await new Promise<Buffer>((resolve, reject) => {
    let close = (): void => {};
    const timer = setTimeout(() => {
      close();
      reject(new Error(`no answer from the DNS server ${addr} over ${transport} for ${name} ${type}`));
    }, timeoutMs);
    const done = (message: Buffer): void => {
      clearTimeout(timer);
      close();
      resolve(message);
    };
    if (transport === 'udp') {
      const socket = dgram.createSocket('udp4');
      close = () => socket.close();
      socket.on('message', done);
      socket.on('error', (err) => {
        clearTimeout(timer);
        close();
        reject(err);
      });
      socket.send(packet, port, host);
      return;
    }
    const socket = net.connect(port, host);
    close = () => socket.destroy();
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        done(buffered.subarray(2, 2 + buffered.readUInt16BE(0)));
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(dnsPacket.streamEncode(query));
  });
  const decoded = dnsPacket.decode(raw);
  const flags = decoded.flags ?? 0;
  return {
    ...decoded,
    rcode: (decoded as { rcode?: string }).rcode ?? 'NOERROR',
    truncated: (flags & dnsPacket.TRUNCATED_RESPONSE) !== 0,
    size: raw.length,
  };
}

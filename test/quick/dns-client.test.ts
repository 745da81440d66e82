import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import type net from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, Packet } from 'dns-packet';
import { parseDnsServer, query } from '../../src/dns/client.js';
import type { DnsServer } from '../../src/dns/message.js';
import { systemClock } from '../../src/clock.js';
import type { Clock } from '../../src/clock.js';
import { ErrorCode, InvalidOptionError, WorkerResolverError } from '../../src/errors.js';
import { ConsulDnsServer } from '../../src/testing/consul-dns.js';
import { bindUdpAndTcp } from '../../src/testing/consul-dns-wire.js';
import type { DnsServiceInstance } from '../../src/testing/consul-dns.js';
import { freeUdpPort as closedPort } from '../helpers/ports.js';

type Reply = Packet | Buffer;
type Handler = (request: DecodedPacket, transport: 'udp' | 'tcp') => Reply[];

/** A scripted responder on UDP and TCP (same port): the handler returns what to send back, in order. */
async function responder(handler: Handler): Promise<{ server: DnsServer; close: () => Promise<void> }> {
  const { udp, tcp, port } = await bindUdpAndTcp('127.0.0.1', 0);
  udp.on('message', (message, remote) => {
    for (const reply of handler(dnsPacket.decode(message), 'udp')) {
      udp.send(Buffer.isBuffer(reply) ? reply : dnsPacket.encode(reply), remote.port, remote.address);
    }
  });
  const sockets = new Set<net.Socket>();
  tcp.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (chunk) => {
      const request = dnsPacket.streamDecode(chunk) as DecodedPacket;
      for (const reply of handler(request, 'tcp')) {
        socket.write(Buffer.isBuffer(reply) ? reply : dnsPacket.streamEncode(reply));
      }
    });
  });
  return {
    server: { host: '127.0.0.1', port, family: 4 },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all([
        new Promise<void>((r) => udp.close(() => r())),
        new Promise<void>((r) => tcp.close(() => r())),
      ]);
    },
  };
}

const srv = (name: string, i: number): Answer => ({
  type: 'SRV',
  name,
  ttl: 5,
  data: { priority: 1, weight: 1, port: 9000 + i, target: `w${i}.example` },
});

function answer(request: DecodedPacket, answers: Answer[], options: { flags?: number; edns?: boolean } = {}): Packet {
  return {
    type: 'response',
    id: request.id ?? 0,
    flags: options.flags ?? 0,
    questions: request.questions ?? [],
    answers,
    additionals: options.edns === true ? (request.additionals ?? []).filter((a) => a.type === 'OPT') : [],
  };
}

/** Open UDP/TCP handles, measured after closes in progress have had time to finish. */
async function sockets(): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 50));
  return process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap' || r === 'TCPWrap' || r === 'TCPSocketWrap')
    .length;
}

/** The system clock, counting the timers that are still pending. */
function countingClock(): Clock & { pending: () => number } {
  let pending = 0;
  return {
    now: () => systemClock.now(),
    monotonic: () => systemClock.monotonic(),
    setTimeout(fn, ms) {
      pending += 1;
      let live = true;
      const end = (): void => {
        if (live) pending -= 1;
        live = false;
      };
      const handle = systemClock.setTimeout(() => {
        end();
        fn();
      }, ms);
      return {
        cancel: () => {
          end();
          handle.cancel();
        },
      };
    },
    pending: () => pending,
  };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof WorkerResolverError, String(error));
    return error.code;
  }
  assert.fail('expected a rejection');
}

describe('parseDnsServer', () => {
  test('IP literals with and without ports', () => {
    assert.deepEqual(parseDnsServer('10.0.0.2'), { host: '10.0.0.2', port: 53, family: 4 });
    assert.deepEqual(parseDnsServer(' 127.0.0.1:8600 '), { host: '127.0.0.1', port: 8600, family: 4 });
    assert.deepEqual(parseDnsServer('[::1]:8600'), { host: '::1', port: 8600, family: 6 });
    assert.deepEqual(parseDnsServer('[fd00::2]'), { host: 'fd00::2', port: 53, family: 6 });
    assert.deepEqual(parseDnsServer('fd00::2'), { host: 'fd00::2', port: 53, family: 6 });
  });

  test('rejects host names, bad ports and junk, naming the option', () => {
    for (const bad of [
      'localhost:53',
      'consul.service',
      '10.0.0.2:0',
      '10.0.0.2:70000',
      '10.0.0.2:',
      '[10.0.0.2]:53',
      '[::1',
      '',
    ]) {
      assert.throws(
        () => parseDnsServer(bad, 'dns.servers[1]'),
        (error: unknown) => error instanceof InvalidOptionError && error.option === 'dns.servers[1]',
        bad,
      );
    }
    assert.throws(
      () => parseDnsServer('nope'),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'dns.servers',
    );
  });
});

describe('query', () => {
  const workers: DnsServiceInstance[] = Array.from({ length: 10 }, (_, i) => ({
    node: `n${i}`,
    nodeAddress: `10.0.1.${i + 1}`,
    serviceAddress: '',
    port: 7000 + i,
    weight: 1,
    datacenter: 'dc1',
  }));
  let consul: ConsulDnsServer;
  let consulServer: DnsServer;
  before(async () => {
    consul = await ConsulDnsServer.start({ lookup: (service) => (service === 'w' ? workers : undefined) });
    consulServer = { host: consul.host, port: consul.port, family: 4 };
  });
  after(() => consul.stop());

  test('auto asks over UDP with EDNS0 and gets the full Consul answer', async () => {
    const res = await query(
      { name: 'w.service.consul', type: 'SRV' },
      { servers: [consulServer], transport: 'auto', timeoutMs: 1000 },
    );
    assert.equal(res.rcode, 'NOERROR');
    assert.equal(res.transport, 'udp');
    assert.equal(res.edns, true);
    assert.equal(res.answers.length, 10);
    assert.equal(res.additionals.length, 10, 'OPT is not listed among the additionals');
    assert.equal(consul.queries.at(-1)?.edns, true);
  });

  test('datagrams with a wrong id or another question are ignored', async () => {
    const r = await responder((request) => [
      { ...answer(request, [srv('evil', 666)], { edns: true }), id: ((request.id ?? 0) + 1) & 0xffff },
      answer({ ...request, questions: [{ type: 'SRV', name: 'other.example' }] }, [srv('other.example', 667)], {
        edns: true,
      }),
      Buffer.from('junk'),
      answer(request, [srv('good.example', 1)], { edns: true }),
    ]);
    try {
      const res = await query(
        { name: 'good.example', type: 'SRV' },
        { servers: [r.server], transport: 'udp', timeoutMs: 1000 },
      );
      assert.deepEqual(
        res.answers.map((a) => (a.type === 'SRV' ? a.port : 0)),
        [9001],
      );
    } finally {
      await r.close();
    }
  });

  test('auto re-asks over TCP when the server ignored EDNS (Consul cuts silently) or set TC', async () => {
    const r = await responder((request, transport) => {
      const name = request.questions?.[0]?.name ?? '';
      const all = Array.from({ length: 10 }, (_, i) => srv(name, i));
      if (transport === 'tcp') return [answer(request, all)];
      if (name === 'tc.example') return [answer(request, [], { flags: dnsPacket.TRUNCATED_RESPONSE, edns: true })];
      if (name === 'gone.example') return [answer(request, [], { flags: 3 })];
      return [answer(request, all.slice(0, 3))]; // no OPT, 3 records, no TC: Consul without EDNS
    });
    try {
      const base = { servers: [r.server], timeoutMs: 1000 } as const;
      const cut = await query({ name: 'cut.example', type: 'SRV' }, { ...base, transport: 'udp' });
      assert.deepEqual([cut.answers.length, cut.edns, cut.truncated], [3, false, false], 'udp alone shows the cut');
      const full = await query({ name: 'cut.example', type: 'SRV' }, { ...base, transport: 'auto' });
      assert.deepEqual([full.answers.length, full.transport], [10, 'tcp']);
      const tc = await query({ name: 'tc.example', type: 'SRV' }, { ...base, transport: 'auto' });
      assert.deepEqual([tc.answers.length, tc.transport], [10, 'tcp']);
      const udpTc = await query({ name: 'tc.example', type: 'SRV' }, { ...base, transport: 'udp' });
      assert.equal(udpTc.truncated, true);
      const nx = await query({ name: 'gone.example', type: 'SRV' }, { ...base, transport: 'auto' });
      assert.deepEqual([nx.rcode, nx.transport], ['NXDOMAIN', 'udp'], 'nothing to cut in NXDOMAIN: no TCP round trip');
    } finally {
      await r.close();
    }
  });

  test('a silent server times out and the next server answers; all silent = DNS_TIMEOUT', async () => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    const dead: DnsServer = { host: '127.0.0.1', port: silent.address().port, family: 4 };
    try {
      const started = Date.now();
      const res = await query(
        { name: 'w.service.consul', type: 'SRV' },
        { servers: [dead, consulServer], transport: 'auto', timeoutMs: 150 },
      );
      assert.equal(res.server, consulServer);
      assert.ok(Date.now() - started >= 140);
      assert.equal(
        await codeOf(query({ name: 'x', type: 'A' }, { servers: [dead], transport: 'udp', timeoutMs: 100 })),
        ErrorCode.DNS_TIMEOUT,
      );
    } finally {
      silent.close();
    }
  });

  test('ICMP port unreachable (UDP) and connection refused (TCP) are DNS_UNREACHABLE', async () => {
    const closed: DnsServer = { host: '127.0.0.1', port: await closedPort(), family: 4 };
    const base = { servers: [closed], timeoutMs: 2000 } as const;
    assert.equal(
      await codeOf(query({ name: 'x', type: 'A' }, { ...base, transport: 'udp' })),
      ErrorCode.DNS_UNREACHABLE,
    );
    assert.equal(
      await codeOf(query({ name: 'x', type: 'A' }, { ...base, transport: 'tcp' })),
      ErrorCode.DNS_UNREACHABLE,
    );
    assert.equal(
      await codeOf(query({ name: 'x', type: 'A' }, { ...base, servers: [], transport: 'udp' })),
      ErrorCode.DNS_UNREACHABLE,
    );
  });

  test('SERVFAIL and REFUSED are coded errors, NXDOMAIN is an answer', async () => {
    const base = { servers: [consulServer], transport: 'auto', timeoutMs: 1000 } as const;
    consul.failNext(1, 'SERVFAIL');
    assert.equal(await codeOf(query({ name: 'w.service.consul', type: 'SRV' }, base)), ErrorCode.DNS_SERVFAIL);
    consul.failNext(1, 'REFUSED');
    assert.equal(await codeOf(query({ name: 'w.service.consul', type: 'SRV' }, base)), ErrorCode.DNS_REFUSED);
    assert.equal(await codeOf(query({ name: 'example.com', type: 'A' }, base)), ErrorCode.DNS_REFUSED);
    const nx = await query({ name: 'nope.service.consul', type: 'SRV' }, base);
    assert.equal(nx.rcode, 'NXDOMAIN');
    assert.equal(nx.authorities[0]?.type, 'SOA');
  });

  test('an undecodable answer with our id is DNS_MALFORMED (UDP and TCP)', async () => {
    const r = await responder((request, transport) => {
      const garbage = Buffer.alloc(14, 0xff);
      garbage.writeUInt16BE(request.id ?? 0, 0);
      garbage.writeUInt16BE(0x8180, 2);
      return [transport === 'tcp' ? Buffer.concat([Buffer.from([0, garbage.length]), garbage]) : garbage];
    });
    try {
      const base = { servers: [r.server], timeoutMs: 1000 } as const;
      assert.equal(
        await codeOf(query({ name: 'x', type: 'A' }, { ...base, transport: 'udp' })),
        ErrorCode.DNS_MALFORMED,
      );
      assert.equal(
        await codeOf(query({ name: 'x', type: 'A' }, { ...base, transport: 'tcp' })),
        ErrorCode.DNS_MALFORMED,
      );
    } finally {
      await r.close();
    }
  });

  test('abort rejects with an AbortError and leaves no socket or timer behind', async () => {
    const before = await sockets();
    for (const transport of ['udp', 'tcp'] as const) {
      consul.dropNext(1);
      const clock = countingClock();
      const controller = new AbortController();
      const pending = query(
        { name: 'w.service.consul', type: 'SRV' },
        { servers: [consulServer], transport, timeoutMs: 60_000, signal: controller.signal, clock },
      );
      // Over TCP the double's accepted connection is a second handle in this process.
      const inFlight = transport === 'udp' ? 1 : 2;
      assert.equal(await sockets(), before + inFlight, `${transport} socket open while the query is in flight`);
      assert.equal(clock.pending(), 1);
      controller.abort();
      await assert.rejects(pending, { name: 'AbortError' });
      assert.equal(clock.pending(), 0, 'timeout timer cancelled');
      assert.equal(await sockets(), before, `${transport} socket closed`);
    }
    const early = query(
      { name: 'x', type: 'A' },
      { servers: [consulServer], transport: 'auto', timeoutMs: 1000, signal: AbortSignal.abort() },
    );
    await assert.rejects(early, { name: 'AbortError' });
  });
});

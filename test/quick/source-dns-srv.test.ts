import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import * as dnsPacket from 'dns-packet';
import { systemClock } from '../../src/clock.js';
import type { Clock } from '../../src/clock.js';
import type { DnsServer } from '../../src/dns/message.js';
import { ErrorCode } from '../../src/errors.js';
import type { SourceAnswer, SourceFailure, SourceOutcome } from '../../src/source.js';
import { DnsSrvSource, resolveSrvWorkers } from '../../src/dns/source.js';
import type { DnsSrvSourceConfig } from '../../src/dns/source.js';
import { ConsulDnsServer } from '../../src/testing/consul-dns.js';
import type { DnsServiceInstance } from '../../src/testing/consul-dns.js';

/** A clock whose time only moves when the test says so. */
function manualClock(): Clock & { advance: (ms: number) => void; pendingDelays: () => number[] } {
  let now = 0;
  const timers: { at: number; ms: number; fn: () => void; live: boolean }[] = [];
  return {
    now: () => now,
    monotonic: () => now,
    setTimeout(fn, ms) {
      const timer = { at: now + ms, ms, fn, live: true };
      timers.push(timer);
      return { cancel: () => void (timer.live = false) };
    },
    advance(ms) {
      now += ms;
      for (const timer of timers.filter((t) => t.live && t.at <= now)) {
        timer.live = false;
        timer.fn();
      }
    },
    pendingDelays: () => timers.filter((t) => t.live).map((t) => t.ms),
  };
}

/** Collects outcomes and lets a test await the next one. */
function collector(): {
  onOutcome: (o: SourceOutcome) => void;
  next: () => Promise<SourceOutcome>;
  all: SourceOutcome[];
} {
  const all: SourceOutcome[] = [];
  const waiting: ((o: SourceOutcome) => void)[] = [];
  let read = 0;
  return {
    all,
    onOutcome(outcome) {
      all.push(outcome);
      waiting.shift()?.(outcome);
    },
    next() {
      const ready = all[read];
      read += 1;
      return ready !== undefined ? Promise.resolve(ready) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

/**
 * A forwarder that strips EDNS from UDP queries, like a middlebox or an old forwarder in
 * front of Consul: Consul then sees plain UDP queries and silently cuts to 3 answers.
 * TCP is forwarded untouched.
 */
async function ednsStripper(target: ConsulDnsServer): Promise<{ server: DnsServer; close: () => Promise<void> }> {
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const port = udp.address().port;
  udp.on('message', (message, client) => {
    const request = dnsPacket.decode(message);
    request.additionals = (request.additionals ?? []).filter((a) => a.type !== 'OPT');
    const upstream = dgram.createSocket('udp4');
    upstream.on('message', (reply) => {
      upstream.close();
      udp.send(reply, client.port, client.address);
    });
    upstream.send(dnsPacket.encode(request), target.port, target.host);
  });
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [socket, upstream]) {
      sockets.add(s);
      s.on('error', () => s.destroy());
      s.on('close', () => sockets.delete(s));
    }
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve) => tcp.listen(port, '127.0.0.1', resolve));
  return {
    server: { host: '127.0.0.1', port, family: 4 },
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((r) => udp.close(() => r())),
        new Promise<void>((r) => tcp.close(() => r())),
      ]);
    },
  };
}

const workers = (count: number, extra: (i: number) => Partial<DnsServiceInstance> = () => ({})): DnsServiceInstance[] =>
  Array.from({ length: count }, (_, i) => ({
    node: `worker-${i}`,
    nodeAddress: `10.1.0.${i + 1}`,
    serviceAddress: '',
    port: 8080,
    weight: 1,
    datacenter: 'dc1',
    ...extra(i),
  }));

/** Open UDP handles, measured after closes in progress have had time to finish. */
async function udpSockets(): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 50));
  return process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;
}

const ok = (outcome: SourceOutcome): SourceAnswer => {
  assert.equal(outcome.ok, true, outcome.ok ? '' : outcome.error.message);
  return outcome;
};
const failed = (outcome: SourceOutcome): SourceFailure => {
  assert.equal(outcome.ok, false);
  return outcome;
};

describe('DnsSrvSource', () => {
  const services: Record<string, DnsServiceInstance[]> = {
    'datafusion-worker': workers(10),
    weighted: workers(3, (i) => ({ weight: [5, 1, 10][i] ?? 1 })),
    v6: workers(2, (i) => ({ serviceAddress: `FD00::${i + 7}`, port: 9000 })),
    // Registered with host names (Docker Compose service names) and one IP, as Consul allows.
    named: [
      ...workers(2, (i) => ({ serviceAddress: `df_worker_${i + 1}.compose.internal`, port: 9100 })),
      ...workers(1, () => ({ node: 'ip-node', nodeAddress: '10.9.0.1', port: 9100 })),
    ],
  };
  let consul: ConsulDnsServer;
  let slow: ConsulDnsServer;
  let stripper: Awaited<ReturnType<typeof ednsStripper>>;
  let config: DnsSrvSourceConfig;

  before(async () => {
    const lookup = (service: string): DnsServiceInstance[] | undefined => services[service];
    consul = await ConsulDnsServer.start({ lookup });
    slow = await ConsulDnsServer.start({ lookup, ttlSeconds: 30 });
    stripper = await ednsStripper(consul);
    config = {
      name: '_datafusion-worker._tcp.service.consul',
      servers: [{ host: consul.host, port: consul.port, family: 4 }],
      transport: 'auto',
      scheme: 'http',
      timeoutMs: 1000,
      minRefreshMs: 1000,
      maxRefreshMs: 60_000,
      backoff: { baseMs: 100, capMs: 10_000 },
      clock: systemClock,
      random: () => 0.5,
    };
  });
  after(async () => {
    await stripper.close();
    await consul.stop();
    await slow.stop();
  });

  test('auto finds all 10 workers even where Consul cuts plain UDP answers to 3; udp alone shows the cut', async () => {
    const viaStripper = { ...config, servers: [stripper.server] };
    const full = ok(await resolveSrvWorkers(viaStripper));
    assert.equal(full.workers.length, 10);
    assert.deepEqual([full.source, full.blocking, full.unchanged, full.rejected], ['dns', false, false, 0]);
    assert.deepEqual(
      consul.queries.slice(-2).map((q) => [q.transport, q.edns]),
      [
        ['udp', false],
        ['tcp', true],
      ],
    );
    const cut = ok(await resolveSrvWorkers({ ...viaStripper, transport: 'udp' }));
    assert.equal(cut.workers.length, 3, 'without the TCP fallback three workers are silently lost');
  });

  test('candidates: URL, id, node, address, weight order, IPv6 in brackets', async () => {
    const res = ok(await resolveSrvWorkers(config));
    const first = res.workers.find((w) => w.address === '10.1.0.1');
    assert.deepEqual(first, {
      url: 'http://10.1.0.1:8080',
      id: 'worker-0.node.dc1.consul:8080',
      node: 'worker-0.node.dc1.consul',
      address: '10.1.0.1',
      port: 8080,
      tags: [],
      meta: {},
      status: 'passing',
      weight: 1,
    });
    const weighted = ok(await resolveSrvWorkers({ ...config, name: 'weighted.service.consul' }));
    assert.deepEqual(
      weighted.workers.map((w) => w.weight),
      [10, 5, 1],
    );
    const v6 = ok(await resolveSrvWorkers({ ...config, name: '_v6._tcp.service.consul' }));
    assert.deepEqual(v6.workers.map((w) => [w.url, w.address]).sort(), [
      ['http://[fd00::7]:9000', 'fd00::7'],
      ['http://[fd00::8]:9000', 'fd00::8'],
    ]);
  });

  test('a host-name target the server refuses to resolve (outside its domain) becomes a host-name URL', async () => {
    const res = ok(await resolveSrvWorkers({ ...config, name: 'named.service.consul' }));
    assert.equal(res.rejected, 0);
    assert.deepEqual(res.workers.map((w) => w.url).sort(), [
      'http://10.9.0.1:9100',
      'http://df_worker_1.compose.internal:9100',
      'http://df_worker_2.compose.internal:9100',
    ]);
    const named = res.workers.find((w) => w.url.includes('df_worker_1'));
    assert.equal(named?.address, 'df_worker_1.compose.internal');
  });

  test('NXDOMAIN is a real answer with 0 workers', async () => {
    const res = ok(await resolveSrvWorkers({ ...config, name: '_nope._tcp.service.consul' }));
    assert.deepEqual([res.workers.length, res.rejected], [0, 0]);
  });

  test('SERVFAIL and timeouts are failures with a backoff delay', async () => {
    consul.failNext(1, 'SERVFAIL');
    const servfail = failed(await resolveSrvWorkers(config));
    assert.equal(servfail.error.code, ErrorCode.DNS_SERVFAIL);
    assert.equal(servfail.retryInMs, 50, 'full jitter: random 0.5 × base 100');
    consul.dropNext(1);
    const timeout = failed(await resolveSrvWorkers({ ...config, timeoutMs: 100 }));
    assert.equal(timeout.error.code, ErrorCode.DNS_TIMEOUT);
    assert.equal(timeout.source, 'dns');
  });

  test('the next refresh follows the TTL within bounds; failures back off; success resets', async () => {
    const clock = manualClock();
    const sink = collector();
    const servers = [{ host: slow.host, port: slow.port, family: 4 as const }];
    const source = new DnsSrvSource({ ...config, servers, clock, minRefreshMs: 1000, maxRefreshMs: 20_000 });
    try {
      source.start(sink);
      source.start(sink); // no-op while running
      ok(await sink.next());
      assert.deepEqual(clock.pendingDelays(), [20_000], 'TTL 30 s clamped to maxRefreshMs');
      slow.failNext(2, 'SERVFAIL');
      clock.advance(20_000);
      assert.equal(failed(await sink.next()).retryInMs, 50);
      assert.deepEqual(clock.pendingDelays(), [50]);
      clock.advance(50);
      assert.equal(failed(await sink.next()).retryInMs, 100, 'second failure: ceiling doubled');
      clock.advance(100);
      ok(await sink.next());
      assert.deepEqual(clock.pendingDelays(), [20_000]);
      assert.equal(sink.all.length, 4, 'exactly one outcome per lookup');
    } finally {
      await source.stop();
    }
    const zeroTtl = manualClock();
    const fast = new DnsSrvSource({ ...config, clock: zeroTtl, minRefreshMs: 1500 });
    const fastSink = collector();
    fast.start(fastSink);
    ok(await fastSink.next());
    assert.deepEqual(zeroTtl.pendingDelays(), [1500], "Consul's TTL 0 raised to minRefreshMs");
    await fast.stop();
    assert.deepEqual(zeroTtl.pendingDelays(), [], 'stop() cancels the refresh timer');
  });

  test('stop() then start() runs a fresh loop with an immediate lookup', async () => {
    const clock = manualClock();
    const sink = collector();
    const source = new DnsSrvSource({ ...config, clock });
    source.start(sink);
    ok(await sink.next());
    await source.stop();
    await source.stop(); // idempotent
    clock.advance(120_000);
    assert.equal(sink.all.length, 1, 'no lookup after stop');
    source.start(sink);
    ok(await sink.next());
    await source.stop();
  });

  test('stop() with a query in flight reports nothing and closes its socket', async () => {
    consul.dropNext(1);
    const sink = collector();
    const source = new DnsSrvSource({ ...config, timeoutMs: 60_000 });
    const queries = consul.queries.length;
    const before = await udpSockets();
    source.start(sink);
    while (consul.queries.length === queries) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(await udpSockets(), before + 1);
    await source.stop();
    assert.equal(await udpSockets(), before);
    assert.equal(sink.all.length, 0);
  });

  test('stop() with a query in flight leaves the process able to exit', async () => {
    const url = (path: string): string => JSON.stringify(new URL(path, import.meta.url).href);
    const script = `
      import { DnsSrvSource } from ${url('../../src/dns/source.ts')};
      import { ConsulDnsServer } from ${url('../../src/testing/consul-dns.ts')};
      import { systemClock } from ${url('../../src/clock.ts')};
      const dns = await ConsulDnsServer.start({ lookup: () => [] });
      dns.dropNext(100);
      const source = new DnsSrvSource({ name: 'x.service.consul', servers: [{ host: dns.host, port: dns.port, family: 4 }],
        transport: 'auto', scheme: 'http', timeoutMs: 600000, minRefreshMs: 1000, maxRefreshMs: 1000,
        backoff: { baseMs: 1000, capMs: 1000 }, clock: systemClock });
      source.start({ onOutcome: () => { throw new Error('no outcome expected'); } });
      while (dns.queries.length === 0) await new Promise((r) => setTimeout(r, 5));
      await source.stop();
      await dns.stop();
      console.log('stopped');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const code = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? signal)));
    clearTimeout(killer);
    assert.equal(code, 0, 'the child exited on its own (a leaked socket would keep it alive until SIGKILL)');
    assert.match(output, /stopped/);
  });
});

/**
 * The DNS SRV source against a real DNS server (Debian's dnsmasq), for what the Consul
 * double cannot express: several priorities, weights, NODATA, a target of ".", targets
 * without Additional records, unresolvable targets, port 0 and TTLs.
 *
 * dnsmasq is required: when it is missing these tests FAIL (install it with
 * `apt-get install -y dnsmasq`); they never skip silently.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { systemClock } from '../../src/clock.js';
import type { Clock } from '../../src/clock.js';
import { query } from '../../src/dns/client.js';
import type { DnsServer } from '../../src/dns/message.js';
import type { SourceAnswer, SourceOutcome } from '../../src/source.js';
import { DnsSrvSource, resolveSrvWorkers } from '../../src/dns/source.js';
import type { DnsSrvSourceConfig } from '../../src/dns/source.js';
import { freeUdpPort as freePort } from '../helpers/ports.js';

const RECORDS = [
  // _w: priority 10 is the preferred set (w2 heavier than w1); priority 20 is a backup.
  '--srv-host=_w._tcp.example.test,w1.example.test,8080,10,5',
  '--srv-host=_w._tcp.example.test,w2.example.test,8081,10,20',
  '--srv-host=_w._tcp.example.test,w3.example.test,8082,20,100',
  '--host-record=w1.example.test,10.0.0.1,fd00::1',
  '--host-record=w2.example.test,10.0.0.2',
  '--host-record=w3.example.test,10.0.0.3',
  // _sep: dnsmasq sends no Additional records for --address names: separate A/AAAA queries.
  '--srv-host=_sep._tcp.example.test,sep.example.test,9090,1,1',
  '--address=/sep.example.test/10.0.0.9',
  '--address=/sep.example.test/fd00::9',
  // _none: RFC 2782 "decidedly not available".
  '--srv-host=_none._tcp.example.test,.,0',
  // _bad: one good target, one that does not resolve, one with port 0.
  '--srv-host=_bad._tcp.example.test,w2.example.test,8081,1,1',
  '--srv-host=_bad._tcp.example.test,ghost.example.test,8080,1,1',
  '--srv-host=_bad._tcp.example.test,w1.example.test,0,1,1',
];

function findDnsmasq(): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(path.delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  return dirs.map((dir) => path.join(dir, 'dnsmasq')).find((candidate) => existsSync(candidate));
}

/** Starts dnsmasq on a random port and waits until it answers; retries if the port was taken. */
async function startDnsmasq(binary: string): Promise<{ child: ChildProcess; server: DnsServer; log: () => string }> {
  for (let attempt = 0; attempt < 5; attempt += 1) {
    const port = await freePort();
    const child = spawn(
      binary,
      [
        '--no-daemon',
        '--conf-file=/dev/null',
        '--no-resolv',
        '--no-hosts',
        '--bind-interfaces',
        '--listen-address=127.0.0.1',
        `--port=${port}`,
        `--user=${userInfo().username}`,
        '--pid-file=',
        '--log-queries',
        '--log-facility=-',
        '--local=/example.test/',
        '--local-ttl=30',
        ...RECORDS,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    child.stdout?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const server: DnsServer = { host: '127.0.0.1', port, family: 4 };
    for (let probe = 0; probe < 50 && child.exitCode === null; probe += 1) {
      try {
        await query({ name: 'probe.example.test', type: 'A' }, { servers: [server], transport: 'udp', timeoutMs: 100 });
        return { child, server, log: () => log };
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    child.kill();
    if (attempt === 4) throw new Error(`dnsmasq did not start:\n${log}`);
  }
  throw new Error('unreachable');
}

const ok = (outcome: SourceOutcome): SourceAnswer => {
  assert.equal(outcome.ok, true, outcome.ok ? '' : outcome.error.message);
  return outcome;
};

describe('DNS SRV against dnsmasq', () => {
  let dnsmasq: Awaited<ReturnType<typeof startDnsmasq>> | undefined;
  let config: DnsSrvSourceConfig;
  const base = (name: string): DnsSrvSourceConfig => ({ ...config, name });

  before(async () => {
    const binary = findDnsmasq();
    if (binary === undefined) {
      throw new Error('dnsmasq is not installed: these tests need it (apt-get install -y dnsmasq)');
    }
    dnsmasq = await startDnsmasq(binary);
    config = {
      name: '_w._tcp.example.test',
      servers: [dnsmasq.server],
      transport: 'auto',
      scheme: 'http',
      timeoutMs: 1000,
      minRefreshMs: 1000,
      maxRefreshMs: 60_000,
      backoff: { baseMs: 100, capMs: 1000 },
      clock: systemClock,
    };
  });
  after(async () => {
    const child = dnsmasq?.child;
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  });

  test('only the lowest priority is kept, ordered by weight; a multi-address target gets one worker per address', async () => {
    const res = ok(await resolveSrvWorkers(base('_w._tcp.example.test')));
    assert.deepEqual(
      res.workers.map((w) => [w.id, w.url, w.weight]),
      [
        ['w2.example.test:8081', 'http://10.0.0.2:8081', 20],
        ['w1.example.test:8080/10.0.0.1', 'http://10.0.0.1:8080', 5],
        ['w1.example.test:8080/fd00::1', 'http://[fd00::1]:8080', 5],
      ],
    );
    assert.equal(res.rejected, 0);
    assert.doesNotMatch(dnsmasq?.log() ?? '', /query\[A+\] w[12]\.example\.test/, 'addresses came from Additional');
  });

  test('targets without Additional records are resolved with separate A and AAAA queries', async () => {
    const res = ok(await resolveSrvWorkers(base('_sep._tcp.example.test')));
    assert.deepEqual(res.workers.map((w) => w.url).sort(), ['http://10.0.0.9:9090', 'http://[fd00::9]:9090']);
    const log = dnsmasq?.log() ?? '';
    assert.match(log, /query\[A\] sep\.example\.test/);
    assert.match(log, /query\[AAAA\] sep\.example\.test/);
  });

  test('target "." and NODATA and NXDOMAIN are answers with 0 workers', async () => {
    for (const name of ['_none._tcp.example.test', 'w1.example.test', '_missing._tcp.example.test']) {
      const res = ok(await resolveSrvWorkers(base(name)));
      assert.deepEqual([res.workers.length, res.rejected], [0, 0], name);
    }
  });

  test('unresolvable targets and port 0 are counted as rejected', async () => {
    const res = ok(await resolveSrvWorkers(base('_bad._tcp.example.test')));
    assert.deepEqual(
      res.workers.map((w) => w.url),
      ['http://10.0.0.2:8081'],
    );
    assert.equal(res.rejected, 2);
  });

  test('TCP transport works and the 30 s TTL schedules the next lookup', async () => {
    let delay: number | undefined;
    const clock: Clock = { ...systemClock, setTimeout: (fn, ms) => ((delay = ms), systemClock.setTimeout(fn, ms)) };
    const source = new DnsSrvSource({ ...base('_w._tcp.example.test'), transport: 'tcp', clock });
    const outcome = await new Promise<SourceOutcome>((resolve) => source.start({ onOutcome: resolve }));
    await source.stop();
    assert.equal(ok(outcome).workers.length, 3);
    assert.equal(delay, 30_000);
  });
});

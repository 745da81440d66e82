/**
 * `worker-resolver doctor` as a child process against the Consul dev server (HTTP + its
 * Consul-style DNS): a healthy setup passes; each broken setup exits 1 with the ✗ line that
 * names the problem and its fix.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ConsulDevServer } from '../../src/testing/index.js';
import { runCli, within } from '../fixtures/cli-http.js';
import { freeTcpPort as freePort } from '../helpers/ports.js';

const TOKEN = 'doctor-token-5a5a5a5a-0001';
const FILTERED_TOKEN = 'no-node-read-token-2222';

function register(consul: ConsulDevServer, service: string, count: number, status: 'passing' | 'critical'): void {
  for (let n = 1; n <= count; n += 1) {
    consul.registerService({
      Name: service,
      ID: `${service}-${n}`,
      Address: `127.0.2.${n}`,
      Port: 9000 + n,
      Check: { CheckID: `${service}-check-${n}`, TTL: '1h', Status: status },
    });
  }
}

async function doctor(args: string[], env: Record<string, string> = {}): Promise<{ code: unknown; lines: string[] }> {
  const cli = runCli(['doctor', ...args], env);
  const code = await within(cli.exited, 30_000, `doctor ${args.join(' ')}`);
  assert.equal(cli.stderr(), '', 'doctor writes its report to stdout only');
  return { code, lines: cli.stdout().trimEnd().split('\n') };
}

function line(lines: string[], pattern: RegExp): string {
  const found = lines.find((l) => pattern.test(l));
  assert.ok(found !== undefined, `no line matches ${String(pattern)} in:\n${lines.join('\n')}`);
  return found;
}

describe('worker-resolver doctor', () => {
  let open: ConsulDevServer;
  let acl: ConsulDevServer;

  before(async () => {
    open = await ConsulDevServer.start();
    register(open, 'few', 3, 'passing');
    register(open, 'many', 10, 'passing');
    register(open, 'crit', 2, 'critical');
    open.registerService({
      Name: 'crit',
      ID: 'crit-drained',
      Address: '127.0.2.9',
      Port: 9009,
      Check: { CheckID: 'crit-drained-check', TTL: '1h', Status: 'passing' },
    });
    open.setServiceMaintenance('crit-drained', true, 'rolling restart');
    acl = await ConsulDevServer.start({ dns: false, aclToken: TOKEN, aclFilteredTokens: [FILTERED_TOKEN] });
    register(acl, 'few', 2, 'passing');
  });
  after(async () => {
    await open.stop();
    await acl.stop();
  });

  it('a healthy setup: every line ✓, exit 0', async () => {
    const { code, lines } = await doctor(
      ['--service', 'few', '--consul', open.httpAddr, '--dns-srv', '_few._tcp.service.consul'],
      { WORKER_RESOLVER_DNS_SERVERS: open.dnsAddr ?? '' },
    );
    assert.equal(code, 0, lines.join('\n'));
    assert.ok(
      lines.every((l) => l.startsWith('✓')),
      lines.join('\n'),
    );
    line(lines, /^✓ Consul at .* answers; raft leader/);
    line(lines, /^✓ anonymous access can read service "few"/);
    line(
      lines,
      /^✓ service "few": 3 usable workers of 3 instances \(3 passing, 0 warning, 0 critical, 0 in maintenance\)/,
    );
    line(lines, /^✓ DNS SRV name _few\._tcp\.service\.consul resolves to 3 workers/);
    line(lines, /^✓ UDP and TCP answers .* agree \(3 SRV records\)/);
  });

  it('a token with access passes; a wrong or missing token is explained with the policy, never printed', async () => {
    const ok = await doctor(['--service', 'few'], { CONSUL_HTTP_ADDR: acl.httpAddr, CONSUL_HTTP_TOKEN: TOKEN });
    assert.equal(ok.code, 0, ok.lines.join('\n'));
    line(ok.lines, /^✓ the ACL token can read service "few"/);

    const wrong = 'wrong-token-0000-1111';
    const bad = await doctor(['--service', 'few'], { CONSUL_HTTP_ADDR: acl.httpAddr, CONSUL_HTTP_TOKEN: wrong });
    assert.equal(bad.code, 1);
    const denied = line(bad.lines, /^✗ the ACL token is unknown to Consul/);
    assert.match(denied, /service "few" \{ policy = "read" \}/);
    assert.match(denied, /node_prefix "" \{ policy = "read" \}/);
    assert.ok(!bad.lines.join('\n').includes(wrong), 'the token is never printed');

    const filtered = await doctor(['--service', 'few'], {
      CONSUL_HTTP_ADDR: acl.httpAddr,
      CONSUL_HTTP_TOKEN: FILTERED_TOKEN,
    });
    assert.equal(filtered.code, 1);
    assert.match(line(filtered.lines, /^✗ .*filtered instances out/), /node_prefix "" \{ policy = "read" \}/);
    assert.ok(!filtered.lines.join('\n').includes(FILTERED_TOKEN), 'the token is never printed');

    const none = await doctor(['--service', 'few', '--consul', acl.httpAddr]);
    assert.equal(none.code, 1);
    assert.match(line(none.lines, /^✗ no ACL token was given/), /CONSUL_HTTP_TOKEN/);
  });

  it('a service with no passing instance: ✗ with the counts and what to do, exit 1', async () => {
    const { code, lines } = await doctor(['--service', 'crit', '--consul', open.httpAddr]);
    assert.equal(code, 1);
    const l = line(lines, /^✗ service "crit": 0 usable workers of 3 instances/);
    assert.match(l, /0 passing, 0 warning, 2 critical, 1 in maintenance/);
    assert.match(l, /fix: .*health checks.*maintenance/);
    // Which instances, on which node, and what their check says.
    line(lines, /^ {4}critical crit-1 on node \S+: /);
    line(lines, /^ {4}critical crit-2 on node \S+: /);
    line(lines, /^ {4}maintenance crit-drained on node \S+: .*rolling restart/);
  });

  it('a hung agent is reported as a timeout, not as unreachable', async () => {
    // Accepts connections and never answers, like a SIGSTOPped agent.
    const sockets: net.Socket[] = [];
    const hung = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
    const port = (hung.address() as net.AddressInfo).port;
    try {
      const { code, lines } = await doctor(['--service', 'few', '--consul', `127.0.0.1:${port}`, '--timeout', '1s']);
      assert.equal(code, 1);
      line(
        lines,
        /^✗ Consul at .* accepted the connection but did not answer within 1000 ms \(a hung or overloaded agent\)/,
      );
      assert.ok(!lines.some((l) => /aborted/.test(l)), lines.join('\n'));
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => hung.close(resolve));
    }
  });

  it('https spoken to the plain-HTTP port is named as such, not blamed on CA files', async () => {
    const port = new URL(open.httpAddr).port;
    const { code, lines } = await doctor([
      '--service',
      'few',
      '--consul',
      `https://127.0.0.1:${port}`,
      '--timeout',
      '2s',
    ]);
    assert.equal(code, 1);
    const l = line(lines, /^✗ Consul at https:\/\/127\.0\.0\.1:\d+ does not speak TLS on this port/);
    assert.doesNotMatch(l, /CONSUL_CACERT/);
  });

  it('a service that does not exist: ✗, exit 1', async () => {
    const { code, lines } = await doctor(['--service', 'nope', '--consul', open.httpAddr]);
    assert.equal(code, 1);
    line(lines, /^✗ service "nope" has no instances — fix: /);
  });

  it('Consul unreachable: ✗ with the address, dependent checks skipped, exit 1', async () => {
    const port = await freePort();
    const { code, lines } = await doctor(['--service', 'few', '--consul', `127.0.0.1:${port}`, '--timeout', '2s']);
    assert.equal(code, 1);
    line(lines, new RegExp(`^✗ Consul at http://127\\.0\\.0\\.1:${port} is unreachable: .* — fix: check --consul`));
    line(lines, /^· ACL and service checks skipped/);
  });

  it("a DNS name whose UDP answers are cut without TC: a warning with the counts, exit 0 (not this resolver's problem)", async () => {
    const { code, lines } = await doctor([
      '--service',
      'many',
      '--no-consul',
      '--dns-srv',
      '_many._tcp.service.consul',
      '--dns-server',
      open.dnsAddr ?? '',
    ]);
    assert.equal(code, 0, lines.join('\n'));
    line(lines, /^· Consul checks skipped/);
    line(lines, /^✓ DNS SRV name _many\._tcp\.service\.consul resolves to 10 workers/);
    const cut = line(lines, /^! UDP answers without EDNS for _many\._tcp\.service\.consul carry 3 of 10 SRV records/);
    assert.match(cut, /enable_truncate/);
    assert.match(cut, /worker-resolver is not affected/);
  });

  it('a DNS name without workers: ✗, exit 1', async () => {
    const { code, lines } = await doctor(
      ['--service', 'few', '--no-consul', '--dns-srv', '_nope._tcp.service.consul'],
      { WORKER_RESOLVER_DNS_SERVERS: open.dnsAddr ?? '' },
    );
    assert.equal(code, 1);
    line(lines, /^✗ DNS SRV name _nope\._tcp\.service\.consul resolves to no workers/);
  });

  it('bad flags: one stderr line, exit 2', async () => {
    const cli = runCli(['doctor', '--service', 'few', '--timeout', 'soon']);
    assert.equal(await within(cli.exited, 20_000, 'exit'), 2);
    assert.match(cli.stderr(), /^worker-resolver: --timeout: .* \(ERR_USAGE\)\n$/);
    assert.equal(cli.stdout(), '');
  });
});

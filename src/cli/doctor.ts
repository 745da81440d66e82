/**
 * `worker-resolver doctor`: checks what the resolver depends on and explains what is wrong,
 * one line per check — `✓ what is fine`, `✗ what is wrong — fix: what to do`, `! a warning —
 * note: why it may matter`, `· skipped`. Warnings never change the exit code: they are about
 * things that do not stop this resolver (e.g. what other DNS clients see), so `doctor` stays
 * usable as a health gate.
 *
 * 1. Consul answers `GET /v1/status/leader` and has a raft leader.
 * 2. The ACL token can read the service (`GET /v1/health/service/:name`, the resolver's own
 *    query but without `passing`, so unhealthy instances can be counted). A 403 is explained
 *    with the policy the token needs; the token itself is never printed.
 * 3. The service has instances, and some are usable under the resolver's policy; counts of
 *    passing / warning / critical / maintenance say why not.
 * 4. The DNS SRV name (with `--dns-srv`) resolves to workers.
 * 5. UDP without EDNS and TCP return the same number of SRV records: Consul's DNS cuts plain
 *    UDP answers to 3 records without setting TC, so a stub resolver silently sees 3 workers.
 *    This resolver sends EDNS and re-asks over TCP, so it is a warning, not a failure.
 *
 * Exit 0 when no check failed (warnings allowed), 1 otherwise, 2 on bad flags. Every network
 * call is bounded by `--timeout`; a hung agent is reported as such.
 */
import { getServers } from 'node:dns';
import { systemClock } from '../clock.js';
import { ConsulHealthClient } from '../consul/client.js';
import { MAINTENANCE_CHECK, parseHealthBody } from '../consul/health.js';
import { parseDnsServer, query } from '../dns/client.js';
import type { DnsServer } from '../dns/message.js';
import { isWorkerResolverError } from '../errors.js';
import { resolveCommon, resolveConsul, resolveDns } from '../options.js';
import type { ConsulSourceConfig } from '../consul/source.js';
import { resolveSrvWorkers } from '../dns/source.js';
import type { DnsSrvSourceConfig } from '../dns/source.js';
import { parseCli } from './config.js';
import { helpText } from './flags.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Collects check results; prints each line as it is decided. */
class Report {
  failed = false;
  constructor(private readonly write: (line: string) => void) {}
  ok(what: string): void {
    this.write(`✓ ${what}`);
  }
  fail(what: string, fix: string): void {
    this.failed = true;
    this.write(`✗ ${what} — fix: ${fix}`);
  }
  warn(what: string, note: string): void {
    this.write(`! ${what} — note: ${note}`);
  }
  skip(what: string): void {
    this.write(`· ${what}`);
  }
  /** An indented detail line under the previous check. */
  detail(text: string): void {
    this.write(`    ${text}`);
  }
}

/** How long doctor lets a request take; the abort signal fires later, so the client's own timeout names a hang. */
const ABORT_GRACE_MS = 1000;

/** True when a TLS failure means the port does not speak TLS at all (https sent to the plain HTTP port). */
function plainHttpPort(err: unknown): boolean {
  const cause = (err as { cause?: { message?: string; code?: string } } | undefined)?.cause;
  const text = `${cause?.message ?? ''} ${cause?.code ?? ''} ${err instanceof Error ? err.message : ''}`;
  return /wrong version number|packet length too long|ERR_SSL_WRONG_VERSION_NUMBER|unknown protocol/i.test(text);
}

function messageOf(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ');
}

/** Runs the checks; returns the exit code. Throws usage and option errors (exit 2). */
export async function runDoctor(argv: readonly string[], env: Env = process.env): Promise<number> {
  const config = parseCli('doctor', argv, env);
  if (config.help || config.resolver === undefined) {
    process.stdout.write(helpText('doctor'));
    return 0;
  }
  const options = config.resolver;
  // The library's own validation, so doctor accepts exactly what serve accepts.
  const common = resolveCommon(options);
  const consul =
    options.consul === undefined
      ? undefined
      : resolveConsul(options.consul, common.service, common.env, systemClock, undefined);
  const dns = options.dns === undefined ? undefined : resolveDns(options.dns, systemClock, undefined);
  const report = new Report((line) => process.stdout.write(`${line}\n`));
  const hasToken = consul?.client.token !== undefined;
  if (consul === undefined) report.skip('Consul checks skipped (--no-consul)');
  else await checkConsul(consul, hasToken, config.timeoutMs, report);
  if (dns === undefined) report.skip('DNS checks skipped (no --dns-srv)');
  else await checkDns(dns, config.timeoutMs, report);
  return report.failed ? 1 : 0;
}

async function checkConsul(
  consul: ConsulSourceConfig,
  hasToken: boolean,
  timeoutMs: number,
  report: Report,
): Promise<void> {
  const where = consul.client.address.origin;
  const client = new ConsulHealthClient(consul.client);
  const service = consul.query.service;
  try {
    try {
      const leader = await client.leader(timeoutMs, AbortSignal.timeout(timeoutMs + ABORT_GRACE_MS));
      if (leader === '') {
        report.fail(
          `Consul at ${where} answers but has no raft leader`,
          'the servers lost quorum or are electing: check `consul operator raft list-peers` and the server logs',
        );
      } else {
        report.ok(`Consul at ${where} answers; raft leader ${leader}`);
      }
    } catch (err) {
      const code = isWorkerResolverError(err) ? err.code : undefined;
      if (code === 'ERR_CONSUL_TIMEOUT') {
        report.fail(
          `Consul at ${where} accepted the connection but did not answer within ${timeoutMs} ms (a hung or overloaded agent)`,
          'check the agent process (is it stopped, swapping, or stuck on disk?) and its logs; restart it if it stays hung',
        );
      } else if (code === 'ERR_CONSUL_TLS' && plainHttpPort(err)) {
        report.fail(
          `Consul at ${where} does not speak TLS on this port: https was sent to a plain-HTTP port`,
          "use http:// for this port, or Consul's HTTPS port (8501 by default, ports { https = 8501 })",
        );
      } else {
        report.fail(
          `Consul at ${where} is unreachable: ${messageOf(err)}`,
          code === 'ERR_CONSUL_TLS'
            ? 'check CONSUL_CACERT / CONSUL_CLIENT_CERT / CONSUL_CLIENT_KEY / CONSUL_TLS_SERVER_NAME'
            : `check --consul or CONSUL_HTTP_ADDR, and that the agent listens there (curl ${where}/v1/status/leader)`,
        );
      }
      report.skip('ACL and service checks skipped: Consul did not answer');
      return;
    }
    let body: Buffer;
    try {
      const res = await client.healthService(
        { ...consul.query, passingOnly: false },
        { index: 0, waitMs: 0, timeoutMs, signal: AbortSignal.timeout(timeoutMs + ABORT_GRACE_MS) },
      );
      body = res.body;
      if (res.filteredByAcls && !hasToken) {
        // An empty answer to a tokenless read under default deny (Consul masks the filtered flag for it).
        report.fail(
          `no ACL token was given and anonymous access cannot read service "${service}" ` +
            '(ACLs default deny: Consul answers anonymous reads with an empty list)',
          'set CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE (or --token-file) to a token whose policy has ' +
            `service "${service}" { policy = "read" } and node_prefix "" { policy = "read" }`,
        );
        return;
      }
      if (res.filteredByAcls) {
        report.fail(
          `the ACL token can read service "${service}" but Consul filtered instances out of the answer ` +
            '(X-Consul-Results-Filtered-By-ACLs): the resolver treats such answers as ACL errors',
          'add to the token\'s policy: node_prefix "" { policy = "read" } (and service:read on the service)',
        );
        return;
      }
      report.ok(`${hasToken ? 'the ACL token' : 'anonymous access'} can read service "${service}"`);
    } catch (err) {
      explainHealthError(err, service, hasToken, report);
      return;
    }
    checkInstances(body, consul, report);
  } finally {
    client.destroy();
  }
}

function explainHealthError(err: unknown, service: string, hasToken: boolean, report: Report): void {
  const policy = `service "${service}" { policy = "read" } and node_prefix "" { policy = "read" }`;
  if (isWorkerResolverError(err) && err.code === 'ERR_CONSUL_ACL') {
    const unknown = /ACL not found/i.test(err.message);
    const what = !hasToken
      ? `no ACL token was given and anonymous access cannot read service "${service}" (403)`
      : unknown
        ? 'the ACL token is unknown to Consul (403 "ACL not found")'
        : `the ACL token cannot read service "${service}" (403 "Permission denied")`;
    const fix = !hasToken
      ? `set CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE (or --token-file) to a token whose policy has ${policy}`
      : unknown
        ? `use a token that exists in this datacenter, with a policy granting ${policy}`
        : `add to the token's policy: ${policy}`;
    report.fail(what, fix);
    return;
  }
  if (isWorkerResolverError(err) && err.code === 'ERR_CONSUL_BAD_REQUEST') {
    report.fail(`Consul rejected the health query: ${messageOf(err)}`, 'check --filter, --tag and --node-meta');
    return;
  }
  report.fail(`cannot read the health of service "${service}": ${messageOf(err)}`, 'see the message; retry later');
}

/** Counts instances by state: maintenance wins, else the worst check. */
function countStates(entries: unknown[]): Record<'passing' | 'warning' | 'critical' | 'maintenance', number> {
  const counts = { passing: 0, warning: 0, critical: 0, maintenance: 0 };
  for (const entry of entries) {
    const checks = (entry as { Checks?: unknown } | null)?.Checks;
    const list = Array.isArray(checks) ? (checks as { CheckID?: unknown; Status?: unknown }[]) : [];
    const maintenance = list.some((c) => MAINTENANCE_CHECK.test(String(c.CheckID)));
    const statuses = list.map((c) => c.Status);
    const state = maintenance
      ? 'maintenance'
      : statuses.includes('critical')
        ? 'critical'
        : statuses.includes('warning')
          ? 'warning'
          : statuses.every((s) => s === 'passing')
            ? 'passing'
            : 'critical';
    counts[state] += 1;
  }
  return counts;
}

/** Most unhealthy instances listed by name. */
const MAX_LISTED = 10;

/** One line per instance that is critical, warning or in maintenance: which, where, and what its failing check says. */
function unhealthyInstances(entries: readonly unknown[]): string[] {
  const text = (v: unknown): string => (typeof v === 'string' ? v : '');
  const lines: string[] = [];
  for (const entry of entries) {
    const e = entry as {
      Node?: { Node?: unknown };
      Service?: { ID?: unknown };
      Checks?: { CheckID?: unknown; Name?: unknown; Status?: unknown; Output?: unknown; Notes?: unknown }[];
    } | null;
    const checks = Array.isArray(e?.Checks) ? e.Checks : [];
    const maintenance = checks.find((c) => MAINTENANCE_CHECK.test(text(c.CheckID)));
    const failing =
      maintenance ?? checks.find((c) => c.Status === 'critical') ?? checks.find((c) => c.Status === 'warning');
    if (failing === undefined) continue;
    const state = maintenance !== undefined ? 'maintenance' : text(failing.Status);
    // Maintenance carries its reason in Notes; a failing check says why in Output.
    const output = (text(failing.Output) || text(failing.Notes)).replace(/\s+/g, ' ').trim().slice(0, 160);
    const name = text(failing.Name) || text(failing.CheckID) || 'check';
    lines.push(
      `${state} ${text(e?.Service?.ID) || '?'} on node ${text(e?.Node?.Node) || '?'}: ${name}${output === '' ? '' : `: ${output}`}`,
    );
  }
  return lines;
}

function checkInstances(body: Buffer, consul: ConsulSourceConfig, report: Report): void {
  const service = consul.query.service;
  let entries: unknown;
  let parsed: ReturnType<typeof parseHealthBody>;
  try {
    entries = JSON.parse(body.toString('utf8'));
    parsed = parseHealthBody(body, consul.policy);
  } catch (err) {
    report.fail(
      `Consul's health answer is unusable: ${messageOf(err)}`,
      'check the agent version and any proxy in between',
    );
    return;
  }
  const list = Array.isArray(entries) ? (entries as unknown[]) : [];
  const scope = [
    consul.query.datacenter === undefined ? '' : ` in datacenter ${consul.query.datacenter}`,
    consul.query.tags.length === 0
      ? ''
      : ` with tag${consul.query.tags.length > 1 ? 's' : ''} ${consul.query.tags.join(', ')}`,
    consul.query.filter === undefined ? '' : ' matching the filter',
  ].join('');
  if (list.length === 0) {
    report.fail(
      `service "${service}" has no instances${scope}`,
      'check the service name (`consul catalog services`), the tags/filter, and that the workers register',
    );
    return;
  }
  const c = countStates(list);
  const usable = parsed.workers.length;
  const counts = `${c.passing} passing, ${c.warning} warning, ${c.critical} critical, ${c.maintenance} in maintenance`;
  const summary = `service "${service}": ${usable} usable worker${usable === 1 ? '' : 's'} of ${list.length} instance${list.length === 1 ? '' : 's'}${scope} (${counts})`;
  const unhealthy = unhealthyInstances(list);
  if (usable > 0) {
    report.ok(summary);
    if (unhealthy.length > 0) {
      report.warn(
        `${unhealthy.length} instance(s) of "${service}" are not routed to`,
        'the resolver skips them; their checks say why',
      );
    }
  } else {
    const hints = [
      c.critical > 0 ? 'fix the failing health checks (their output is in the Consul UI or /v1/health/service)' : '',
      c.warning > 0 && !consul.policy.includeWarning ? 'or pass --include-warning to route to warning instances' : '',
      c.maintenance > 0 ? 'take drained instances out of maintenance (`consul maint -disable -service <id>`)' : '',
      consul.policy.metaMatch === undefined ? '' : 'check --meta-match',
    ].filter((h) => h !== '');
    report.fail(summary, hints.join('; ') || 'check the instances and the filters');
  }
  for (const line of unhealthy.slice(0, MAX_LISTED)) report.detail(line);
  if (unhealthy.length > MAX_LISTED) report.detail(`… and ${unhealthy.length - MAX_LISTED} more`);
  if (parsed.rejected > 0) {
    report.fail(
      `${parsed.rejected} healthy instance(s) of "${service}" have no valid address or port`,
      'register them with Service.Address (or a node address) and a Port in 1-65535, or check --tagged-address',
    );
  }
}

function serversOf(dns: DnsSrvSourceConfig): DnsServer[] {
  if (dns.servers.length > 0) return [...dns.servers];
  return getServers().flatMap((spec) => {
    try {
      return [parseDnsServer(spec)];
    } catch {
      return [];
    }
  });
}

async function checkDns(dns: DnsSrvSourceConfig, timeoutMs: number, report: Report): Promise<void> {
  const servers = serversOf(dns);
  const via = servers.map((s) => (s.family === 6 ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`)).join(', ');
  const outcome = await resolveSrvWorkers(dns, AbortSignal.timeout(timeoutMs)).catch((err: unknown) => err as Error);
  if (outcome instanceof Error || !outcome.ok) {
    const why = outcome instanceof Error ? `no answer within ${timeoutMs} ms` : messageOf(outcome.error);
    report.fail(
      `DNS SRV lookup of ${dns.name} via ${via || 'no server'} failed: ${why}`,
      'check --dns-server (Consul answers DNS on port 8600) and that the server is reachable over UDP and TCP',
    );
    return;
  }
  if (outcome.workers.length === 0) {
    report.fail(
      `DNS SRV name ${dns.name} resolves to no workers (via ${via})`,
      'check the name (Consul: _<service>._tcp.service.consul or <service>.service.consul) and that instances are healthy',
    );
    return;
  }
  report.ok(`DNS SRV name ${dns.name} resolves to ${outcome.workers.length} workers (via ${via})`);
  await checkTruncation(dns.name, servers, timeoutMs, report);
}

async function checkTruncation(name: string, servers: DnsServer[], timeoutMs: number, report: Report): Promise<void> {
  const ask = (transport: 'udp' | 'tcp') =>
    query(
      { name, type: 'SRV' },
      { servers, transport, edns: false, timeoutMs, signal: AbortSignal.timeout(timeoutMs) },
    );
  const [udp, tcp] = await Promise.allSettled([ask('udp'), ask('tcp')]);
  if (tcp.status === 'rejected') {
    report.fail(
      `the DNS server does not answer ${name} over TCP: ${messageOf(tcp.reason)}`,
      'large worker sets need DNS over TCP: allow TCP to the DNS port (53, or 8600 for Consul)',
    );
    return;
  }
  if (udp.status === 'rejected') {
    report.fail(
      `the DNS server does not answer ${name} over UDP: ${messageOf(udp.reason)}`,
      'allow UDP to the DNS port',
    );
    return;
  }
  const count = (answers: readonly { type: string }[]): number => answers.filter((a) => a.type === 'SRV').length;
  const u = count(udp.value.answers);
  const t = count(tcp.value.answers);
  if (u >= t) report.ok(`UDP and TCP answers for ${name} agree (${t} SRV records)`);
  else if (udp.value.truncated)
    report.ok(`UDP answers for ${name} are cut to ${u} of ${t} records but set TC, so clients retry over TCP`);
  else {
    // Not a failure: this resolver asks with EDNS and re-asks over TCP. Other DNS clients may not.
    report.warn(
      `UDP answers without EDNS for ${name} carry ${u} of ${t} SRV records and do not set TC: plain resolvers silently see ${u} workers`,
      'worker-resolver is not affected (EDNS, then TCP: --dns-transport auto); for other clients set dns_config { enable_truncate = true } on Consul',
    );
  }
}

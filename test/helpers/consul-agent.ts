/**
 * A real Consul agent for tests: the reference the dev server is proven against (docs/design.md §11).
 *
 * `ConsulAgent.start()` runs the binary that `scripts/consul-binary.sh` built (or
 * `WORKER_RESOLVER_CONSUL_BIN`) on 127.0.0.1 only, with a random free port for every listener
 * (http, https, dns, serf_lan, serf_wan, server, grpc, grpc_tls), a temp directory for its
 * config, log and data, and waits until it has a leader and has registered its own node.
 * `stop()` sends SIGTERM, then SIGKILL, to that one PID and removes the temp directory.
 *
 * Three modes:
 * - `dev` (default): `consul agent -dev`, Raft in memory — fast to start, but a restart starts empty.
 * - `server`: `-server -bootstrap-expect=N` (default 1) with a real data dir, so `restart({ dataDir: 'same' })`
 *   (after SIGTERM or `kill -9`) brings back the same Raft log, catalog index and agent services.
 * - `client`: a client agent with a real data dir, joining servers (`retryJoin`).
 * An agent may listen on its own loopback address (`address`, e.g. 127.0.19.2) with Consul's
 * default ports (`ports: 'default'`): that is how `consul-cluster.ts` runs servers and clients side by side.
 *
 * The binary is never built from here (a test must not take minutes): when it is missing, `start()`
 * fails with a message naming the provisioning command.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  accessSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
  openSync,
  closeSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConsulApi } from './consul-api.js';
import { freePorts } from './ports.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The Consul version pinned in tools/consul/go.mod (the wrapper module's requirement). */
export function consulVersion(): string {
  const gomod = readFileSync(join(REPO, 'tools', 'consul', 'go.mod'), 'utf8');
  const match = /^\s*github\.com\/hashicorp\/consul (v\S+)/m.exec(gomod);
  if (match?.[1] === undefined) throw new Error('tools/consul/go.mod does not require github.com/hashicorp/consul');
  return match[1];
}

/**
 * The path of the Consul binary the tests run: `WORKER_RESOLVER_CONSUL_BIN`, else the cache that
 * scripts/consul-binary.sh fills. Throws, naming the fix, when it is not there.
 */
export function consulBinaryPath(env: NodeJS.ProcessEnv = process.env): string {
  const override = env['WORKER_RESOLVER_CONSUL_BIN'];
  const cacheHome = env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  const path = override || join(cacheHome, 'worker-resolver', 'consul', consulVersion(), 'consul');
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(
      `No Consul binary at ${path}. The contract tests run a real Consul agent: provision it with ` +
        '`scripts/consul-binary.sh` (builds it once from tools/consul into the cache) or run the full command ' +
        '`npm run test:all`, which provisions everything first; or set WORKER_RESOLVER_CONSUL_BIN to a consul binary.',
    );
  }
  return path;
}

/** The agent's listeners; -1 means disabled. */
export interface ConsulAgentPorts {
  readonly http: number;
  readonly https: number;
  readonly dns: number;
  readonly serf_lan: number;
  readonly serf_wan: number;
  readonly server: number;
  readonly grpc: number;
  readonly grpc_tls: number;
}

export interface ConsulAgentTls {
  /** PEM file paths (test/helpers/certs.ts writes them into its dir). */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Require a client certificate signed by the CA on the HTTPS port (mTLS). Default true. */
  readonly verifyIncoming?: boolean;
}

export interface ConsulAgentOptions {
  /** `dev` (in-memory, default), `server` (real data dir, survives a restart) or `client` (joins servers). */
  readonly mode?: 'dev' | 'server' | 'client';
  /** Loopback address every listener binds and advertises. Default 127.0.0.1. */
  readonly address?: string;
  /** `random` free ports (default), or Consul's `default` ones (8500 HTTP, 8600 DNS, 8300/8301/8302; no gRPC). */
  readonly ports?: 'random' | 'default';
  /** Server mode: servers to wait for before electing a leader. Default 1. */
  readonly bootstrapExpect?: number;
  /** Addresses (`host:serf_lan port`) to join at start-up and after a restart. */
  readonly retryJoin?: readonly string[];
  /** Node name; stable across restarts. Default `wr-test-<random>`. */
  readonly nodeName?: string;
  /** Node metadata of the agent's own node. */
  readonly nodeMeta?: Readonly<Record<string, string>>;
  /**
   * ACLs on: default policy `deny` unless told otherwise, a known management token (also the
   * agent's own token, so it can register its node), no default token — a request without a token
   * is the anonymous token.
   */
  readonly acl?: boolean | { readonly defaultPolicy?: 'allow' | 'deny'; readonly managementToken?: string };
  /** TLS on the HTTPS port (the plain HTTP port stays open for the helpers). */
  readonly tls?: ConsulAgentTls;
  /** More agent configuration (JSON keys), merged over the harness's own at the top level. */
  readonly config?: Readonly<Record<string, unknown>>;
  /** Extra HCL snippets passed as `-hcl`, applied last. */
  readonly hcl?: readonly string[];
  /** How long `start()` and `restart()` wait for a leader. Default 60 s (machines are shared). */
  readonly startTimeoutMs?: number;
}

/** Whether an agent's start-up failure shows it lost a port (taken, or given to two listeners). */
function isPortClash(message: string): boolean {
  return message.includes('address already in use') || message.includes('already configured for');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Agents still running in this process. If a test file dies before its `after()`, the exit
 * handler SIGKILLs them by PID (synchronously: nothing async runs at exit), so no agent outlives
 * the test process; their temp directories are removed too.
 */
const live = new Set<ConsulAgent>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const agent of live) agent.killNow();
  });
}

/** A real `consul agent` on loopback, owned by one test file. */
export class ConsulAgent extends ConsulApi {
  /** `https://127.0.0.1:<port>` when TLS is on. */
  readonly httpsAddr: string | undefined;
  /** `127.0.0.1:<port>` of the DNS interface (UDP and TCP). */
  readonly dnsAddr: string;
  readonly ports: ConsulAgentPorts;
  /** The loopback address it binds and advertises. */
  readonly address: string;
  readonly nodeName: string;
  readonly mode: 'dev' | 'server' | 'client';
  /** Temp directory holding config, log and (server mode) data; removed by `stop()`. */
  readonly dir: string;
  private readonly binary: string;
  private readonly args: readonly string[];
  private readonly startTimeoutMs: number;
  /** The running process; undefined between a kill and the next start. */
  private child: ChildProcess | undefined;
  /** Resolves when the current child has exited (set with `child`). */
  private exited: Promise<void> = Promise.resolve();
  /** Log file of all the agent's runs (appended across restarts). */
  private readonly logFile: string;
  /** Counts starts, so a fresh data dir gets a new path. */
  private generation = 0;
  private stopped = false;

  private constructor(init: {
    binary: string;
    address: string;
    dir: string;
    ports: ConsulAgentPorts;
    nodeName: string;
    mode: 'dev' | 'server' | 'client';
    managementToken: string | undefined;
    args: string[];
    startTimeoutMs: number;
  }) {
    super(`http://${init.address}:${init.ports.http}`, init.managementToken);
    this.address = init.address;
    this.binary = init.binary;
    this.dir = init.dir;
    this.ports = init.ports;
    this.nodeName = init.nodeName;
    this.mode = init.mode;
    this.args = init.args;
    this.startTimeoutMs = init.startTimeoutMs;
    this.httpsAddr = init.ports.https > 0 ? `https://${init.address}:${init.ports.https}` : undefined;
    this.dnsAddr = `${init.address}:${init.ports.dns}`;
    this.logFile = join(init.dir, 'agent.log');
  }

  /**
   * Starts an agent and waits until it has a leader and its own node is in the catalog. Picked
   * ports can be taken by another process before the agent binds them: an agent that exits
   * during start-up with a port clash is started again on fresh ports, at most three times.
   */
  static async start(options: ConsulAgentOptions = {}): Promise<ConsulAgent> {
    const attempts = 3;
    for (let attempt = 1; ; attempt++) {
      try {
        return await ConsulAgent.startOnce(options);
      } catch (err) {
        const message = (err as Error).message;
        if (!isPortClash(message)) throw err;
        if (attempt >= attempts) throw new Error(`port clash on all ${attempts} attempts; the last: ${message}`);
      }
    }
  }

  private static async startOnce(options: ConsulAgentOptions): Promise<ConsulAgent> {
    const binary = consulBinaryPath();
    const mode = options.mode ?? 'dev';
    const dir = mkdtempSync(join(tmpdir(), 'wr-consul-'));
    const address = options.address ?? '127.0.0.1';
    const [http, https, dns, serfLan, serfWan, server, grpc] = (
      options.ports === 'default' ? [8500, 8501, 8600, 8301, 8302, 8300, -1] : await freePorts(7)
    ) as [number, number, number, number, number, number, number];
    const ports: ConsulAgentPorts = {
      http,
      https: options.tls ? https : -1,
      dns,
      serf_lan: serfLan,
      serf_wan: serfWan,
      server,
      grpc,
      grpc_tls: -1,
    };
    const nodeName = options.nodeName ?? `wr-test-${randomUUID().slice(0, 8)}`;
    const aclOpt = options.acl === true ? {} : options.acl || undefined;
    const managementToken = aclOpt ? (aclOpt.managementToken ?? randomUUID()) : undefined;

    const config: Record<string, unknown> = {
      node_name: nodeName,
      datacenter: 'dc1',
      bind_addr: address,
      client_addr: address,
      advertise_addr: address,
      ...(options.retryJoin ? { retry_join: [...options.retryJoin], retry_interval: '1s' } : {}),
      ports,
      disable_update_check: true,
      log_level: 'INFO',
      ...(options.nodeMeta ? { node_meta: options.nodeMeta } : {}),
    };
    if (mode === 'server') {
      // What -dev sets that matters for speed, without its in-memory Raft.
      Object.assign(config, {
        server: true,
        bootstrap_expect: options.bootstrapExpect ?? 1,
        disable_keyring_file: true,
        performance: { raft_multiplier: 1 },
        connect: { enabled: false },
      });
    }
    if (aclOpt) {
      config['acl'] = {
        enabled: true,
        default_policy: aclOpt.defaultPolicy ?? 'deny',
        enable_token_persistence: false,
        tokens: { initial_management: managementToken, agent: managementToken },
      };
    }
    if (options.tls) {
      config['tls'] = {
        defaults: { ca_file: options.tls.caFile, cert_file: options.tls.certFile, key_file: options.tls.keyFile },
        https: { verify_incoming: options.tls.verifyIncoming ?? true },
      };
    }
    Object.assign(config, options.config);
    const configFile = join(dir, 'agent.json');
    writeFileSync(configFile, JSON.stringify(config, null, 2));

    const args = ['agent', ...(mode === 'dev' ? ['-dev'] : []), `-config-file=${configFile}`];
    for (const hcl of options.hcl ?? []) args.push(`-hcl=${hcl}`);
    if (mode === 'client') Object.assign(config, { server: false, disable_keyring_file: true });
    const agent = new ConsulAgent({
      binary,
      address,
      dir,
      ports,
      nodeName,
      mode,
      managementToken,
      args,
      startTimeoutMs: options.startTimeoutMs ?? 60_000,
    });
    live.add(agent);
    installExitHook();
    try {
      await agent.spawnAndWait();
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return agent;
  }

  /** PID of the running agent (undefined while stopped between a kill and a restart). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The data dir of the current run (server mode). */
  get dataDir(): string {
    return join(this.dir, `data-${this.generation}`);
  }

  /** The agent's log so far (all runs), for failure messages. */
  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  private async spawnAndWait(): Promise<void> {
    const args = [...this.args];
    if (this.mode !== 'dev') {
      mkdirSync(this.dataDir, { recursive: true });
      args.push(`-data-dir=${this.dataDir}`);
    }
    const fd = openSync(this.logFile, 'a');
    const child = spawn(this.binary, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.child = child;
    this.exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.once('error', () => undefined); // reported through the exit and the readiness wait
    await this.waitReady();
  }

  /** Waits for a leader and for the agent's own node (and its serfHealth) in the catalog. */
  private async waitReady(): Promise<void> {
    const deadline = Date.now() + this.startTimeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const child = this.child;
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `consul agent exited during start-up (${String(child?.exitCode ?? child?.signalCode)}):\n${this.logTail()}`,
        );
      }
      try {
        const leader = await this.request('GET', '/v1/status/leader', { timeoutMs: 2000 });
        if (leader.status === 200 && typeof leader.json === 'string' && leader.json !== '') {
          const node = await this.request('GET', `/v1/health/node/${this.nodeName}`, { timeoutMs: 2000 });
          const checks = Array.isArray(node.json) ? (node.json as { CheckID?: string; Status?: string }[]) : [];
          if (checks.some((c) => c.CheckID === 'serfHealth' && c.Status === 'passing')) return;
          last = `node not in the catalog yet (${node.status})`;
        } else last = `no leader yet (${leader.status} ${leader.text})`;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`consul agent not ready after ${this.startTimeoutMs} ms: ${last}\n${this.logTail()}`);
  }

  private logTail(): string {
    return this.log().split('\n').slice(-30).join('\n');
  }

  /**
   * Stops the process and starts it again on the same ports. `kill: true` is `kill -9`;
   * `dataDir: 'fresh'` starts from an empty data dir (the index goes back to the start); `'same'`
   * (server mode only) keeps the Raft log, snapshots and the agent's registered services.
   */
  async restart(opts: { kill?: boolean; dataDir?: 'same' | 'fresh' } = {}): Promise<void> {
    const dataDir = opts.dataDir ?? 'same';
    if (dataDir === 'same' && this.mode === 'dev') {
      throw new Error('a -dev agent keeps its state in memory: restart it with dataDir "fresh", or use mode "server"');
    }
    await this.kill(opts.kill ? 'SIGKILL' : 'SIGTERM');
    if (dataDir === 'fresh') {
      rmSync(this.dataDir, { recursive: true, force: true });
      this.generation += 1;
    }
    await this.spawnAndWait();
  }

  /** Stops the process and waits for its exit; SIGKILL after 10 s. The agent can be `restart`ed. */
  async kill(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT'); // a paused agent cannot act on SIGTERM
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(timer);
    }
    this.child = undefined;
  }

  /** `SIGSTOP`: the agent hangs with its sockets open (connections are accepted by the kernel, never answered). */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** `SIGCONT` after `pause()`. */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Stops the agent (SIGTERM, then SIGKILL by PID) and removes its temp directory. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.kill('SIGTERM');
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** At process exit only: SIGKILL by PID and remove the temp directory, synchronously. */
  killNow(): void {
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A production-shaped Consul for tests: 3 servers and 2 client agents, each a real `consul agent`
 * on its own loopback address (127.0.19.1–3 servers, .11–.12 clients) with Consul's default ports,
 * Raft at `raft_multiplier = 1` (1 s heartbeat and election timeouts: elections in seconds).
 * Started once per test file, torn down by PID (`ConsulAgent.stop`), temp dirs removed.
 *
 * The servers start together (`bootstrap_expect = 3`: no leader until all three joined), then
 * the clients, which join through `retry_join` (also after a restart, same or fresh data dir).
 * The addresses are fixed (Consul's default ports on 127.0.19.x): one cluster per test file, and
 * files run one after another within a tier.
 */
import { ConsulAgent } from './consul-agent.js';

/** The members of a running cluster. */
export class ConsulCluster {
  private constructor(
    readonly servers: readonly [ConsulAgent, ConsulAgent, ConsulAgent],
    readonly clients: readonly [ConsulAgent, ConsulAgent],
  ) {}

  /** Starts 3 servers and 2 clients; resolves when every member sees a leader and its own node. */
  static async start(): Promise<ConsulCluster> {
    const serverAddresses = ['127.0.19.1', '127.0.19.2', '127.0.19.3'];
    const join = serverAddresses.map((a) => `${a}:8301`);
    const started: ConsulAgent[] = [];
    try {
      const servers = await Promise.all(
        serverAddresses.map((address, i) =>
          ConsulAgent.start({
            mode: 'server',
            address,
            ports: 'default',
            nodeName: `server-${i + 1}`,
            bootstrapExpect: 3,
            retryJoin: join,
            startTimeoutMs: 120_000,
          }).then((a) => (started.push(a), a)),
        ),
      );
      const clients = await Promise.all(
        ['127.0.19.11', '127.0.19.12'].map((address, i) =>
          ConsulAgent.start({
            mode: 'client',
            address,
            ports: 'default',
            nodeName: `client-${i + 1}`,
            // A fixed node ID: a restart on a fresh data dir is the same node to the servers,
            // not a name conflict with the one they have just lost.
            config: { node_id: `00000000-0000-4000-8000-00000000001${i + 1}` },
            retryJoin: join,
            startTimeoutMs: 120_000,
          }).then((a) => (started.push(a), a)),
        ),
      );
      return new ConsulCluster(
        servers as [ConsulAgent, ConsulAgent, ConsulAgent],
        clients as [ConsulAgent, ConsulAgent],
      );
    } catch (err) {
      await Promise.all(started.map((a) => a.stop()));
      throw err;
    }
  }

  /** The server that is the Raft leader now (asked through a client agent), or undefined. */
  async leader(through: ConsulAgent = this.clients[0]): Promise<ConsulAgent | undefined> {
    try {
      const res = await through.request('GET', '/v1/status/leader', { timeoutMs: 2000 });
      const addr = typeof res.json === 'string' ? res.json : '';
      return this.servers.find((s) => addr.startsWith(`${s.address}:`));
    } catch {
      return undefined;
    }
  }

  /** Stops every member (SIGTERM, then SIGKILL, by PID). Idempotent. */
  async stop(): Promise<void> {
    await Promise.all([...this.clients, ...this.servers].map((a) => a.stop()));
  }
}

/**
 * A child process for the sidecar RSS benchmark: either a resolver + sidecar (`sidecar`
 * mode), exactly what `worker-resolver serve` runs, or nothing at all (`bare` mode: the same
 * Node runtime and loader, as the reference). Talks to the parent over IPC:
 *
 *   child → { type: 'ready', url? }       once started (sidecar: first snapshot published)
 *   parent → { type: 'memory', gc }       child → { type: 'memory', rss, heapUsed, external }
 *   parent → { type: 'exit' }             child closes everything and exits
 *
 * Usage: node --expose-gc --import tsx bench/sidecar-process.ts sidecar <consul-address>
 */
import type { DiscoveringWorkerResolver } from '../src/index.js';
import type { Sidecar } from '../src/sidecar.js';

/** Messages the parent sends. */
export type ParentMessage = { type: 'memory'; gc: boolean } | { type: 'exit' };
/** Messages the child sends. */
export type ChildMessage =
  | { type: 'ready'; url?: string }
  | { type: 'memory'; rss: number; heapUsed: number; heapTotal: number; external: number };

async function main(): Promise<void> {
  const [mode, consul] = process.argv.slice(2);
  if (process.send === undefined) throw new Error('sidecar-process: must be started with an IPC channel');
  const send = (m: ChildMessage): void => void process.send?.(m);
  let resolver: DiscoveringWorkerResolver | undefined;
  let sidecar: Sidecar | undefined;
  if (mode === 'sidecar') {
    if (consul === undefined) throw new Error('sidecar-process: missing the Consul address');
    // Loaded here, not at the top: the bare child must not load them.
    const [{ Registry }, { createWorkerResolver }, { startSidecar }] = await Promise.all([
      import('prom-client'),
      import('../src/index.js'),
      import('../src/sidecar.js'),
    ]);
    const registry = new Registry();
    resolver = createWorkerResolver({
      service: 'worker',
      consul: { address: consul, rateLimit: { ratePerSecond: 10_000, burst: 10_000 } },
      minPublishIntervalMs: 0,
      registry,
      env: {},
    });
    await resolver.ready({ timeoutMs: 30_000 });
    sidecar = await startSidecar({ resolver, host: '127.0.0.1', port: 0, registry });
    send({ type: 'ready', url: sidecar.url });
  } else {
    send({ type: 'ready' });
  }
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'memory') {
      if (m.gc) (globalThis as { gc?: () => void }).gc?.();
      const mem = process.memoryUsage();
      send({ type: 'memory', rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external });
    } else if (m.type === 'exit') {
      void (async () => {
        await sidecar?.close();
        await resolver?.close();
        process.disconnect();
      })();
    }
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`sidecar-process: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

/**
 * (7) Sidecar idle RSS: a child process runs resolver + sidecar (what `worker-resolver serve`
 * runs); RSS after start-up, then after 1,000 published changes (each confirmed through a
 * sidecar long poll). A bare child with the same runtime and loader is the reference.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { Agent, get } from 'node:http';
import { fileURLToPath } from 'node:url';
import { HEALTH_QUERY, SERVICE, httpGet, setHealth, startCluster } from './cluster.js';
import type { BenchContext, BenchSection, SectionOutput } from './section.js';
import { pause } from './section.js';
import type { ChildMessage, ParentMessage } from './sidecar-process.js';
import { ratio, summarize } from './stats.js';
import { fmtBytes, fmtInt, fmtMs, fmtRatio } from './table.js';

// ---- (7) RSS ------------------------------------------------------------------------------

const CHILD = fileURLToPath(new URL('./sidecar-process.ts', import.meta.url));

/** A child's `process.memoryUsage()`, in bytes. */
interface Memory {
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
}

interface Child {
  readonly url: string | undefined;
  memory(gc: boolean): Promise<Memory>;
  exit(): Promise<void>;
}

async function startChild(mode: 'sidecar' | 'bare', consul: string): Promise<Child> {
  const child = fork(CHILD, [mode, consul], {
    execArgv: ['--expose-gc', '--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = <T extends ChildMessage['type']>(type: T): Promise<Extract<ChildMessage, { type: T }>> =>
    new Promise((resolve, reject) => {
      const onMessage = (m: ChildMessage): void => {
        if (m.type !== type) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(m as Extract<ChildMessage, { type: T }>);
      };
      const onExit = (code: number | null): void => reject(new Error(`sidecar child exited (${code})`));
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  const ready = await next('ready');
  return {
    url: ready.url,
    async memory(gc) {
      const reply = next('memory');
      child.send({ type: 'memory', gc } satisfies ParentMessage);
      const { rss, heapUsed, heapTotal, external } = await reply;
      return { rss, heapUsed, heapTotal, external };
    },
    async exit() {
      const exited = once(child, 'exit');
      child.send({ type: 'exit' } satisfies ParentMessage);
      const timer = setTimeout(() => child.kill(), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function longPoll(url: string, index: number, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    get(`${url}/v1/workers?index=${index}&wait=30s`, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(Number(res.headers['x-worker-resolver-index'])));
      res.on('error', reject);
    }).on('error', reject);
  });
}

interface RssPlan {
  readonly workers: number;
  readonly changes: number;
  readonly settleMs: number;
  /** Stop taking changes after this long (the 10,000-worker run: each change is a 10 MiB answer). */
  readonly maxMs: number;
}
const RSS_FULL: readonly RssPlan[] = [
  { workers: 100, changes: 1_000, settleMs: 2_000, maxMs: 100_000 },
  { workers: 10_000, changes: 1_000, settleMs: 2_000, maxMs: 400_000 },
];
const RSS_QUICK: readonly RssPlan[] = [{ workers: 10, changes: 20, settleMs: 200, maxMs: 10_000 }];

async function runRss(ctx: BenchContext): Promise<SectionOutput> {
  const tables: SectionOutput['tables'][number][] = [];
  const data: Record<string, unknown> = {};
  for (const plan of ctx.quick ? RSS_QUICK : RSS_FULL) {
    if (ctx.signal.aborted) break;
    const out = await runRssOnce(ctx, plan);
    tables.push(...out.tables);
    data[String(plan.workers)] = out.data;
  }
  // Kept flat for readers of the 100-worker figures.
  return { tables, goals: [], data: { ...(data['100'] as object), byWorkers: data } };
}

async function runRssOnce(ctx: BenchContext, plan: RssPlan): Promise<SectionOutput> {
  const { dev, workers } = await startCluster(plan.workers);
  const bare = await startChild('bare', dev.httpAddr);
  const child = await startChild('sidecar', dev.httpAddr);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const samples: { changes: number; rss: number; heapUsed: number }[] = [];
  try {
    await pause(plan.settleMs);
    const bareMem = await bare.memory(false);
    const startup = await child.memory(false);
    samples.push({ changes: 0, rss: startup.rss, heapUsed: startup.heapUsed });
    const url = child.url!;
    let index = await longPoll(url, 0, agent);
    let done = 0;
    const propagation: number[] = [];
    const deadline = performance.now() + plan.maxMs;
    ctx.log(`sidecar-rss: ${plan.changes} changes through the sidecar (${fmtInt(plan.workers)} workers)`);
    for (; done < plan.changes && !ctx.signal.aborted && performance.now() < deadline; done += 1) {
      const w = workers[Math.floor(done / 2) % plan.workers]!;
      const t0 = process.hrtime.bigint();
      setHealth(dev, w, done % 2 === 0 ? 'critical' : 'passing');
      const seen = await longPoll(url, index, agent);
      propagation.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (!(seen > index)) throw new Error('sidecar-rss: the sidecar did not publish the change');
      index = seen;
      if ((done + 1) % 250 === 0) {
        const m = await child.memory(false);
        samples.push({ changes: done + 1, rss: m.rss, heapUsed: m.heapUsed });
      }
    }
    if (done % 2 === 1) setHealth(dev, workers[Math.floor((done - 1) / 2) % plan.workers]!, 'passing');
    // Floor of a change's propagation: one non-blocking read of the same answer, parsed.
    const floor: number[] = [];
    const floorAgent = new Agent({ keepAlive: true });
    for (let i = 0; i < 20; i += 1) {
      const t0 = process.hrtime.bigint();
      const r = await httpGet(dev.httpAddr, `/v1/health/service/${SERVICE}?${HEALTH_QUERY}`, floorAgent);
      JSON.parse(r.body.toString('utf8'));
      floor.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    floorAgent.destroy();
    const prop = summarize(propagation);
    const fl = summarize(floor);
    await pause(plan.settleMs);
    const after = await child.memory(false);
    const afterGc = await child.memory(true);
    const row = (label: string, m: Memory, over: boolean): string[] => [
      label,
      fmtBytes(m.rss),
      fmtBytes(m.heapUsed),
      fmtBytes(m.heapTotal),
      fmtBytes(m.external),
      over ? fmtBytes(m.rss - bareMem.rss) : '—',
    ];
    const rows: string[][] = [
      row('bare node --import tsx (reference)', bareMem, false),
      row('sidecar after start-up (idle)', startup, true),
      row(`sidecar after ${fmtInt(done)} changes (idle)`, after, true),
      row('↳ same, after a full GC', afterGc, true),
    ];
    const propRows: string[][] = [
      [
        `check flip → the sidecar's long poll answered (${fmtInt(prop.n)} changes)`,
        fmtMs(prop.p50),
        fmtMs(prop.p99),
        fmtRatio(ratio(prop.p50, fl.p50)),
        fmtRatio(ratio(prop.p99, fl.p99)),
      ],
      ['floor: one non-blocking health read + JSON.parse', fmtMs(fl.p50), fmtMs(fl.p99), '1×', '1×'],
    ];
    return {
      tables: [
        {
          title: `7. Sidecar idle RSS (${fmtInt(plan.workers)} workers)`,
          columns: ['process', 'RSS', 'heap used', 'heap committed', 'external', 'RSS over bare'],
          rows,
          notes: [
            'Child processes run from source with the tsx loader (node --expose-gc --import tsx); the bare child has the ' +
              'same runtime and loader and nothing else, so "RSS over bare" is what the resolver + sidecar add. The built ' +
              'CLI (dist/, no loader) would show a lower absolute RSS.',
            `Idle = ${plan.settleMs} ms after the last request; each change is a check flip confirmed by a sidecar long ` +
              `poll. RSS along the way: ${samples.map((s) => `${fmtInt(s.changes)} → ${fmtBytes(s.rss)}`).join(', ')}.`,
            'How to read growth: "heap used" after a full GC is the live data; "heap committed" is what V8 keeps mapped ' +
              '(the young generation grows under allocation churn and is not given back while idle); the rest of RSS ' +
              'over bare is native memory (malloc arenas of HTTP buffers, code). Growth that plateaus while heap used ' +
              'after GC stays flat is sizing, not a leak.',
          ],
        },
        {
          title: `7b. Propagation through \`serve\` during those changes (${fmtInt(plan.workers)} workers)`,
          columns: ['measure', 'p50', 'p99', 'p50 vs floor', 'p99 vs floor'],
          rows: propRows,
          notes: [
            'Dev server in the benchmark process, resolver + sidecar in the child: a check flip is one Consul write; ' +
              'the time ends when the benchmark has read the sidecar’s long-poll answer. The floor is what any client of ' +
              'the same server pays at least for the new state (the server building and serialising the answer, ' +
              'loopback, JSON.parse).',
          ],
        },
      ],
      goals: [],
      data: {
        workers: plan.workers,
        changes: done,
        propagationMs: prop,
        floorMs: fl,
        bare: bareMem,
        startup,
        afterChanges: after,
        afterChangesGc: afterGc,
        samples,
      },
    };
  } finally {
    agent.destroy();
    await child.exit();
    await bare.exit();
    await dev.stop();
  }
}

export const sidecarRssBench: BenchSection = {
  id: 'sidecar-rss',
  title: 'Sidecar idle RSS',
  budgetMs: { quick: 30_000, full: 600_000 },
  run: runRss,
};

/**
 * (6) Sidecar fan-out: 1,000 concurrent `GET /v1/workers?index=N&wait=30s` long polls, all
 * woken by one publish. The clients run in a worker thread (their own event loop, like
 * separate coordinators; `process.hrtime` is the same monotonic clock in every thread), so
 * the sidecar's thread does only the sidecar's work. Latency = resolver subscribe callback
 * (registered before the sidecar's, so it runs first) → each client's response fully read.
 *
 * (7) Sidecar idle RSS: a child process runs resolver + sidecar (what `worker-resolver serve`
 * runs); RSS after start-up, then after 1,000 published changes (each confirmed through a
 * sidecar long poll). A bare child with the same runtime and loader is the reference.
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { Agent, get } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { createWorkerResolver } from '../src/index.js';
import { startSidecar } from '../src/sidecar.js';
import { HEALTH_QUERY, SERVICE, httpGet, setHealth, startCluster } from './cluster.js';
import type { BenchContext, BenchSection, SectionOutput } from './section.js';
import { pause, silentLogger, until } from './section.js';
import type { ChildMessage, ParentMessage } from './sidecar-process.js';
import { ratio, summarize } from './stats.js';
import { fmtBytes, fmtInt, fmtMs, fmtRatio } from './table.js';
import type { GoalCheck } from './table.js';

// ---- (6) fan-out ------------------------------------------------------------------------

/** The client side, plain JavaScript run by a worker thread (no loader needed). */
const CLIENT_SOURCE = `
const { parentPort } = require('node:worker_threads');
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
function getOnce(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve({ at: process.hrtime.bigint(), status: res.statusCode, index: res.headers['x-worker-resolver-index'] }));
      res.on('error', () => resolve({ at: 0n, status: 0 }));
    });
    req.on('error', () => resolve({ at: 0n, status: 0 }));
  });
}
parentPort.on('message', async (m) => {
  if (m.type === 'poll') {
    const url = m.base + '/v1/workers?index=' + m.index + '&wait=30s';
    const all = [];
    for (let i = 0; i < m.count; i++) all.push(getOnce(url));
    parentPort.postMessage({ type: 'sent' });
    const results = await Promise.all(all);
    const times = new BigInt64Array(results.length);
    let errors = 0;
    results.forEach((r, i) => { times[i] = r.at; if (r.status !== 200 || r.at === 0n) errors++; });
    parentPort.postMessage({ type: 'polled', times, errors });
  } else if (m.type === 'floor') {
    const times = [];
    for (let i = 0; i < m.count; i++) {
      const t = process.hrtime.bigint();
      await getOnce(m.base + '/v1/workers');
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    parentPort.postMessage({ type: 'floor', times });
  } else if (m.type === 'exit') {
    agent.destroy();
    parentPort.close();
  }
});
`;

type ClientReply =
  { type: 'sent' } | { type: 'polled'; times: BigInt64Array; errors: number } | { type: 'floor'; times: number[] };

function ask<T extends ClientReply['type']>(
  client: Worker,
  message: Record<string, unknown>,
  reply: T,
): Promise<Extract<ClientReply, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: ClientReply): void => {
      if (m.type !== reply) return;
      client.off('message', onMessage);
      client.off('error', reject);
      resolve(m as Extract<ClientReply, { type: T }>);
    };
    client.on('message', onMessage);
    client.once('error', reject);
    client.postMessage(message);
  });
}

interface FanoutPlan {
  readonly workers: number;
  readonly polls: number;
  readonly rounds: number;
  readonly floorSamples: number;
}
const FANOUT_FULL: FanoutPlan = { workers: 100, polls: 1_000, rounds: 10, floorSamples: 200 };
const FANOUT_QUICK: FanoutPlan = { workers: 10, polls: 50, rounds: 2, floorSamples: 10 };

async function runFanout(ctx: BenchContext): Promise<SectionOutput> {
  const plan = ctx.quick ? FANOUT_QUICK : FANOUT_FULL;
  const { dev, workers } = await startCluster(plan.workers);
  const registry = new Registry();
  const resolver = createWorkerResolver({
    service: SERVICE,
    consul: { address: dev.httpAddr, rateLimit: { ratePerSecond: 10_000, burst: 10_000 } },
    minPublishIntervalMs: 0,
    registry,
    env: {},
    logger: silentLogger,
  });
  let publishedAt = 0n;
  // Subscribed before the sidecar exists, so this listener runs before the sidecar's.
  resolver.subscribe(() => (publishedAt = process.hrtime.bigint()));
  const client = new Worker(CLIENT_SOURCE, { eval: true, execArgv: [] });
  const sidecar = await startSidecar({ resolver, host: '127.0.0.1', port: 0, registry });
  // Subscribed after the sidecar: runs when its wake loop has queued every answer.
  let wokenAt = 0n;
  resolver.subscribe(() => (wokenAt = process.hrtime.bigint()));
  const wakeLoop: number[] = [];
  const perResponse: number[] = [];
  const lastResponse: number[] = [];
  let errors = 0;
  let floor: number[] = [];
  try {
    await resolver.ready({ timeoutMs: 30_000 });
    floor = (
      await ask(client, { type: 'floor', base: sidecar.url, count: plan.floorSamples + 5 }, 'floor')
    ).times.slice(5);
    for (let round = 0; round < plan.rounds && !ctx.signal.aborted; round += 1) {
      const version = resolver.snapshot().version;
      const polled = ask(client, { type: 'poll', base: sidecar.url, index: version, count: plan.polls }, 'polled');
      await until(
        () => sidecar.openLongPolls() === plan.polls,
        `${plan.polls} long polls held by the sidecar`,
        60_000,
        5,
      );
      await until(() => dev.openLongPolls() === 1, 'the resolver to park its blocking query', 30_000, 1);
      await pause(20); // let the client's thread go idle
      publishedAt = 0n;
      const w = workers[Math.floor(round / 2) % plan.workers]!;
      setHealth(dev, w, round % 2 === 0 ? 'critical' : 'passing');
      const { times, errors: e } = await polled;
      if (publishedAt === 0n) throw new Error('sidecar-fanout: the long polls ended without a publish');
      wakeLoop.push(Number(wokenAt - publishedAt) / 1e6);
      errors += e;
      let last = 0;
      for (const at of times) {
        if (at === 0n || publishedAt === 0n) continue;
        const ms = Number(at - publishedAt) / 1e6;
        perResponse.push(ms);
        last = Math.max(last, ms);
      }
      lastResponse.push(last);
      if (round === 0) ctx.log(`sidecar-fanout: round 1: last of ${plan.polls} woken after ${fmtMs(last)}`);
    }
    if (lastResponse.length % 2 === 1)
      setHealth(dev, workers[Math.floor((lastResponse.length - 1) / 2) % plan.workers]!, 'passing');
  } finally {
    client.postMessage({ type: 'exit' });
    await sidecar.close();
    await resolver.close();
    await dev.stop();
    await client.terminate();
  }
  const wake = summarize(perResponse);
  const loop = summarize(wakeLoop);
  const all = summarize(lastResponse);
  const fl = summarize(floor);
  const p = fmtInt(plan.polls);
  const wakeGoal: GoalCheck = {
    goal: `${p} long polls woken: p99 ≤ 50 ms`,
    met: wake.p99 <= 50,
    actual: `p50 ${fmtMs(wake.p50)}, p99 ${fmtMs(wake.p99)} (sidecar wake loop p50 ${fmtMs(loop.p50)})`,
  };
  return {
    tables: [
      {
        title: `6. Sidecar fan-out: ${p} concurrent /v1/workers long polls woken by one publish (${fmtInt(plan.workers)} workers)`,
        columns: ['measure', 'p50', 'p99', 'samples', 'p50 vs floor'],
        rows: [
          [
            'publish → a long poll’s answer read',
            fmtMs(wake.p50),
            fmtMs(wake.p99),
            fmtInt(wake.n),
            fmtRatio(ratio(wake.p50, fl.p50)),
          ],
          [
            `publish → all ${p} answers read (per round)`,
            fmtMs(all.p50),
            fmtMs(all.p99),
            fmtInt(all.n),
            fmtRatio(ratio(all.p50, fl.p50)),
          ],
          [
            `↳ sidecar side: publish → all ${p} answers queued (wake loop)`,
            fmtMs(loop.p50),
            fmtMs(loop.p99),
            fmtInt(loop.n),
            fmtRatio(ratio(loop.p50, fl.p50)),
          ],
          ['floor: one GET /v1/workers round trip', fmtMs(fl.p50), fmtMs(fl.p99), fmtInt(fl.n), '1×'],
          [
            `${p} clients polling every 1 s (computed)`,
            fmtMs(500 + fl.p50),
            fmtMs(990 + fl.p99),
            '—',
            fmtRatio(ratio(500 + fl.p50, fl.p50)),
          ],
        ],
        notes: [
          `Clients in a worker thread, one keep-alive connection per poll (${p} sockets); errors: ${errors}.`,
          'Resolver: minPublishIntervalMs 0, unthrottled rate limit; the publish is a check flip on the dev server.',
        ],
      },
    ],
    // The goal is stated for 1,000 polls; the smoke size does not judge it.
    goals: ctx.quick ? [] : [wakeGoal],
    data: {
      workers: plan.workers,
      polls: plan.polls,
      rounds: lastResponse.length,
      errors,
      wakeMs: wake,
      wakeLoopMs: loop,
      allWokenMs: all,
      floorMs: fl,
    },
  };
}

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

export const sidecarFanoutBench: BenchSection = {
  id: 'sidecar-fanout',
  title: 'Sidecar fan-out',
  budgetMs: { quick: 30_000, full: 120_000 },
  run: runFanout,
};

export const sidecarRssBench: BenchSection = {
  id: 'sidecar-rss',
  title: 'Sidecar idle RSS',
  budgetMs: { quick: 30_000, full: 600_000 },
  run: runRss,
};

/**
 * (6) Sidecar fan-out: 1,000 concurrent `GET /v1/workers?index=N&wait=30s` long polls, all
 * woken by one publish. Latency = resolver subscribe callback (registered before the
 * sidecar's, so it runs first) → each client's response fully read.
 *
 * The clients run in a worker thread (their own event loop, like separate coordinators;
 * `process.hrtime` is the same monotonic clock in every thread), in two kinds, alternating
 * round by round so both see the same machine:
 * - `raw`: one kept-alive TCP socket per poll, a request written by hand and the answer read
 *   to its `Content-Length` (status line checked): what receiving an answer costs, so the
 *   figure is the sidecar's. In production each of the 1,000 polls is a different process.
 * - `http`: `node:http` with a keep-alive agent: all 1,000 answers parsed by one thread's
 *   HTTP stack, serially — what one process holding 1,000 polls would see.
 * The floor is the same raw clients, the same response bytes, written by a bare `net`
 * server in a loop the moment it is told: what 1,000 loopback answers cost on this machine
 * with no HTTP server, no resolver and no sidecar. One warm-up round of each (first use of
 * every code path on both threads: 2–3× the later rounds) is not counted.
 */
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { createWorkerResolver } from '../src/index.js';
import { startSidecar } from '../src/sidecar.js';
import { SERVICE, setHealth, startCluster } from './cluster.js';
import type { BenchContext, BenchSection, SectionOutput } from './section.js';
import { pause, silentLogger, until } from './section.js';
import { ratio, summarize } from './stats.js';
import type { Summary } from './stats.js';
import { fmtInt, fmtMs, fmtRatio } from './table.js';
import type { GoalCheck } from './table.js';

/** The client side, plain JavaScript run by a worker thread (no loader needed). */
const CLIENT_SOURCE = `
const { parentPort } = require('node:worker_threads');
const http = require('node:http');
const net = require('node:net');
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const rawPools = new Map();
function httpGet(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve({ at: process.hrtime.bigint(), ok: res.statusCode === 200 }));
      res.on('error', () => resolve({ at: 0n, ok: false }));
    });
    req.on('error', () => resolve({ at: 0n, ok: false }));
  });
}
async function rawPool(port, count) {
  let pool = rawPools.get(port);
  if (pool === undefined) rawPools.set(port, (pool = []));
  while (pool.length < count) {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
    pool.push(s);
  }
  return pool.slice(0, count);
}
/** One request on a kept-alive socket; resolves when the whole answer (to its Content-Length) is in. */
function rawGet(socket, path) {
  return new Promise((resolve) => {
    let head = Buffer.alloc(0);
    let need = -1;
    let got = 0;
    let ok = false;
    const onData = (chunk) => {
      if (need < 0) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\\r\\n\\r\\n');
        if (end === -1) return;
        const text = head.subarray(0, end).toString('latin1');
        ok = text.startsWith('HTTP/1.1 200 ');
        const m = /\\r\\ncontent-length: *(\\d+)/i.exec(text);
        need = end + 4 + (m === null ? 0 : Number(m[1]));
        got = head.length;
      } else got += chunk.length;
      if (got >= need) done({ at: process.hrtime.bigint(), ok: ok && got === need });
    };
    const onClose = () => done({ at: 0n, ok: false });
    const done = (r) => { socket.off('data', onData); socket.off('close', onClose); resolve(r); };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write('GET ' + path + ' HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n');
  });
}
parentPort.on('message', async (m) => {
  if (m.type === 'poll') {
    const all = [];
    if (m.kind === 'raw') {
      for (const s of await rawPool(m.port, m.count)) all.push(rawGet(s, m.path));
    } else {
      for (let i = 0; i < m.count; i++) all.push(httpGet('http://127.0.0.1:' + m.port + m.path));
    }
    parentPort.postMessage({ type: 'sent' });
    const results = await Promise.all(all);
    const times = new BigInt64Array(results.length);
    let errors = 0;
    results.forEach((r, i) => { times[i] = r.at; if (!r.ok || r.at === 0n) errors++; });
    parentPort.postMessage({ type: 'polled', times, errors });
  } else if (m.type === 'floor') {
    const times = [];
    for (let i = 0; i < m.count; i++) {
      const t = process.hrtime.bigint();
      await httpGet('http://127.0.0.1:' + m.port + '/v1/workers');
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    parentPort.postMessage({ type: 'floor', times });
  } else if (m.type === 'exit') {
    agent.destroy();
    for (const pool of rawPools.values()) for (const s of pool) s.destroy();
    parentPort.close();
  }
});
`;

type ClientKind = 'raw' | 'http';
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

/**
 * The floor's server: holds every connection that sent a request, and on `answer()` writes
 * the same bytes to each of them in one loop (returns when the loop is done).
 */
async function bareServer(
  response: Buffer,
): Promise<{ port: number; held(): number; answer(): void; close(): Promise<void> }> {
  let held = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('data', () => held.add(socket));
    socket.on('error', () => socket.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    held: () => held.size,
    answer() {
      const sockets = held;
      held = new Set();
      for (const s of sockets) s.write(response);
    },
    close: () => {
      for (const s of held) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Milliseconds from `from` to each time in `times` (0n: the poll failed, skipped). */
function since(from: bigint, times: BigInt64Array): number[] {
  const out: number[] = [];
  for (const at of times) if (at !== 0n) out.push(Number(at - from) / 1e6);
  return out;
}

interface FanoutPlan {
  readonly workers: number;
  readonly polls: number;
  /** Rounds per client kind (and of the floor). */
  readonly rounds: number;
  readonly floorSamples: number;
}
const FANOUT_FULL: FanoutPlan = { workers: 100, polls: 1_000, rounds: 10, floorSamples: 200 };
const FANOUT_QUICK: FanoutPlan = { workers: 10, polls: 50, rounds: 2, floorSamples: 10 };

/** Per kind: each poll's latency, and per round the last one's. */
interface KindSamples {
  readonly perPoll: number[];
  readonly perRound: number[];
}

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
  const sidecarPort = Number(new URL(sidecar.url).port);
  // Subscribed after the sidecar: runs when its wake loop has queued every answer.
  let wokenAt = 0n;
  resolver.subscribe(() => (wokenAt = process.hrtime.bigint()));
  const samples: Record<ClientKind | 'floor', KindSamples> = {
    raw: { perPoll: [], perRound: [] },
    http: { perPoll: [], perRound: [] },
    floor: { perPoll: [], perRound: [] },
  };
  const wakeLoop: number[] = [];
  const floorLoop: number[] = [];
  let errors = 0;
  let single: number[] = [];
  let flips = 0;
  let bare: Awaited<ReturnType<typeof bareServer>> | undefined;
  const record = (into: KindSamples, from: bigint, times: BigInt64Array): void => {
    const ms = since(from, times);
    into.perPoll.push(...ms);
    into.perRound.push(Math.max(...ms));
  };
  try {
    await resolver.ready({ timeoutMs: 30_000 });
    single = (
      await ask(client, { type: 'floor', port: sidecarPort, count: plan.floorSamples + 5 }, 'floor')
    ).times.slice(5);
    // The floor answers with exactly the sidecar's answer: its headers and body.
    bare = await bareServer(await sidecarResponse(sidecarPort));
    // Round 0 warms up (first use of every code path, on both threads) and is not counted.
    for (let round = 0; round <= plan.rounds && !ctx.signal.aborted; round += 1) {
      const counted = round > 0;
      for (const kind of ['raw', 'http'] as const) {
        const version = resolver.snapshot().version;
        const path = `/v1/workers?index=${version}&wait=30s`;
        const polled = ask(client, { type: 'poll', kind, port: sidecarPort, path, count: plan.polls }, 'polled');
        await until(() => sidecar.openLongPolls() === plan.polls, `${plan.polls} long polls held`, 60_000, 5);
        await until(() => dev.openLongPolls() === 1, 'the resolver to park its blocking query', 30_000, 1);
        await pause(20); // let the client's thread go idle
        publishedAt = 0n;
        setHealth(dev, workers[Math.floor(flips / 2) % plan.workers]!, flips % 2 === 0 ? 'critical' : 'passing');
        flips += 1;
        const { times, errors: e } = await polled;
        if (publishedAt === 0n) throw new Error('sidecar-fanout: the long polls ended without a publish');
        errors += e;
        if (!counted) continue;
        wakeLoop.push(Number(wokenAt - publishedAt) / 1e6);
        record(samples[kind], publishedAt, times);
      }
      const floorPolled = ask(
        client,
        { type: 'poll', kind: 'raw', port: bare.port, path: '/', count: plan.polls },
        'polled',
      );
      await until(() => bare!.held() === plan.polls, `${plan.polls} sockets held by the bare server`, 60_000, 5);
      await pause(20);
      const start = process.hrtime.bigint();
      bare.answer();
      const loopMs = Number(process.hrtime.bigint() - start) / 1e6;
      const { times, errors: e } = await floorPolled;
      errors += e;
      if (!counted) continue;
      floorLoop.push(loopMs);
      record(samples.floor, start, times);
      if (round === 1) {
        const [r, h, f] = [samples.raw, samples.http, samples.floor].map((s) => fmtMs(s.perRound[0] ?? NaN));
        ctx.log(`sidecar-fanout: round 1: last of ${plan.polls} read after ${r} (raw), ${h} (http); floor ${f}`);
      }
    }
    if (flips % 2 === 1) setHealth(dev, workers[Math.floor((flips - 1) / 2) % plan.workers]!, 'passing');
  } finally {
    client.postMessage({ type: 'exit' });
    await bare?.close();
    await sidecar.close();
    await resolver.close();
    await dev.stop();
    await client.terminate();
  }
  return report(ctx, plan, { samples, wakeLoop, floorLoop, single, errors });
}

/** The sidecar's complete answer to a plain `GET /v1/workers`, as bytes on the wire. */
async function sidecarResponse(port: number): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.end('GET /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  // The same answer, kept alive (the floor's clients reuse their sockets).
  return Buffer.from(
    Buffer.concat(chunks)
      .toString('latin1')
      .replace(/\r\nConnection: close\r\n/i, '\r\n'),
    'latin1',
  );
}

function report(
  ctx: BenchContext,
  plan: FanoutPlan,
  m: {
    samples: Record<ClientKind | 'floor', KindSamples>;
    wakeLoop: number[];
    floorLoop: number[];
    single: number[];
    errors: number;
  },
): SectionOutput {
  const [raw, http, floor] = [m.samples.raw, m.samples.http, m.samples.floor].map((k) => summarize(k.perPoll)) as [
    Summary,
    Summary,
    Summary,
  ];
  const [rawAll, httpAll, floorAll] = [m.samples.raw, m.samples.http, m.samples.floor].map((k) =>
    summarize(k.perRound),
  ) as [Summary, Summary, Summary];
  const loop = summarize(m.wakeLoop);
  const floorLoop = summarize(m.floorLoop);
  const one = summarize(m.single);
  const p = fmtInt(plan.polls);
  const wakeGoal: GoalCheck = {
    goal: `${p} long polls woken: p99 ≤ 50 ms`,
    met: raw.p99 <= 50,
    actual: `p50 ${fmtMs(raw.p50)}, p99 ${fmtMs(raw.p99)} (floor p99 ${fmtMs(floor.p99)}; one node:http client thread p99 ${fmtMs(http.p99)})`,
  };
  const row = (measure: string, s: Summary, vs: Summary | undefined): string[] => [
    measure,
    fmtMs(s.p50),
    fmtMs(s.p99),
    fmtInt(s.n),
    vs === undefined ? '1×' : `${fmtRatio(ratio(s.p50, vs.p50))} / ${fmtRatio(ratio(s.p99, vs.p99))}`,
  ];
  return {
    tables: [
      {
        title: `6. Sidecar fan-out: ${p} concurrent /v1/workers long polls woken by one publish (${fmtInt(plan.workers)} workers)`,
        columns: ['measure', 'p50', 'p99', 'samples', 'vs floor (p50 / p99)'],
        rows: [
          row('publish → a long poll’s answer read (raw clients)', raw, floor),
          row(`publish → all ${p} answers read (raw clients, per round)`, rawAll, floorAll),
          row('publish → a long poll’s answer read (node:http, one client thread)', http, floor),
          row(`publish → all ${p} answers read (node:http, per round)`, httpAll, floorAll),
          row(`↳ sidecar side: publish → all ${p} answers queued (wake loop)`, loop, floorLoop),
          row(`floor: a bare net server writes the same ${p} answers → each read (raw clients)`, floor, undefined),
          row(`↳ floor: the bare server's write loop`, floorLoop, undefined),
          row('one GET /v1/workers round trip (node:http)', one, undefined),
          [`${p} clients polling every 1 s (computed)`, fmtMs(500 + one.p50), fmtMs(990 + one.p99), '—', '—'],
        ],
        notes: [
          `Clients in one worker thread, one keep-alive connection per poll (${p} sockets per kind); errors: ${m.errors}.`,
          'raw: the request written and the answer read to its Content-Length by hand (the sidecar’s share); node:http: ' +
            'all answers parsed by one thread’s HTTP stack (what one process holding every poll pays on top).',
          'Resolver: minPublishIntervalMs 0, unthrottled rate limit; the publish is a check flip on the dev server.',
        ],
      },
    ],
    // The goal is stated for 1,000 polls; the smoke size does not judge it.
    goals: ctx.quick ? [] : [wakeGoal],
    data: {
      workers: plan.workers,
      polls: plan.polls,
      rounds: m.samples.raw.perRound.length,
      errors: m.errors,
      wakeMs: raw,
      allWokenMs: rawAll,
      httpWakeMs: http,
      httpAllWokenMs: httpAll,
      wakeLoopMs: loop,
      floorMs: floor,
      floorAllMs: floorAll,
      floorLoopMs: floorLoop,
      singleGetMs: one,
    },
  };
}

export const sidecarFanoutBench: BenchSection = {
  id: 'sidecar-fanout',
  title: 'Sidecar fan-out',
  budgetMs: { quick: 30_000, full: 180_000 },
  run: runFanout,
};

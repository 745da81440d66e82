/**
 * The agent side of health checks: TTL expiry timers and HTTP/TCP probes, like a Consul
 * agent runs them. Each runner reports a status through `report`; the dev agent turns it
 * into a state write (which only consumes an index when status or output changed).
 *
 * Probes only target loopback addresses: the dev server is a test double and must never
 * become a way to reach the network. Every timer is unref'd; `stopAll()` cancels timers
 * and aborts in-flight probes.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { CheckStatus } from './consul-api-types.js';

/** Where a runner sends its results. */
export type CheckReporter = (node: string, checkId: string, status: CheckStatus, output: string) => void;

/** What to run for one check. */
export type CheckRunSpec =
  | { readonly kind: 'ttl'; readonly ttlMs: number }
  | {
      readonly kind: 'http';
      readonly url: string;
      readonly method: string;
      readonly headers: Record<string, string[]>;
      readonly body: string | undefined;
      readonly intervalMs: number;
      readonly timeoutMs: number;
    }
  | { readonly kind: 'tcp'; readonly target: string; readonly intervalMs: number; readonly timeoutMs: number };

/** Largest HTTP check output kept, like Consul's default `OutputMaxSize` (4 KiB). */
const OUTPUT_MAX = 4096;

/** True if `host` (hostname or IP, IPv6 with or without brackets) is a loopback address. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return net.isIPv4(h) && h.startsWith('127.');
}

interface Runner {
  /** Pending timer (TTL expiry or next probe); undefined while a probe runs. */
  timer: NodeJS.Timeout | undefined;
  /** Aborts the in-flight probe, if any. */
  abort: (() => void) | undefined;
  readonly spec: CheckRunSpec;
  /** Last output reported through a TTL update; quoted by the expiry message. */
  lastOutput: string;
}

/** Runs TTL timers and HTTP/TCP probes for the checks of the dev agent. */
export class CheckRunner {
  /** Active runners by `node\0checkId`; a check absent here is passive (catalog-registered, maintenance, serf). */
  private readonly runners = new Map<string, Runner>();
  /** Once true, nothing is scheduled or reported any more. */
  private stopped = false;

  constructor(
    private readonly report: CheckReporter,
    /** Lower bound for probe intervals, in milliseconds. */
    private readonly intervalFloorMs: number,
  ) {}

  /** Starts (or restarts with a new spec) the runner of a check. */
  start(node: string, checkId: string, spec: CheckRunSpec): void {
    this.stop(node, checkId);
    if (this.stopped) return;
    const runner: Runner = { timer: undefined, abort: undefined, spec, lastOutput: '' };
    this.runners.set(key(node, checkId), runner);
    if (spec.kind === 'ttl') this.armTtl(node, checkId, runner);
    else this.schedule(node, checkId, runner, 0);
  }

  /** True if the check is a TTL check with a running timer. */
  isTtl(node: string, checkId: string): boolean {
    return this.runners.get(key(node, checkId))?.spec.kind === 'ttl';
  }

  /** A TTL check was updated (pass/warn/fail/update): restart its expiry timer. */
  touchTtl(node: string, checkId: string, output: string): void {
    const runner = this.runners.get(key(node, checkId));
    if (runner?.spec.kind !== 'ttl') return;
    runner.lastOutput = output;
    this.armTtl(node, checkId, runner);
  }

  /** Stops the runner of one check. */
  stop(node: string, checkId: string): void {
    const runner = this.runners.get(key(node, checkId));
    if (runner === undefined) return;
    clearTimeout(runner.timer);
    runner.abort?.();
    this.runners.delete(key(node, checkId));
  }

  /** Stops every runner; nothing runs or reports afterwards. */
  stopAll(): void {
    this.stopped = true;
    for (const runner of this.runners.values()) {
      clearTimeout(runner.timer);
      runner.abort?.();
    }
    this.runners.clear();
  }

  private armTtl(node: string, checkId: string, runner: Runner): void {
    clearTimeout(runner.timer);
    if (runner.spec.kind !== 'ttl') return;
    runner.timer = setTimeout(() => {
      runner.timer = undefined;
      if (this.runners.get(key(node, checkId)) !== runner) return;
      this.report(node, checkId, 'critical', `TTL expired (last output before timeout follows): ${runner.lastOutput}`);
    }, runner.spec.ttlMs);
    runner.timer.unref();
  }

  private schedule(node: string, checkId: string, runner: Runner, delayMs: number): void {
    if (this.stopped || this.runners.get(key(node, checkId)) !== runner) return;
    runner.timer = setTimeout(() => {
      runner.timer = undefined;
      void this.probe(runner).then(([status, output]) => {
        runner.abort = undefined;
        if (this.stopped || this.runners.get(key(node, checkId)) !== runner) return;
        this.report(node, checkId, status, output);
        const spec = runner.spec as { intervalMs: number };
        this.schedule(node, checkId, runner, Math.max(this.intervalFloorMs, spec.intervalMs));
      });
    }, delayMs);
    runner.timer.unref();
  }

  /** Runs one probe; never rejects. */
  private probe(runner: Runner): Promise<[CheckStatus, string]> {
    const spec = runner.spec;
    if (spec.kind === 'http') return this.probeHttp(runner, spec);
    if (spec.kind === 'tcp') return this.probeTcp(runner, spec);
    return Promise.resolve(['critical', 'not a probed check']);
  }

  private probeHttp(runner: Runner, spec: Extract<CheckRunSpec, { kind: 'http' }>): Promise<[CheckStatus, string]> {
    return new Promise((resolve) => {
      let url: URL;
      try {
        url = new URL(spec.url);
      } catch {
        resolve(['critical', `invalid URL "${spec.url}"`]);
        return;
      }
      if (!isLoopbackHost(url.hostname)) {
        resolve(['critical', `dev server: refusing to probe non-loopback target ${url.host}`]);
        return;
      }
      const headers: Record<string, string | string[]> = {
        'user-agent': 'Consul Health Check',
        accept: 'text/plain, text/*, */*',
        connection: 'close',
        ...spec.headers,
      };
      const client = url.protocol === 'https:' ? https : http;
      const req = client.request(url, { method: spec.method, headers, agent: false, rejectUnauthorized: false });
      runner.abort = () => req.destroy(new Error('check stopped'));
      req.setTimeout(spec.timeoutMs, () => req.destroy(new Error(`request timed out after ${spec.timeoutMs}ms`)));
      req.on('error', (err) => resolve(['critical', `Get "${spec.url}": ${err.message}`]));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (size < OUTPUT_MAX) chunks.push(chunk);
          size += chunk.length;
        });
        res.on('error', (err) => resolve(['critical', `Get "${spec.url}": ${err.message}`]));
        res.on('end', () => {
          const code = res.statusCode ?? 0;
          const body = Buffer.concat(chunks).subarray(0, OUTPUT_MAX).toString('utf8');
          const output = `HTTP ${spec.method} ${spec.url}: ${code} ${res.statusMessage ?? ''} Output: ${body}`;
          resolve([code >= 200 && code < 300 ? 'passing' : code === 429 ? 'warning' : 'critical', output]);
        });
      });
      req.end(spec.body);
    });
  }

  private probeTcp(runner: Runner, spec: Extract<CheckRunSpec, { kind: 'tcp' }>): Promise<[CheckStatus, string]> {
    return new Promise((resolve) => {
      const at = spec.target.lastIndexOf(':');
      const host = spec.target.slice(0, at).replace(/^\[|\]$/g, '');
      const port = Number(spec.target.slice(at + 1));
      if (at < 0 || !Number.isInteger(port) || !isLoopbackHost(host)) {
        resolve(['critical', `dev server: refusing to probe non-loopback target ${spec.target}`]);
        return;
      }
      const socket = net.connect({ host, port });
      runner.abort = () => socket.destroy();
      socket.setTimeout(spec.timeoutMs, () => socket.destroy(new Error('i/o timeout')));
      socket.once('connect', () => {
        socket.destroy();
        resolve(['passing', `TCP connect ${spec.target}: Success`]);
      });
      socket.once('error', (err) => resolve(['critical', `dial tcp ${spec.target}: ${err.message}`]));
      socket.once('close', () => resolve(['critical', `dial tcp ${spec.target}: closed`]));
    });
  }
}

function key(node: string, checkId: string): string {
  return `${node}\u0000${checkId}`;
}

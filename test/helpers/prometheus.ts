/**
 * Real Prometheus and promtool for tests (Debian's `prometheus` package). A missing binary is
 * a test failure with an install hint, never a skip: these tests are the proof that the
 * dashboard and alerts work against the real thing.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freeTcpPort } from './ports.js';

/** Path of `name` on PATH; throws a clear error when it is missing. */
export function requireBinary(name: 'prometheus' | 'promtool'): string {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const bin = found.stdout.trim();
  if (found.status !== 0 || bin === '') {
    throw new Error(
      `${name} is not installed: these tests need Debian's Prometheus ` +
        '(apt-get install -y --no-install-recommends prometheus), which .ci/run installs',
    );
  }
  return bin;
}

/** Runs promtool; resolves with its exit code and output (stdout + stderr). */
export function promtool(args: readonly string[], input?: string): { status: number; output: string } {
  const result = spawnSync(requireBinary('promtool'), args, {
    encoding: 'utf8',
    ...(input === undefined ? {} : { input }),
    timeout: 30_000,
  });
  if (result.error !== undefined) throw result.error;
  return { status: result.status ?? -1, output: `${result.stdout}${result.stderr}` };
}

/** One sample of an instant-query result. */
export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

/** The JSON envelope of Prometheus's HTTP API. */
export interface PromResponse<T> {
  readonly status: 'success' | 'error';
  readonly data: T;
  readonly errorType?: string;
  readonly error?: string;
  readonly warnings?: string[];
}

/** A Prometheus process started by a test on a loopback port with a temporary TSDB. */
export class PrometheusProcess {
  /** Base URL of the HTTP API. */
  readonly url: string;
  private readonly child: ChildProcess;
  private readonly dir: string;
  /** Everything the process printed, for failure messages. */
  private log = '';

  private constructor(child: ChildProcess, dir: string, port: number) {
    this.child = child;
    this.dir = dir;
    this.url = `http://127.0.0.1:${port}`;
    const keep = (chunk: Buffer): void => {
      this.log = (this.log + chunk.toString('utf8')).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  /**
   * Starts Prometheus scraping `target` (`host:port`, plus any `moreTargets`) every second as
   * job `job`, evaluating `ruleFiles` every second; resolves once it is ready.
   */
  static async start(options: {
    target: string;
    moreTargets?: readonly string[];
    job: string;
    ruleFiles?: readonly string[];
  }): Promise<PrometheusProcess> {
    const bin = requireBinary('prometheus');
    const dir = await mkdtemp(path.join(tmpdir(), 'wr-prometheus-'));
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 900ms',
      '  evaluation_interval: 1s',
      ...(options.ruleFiles === undefined
        ? []
        : ['rule_files:', ...options.ruleFiles.map((f) => `  - ${JSON.stringify(f)}`)]),
      'scrape_configs:',
      `  - job_name: ${JSON.stringify(options.job)}`,
      '    static_configs:',
      `      - targets: [${[options.target, ...(options.moreTargets ?? [])].map((t) => JSON.stringify(t)).join(', ')}]`,
      '',
    ].join('\n');
    const configFile = path.join(dir, 'prometheus.yml');
    await writeFile(configFile, config);
    const port = await freeTcpPort();
    const child = spawn(
      bin,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const prom = new PrometheusProcess(child, dir, port);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${prom.log}`);
      try {
        const res = await fetch(`${prom.url}/-/ready`);
        if (res.ok) return prom;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await prom.stop();
        throw new Error(`prometheus did not become ready:\n${prom.log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** `GET /api/v1/<endpoint>?params`, parsed; HTTP 4xx answers carry the API's error JSON too. */
  async api<T>(endpoint: string, params: Record<string, string> = {}): Promise<PromResponse<T>> {
    const res = await fetch(`${this.url}/api/v1/${endpoint}?${new URLSearchParams(params).toString()}`);
    return (await res.json()) as PromResponse<T>;
  }

  /** An instant query at now. */
  query(expr: string): Promise<PromResponse<{ resultType: string; result: PromSample[] | [number, string] }>> {
    return this.api('query', { query: expr });
  }

  /** Resolves once `job` has been scraped successfully at least twice (two samples make a rate). */
  async waitForScrape(job: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.query(`count_over_time(up{job=${JSON.stringify(job)}}[1m]) >= 2 and up == 1`);
      if (r.status === 'success' && (r.data.result as PromSample[]).length > 0) return;
      if (Date.now() > deadline) throw new Error(`prometheus did not scrape job ${job}:\n${this.log}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** Stops the process (SIGTERM, then SIGKILL after 5 s) and removes its directory. Idempotent. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  /** The process's recent output. */
  get output(): string {
    return this.log;
  }
}

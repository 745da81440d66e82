/**
 * The baselines a user would otherwise pick, implemented as plainly as their originals:
 *
 * - {@link CopyingResolver}: returns a copy of its URL array on every call, as Distributed
 *   DataFusion's Rust resolvers do (`self.urls.clone()` on a `Vec<Url>`).
 * - {@link RebuildingResolver}: parses its URL strings into fresh `URL` objects on every call.
 * - {@link PollingResolver}: re-reads Consul health every N seconds (DataFusion's EC2/DNS
 *   resolvers and LakeSoul's poll on a fixed interval), publishing when the set changed.
 */
import { Agent } from 'node:http';
import type { WorkerResolver } from '../src/index.js';
import { HEALTH_QUERY, SERVICE, httpGet } from './cluster.js';

/** Copies its array per call (Rust's `Vec::clone`). */
export class CopyingResolver implements WorkerResolver {
  /** A plain (not frozen) array, as a Rust `Vec` is; never mutated, each call hands out a fresh copy. */
  private readonly urls: URL[];
  constructor(urls: readonly URL[]) {
    // Not the snapshot's frozen array: V8 copies frozen arrays on a slower path, which would flatter us.
    this.urls = [...urls];
  }
  getUrls(): readonly URL[] {
    return this.urls.slice();
  }
}

/** Rebuilds URL objects per call. */
export class RebuildingResolver implements WorkerResolver {
  /** The canonical hrefs; parsed again on each call. */
  private readonly hrefs: readonly string[];
  constructor(hrefs: readonly string[]) {
    this.hrefs = hrefs;
  }
  getUrls(): readonly URL[] {
    return this.hrefs.map((h) => new URL(h));
  }
}

/** Options of {@link PollingResolver}. */
export interface PollingResolverOptions {
  /** Consul base URL, e.g. `http://127.0.0.1:8500`. */
  readonly consul: string;
  /** Poll interval in milliseconds. */
  readonly intervalMs: number;
  /** Called when a poll saw a different set of URLs than the previous one. */
  readonly onChange?: (urls: readonly URL[]) => void;
}

/**
 * A fixed-interval poller of `GET /v1/health/service/worker?passing`: the simplest
 * resolver, and what most discovery code does. Non-blocking requests, a timer between them.
 */
export class PollingResolver implements WorkerResolver {
  /** Current URLs; replaced by reference when a poll sees a change. */
  private urls: readonly URL[] = Object.freeze([]);
  /** Joined hrefs of `urls`, to detect change cheaply. */
  private key = '';
  /** Keep-alive connection to Consul, like a long-lived client. */
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  /** Pending poll timer; undefined once stopped. */
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Requests sent so far. */
  requests = 0;

  constructor(private readonly options: PollingResolverOptions) {}

  /** Polls once now, then every `intervalMs`. */
  start(): void {
    void this.tick();
  }

  getUrls(): readonly URL[] {
    return this.urls;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.agent.destroy();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    this.requests += 1;
    try {
      const res = await httpGet(this.options.consul, `/v1/health/service/${SERVICE}?${HEALTH_QUERY}`, this.agent);
      if (res.status === 200) this.apply(JSON.parse(res.body.toString('utf8')) as unknown[]);
    } catch {
      // keep the last set, poll again at the next tick
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.options.intervalMs);
  }

  private apply(entries: unknown[]): void {
    const hrefs: string[] = [];
    for (const e of entries as { Service: { Address: string; Port: number } }[]) {
      hrefs.push(`http://${e.Service.Address}:${e.Service.Port}`);
    }
    hrefs.sort();
    const key = hrefs.join(',');
    if (key === this.key) return;
    this.key = key;
    this.urls = Object.freeze(hrefs.map((h) => new URL(h)));
    this.options.onChange?.(this.urls);
  }
}

/**
 * Fault injection for the Consul dev server: a FIFO of armed faults, each applying to the
 * next `count` requests whose path starts with its prefix. The first armed fault matching
 * a request is consumed (one unit) and decides what happens to it; a request matching no
 * fault is served normally.
 */

/** A canned answer for {@link ConsulDevServer.failNext}. */
export interface FailFault {
  /** HTTP status, e.g. 429, 500, 403; or 200 with a malformed `body`. */
  status: number;
  /** Response body; default: the status text (plain text) for errors, `''` for 2xx. */
  body?: string;
  /** Extra or overriding response headers, e.g. `{ 'Retry-After': '2' }`. */
  headers?: Record<string, string>;
  /** Path prefix the fault applies to, e.g. `/v1/health/service/`; default: any path. */
  path?: string;
}

/** Options shared by the connection-level faults. */
export interface FaultScope {
  /** Path prefix the fault applies to; default: any path. */
  path?: string;
}

/** What to do with one request. */
export type Fault =
  | {
      readonly kind: 'fail';
      readonly status: number;
      readonly body: string | undefined;
      readonly headers: Record<string, string>;
    }
  | { readonly kind: 'hang' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'truncate' };

interface Armed {
  readonly fault: Fault;
  readonly path: string;
  /** Requests this entry still applies to; the entry is removed when it reaches 0. */
  remaining: number;
}

/** The queue of armed faults. */
export class FaultQueue {
  /** Armed faults in arming order; every entry has `remaining >= 1`. */
  private readonly armed: Armed[] = [];

  /** Arms `fault` for the next `count` requests under `path`. */
  add(count: number, fault: Fault, path: string | undefined): void {
    if (!Number.isInteger(count) || count < 0) throw new TypeError(`Invalid fault count: ${count}`);
    if (count === 0) return;
    this.armed.push({ fault, path: path ?? '', remaining: count });
  }

  /** Consumes and returns the fault for a request to `path`, if one is armed. */
  take(path: string): Fault | undefined {
    const at = this.armed.findIndex((a) => path.startsWith(a.path));
    if (at < 0) return undefined;
    const entry = this.armed[at] as Armed;
    entry.remaining -= 1;
    if (entry.remaining === 0) this.armed.splice(at, 1);
    return entry.fault;
  }

  /** Disarms everything. */
  clear(): void {
    this.armed.length = 0;
  }
}

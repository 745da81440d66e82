/**
 * `worker-resolver watch`: the worker set, live. The source is either a resolver of its own
 * (the same flags as `serve`) or, with `--sidecar URL`, a running sidecar followed through
 * its long-poll API — one outstanding request, exactly as a coordinator in another language
 * would do it.
 *
 * On a terminal the view is redrawn in place: source, version, stale flag, worker count, one
 * row per worker, the workers added by the last change in green with `+` and the removed
 * ones in red with `−`. When stdout is not a terminal (a pipe, a file, a test) it prints one
 * plain line per change, without ANSI codes:
 * `<time> version=3 source=consul stale=false workers=3 +http://10.0.0.3:8080/ -http://10.0.0.1:8080/`.
 * Ctrl-C (or SIGTERM) exits 0. It stays up through any outage of its source and shows it:
 * the library's timers are unref'd (a library must not keep its host alive), so `watch` holds
 * the process open itself until it is told to stop.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Backoff } from '../backoff.js';
import { formatDuration } from '../duration.js';
import { createWorkerResolver } from '../resolver.js';
import type { WorkerSnapshot } from '../snapshot.js';
import { parseCli } from './config.js';
import { helpText } from './flags.js';
import { createCliLogger } from './logger.js';

type Env = Readonly<Record<string, string | undefined>>;

/** One worker as shown. */
interface Row {
  readonly url: string;
  readonly id: string;
  readonly node: string;
  readonly status: string;
}

/** What is shown, from a snapshot or a sidecar answer. */
interface View {
  readonly index: number;
  readonly source: string;
  readonly stale: boolean;
  readonly workers: readonly Row[];
}

const GREEN = '\x1b[32m';
const RED = '\x1b[31m';
const YELLOW = '\x1b[33m';
const DIM = '\x1b[2m';
const RESET = '\x1b[0m';
const CLEAR = '\x1b[H\x1b[2J';

function viewOf(s: WorkerSnapshot): View {
  return {
    index: s.version,
    source: s.source,
    stale: s.stale,
    workers: s.workers.map((w) => ({ url: w.url.href, id: w.id, node: w.node, status: w.status })),
  };
}

/** Keeps the last view and what its change added and removed; prints lines or redraws. */
class Display {
  /** Undefined until the first view. */
  private last: View | undefined;
  /** URLs added by the last version change. */
  private added = new Set<string>();
  /** Rows removed by the last version change. */
  private removed: readonly Row[] = [];
  /** The footer on a terminal: the last log line or error, else the exit hint. */
  private note = '';

  constructor(
    private readonly title: string,
    private readonly tty: boolean,
    private readonly write: (text: string) => void,
  ) {}

  /** True when drawing in place on a terminal. */
  isTty(): boolean {
    return this.tty;
  }

  /** Shows `view` if its version or stale flag differs from the last one. */
  update(view: View): void {
    const prev = this.last;
    if (prev !== undefined && prev.index === view.index && prev.stale === view.stale) return;
    const changed = prev === undefined || prev.index !== view.index;
    if (changed) {
      const before = new Set(prev?.workers.map((w) => w.url));
      const after = new Set(view.workers.map((w) => w.url));
      this.added = new Set(view.workers.filter((w) => !before.has(w.url)).map((w) => w.url));
      this.removed = (prev?.workers ?? []).filter((w) => !after.has(w.url));
    }
    this.last = view;
    if (this.tty) return this.draw();
    const diff = changed
      ? [...[...this.added].map((u) => ` +${u}`), ...this.removed.map((w) => ` -${w.url}`)].join('')
      : '';
    this.write(
      `${new Date().toISOString()} version=${view.index} source=${view.source} stale=${view.stale} ` +
        `workers=${view.workers.length}${diff}\n`,
    );
  }

  /** Sets the terminal footer (log lines would otherwise scroll the view away) and redraws. */
  setNote(note: string): void {
    if (note === this.note) return;
    this.note = note;
    this.draw();
  }

  /** Redraws the terminal view (no-op without a terminal). */
  draw(): void {
    if (!this.tty) return;
    const v = this.last;
    const lines = [`${this.title}`, ''];
    if (v === undefined) {
      lines.push(`${DIM}waiting for the first worker snapshot…${RESET}`);
    } else {
      const stale = v.stale ? `${YELLOW}STALE${RESET}` : 'fresh';
      lines.push(`version ${v.index} · source ${v.source} · ${stale} · ${v.workers.length} workers`, '');
      const rows = [...v.workers.map((w) => ({ w, mark: this.added.has(w.url) ? '+' : ' ' }))];
      rows.push(...this.removed.map((w) => ({ w: { ...w, status: 'removed' }, mark: '−' })));
      const width = (key: keyof Row): number => Math.max(0, ...rows.map((r) => r.w[key].length));
      for (const { w, mark } of rows) {
        const text = `${mark} ${w.url.padEnd(width('url'))}  ${w.id.padEnd(width('id'))}  ${w.node.padEnd(width('node'))}  ${w.status}`;
        lines.push(mark === '+' ? `${GREEN}${text}${RESET}` : mark === '−' ? `${RED}${text}${RESET}` : text);
      }
    }
    lines.push('', `${DIM}${this.note === '' ? 'Ctrl-C to exit' : this.note}${RESET}`);
    this.write(`${CLEAR}${lines.join('\n')}\n`);
  }
}

/** Resolves on the first SIGINT/SIGTERM (and aborts `controller`). */
function untilSignal(controller: AbortController): Promise<void> {
  return new Promise((resolve) => {
    const onSignal = (): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      controller.abort();
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** Runs `watch` until Ctrl-C; returns the exit code. Throws usage and option errors (exit 2). */
export async function runWatch(argv: readonly string[], env: Env = process.env): Promise<number> {
  const config = parseCli('watch', argv, env);
  if (config.help) {
    process.stdout.write(helpText('watch'));
    return 0;
  }
  const tty = process.stdout.isTTY === true;
  const write = (text: string): void => void process.stdout.write(text);
  const controller = new AbortController();
  if (config.sidecarUrl !== undefined) {
    const display = new Display(`worker-resolver watch · sidecar ${config.sidecarUrl.origin}`, tty, write);
    const stopped = untilSignal(controller);
    display.draw();
    await followSidecar(config.sidecarUrl, config.waitMs, display, controller.signal);
    await stopped;
    return 0;
  }
  const options = config.resolver;
  if (options === undefined) throw new Error('watch: no source configured');
  const display = new Display(`worker-resolver watch · service ${options.service}`, tty, write);
  const logger = tty
    ? createCliLogger({ ...config.log, format: 'text' }, config.secrets, (line) => display.setNote(line.trim()))
    : createCliLogger(config.log, config.secrets);
  const resolver = createWorkerResolver({ ...options, logger });
  const stopped = untilSignal(controller);
  const show = (): void => {
    if (resolver.snapshot().version > 0) display.update(viewOf(resolver.snapshot()));
  };
  const unsubscribe = resolver.subscribe(show);
  display.draw();
  // The stale flag changes without a publish; a terminal also wants its view kept current.
  // Not unref'd: during a backoff nothing else is alive, and watch must outlive an outage.
  const tick = setInterval(show, 1_000);
  await stopped;
  clearInterval(tick);
  unsubscribe();
  await resolver.close();
  return 0;
}

/**
 * What went wrong with a fetch, in words an operator can act on: undici reports every network
 * failure as "fetch failed" and puts the reason (ECONNREFUSED, ENOTFOUND, a timeout) in `cause`.
 */
function describeFetchError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.name === 'TimeoutError') return 'no answer within the long-poll wait plus its margin (a hung sidecar?)';
  const cause = err.cause as (Error & { code?: string }) | undefined;
  if (err.message === 'fetch failed' && cause !== undefined) {
    const code = cause.code ?? '';
    if (code === 'ECONNREFUSED') return 'connection refused (is the sidecar running, on this address?)';
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve the host name (${code})`;
    if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'the connection was reset';
    return code === '' ? cause.message : `${cause.message} (${code})`;
  }
  return err.message;
}

/** The `/v1/workers` body, checked enough to display it. */
function parseBody(body: unknown): View {
  const b = body as Partial<Record<keyof View, unknown>> | null;
  if (b === null || typeof b !== 'object' || typeof b.index !== 'number' || !Array.isArray(b.workers)) {
    throw new Error('not a /v1/workers answer');
  }
  const text = (v: unknown): string => (typeof v === 'string' ? v : '');
  return {
    index: b.index,
    source: text(b.source),
    stale: b.stale === true,
    workers: (b.workers as Record<string, unknown>[]).map((w) => ({
      url: text(w['url']),
      id: text(w['id']),
      node: text(w['node']),
      status: text(w['status']),
    })),
  };
}

/**
 * Follows a sidecar with blocking queries until `signal` aborts. Errors are shown (stderr
 * without a terminal) and retried with backoff; the index restarts from scratch after one,
 * since the sidecar may have restarted.
 */
async function followSidecar(base: URL, waitMs: number, display: Display, signal: AbortSignal): Promise<void> {
  const backoff = new Backoff({ baseMs: 500, capMs: 10_000 });
  let index: number | undefined;
  while (!signal.aborted) {
    const url = new URL('/v1/workers', base);
    if (index !== undefined) {
      url.searchParams.set('index', String(index));
      url.searchParams.set('wait', formatDuration(waitMs));
    }
    try {
      // The sidecar adds up to wait/16 of jitter, as Consul does; the client waits longer.
      const timeout = AbortSignal.timeout(waitMs + waitMs / 16 + 10_000);
      const res = await fetch(url, { signal: AbortSignal.any([signal, timeout]) });
      if (res.status === 503) {
        // docs/design.md §8: no snapshot yet — "not known yet", not an error; wait as told and ask again.
        const body = (await res.json().catch(() => ({}))) as { error?: unknown };
        const retryS = Number(res.headers.get('retry-after') ?? '1');
        const why = typeof body.error === 'string' ? body.error : 'no worker snapshot yet';
        const note = `sidecar ${base.origin} is not ready: ${why}`;
        if (display.isTty()) display.setNote(note);
        else process.stderr.write(`${new Date().toISOString()} ${note}\n`);
        index = undefined;
        await delay(Number.isFinite(retryS) && retryS > 0 ? retryS * 1000 : 1000, undefined, { signal }).catch(
          () => undefined,
        );
        continue;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status} from ${url.origin}${url.pathname}`);
      const view = parseBody(await res.json());
      index = view.index;
      backoff.reset();
      display.setNote('');
      display.update(view);
    } catch (err) {
      if (signal.aborted) return;
      index = undefined;
      const delayMs = Math.max(200, backoff.next());
      const message = `cannot follow ${base.origin}: ${describeFetchError(err)}`;
      if (display.isTty()) display.setNote(`${message}; retrying in ${formatDuration(delayMs)}`);
      else process.stderr.write(`${new Date().toISOString()} ${message}\n`);
      await delay(delayMs, undefined, { signal }).catch(() => undefined);
    }
  }
}

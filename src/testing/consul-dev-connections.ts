/**
 * Connection-level machinery of the Consul dev server: which sockets are open, the
 * proxy-like idle timeout, the held blocking queries, and the raw reply writer (whole,
 * truncated, or not at all).
 *
 * Concurrency: a held blocking query is a {@link Waiter}. Waiters are re-checked
 * synchronously after every state write (`wake()`); a waiter completes once its index moved
 * past the client's, when its deadline fires, or when its response closes (client gone,
 * idle cut, `closeAll()`), whichever comes first, exactly once.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { Reply } from './consul-dev-routes.js';
import { ConsulApiError } from './consul-dev-decode.js';

/** A held blocking query. */
interface Waiter {
  /** True once the watched index moved past the client's. */
  readonly ready: () => boolean;
  /** Completes the wait (idempotent). */
  readonly finish: () => void;
}

/** Largest request body accepted (Consul bodies here are small). */
const MAX_BODY_BYTES = 1 << 20;

/** Tracks the sockets, idle timers and long polls of one HTTP(S) server. */
export class ConnectionTracker {
  /** Every open socket (TCP, and TLS on top of it): what `closeAll()` destroys. */
  private readonly sockets = new Set<net.Socket>();
  /** Open request-carrying sockets (the TLS ones with TLS): what the idle timeout watches. */
  private readonly connections = new Set<net.Socket>();
  /** Held blocking queries; each removes itself when it completes. */
  private readonly waiters = new Set<Waiter>();
  /** Idle timers by connection; only populated while an idle timeout is set. */
  private readonly idleTimers = new Map<net.Socket, NodeJS.Timeout>();
  /** Idle timeout in ms; undefined = connections are never cut. */
  private idleTimeoutMs: number | undefined;
  /** Once true, no wait starts and no reply is written. */
  private closed = false;

  /** Starts tracking the connections of `server`. */
  attach(server: http.Server, tls: boolean): void {
    const track = (set: Set<net.Socket>) => (socket: net.Socket) => {
      set.add(socket);
      socket.once('close', () => set.delete(socket));
    };
    server.on('connection', track(this.sockets));
    server.on(tls ? 'secureConnection' : 'connection', track(this.connections));
  }

  /** Number of blocking queries currently held. */
  get longPolls(): number {
    return this.waiters.size;
  }

  /** Sets (or with `undefined` clears) the idle timeout, re-arming every open connection from now. */
  setIdleTimeout(ms: number | undefined): void {
    this.idleTimeoutMs = ms;
    for (const socket of this.connections) this.touch(socket);
  }

  /** Records activity on a connection (a request started or a response finished). */
  touch(socket: net.Socket): void {
    clearTimeout(this.idleTimers.get(socket));
    if (this.idleTimeoutMs === undefined || socket.destroyed) {
      this.idleTimers.delete(socket);
      return;
    }
    if (!this.idleTimers.has(socket)) {
      socket.once('close', () => {
        clearTimeout(this.idleTimers.get(socket));
        this.idleTimers.delete(socket);
      });
    }
    const timer = setTimeout(() => socket.destroy(), this.idleTimeoutMs);
    timer.unref();
    this.idleTimers.set(socket, timer);
  }

  /** Holds a blocking query until `index()` > `minIndex`, `waitMs` elapses, or `res` closes. Never rejects. */
  waitForIndex(res: http.ServerResponse, index: () => number, minIndex: number, waitMs: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed || res.destroyed) {
        resolve();
        return;
      }
      const finish = (): void => {
        if (!this.waiters.delete(waiter)) return;
        clearTimeout(timer);
        res.off('close', finish);
        resolve();
      };
      const waiter: Waiter = { ready: () => index() > minIndex, finish };
      const timer = setTimeout(finish, waitMs);
      timer.unref();
      res.once('close', finish);
      this.waiters.add(waiter);
    });
  }

  /** Completes every waiter whose index moved; called after each state change. */
  wake(): void {
    for (const waiter of [...this.waiters]) if (waiter.ready()) waiter.finish();
  }

  /** Writes a reply; with `truncate`: the real Content-Length, half the body, then a destroyed socket. */
  send(req: http.IncomingMessage, res: http.ServerResponse, reply: Reply, truncate: boolean): void {
    if (this.closed || res.destroyed || res.headersSent) return;
    const body = Buffer.from(reply.body, 'utf8');
    res.statusCode = reply.status;
    for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value);
    res.setHeader('Content-Length', body.length);
    if (req.method === 'HEAD') {
      res.end();
    } else if (truncate) {
      res.flushHeaders();
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => req.socket.destroy());
    } else {
      res.end(body);
    }
  }

  /** Destroys every socket and completes every waiter; nothing is written afterwards. */
  closeAll(): void {
    this.closed = true;
    this.setIdleTimeout(undefined);
    for (const socket of this.sockets) socket.destroy();
    for (const waiter of [...this.waiters]) waiter.finish();
  }
}

/** The request's ACL token: `X-Consul-Token`, then `Authorization: Bearer`, then `?token=`. */
export function extractToken(req: http.IncomingMessage, params: URLSearchParams): string | undefined {
  const header = req.headers['x-consul-token'];
  if (typeof header === 'string' && header !== '') return header;
  const auth = req.headers.authorization;
  if (auth !== undefined && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '').trim();
  const query = params.get('token');
  return query === null || query === '' ? undefined : query;
}

/** Resets a TCP connection (RST: ECONNRESET at the peer); falls back to destroy (TLS sockets). */
export function resetSocket(socket: net.Socket): void {
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** Reads and JSON-decodes a request body; `undefined` when empty; a 400/413 ConsulApiError when invalid. */
export function readJsonBody(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) return reject(new ConsulApiError(413, 'Request body too large'));
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new ConsulApiError(400, `Request decode failed: ${(err as Error).message}`));
      }
    });
  });
}

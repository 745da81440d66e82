/**
 * A small DNS stub client: one question, sent over UDP and/or TCP to configured servers.
 * Packet encoding and decoding is dns-packet's, messages and their matching are
 * `dns/message.ts`; this file owns transport and error mapping.
 *
 * Why not `node:dns`: it cannot pick the transport, does not say whether an answer was
 * truncated or carried EDNS, and hides the rcode. Consul's DNS interface cuts UDP answers
 * to `udp_answer_limit` (3) records *without* setting TC unless `enable_truncate` is on,
 * and trims EDNS answers to the advertised payload size, again without TC; so a client
 * that wants the whole worker set must notice a server that ignores EDNS, or an answer
 * that fills the payload, and ask again over TCP.
 *
 * Spoofing: every attempt uses a fresh socket (so a fresh ephemeral source port) and a
 * random 16-bit id; UDP sockets are connected, so the kernel only delivers datagrams from
 * the server's address (and reports ICMP port-unreachable as ECONNREFUSED). A datagram
 * with a wrong id, or one that does not answer our question, is ignored.
 *
 * Abort: when `signal` aborts, every socket and timer of the query is closed synchronously
 * and the promise rejects with `signal.reason` (an `AbortError` DOMException for a plain
 * `controller.abort()`), like `fetch` and `timers/promises` do.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import * as dnsPacket from 'dns-packet';
import type { Packet } from 'dns-packet';
import { systemClock } from '../clock.js';
import type { Clock } from '../clock.js';
import { EDNS_UDP_PAYLOAD_SIZE, describeServer, ednsOpt, interpret, trimDot } from './message.js';
import type { DnsQuestion, DnsResponse, DnsServer } from './message.js';
import { ErrorCode, InvalidOptionError, WorkerResolverError } from '../errors.js';

/** `auto`: UDP with EDNS0, re-asked over TCP when the answer may be incomplete. */
export type DnsTransport = 'auto' | 'udp' | 'tcp';

/** Options of {@link query}. */
export interface DnsQueryOptions {
  /** Servers, tried in order until one gives a usable answer. */
  readonly servers: readonly DnsServer[];
  readonly transport: DnsTransport;
  /** Time allowed for each attempt (one server, one transport), in milliseconds. */
  readonly timeoutMs: number;
  /** Aborts the query: sockets are closed and the promise rejects with `signal.reason`. */
  readonly signal?: AbortSignal;
  /** Timer source for the per-attempt timeout; defaults to {@link systemClock}. */
  readonly clock?: Clock;
  /**
   * Called once per exchange (one server, one transport) that got an answer or failed, before
   * the query goes on; not for an exchange ended by `signal`. For client spans: the caller
   * keeps what it needs as values. Must not throw.
   */
  readonly onExchange?: (exchange: DnsExchange) => void;
  /**
   * Send an EDNS0 OPT record (default true). `false` asks the way a plain stub resolver
   * does, so `doctor` can see the answer such a client gets (Consul cuts it to 3 records).
   */
  readonly edns?: boolean;
}

/** One exchange of a {@link query}: one server, one transport, its answer's rcode or its error. */
export interface DnsExchange {
  readonly question: DnsQuestion;
  readonly server: DnsServer;
  readonly transport: 'udp' | 'tcp';
  /** `clock.monotonic()` when the request was sent, and how long the exchange took, in ms. */
  readonly startedAt: number;
  readonly durationMs: number;
  /** The answer's rcode (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, …); undefined when there was no answer. */
  readonly rcode?: string;
  /** Why the exchange failed: no answer (timeout, unreachable server, malformed answer) or an error rcode. */
  readonly error?: WorkerResolverError;
}

/**
 * An EDNS answer this close to the payload size may have been trimmed silently (Consul drops
 * records until the answer fits, and sets TC only with `enable_truncate`). One SRV record
 * plus its address is under 100 bytes; 512 leaves room for long target names.
 */
const TRIM_MARGIN = 512;

/**
 * Parses `1.2.3.4`, `1.2.3.4:8600`, `::1` (no port) or `[::1]:8600`; the port defaults
 * to 53. Throws {@link InvalidOptionError} naming `option` for anything else, host
 * names included.
 */
export function parseDnsServer(spec: string, option = 'dns.servers'): DnsServer {
  const text = spec.trim();
  let host = text;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (bracketed !== null) {
    host = bracketed[1] ?? '';
    portText = bracketed[2];
  } else if (net.isIP(text) === 0) {
    // Exactly one colon: host:port. More than one without brackets is a bare IPv6 address.
    const colon = text.indexOf(':');
    if (colon > 0 && colon === text.lastIndexOf(':')) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
  }
  const family = net.isIP(host);
  if (family === 0 || (bracketed !== null && family !== 6)) {
    throw new InvalidOptionError(
      option,
      `"${spec}" is not an IP address with an optional port (e.g. 10.0.0.2, 10.0.0.2:8600, [fd00::2]:8600); ` +
        'host names are not accepted because resolving them would itself need DNS',
    );
  }
  let port = 53;
  if (portText !== undefined) {
    port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
    if (!(port >= 1 && port <= 65535)) {
      throw new InvalidOptionError(option, `"${spec}" has an invalid port "${portText}" (expected 1-65535)`);
    }
  }
  return { host, port, family: family === 6 ? 6 : 4 };
}

/**
 * Asks `question` to `opts.servers` in order. A server that times out, cannot be reached,
 * or answers with an error rcode is skipped for the next one (as glibc and c-ares do);
 * when every server failed, the last server's error is thrown. NXDOMAIN is an answer.
 */
export async function query(question: DnsQuestion, opts: DnsQueryOptions): Promise<DnsResponse> {
  if (opts.servers.length === 0) {
    throw new WorkerResolverError(ErrorCode.DNS_UNREACHABLE, 'no DNS server to ask');
  }
  let lastError: unknown;
  for (const server of opts.servers) {
    if (opts.signal?.aborted === true) throw abortReason(opts.signal);
    try {
      return checkRcode(await queryServer(question, server, opts), question);
    } catch (error) {
      if (!(error instanceof WorkerResolverError)) throw error;
      lastError = error;
    }
  }
  throw lastError;
}

async function queryServer(question: DnsQuestion, server: DnsServer, opts: DnsQueryOptions): Promise<DnsResponse> {
  if (opts.transport === 'tcp') return exchange('tcp', question, server, opts);
  const udp = await exchange('udp', question, server, opts);
  // TC means "incomplete". No OPT means the server ignored EDNS0, and Consul (without
  // enable_truncate) then cuts to a few records without TC: only TCP is trustworthy.
  // With EDNS, Consul trims an answer to fit the advertised payload size, again without TC:
  // an answer that fills the payload to within TRIM_MARGIN bytes may have lost records.
  // NXDOMAIN and empty answers cannot have been cut, so they need no second round trip.
  const hasRecords = udp.rcode === 'NOERROR' && udp.answers.length > 0;
  const nearLimit = udp.size >= EDNS_UDP_PAYLOAD_SIZE - TRIM_MARGIN;
  const mayBeCut = udp.truncated || (hasRecords && (!udp.edns || nearLimit));
  if (opts.transport === 'auto' && mayBeCut) return exchange('tcp', question, server, opts);
  return udp;
}

function checkRcode(response: DnsResponse, question: DnsQuestion): DnsResponse {
  const error = rcodeError(response, question);
  if (error !== undefined) throw error;
  return response;
}

/** The error an answer's rcode means; undefined for NOERROR and NXDOMAIN (both are answers). */
function rcodeError(response: DnsResponse, question: DnsQuestion): WorkerResolverError | undefined {
  const { rcode } = response;
  if (rcode === 'NOERROR' || rcode === 'NXDOMAIN') return undefined;
  const where = `${question.type} ${trimDot(question.name)} from ${describeServer(response.server)}`;
  if (rcode === 'SERVFAIL') {
    return new WorkerResolverError(ErrorCode.DNS_SERVFAIL, `DNS server answered SERVFAIL to ${where}`);
  }
  return new WorkerResolverError(ErrorCode.DNS_REFUSED, `DNS server answered ${rcode} to ${where}`);
}

/** One attempt: one socket, one id, one server, one transport. */
function exchange(
  transport: 'udp' | 'tcp',
  question: DnsQuestion,
  server: DnsServer,
  opts: DnsQueryOptions,
): Promise<DnsResponse> {
  const { signal, timeoutMs } = opts;
  const clock = opts.clock ?? systemClock;
  if (signal?.aborted === true) return Promise.reject(abortReason(signal));
  const id = randomInt(0, 0x10000);
  const request: Packet = {
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: question.type, name: trimDot(question.name), class: 'IN' }],
    additionals: opts.edns === false ? [] : [ednsOpt()],
  };
  const label = `${describeServer(server)} over ${transport}`;
  const startedAt = clock.monotonic();
  return new Promise<DnsResponse>((resolve, reject) => {
    let settled = false;
    let close = (): void => {};
    const timer = clock.setTimeout(
      () => finish(new WorkerResolverError(ErrorCode.DNS_TIMEOUT, `no DNS answer from ${label} within ${timeoutMs}ms`)),
      timeoutMs,
    );
    // Every exit goes through here exactly once: it releases the socket, the timer and
    // the abort listener before settling, so nothing outlives the attempt.
    const finish = (outcome: DnsResponse | Error): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      signal?.removeEventListener('abort', onAbort);
      close();
      if (!(signal?.aborted === true)) {
        const took = { question, server, transport, startedAt, durationMs: clock.monotonic() - startedAt };
        if (outcome instanceof WorkerResolverError) opts.onExchange?.({ ...took, error: outcome });
        else if (!(outcome instanceof Error)) {
          const error = rcodeError(outcome, question);
          opts.onExchange?.({ ...took, rcode: outcome.rcode, ...(error === undefined ? {} : { error }) });
        }
      }
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const onAbort = (): void => finish(abortReason(signal));
    const onSocketError = (error: Error): void =>
      finish(
        new WorkerResolverError(ErrorCode.DNS_UNREACHABLE, `DNS server ${label} unreachable: ${error.message}`, {
          cause: error,
        }),
      );
    const onMessage = (message: Buffer): void => {
      const outcome = interpret(message, id, question, server, transport, label);
      if (outcome !== undefined) finish(outcome);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    close =
      transport === 'udp'
        ? sendUdp(server, request, onMessage, onSocketError)
        : sendTcp(server, request, onMessage, onSocketError);
  });
}

/** Sends over a connected UDP socket; returns the function that closes it. */
function sendUdp(
  server: DnsServer,
  request: Packet,
  onMessage: (message: Buffer) => void,
  onError: (error: Error) => void,
): () => void {
  const socket = dgram.createSocket(server.family === 6 ? 'udp6' : 'udp4');
  let closed = false;
  socket.on('error', onError);
  socket.on('message', onMessage);
  socket.connect(server.port, server.host, () => {
    if (!closed) socket.send(dnsPacket.encode(request), (error) => error && onError(error));
  });
  return () => {
    closed = true;
    try {
      socket.close();
    } catch {
      // Already closed by an earlier error: nothing left to release.
    }
  };
}

/** Sends over a fresh TCP connection with 2-byte length framing; returns the closer. */
function sendTcp(
  server: DnsServer,
  request: Packet,
  onMessage: (message: Buffer) => void,
  onError: (error: Error) => void,
): () => void {
  const socket = net.connect({ host: server.host, port: server.port, family: server.family });
  socket.setNoDelay(true);
  let buffered = Buffer.alloc(0);
  socket.on('connect', () => socket.write(dnsPacket.streamEncode(request)));
  socket.on('error', onError);
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length < 2) return;
    const frameLength = buffered.readUInt16BE(0) + 2;
    if (buffered.length >= frameLength) onMessage(buffered.subarray(0, frameLength));
  });
  socket.on('end', () => onError(new Error('connection closed before a complete answer')));
  return () => socket.destroy();
}

function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new DOMException('The operation was aborted', 'AbortError');
}

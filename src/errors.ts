/**
 * Every error this package produces is a {@link WorkerResolverError} with a stable `code`
 * (tests and callers match on codes, never on message text) and a bounded `errorType`
 * (the `error_type` label of `worker_resolver_source_errors_total`).
 *
 * Messages are one line and never contain secrets: a Consul token is never interpolated
 * into a message, and URLs are printed without credentials or query strings.
 */

/** Stable error codes. Adding a code is a minor change; renaming one is a breaking change. */
export const ErrorCode = {
  /** An option passed to a constructor or factory is invalid (thrown as {@link InvalidOptionError}). */
  INVALID_OPTION: 'ERR_INVALID_OPTION',
  /** `ready()` did not see a first snapshot within its timeout. */
  READY_TIMEOUT: 'ERR_READY_TIMEOUT',
  /** The resolver was closed while the caller was waiting. */
  RESOLVER_CLOSED: 'ERR_RESOLVER_CLOSED',
  /** Tasks cannot be routed because the snapshot holds no worker. */
  NO_WORKERS: 'ERR_NO_WORKERS',

  /** Consul could not be reached (connection refused, reset, DNS failure of the agent's name). */
  CONSUL_UNREACHABLE: 'ERR_CONSUL_UNREACHABLE',
  /** A Consul request exceeded its client timeout (wait + wait/16 + margin for blocking queries). */
  CONSUL_TIMEOUT: 'ERR_CONSUL_TIMEOUT',
  /** Consul answered 403: the ACL token lacks `service:read` / `node:read`, or is unknown. */
  CONSUL_ACL: 'ERR_CONSUL_ACL',
  /** Consul answered 429 (per-client rate or connection limit). */
  CONSUL_RATE_LIMITED: 'ERR_CONSUL_RATE_LIMITED',
  /** Consul answered 400: the query itself is wrong (bad filter expression, bad parameter). */
  CONSUL_BAD_REQUEST: 'ERR_CONSUL_BAD_REQUEST',
  /** Consul answered another non-2xx status (5xx: no leader, agent overloaded, ...). */
  CONSUL_HTTP: 'ERR_CONSUL_HTTP',
  /** Consul answered 2xx with a body that is not the documented shape (bad JSON, wrong types, missing index). */
  CONSUL_MALFORMED: 'ERR_CONSUL_MALFORMED',
  /** Consul's answer exceeded `consul.maxResponseBytes`. */
  CONSUL_BODY_TOO_LARGE: 'ERR_CONSUL_BODY_TOO_LARGE',
  /** The TLS handshake with Consul failed (unknown CA, bad client certificate, name mismatch). */
  CONSUL_TLS: 'ERR_CONSUL_TLS',
  /** The thread that reads Consul's answers (`consul.readInThread`) stopped; it is restarted on the next request. */
  CONSUL_READER: 'ERR_CONSUL_READER',

  /** The DNS server answered SERVFAIL. */
  DNS_SERVFAIL: 'ERR_DNS_SERVFAIL',
  /** The DNS server answered REFUSED (or another non-NXDOMAIN error rcode). */
  DNS_REFUSED: 'ERR_DNS_REFUSED',
  /** No DNS server answered in time. */
  DNS_TIMEOUT: 'ERR_DNS_TIMEOUT',
  /** The DNS answer could not be decoded or does not match the question. */
  DNS_MALFORMED: 'ERR_DNS_MALFORMED',
  /** The DNS server could not be reached over UDP or TCP. */
  DNS_UNREACHABLE: 'ERR_DNS_UNREACHABLE',
} as const;

/** One of the {@link ErrorCode} values. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * The bounded set of `error_type` values: what an operator filters on in a dashboard.
 * Kept small on purpose; the code carries the detail.
 */
export type ErrorType =
  | 'acl'
  | 'rate_limited'
  | 'timeout'
  | 'unreachable'
  | 'bad_request'
  | 'http'
  | 'malformed'
  | 'too_large'
  | 'tls'
  | 'servfail'
  | 'refused'
  | 'other';

const ERROR_TYPES: Readonly<Record<ErrorCodeValue, ErrorType>> = {
  ERR_INVALID_OPTION: 'other',
  ERR_READY_TIMEOUT: 'timeout',
  ERR_RESOLVER_CLOSED: 'other',
  ERR_NO_WORKERS: 'other',
  ERR_CONSUL_UNREACHABLE: 'unreachable',
  ERR_CONSUL_TIMEOUT: 'timeout',
  ERR_CONSUL_ACL: 'acl',
  ERR_CONSUL_RATE_LIMITED: 'rate_limited',
  ERR_CONSUL_BAD_REQUEST: 'bad_request',
  ERR_CONSUL_HTTP: 'http',
  ERR_CONSUL_MALFORMED: 'malformed',
  ERR_CONSUL_BODY_TOO_LARGE: 'too_large',
  ERR_CONSUL_TLS: 'tls',
  ERR_CONSUL_READER: 'other',
  ERR_DNS_SERVFAIL: 'servfail',
  ERR_DNS_REFUSED: 'refused',
  ERR_DNS_TIMEOUT: 'timeout',
  ERR_DNS_MALFORMED: 'malformed',
  ERR_DNS_UNREACHABLE: 'unreachable',
};

/** Extra, non-secret facts attached to an error. */
export interface ErrorDetails {
  /** HTTP status of the answer that caused the error, if any. */
  readonly status?: number;
  /** For 429: the delay Consul asked for (`Retry-After`), in milliseconds. */
  readonly retryAfterMs?: number;
  /** The underlying error (a socket error, a JSON SyntaxError, ...). */
  readonly cause?: unknown;
  /**
   * The request reached no Consul server, so retrying it costs the cluster nothing: the
   * connection to the agent was refused (`ECONNREFUSED`: it is restarting), or the agent
   * answered that it knows no server yet (`500 No known Consul servers`: it has not joined).
   */
  readonly reachedNoServer?: boolean;
}

/**
 * Brands that mark this package's errors across copies of it. A monorepo often installs two
 * copies (a coordinator's own, and one a dependency brought), and each copy has its own classes:
 * a plain `instanceof` against one copy's class is false for the other copy's errors. As undici
 * does, each class answers `instanceof` by a brand registered with `Symbol.for`, which every copy
 * shares; a subclass checks its own brand, not its parent's.
 */
const kWorkerResolverError = Symbol.for('worker-resolver.error');
const kInvalidOptionError = Symbol.for('worker-resolver.error.invalid-option');

function branded(value: unknown, brand: symbol): boolean {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
}

/** The base class of every error thrown or reported by worker-resolver. */
export class WorkerResolverError extends Error {
  /** True for errors of this class from any copy of the package (see the brands above). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return branded(value, kWorkerResolverError);
  }

  /** The brand `instanceof` checks: the same symbol in every copy of the package. */
  get [kWorkerResolverError](): true {
    return true;
  }

  /** Stable machine-readable code, e.g. `ERR_CONSUL_ACL`. */
  readonly code: ErrorCodeValue;
  /** HTTP status of the answer that caused the error, if any. */
  readonly status: number | undefined;
  /** For 429: the delay requested by `Retry-After`, in milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** True when the request reached no Consul server (see {@link ErrorDetails.reachedNoServer}). */
  readonly reachedNoServer: boolean;

  constructor(code: ErrorCodeValue, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
    this.reachedNoServer = details.reachedNoServer === true;
  }

  override get name(): string {
    return 'WorkerResolverError';
  }

  /** The bounded `error_type` label for metrics and spans. */
  get errorType(): ErrorType {
    return errorTypeOf(this.code);
  }
}

/** The bounded `error_type` of an error code. */
export function errorTypeOf(code: ErrorCodeValue): ErrorType {
  return ERROR_TYPES[code];
}

/**
 * Thrown synchronously by factories and constructors when an option is invalid. It is a
 * `TypeError` (as p-retry and Node's own APIs do) that carries the offending option's path.
 */
export class InvalidOptionError extends TypeError {
  /** True for errors of this class from any copy of the package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return branded(value, kInvalidOptionError);
  }

  /** The brand `instanceof` checks: the same symbol in every copy of the package. */
  get [kInvalidOptionError](): true {
    return true;
  }

  readonly code = ErrorCode.INVALID_OPTION;
  /** The dotted path of the invalid option, e.g. `consul.waitMs`. */
  readonly option: string;

  constructor(option: string, problem: string) {
    super(`Invalid option "${option}": ${problem}`);
    this.option = option;
  }

  override get name(): string {
    return 'InvalidOptionError';
  }
}

/**
 * True if `value` is a {@link WorkerResolverError} with the given code (or any code), from this
 * or any other copy of the package.
 */
export function isWorkerResolverError(value: unknown, code?: ErrorCodeValue): value is WorkerResolverError {
  return value instanceof WorkerResolverError && (code === undefined || value.code === code);
}

/**
 * Options of the Consul dev server, their up-front validation, and the shape of a
 * recorded request.
 */
import { InvalidOptionError } from '../errors.js';

/** Options of {@link ConsulDevServer.start}. */
export interface ConsulDevServerOptions {
  /** Listen address; default `127.0.0.1`. */
  host?: string;
  /** HTTP port; default 0 (ephemeral). */
  port?: number;
  /** The server's datacenter; default `dc1`. */
  datacenter?: string;
  /** The agent's own node name; default `dev-node`. */
  nodeName?: string;
  /** The agent node's address; default `127.0.0.1`. */
  nodeAddress?: string;
  /**
   * Enables ACLs in "default deny" mode with this management token (header `X-Consul-Token`,
   * `Authorization: Bearer <t>`, or `?token=`). As in Consul: a request without a token is the
   * anonymous token, whose service reads come back filtered (`200 []` with
   * `X-Consul-Results-Filtered-By-ACLs: true`); an unknown or deleted token gets
   * `403 ACL not found`; `/v1/status/*` stays open. More tokens and policies are made through
   * `PUT /v1/acl/policy` and `PUT /v1/acl/token` (see `consul-dev-acl.ts` for the rules read).
   */
  aclToken?: string;
  /**
   * Further valid tokens that lack `node:read` (with ACLs on): health and catalog service
   * reads made with one answer `200 []` plus `X-Consul-Results-Filtered-By-ACLs: true`, as
   * Consul does for an authenticated token whose results were filtered out.
   */
  aclFilteredTokens?: readonly string[];
  /** DNS interface: `false` to disable; default `{ port: 0 }`. */
  dns?: false | { port?: number; udpAnswerLimit?: number; enableTruncate?: boolean };
  /** Cap of `?wait`, in milliseconds; default 600 000 (Consul's 10 minutes). */
  maxWaitMs?: number;
  /** Serve HTTPS (mTLS when `requestCert` and `ca` are set). */
  tls?: { key: string | Buffer; cert: string | Buffer; ca?: string | Buffer; requestCert?: boolean };
  /** Lower bound for HTTP/TCP check intervals, in milliseconds; default 100. */
  checkIntervalFloorMs?: number;
  /** Randomness in [0, 1) for the blocking-query jitter; default `Math.random` (tests pin it). */
  random?: () => number;
}

/** One request as the server saw it. The token's value is never stored. */
export interface RecordedRequest {
  readonly method: string;
  /** Decoded path without the query string. */
  readonly path: string;
  /** Query parameters (repeated ones as arrays), `token` excluded. */
  readonly query: Readonly<Record<string, string | string[]>>;
  /** `Date.now()` when the request arrived. */
  readonly startedAt: number;
  /** True if the request carried a token (header, bearer or query). */
  readonly hadToken: boolean;
}

/** Throws {@link InvalidOptionError} (a TypeError naming the option) for an invalid option. */
export function validateOptions(o: ConsulDevServerOptions): void {
  const port = (name: string, value: number | undefined): void => {
    if (value !== undefined && !(Number.isInteger(value) && value >= 0 && value <= 65535)) {
      throw new InvalidOptionError(name, 'must be an integer port (0-65535)');
    }
  };
  port('port', o.port);
  if (o.dns !== false) port('dns.port', o.dns?.port);
  if (o.maxWaitMs !== undefined && !(Number.isFinite(o.maxWaitMs) && o.maxWaitMs > 0)) {
    throw new InvalidOptionError('maxWaitMs', 'must be > 0');
  }
  if (
    o.checkIntervalFloorMs !== undefined &&
    !(Number.isFinite(o.checkIntervalFloorMs) && o.checkIntervalFloorMs >= 0)
  ) {
    throw new InvalidOptionError('checkIntervalFloorMs', 'must be >= 0');
  }
  if (o.aclToken !== undefined && (typeof o.aclToken !== 'string' || o.aclToken === '')) {
    throw new InvalidOptionError('aclToken', 'must be a non-empty string');
  }
  if (
    o.aclFilteredTokens !== undefined &&
    (o.aclToken === undefined ||
      !Array.isArray(o.aclFilteredTokens) ||
      !o.aclFilteredTokens.every((t) => typeof t === 'string' && t !== ''))
  ) {
    throw new InvalidOptionError('aclFilteredTokens', 'must be non-empty strings, with aclToken set');
  }
  for (const name of ['datacenter', 'nodeName', 'nodeAddress'] as const) {
    const value = o[name];
    if (value !== undefined && (typeof value !== 'string' || value === '')) {
      throw new InvalidOptionError(name, 'must be a non-empty string');
    }
  }
}

/**
 * The JSON shapes of the Consul HTTP API subset the dev server speaks, spelled as Consul
 * spells them (PascalCase keys). Request bodies are decoded case-insensitively, as Go's
 * `encoding/json` does; responses always use these exact keys.
 */

/** A health check state. Consul's fourth state, `maintenance`, is a critical check in disguise. */
export type CheckStatus = 'passing' | 'warning' | 'critical';

/** A service-level tagged address (`Service.TaggedAddresses.lan`, `.wan`, `.lan_ipv4`, ...). */
export interface ServiceAddress {
  Address: string;
  Port: number;
}

/** Service weights used by DNS SRV answers: `Passing` when all checks pass, `Warning` otherwise. */
export interface ServiceWeights {
  Passing: number;
  Warning: number;
}

/**
 * A check definition as accepted by `PUT /v1/agent/service/register` (`Check`/`Checks`).
 * Supported kinds: TTL (`TTL`), HTTP (`HTTP` + `Interval`) and TCP (`TCP` + `Interval`).
 * HTTP and TCP targets must be loopback addresses: the dev server never probes the network.
 */
export interface CheckDefinition {
  /** Check ID; defaults to `service:<ServiceID>` (or `service:<ServiceID>:<n>` when several). */
  CheckID?: string;
  /** Alias of `CheckID` accepted by Consul. */
  ID?: string;
  /** Human name; defaults to `Service '<name>' check`. */
  Name?: string;
  Notes?: string;
  /** Initial status; `critical` when absent, as in Consul. */
  Status?: CheckStatus;
  /** TTL check: the check turns critical if not refreshed within this Go duration. */
  TTL?: string;
  /** HTTP check URL (loopback only). */
  HTTP?: string;
  /** HTTP check method, default `GET`. */
  Method?: string;
  /** HTTP check request headers. */
  Header?: Record<string, string[]>;
  /** HTTP check request body. */
  Body?: string;
  /** TCP check target `host:port` (loopback only). */
  TCP?: string;
  /** Probe interval for HTTP/TCP checks (Go duration). */
  Interval?: string;
  /** Probe timeout for HTTP/TCP checks (Go duration), default `10s`. */
  Timeout?: string;
  /** Accepted and ignored by the dev server. */
  DeregisterCriticalServiceAfter?: string;
  /** Accepted and ignored by the dev server. */
  TLSSkipVerify?: boolean;
  /** Accepted and ignored by the dev server. */
  TLSServerName?: string;
}

/** The JSON body of `PUT /v1/agent/service/register`. */
export interface ServiceDefinition {
  /** Service name (required). */
  Name: string;
  /** Instance ID, unique per node; defaults to `Name`. */
  ID?: string;
  Tags?: string[];
  /** Service address; empty means "use the node's address". */
  Address?: string;
  TaggedAddresses?: Record<string, ServiceAddress>;
  Meta?: Record<string, string>;
  Port?: number;
  Weights?: ServiceWeights;
  Check?: CheckDefinition;
  Checks?: CheckDefinition[];
  EnableTagOverride?: boolean;
}

/** A node as `registerNode` takes it (and as `PUT /v1/catalog/register` describes one). */
export interface NodeDefinition {
  Node: string;
  Address: string;
  TaggedAddresses?: Record<string, string>;
  Meta?: Record<string, string>;
  /** Defaults to the server's datacenter; another value creates a second datacenter. */
  Datacenter?: string;
}

/** `Node` of a `/v1/health/service` entry. */
export interface HealthNode {
  ID: string;
  Node: string;
  Address: string;
  Datacenter: string;
  TaggedAddresses: Record<string, string>;
  Meta: Record<string, string>;
  CreateIndex: number;
  ModifyIndex: number;
}

/** `Service` of a `/v1/health/service` entry. `TaggedAddresses` is omitted when empty, as in Consul. */
export interface HealthService {
  ID: string;
  Service: string;
  Tags: string[];
  Address: string;
  TaggedAddresses?: Record<string, ServiceAddress>;
  Meta: Record<string, string>;
  Port: number;
  Weights: ServiceWeights;
  EnableTagOverride: boolean;
  CreateIndex: number;
  ModifyIndex: number;
}

/** One element of `Checks` of a `/v1/health/service` entry. */
export interface HealthCheck {
  Node: string;
  CheckID: string;
  Name: string;
  Status: CheckStatus;
  Notes: string;
  Output: string;
  ServiceID: string;
  ServiceName: string;
  ServiceTags: string[];
  /** `ttl`, `http`, `tcp`, `maintenance`, or `''` (serfHealth and catalog-registered checks). */
  Type: string;
  Interval: string;
  Timeout: string;
  CreateIndex: number;
  ModifyIndex: number;
}

/** One element of the `/v1/health/service/:service` answer. */
export interface HealthServiceEntry {
  Node: HealthNode;
  Service: HealthService;
  Checks: HealthCheck[];
}

/**
 * A healthy instance as the DNS interface needs it (structurally identical to the DNS
 * server's `DnsServiceInstance`).
 */
export interface HealthyInstance {
  node: string;
  nodeAddress: string;
  /**
   * The service's address as Consul's DNS translates it: `lan_ipv6`, then `lan_ipv4` tagged
   * address, then `Service.Address`; `''` when the service uses its node's address.
   */
  serviceAddress: string;
  port: number;
  /** `Weights.Passing`, or `Weights.Warning` for an instance with a warning check. */
  weight: number;
  datacenter: string;
}

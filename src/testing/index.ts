/**
 * `worker-resolver/testing`: test doubles for code that discovers workers through Consul.
 *
 * - {@link ConsulDevServer}: an in-process Consul HTTP API double (catalog, health, agent
 *   registration, TTL/HTTP checks, maintenance, blocking queries, ACLs, fault injection),
 *   with a Consul-style DNS interface on the same state.
 * - {@link ConsulDnsServer}: the DNS interface on its own, answering from a callback.
 * - {@link compileFilter}: the subset of Consul's filter expression language the dev server
 *   evaluates.
 *
 * These are test doubles, not a Consul: see each class for what differs.
 */
export { ConsulDevServer } from './consul-dev-server.js';
export type { ConsulDevServerOptions, RecordedRequest } from './consul-dev-options.js';
export type { FailFault, FaultScope } from './consul-dev-faults.js';
export { ConsulApiError } from './consul-dev-decode.js';
export type {
  CheckDefinition,
  CheckStatus,
  HealthCheck,
  HealthNode,
  HealthService,
  HealthServiceEntry,
  HealthyInstance,
  NodeDefinition,
  ServiceAddress,
  ServiceDefinition,
  ServiceWeights,
} from './consul-api-types.js';
export { compileFilter, FilterExpressionError } from './consul-filter.js';
export type { FilterPredicate } from './consul-filter.js';
export { parseGoDuration } from '../duration.js';
export { ConsulDnsServer } from './consul-dns.js';
export type { ConsulDnsOptions, ConsulDnsQuery, DnsServiceInstance } from './consul-dns.js';

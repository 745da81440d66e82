/**
 * The write side of the dev server: what a Consul agent does on `agent/service/register`,
 * check updates and maintenance toggles, plus the catalog register/deregister endpoints.
 * Bodies are validated by consul-dev-decode.ts (the same rules for HTTP and for the
 * programmatic API) and turned into one {@link ConsulState} transaction each, so one API
 * call = one index.
 */
import type { CheckStatus, HealthyInstance, NodeDefinition } from './consul-api-types.js';
import { CheckRunner } from './consul-dev-checks.js';
import {
  ConsulApiError,
  STATUSES,
  asObject,
  bad,
  decodeCatalogCheck,
  decodeServiceCheck,
  field,
  nodeCheck,
  nodeIdFor,
  optInt,
  optString,
  serviceTaggedAddresses,
  stringList,
  stringMap,
  unknownService,
} from './consul-dev-decode.js';
import { ConsulState, sortedMap, withoutIndexes } from './consul-state.js';

/** Check ID prefix of service maintenance checks, as in Consul. */
export const SERVICE_MAINT_PREFIX = '_service_maintenance:';
/** Check ID of the node maintenance check, as in Consul. */
export const NODE_MAINT_CHECK_ID = '_node_maintenance';

/** Options of {@link DevAgent}. */
export interface DevAgentOptions {
  readonly datacenter: string;
  readonly nodeName: string;
  readonly nodeAddress: string;
  readonly checkIntervalFloorMs: number;
}

/** The agent-and-catalog write logic over a {@link ConsulState}. */
export class DevAgent {
  /** The state every write goes to. */
  readonly state = new ConsulState();
  /** TTL timers and HTTP/TCP probes of agent-registered checks. */
  readonly runner: CheckRunner;
  /**
   * When the (simulated) cluster lost its leader (epoch ms); undefined while it has one. Without
   * a leader `/v1/status/leader` answers `""`, reads that need the leader a 500 "No cluster
   * leader", and stale reads `X-Consul-KnownLeader: false` with the time since the loss.
   */
  leaderLostAt: number | undefined;

  constructor(readonly options: DevAgentOptions) {
    this.runner = new CheckRunner((node, checkId, status, output) => {
      const check = this.state.check(node, checkId);
      if (check !== undefined)
        this.state.transact((tx) => tx.upsertCheck({ ...check, Status: status, Output: output }));
    }, options.checkIntervalFloorMs);
    // Bootstrap like a single-server dev agent: its node (with serfHealth), then the `consul` service.
    this.registerNode({ Node: options.nodeName, Address: options.nodeAddress });
    this.state.transact((tx) =>
      tx.upsertService(options.nodeName, {
        ID: 'consul',
        Service: 'consul',
        Tags: [],
        Address: '',
        Meta: sortedMap({ non_voter: 'false', raft_version: '3', read_replica: 'false', serf_protocol_current: '2' }),
        Port: 8300,
        Weights: { Passing: 1, Warning: 1 },
        EnableTagOverride: false,
      }),
    );
  }

  /** Registers (or updates) a node, with a passing `serfHealth` check as a joined agent has. */
  registerNode(def: NodeDefinition): void {
    if (typeof def.Node !== 'string' || def.Node === '') throw bad('Must provide node');
    if (typeof def.Address !== 'string' || def.Address === '') throw bad('Must provide address');
    const tagged = def.TaggedAddresses ?? {
      lan: def.Address,
      lan_ipv4: def.Address,
      wan: def.Address,
      wan_ipv4: def.Address,
    };
    this.state.transact((tx) => {
      tx.upsertNode({
        ID: nodeIdFor(def.Node),
        Node: def.Node,
        Address: def.Address,
        Datacenter: def.Datacenter ?? this.options.datacenter,
        TaggedAddresses: sortedMap(tagged),
        Meta: sortedMap(def.Meta ?? { 'consul-network-segment': '' }),
      });
      if (this.state.check(def.Node, 'serfHealth') === undefined) {
        tx.upsertCheck(
          nodeCheck(def.Node, 'serfHealth', 'Serf Health Status', 'passing', 'Agent alive and reachable', ''),
        );
      }
    });
  }

  /** `PUT /v1/agent/service/register` on `node` (default: the agent's own node). */
  registerService(body: unknown, node = this.options.nodeName): void {
    const def = asObject(body, 'body');
    if (this.state.node(node) === undefined) throw new ConsulApiError(404, `Unknown node "${node}"`);
    const name = optString(def, 'Name') ?? '';
    if (name === '') throw bad('Missing service name');
    const id = optString(def, 'ID') || name;
    const address = optString(def, 'Address') ?? '';
    const port = optInt(def, 'Port') ?? 0;
    const tags = stringList(def, 'Tags');
    const weightsIn = field(def, 'Weights');
    const weights = { Passing: 1, Warning: 1 };
    if (weightsIn !== undefined && weightsIn !== null) {
      const w = asObject(weightsIn, 'Weights');
      weights.Passing = optInt(w, 'Passing') ?? 0;
      weights.Warning = optInt(w, 'Warning') ?? 0;
      if (weights.Passing < 1) throw bad('Invalid Weights: Passing must be greater than 0');
    }
    const taggedAddresses = serviceTaggedAddresses(field(def, 'TaggedAddresses'), address, port);
    const checkBodies = field(def, 'Checks') ?? (field(def, 'Check') === undefined ? [] : [field(def, 'Check')]);
    if (!Array.isArray(checkBodies)) throw bad('Request decode failed: Checks must be a list');
    const defined = checkBodies
      .filter((c) => c !== null && c !== undefined)
      .map((c, n, all) => decodeServiceCheck(asObject(c, 'Check'), { node, id, name, tags, n, count: all.length }));
    const maintId = SERVICE_MAINT_PREFIX + id;
    const removed = this.state
      .checksOf(node)
      .filter(
        (c) => c.ServiceID === id && c.CheckID !== maintId && !defined.some((d) => d.check.CheckID === c.CheckID),
      );
    this.state.transact((tx) => {
      const service = {
        ID: id,
        Service: name,
        Tags: tags,
        Address: address,
        ...(Object.keys(taggedAddresses).length > 0 ? { TaggedAddresses: taggedAddresses } : {}),
        Meta: stringMap(def, 'Meta'),
        Port: port,
        Weights: weights,
        EnableTagOverride: field(def, 'EnableTagOverride') === true,
      };
      tx.upsertService(node, service);
      for (const c of removed) tx.deleteCheck(node, c.CheckID);
      for (const { check, explicitStatus } of defined) {
        const existing = this.state.check(node, check.CheckID);
        // Re-registering keeps a check's current state unless a Status is given, as the agent does.
        const kept =
          existing !== undefined && !explicitStatus ? { Status: existing.Status, Output: existing.Output } : {};
        tx.upsertCheck({ ...check, ServiceTags: tags, ...kept });
      }
      // A maintenance check follows the service's tags too.
      const maint = this.state.check(node, maintId);
      if (maint !== undefined) tx.upsertCheck({ ...withoutIndexes(maint), ServiceName: name, ServiceTags: tags });
    });
    for (const c of removed) this.runner.stop(node, c.CheckID);
    for (const { check, spec } of defined) {
      if (spec === undefined) this.runner.stop(node, check.CheckID);
      else this.runner.start(node, check.CheckID, spec);
    }
  }

  /** `PUT /v1/agent/service/deregister/:id`. */
  deregisterService(serviceId: string, node = this.options.nodeName): void {
    if (this.state.service(node, serviceId) === undefined) throw unknownService(serviceId);
    const checks = this.state.checksOf(node).filter((c) => c.ServiceID === serviceId);
    this.state.transact((tx) => tx.deleteService(node, serviceId));
    for (const c of checks) this.runner.stop(node, c.CheckID);
  }

  /**
   * Sets a check's status and output. With `ttlOnly` (the `/v1/agent/check/*` endpoints),
   * the check must be a TTL check, as in Consul; its expiry timer restarts.
   */
  updateCheck(checkId: string, status: string, output: string, opts: { node?: string; ttlOnly?: boolean } = {}): void {
    if (!STATUSES.has(status)) throw bad(`Invalid check status: "${status}"`);
    const node = opts.node ?? this.findCheckNode(checkId);
    const check = node === undefined ? undefined : this.state.check(node, checkId);
    if (node === undefined || check === undefined) {
      throw new ConsulApiError(
        404,
        `Unknown check ID "${checkId}". Ensure that the check ID is passed, not the check name.`,
      );
    }
    if (opts.ttlOnly === true && !this.runner.isTtl(node, checkId)) {
      throw new ConsulApiError(500, `CheckID "${checkId}" does not have associated TTL`);
    }
    this.state.transact((tx) =>
      tx.upsertCheck({ ...withoutIndexes(check), Status: status as CheckStatus, Output: output }),
    );
    this.runner.touchTtl(node, checkId, output);
  }

  /** `PUT /v1/agent/service/maintenance/:id`: adds or removes `_service_maintenance:<id>`. */
  setServiceMaintenance(serviceId: string, enable: boolean, reason: string, node = this.options.nodeName): void {
    const service = this.state.service(node, serviceId);
    if (service === undefined) throw unknownService(serviceId);
    const checkId = SERVICE_MAINT_PREFIX + serviceId;
    this.state.transact((tx) => {
      if (!enable) tx.deleteCheck(node, checkId);
      else if (this.state.check(node, checkId) === undefined) {
        const notes =
          reason ||
          'Maintenance mode is enabled for this service, but no reason was provided. This is a default message.';
        const check = nodeCheck(node, checkId, 'Service Maintenance Mode', 'critical', '', 'maintenance');
        tx.upsertCheck({
          ...check,
          Notes: notes,
          ServiceID: serviceId,
          ServiceName: service.Service,
          ServiceTags: service.Tags,
        });
      }
    });
  }

  /** `PUT /v1/agent/maintenance`: adds or removes the node check `_node_maintenance`. */
  setNodeMaintenance(node: string, enable: boolean, reason: string): void {
    if (this.state.node(node) === undefined) throw new ConsulApiError(404, `Unknown node "${node}"`);
    this.state.transact((tx) => {
      if (!enable) tx.deleteCheck(node, NODE_MAINT_CHECK_ID);
      else if (this.state.check(node, NODE_MAINT_CHECK_ID) === undefined) {
        const notes =
          reason || 'Maintenance mode is enabled for this node, but no reason was provided. This is a default message.';
        tx.upsertCheck({
          ...nodeCheck(node, NODE_MAINT_CHECK_ID, 'Node Maintenance Mode', 'critical', '', 'maintenance'),
          Notes: notes,
        });
      }
    });
  }

  /** `PUT /v1/catalog/register`: a node, optionally a service and checks, in one write. */
  catalogRegister(body: unknown): void {
    const def = asObject(body, 'body');
    const nodeName = optString(def, 'Node') ?? '';
    if (nodeName === '') throw bad('Must provide node');
    const existing = this.state.node(nodeName);
    const skipNodeUpdate = field(def, 'SkipNodeUpdate') === true && existing !== undefined;
    const address = optString(def, 'Address') ?? '';
    if (address === '' && !skipNodeUpdate) throw bad('Must provide address if SkipNodeUpdate is not set');
    const svcBody = field(def, 'Service');
    const svc = svcBody === undefined || svcBody === null ? undefined : asObject(svcBody, 'Service');
    const svcName = svc === undefined ? undefined : (optString(svc, 'Service') ?? '');
    if (svcName === '') throw bad('Must provide service name with ID');
    const checkBodies = [field(def, 'Check'), ...((field(def, 'Checks') as unknown[] | undefined) ?? [])].filter(
      (c) => c !== undefined && c !== null,
    );
    this.state.transact((tx) => {
      if (!skipNodeUpdate) {
        tx.upsertNode({
          ID: optString(def, 'ID') || existing?.ID || nodeIdFor(nodeName),
          Node: nodeName,
          Address: address,
          Datacenter: optString(def, 'Datacenter') || this.options.datacenter,
          TaggedAddresses: stringMap(def, 'TaggedAddresses'),
          Meta: stringMap(def, 'NodeMeta'),
        });
      }
      if (svc !== undefined && svcName !== undefined) {
        const svcAddress = optString(svc, 'Address') ?? '';
        const svcPort = optInt(svc, 'Port') ?? 0;
        const weights = field(svc, 'Weights');
        const w = weights === undefined || weights === null ? undefined : asObject(weights, 'Weights');
        const tagged = serviceTaggedAddresses(field(svc, 'TaggedAddresses'), '', svcPort);
        tx.upsertService(nodeName, {
          ID: optString(svc, 'ID') || svcName,
          Service: svcName,
          Tags: stringList(svc, 'Tags'),
          Address: svcAddress,
          ...(Object.keys(tagged).length > 0 ? { TaggedAddresses: tagged } : {}),
          Meta: stringMap(svc, 'Meta'),
          Port: svcPort,
          Weights:
            w === undefined
              ? { Passing: 1, Warning: 1 }
              : { Passing: optInt(w, 'Passing') ?? 1, Warning: optInt(w, 'Warning') ?? 1 },
          EnableTagOverride: field(svc, 'EnableTagOverride') === true,
        });
      }
      for (const c of checkBodies) tx.upsertCheck(decodeCatalogCheck(this.state, nodeName, asObject(c, 'Check')));
    });
  }

  /** `PUT /v1/catalog/deregister`: a check, a service, or a whole node. */
  catalogDeregister(body: unknown): void {
    const def = asObject(body, 'body');
    const node = optString(def, 'Node') ?? '';
    if (node === '') throw bad('Must provide node');
    const serviceId = optString(def, 'ServiceID');
    const checkId = optString(def, 'CheckID');
    const affected = this.state
      .checksOf(node)
      .filter((c) => (checkId ?? c.CheckID) === c.CheckID && (serviceId === undefined || c.ServiceID === serviceId));
    this.state.transact((tx) => {
      if (serviceId !== undefined) tx.deleteService(node, serviceId);
      else if (checkId !== undefined) tx.deleteCheck(node, checkId);
      else tx.deleteNode(node);
    });
    for (const c of affected) this.runner.stop(node, c.CheckID);
  }

  /**
   * Instances of `service` as DNS serves them: aggregated status passing (or warning when
   * `includeWarning`), maintenance excluded (its check is critical), optional tag (case
   * insensitive). `undefined` when no instance of the service exists at all.
   */
  healthyInstances(
    service: string,
    opts: { tag?: string; includeWarning?: boolean } = {},
  ): HealthyInstance[] | undefined {
    if (!this.state.hasService(service)) return undefined;
    const tag = opts.tag?.toLowerCase();
    const out: HealthyInstance[] = [];
    for (const entry of this.state.healthEntries(service)) {
      if (tag !== undefined && !entry.Service.Tags.some((t) => t.toLowerCase() === tag)) continue;
      const status = ConsulState.aggregateStatus(entry.Checks);
      if (status === 'critical' || (status === 'warning' && opts.includeWarning !== true)) continue;
      out.push({
        node: entry.Node.Node,
        // Consul's DNS translation (`TranslateAddress` / `TranslateServiceAddress`, local
        // datacenter): the `lan_ipv6`, then `lan_ipv4` tagged address, then the plain address.
        nodeAddress:
          entry.Node.TaggedAddresses['lan_ipv6'] || entry.Node.TaggedAddresses['lan_ipv4'] || entry.Node.Address,
        serviceAddress:
          entry.Service.TaggedAddresses?.['lan_ipv6']?.Address ||
          entry.Service.TaggedAddresses?.['lan_ipv4']?.Address ||
          entry.Service.Address,
        port: entry.Service.Port,
        weight: status === 'warning' ? entry.Service.Weights.Warning : entry.Service.Weights.Passing,
        datacenter: entry.Node.Datacenter,
      });
    }
    return out;
  }

  /** The node holding `checkId`: the agent's own node first, then any node (sorted). */
  private findCheckNode(checkId: string): string | undefined {
    if (this.state.check(this.options.nodeName, checkId) !== undefined) return this.options.nodeName;
    return this.state.allNodes().find((n) => this.state.check(n.Node, checkId) !== undefined)?.Node;
  }
}

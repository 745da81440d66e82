/**
 * The catalog and health state of the Consul dev server: nodes, service instances, checks,
 * and the raft-like indexes that drive blocking queries. Pure data, no I/O, no timers.
 *
 * Index model (Consul's state store, simplified):
 * - every write that changes something gets the next raft index (`index`), once per
 *   transaction; a write that changes nothing (an identical re-registration, a TTL pass
 *   with the same output) does not consume an index, as in Consul;
 * - each service name has its own index: the last write that touched one of its
 *   instances, one of their checks, or one of their nodes (node checks included);
 * - a service with no instance reports the "last extinction" index (the last write that
 *   removed the last instance of any service), or, before any extinction, the max of the
 *   nodes and services tables; an index is never below 1.
 *
 * Records are frozen and replaced on every change, never mutated, so a caller may hold
 * and serialize them without copying.
 */
import type { CheckStatus, HealthCheck, HealthNode, HealthService, HealthServiceEntry } from './consul-api-types.js';

/** A node as written by a transaction (indexes are assigned by the state). */
export type NodeInput = Omit<HealthNode, 'CreateIndex' | 'ModifyIndex'>;
/** A service instance as written by a transaction. */
export type ServiceInput = Omit<HealthService, 'CreateIndex' | 'ModifyIndex'>;
/** A check as written by a transaction. */
export type CheckInput = Omit<HealthCheck, 'CreateIndex' | 'ModifyIndex'>;

/** The write operations available inside {@link ConsulState.transact}. */
export interface StateTx {
  /** The index this transaction will carry if it changes anything. */
  readonly index: number;
  upsertNode(node: NodeInput): void;
  /** Removes a node with all its services and checks. */
  deleteNode(name: string): void;
  upsertService(node: string, service: ServiceInput): void;
  /** Removes a service instance and its checks. */
  deleteService(node: string, serviceId: string): void;
  upsertCheck(check: CheckInput): void;
  deleteCheck(node: string, checkId: string): void;
}

/** Everything stored about one node. */
interface NodeEntry {
  node: HealthNode;
  /** Service instances on this node, by service ID. */
  services: Map<string, HealthService>;
  /** Checks on this node (node-level and service-level), by check ID. */
  checks: Map<string, HealthCheck>;
}

/** The separator of instance keys (`node\0serviceId`); cannot occur in names sent over HTTP paths. */
const SEP = '\u0000';

/** Sorts a string map by key, as Go's JSON encoder does, and freezes it. */
export function sortedMap<T>(map: Readonly<Record<string, T>> | undefined): Record<string, T> {
  const out: Record<string, T> = {};
  for (const key of Object.keys(map ?? {}).sort()) out[key] = (map as Record<string, T>)[key] as T;
  return Object.freeze(out);
}

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A record without its indexes (what a transaction writes). */
export function withoutIndexes<T extends { CreateIndex: number; ModifyIndex: number }>(
  record: T,
): Omit<T, 'CreateIndex' | 'ModifyIndex'> {
  const copy: Partial<T> = { ...record };
  delete copy.CreateIndex;
  delete copy.ModifyIndex;
  return copy as Omit<T, 'CreateIndex' | 'ModifyIndex'>;
}

function sameContent<T extends { CreateIndex: number; ModifyIndex: number }>(
  a: T,
  b: Omit<T, 'CreateIndex' | 'ModifyIndex'>,
): boolean {
  return JSON.stringify(withoutIndexes(a)) === JSON.stringify(b);
}

/** The catalog/health state model. See the file comment for the index rules. */
export class ConsulState {
  /** Current raft index; >= 1 once the state exists, only moves forward except through `resetIndex`. */
  private raft = 0;
  /** All nodes by name. */
  private readonly nodes = new Map<string, NodeEntry>();
  /** Instance keys (`node\0id`) by service name; a name is present iff it has >= 1 instance. */
  private readonly byName = new Map<string, Set<string>>();
  /** Per-service-name index; present iff the name has >= 1 instance. */
  private readonly serviceIndexes = new Map<string, number>();
  /** Last write that changed the nodes table. */
  private nodesIndex = 0;
  /** Last write that changed the services table (any instance added, changed or removed). */
  private servicesIndex = 0;
  /** Last write that removed the last instance of a service name; 0 before any such write. */
  private extinctionIndex = 0;
  /** Called synchronously after every write (and index bump or reset). */
  private readonly listeners = new Set<() => void>();

  /** The current raft index (never below 1 once something was written). */
  get index(): number {
    return Math.max(1, this.raft);
  }

  /** Registers a change listener; returns its remover. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Runs `fn` as one write. If it changed anything, the raft index moves by one, the
   * touched indexes take that value and listeners are notified. Returns true if it wrote.
   */
  transact(fn: (tx: StateTx) => void): boolean {
    const idx = this.raft + 1;
    const touched = new Set<string>();
    let changed = false;
    let servicesChanged = false;
    let nodesChanged = false;
    const touchNode = (entry: NodeEntry): void => {
      for (const svc of entry.services.values()) touched.add(svc.Service);
    };
    const tx: StateTx = {
      index: idx,
      upsertNode: (input) => {
        const existing = this.nodes.get(input.Node);
        if (existing !== undefined && sameContent(existing.node, input)) return;
        const node = Object.freeze({ ...input, CreateIndex: existing?.node.CreateIndex ?? idx, ModifyIndex: idx });
        if (existing === undefined) this.nodes.set(input.Node, { node, services: new Map(), checks: new Map() });
        else {
          existing.node = node;
          touchNode(existing);
        }
        changed = nodesChanged = true;
      },
      deleteNode: (name) => {
        const entry = this.nodes.get(name);
        if (entry === undefined) return;
        for (const id of [...entry.services.keys()]) tx.deleteService(name, id);
        this.nodes.delete(name);
        changed = nodesChanged = true;
      },
      upsertService: (nodeName, input) => {
        const entry = this.requireNode(nodeName);
        const existing = entry.services.get(input.ID);
        if (existing !== undefined && sameContent(existing, input)) return;
        if (existing !== undefined && existing.Service !== input.Service)
          this.unindex(existing.Service, nodeName, input.ID, touched);
        entry.services.set(
          input.ID,
          Object.freeze({ ...input, CreateIndex: existing?.CreateIndex ?? idx, ModifyIndex: idx }),
        );
        let keys = this.byName.get(input.Service);
        if (keys === undefined) this.byName.set(input.Service, (keys = new Set()));
        keys.add(nodeName + SEP + input.ID);
        touched.add(input.Service);
        changed = servicesChanged = true;
      },
      deleteService: (nodeName, serviceId) => {
        const entry = this.nodes.get(nodeName);
        const existing = entry?.services.get(serviceId);
        if (entry === undefined || existing === undefined) return;
        entry.services.delete(serviceId);
        for (const [checkId, check] of entry.checks) if (check.ServiceID === serviceId) entry.checks.delete(checkId);
        this.unindex(existing.Service, nodeName, serviceId, touched);
        changed = servicesChanged = true;
      },
      upsertCheck: (input) => {
        const entry = this.requireNode(input.Node);
        const existing = entry.checks.get(input.CheckID);
        if (existing !== undefined && sameContent(existing, input)) return;
        entry.checks.set(
          input.CheckID,
          Object.freeze({ ...input, CreateIndex: existing?.CreateIndex ?? idx, ModifyIndex: idx }),
        );
        this.touchCheck(entry, input, touched);
        changed = true;
      },
      deleteCheck: (nodeName, checkId) => {
        const entry = this.nodes.get(nodeName);
        const existing = entry?.checks.get(checkId);
        if (entry === undefined || existing === undefined) return;
        entry.checks.delete(checkId);
        this.touchCheck(entry, existing, touched);
        changed = true;
      },
    };
    try {
      fn(tx);
    } finally {
      // A throwing transaction still commits what it already changed, so that no record
      // ever carries an index above the raft index.
      if (changed) this.commit(idx, touched, nodesChanged, servicesChanged);
    }
    return changed;
  }

  private commit(idx: number, touched: Set<string>, nodesChanged: boolean, servicesChanged: boolean): void {
    this.raft = idx;
    if (nodesChanged) this.nodesIndex = idx;
    if (servicesChanged) this.servicesIndex = idx;
    for (const name of touched) {
      if (this.byName.has(name)) this.serviceIndexes.set(name, idx);
      else if (this.serviceIndexes.delete(name)) this.extinctionIndex = idx;
    }
    this.notify();
  }

  /**
   * A write that changes no content (consul#4810): the raft index moves and the index of
   * `service` (or of every service, and the tables, when omitted) takes the new value.
   */
  bumpIndex(service?: string): void {
    const idx = ++this.raft;
    if (service === undefined) {
      for (const name of this.serviceIndexes.keys()) this.serviceIndexes.set(name, idx);
      this.nodesIndex = this.servicesIndex = idx;
      if (this.extinctionIndex > 0) this.extinctionIndex = idx;
    } else if (this.serviceIndexes.has(service)) this.serviceIndexes.set(service, idx);
    else this.extinctionIndex = idx; // the index every absent service reports
    this.notify();
  }

  /**
   * Simulates a snapshot restore or a new cluster: every index (raft, tables, services,
   * Create/ModifyIndex of every record) drops to `to`. The content is kept.
   */
  resetIndex(to = 1): void {
    const idx = Math.max(1, Math.floor(to));
    this.raft = idx;
    this.nodesIndex = this.servicesIndex = idx;
    if (this.extinctionIndex > 0) this.extinctionIndex = idx;
    for (const name of this.serviceIndexes.keys()) this.serviceIndexes.set(name, idx);
    const reindex = <T extends object>(r: T): T => Object.freeze({ ...r, CreateIndex: idx, ModifyIndex: idx });
    for (const entry of this.nodes.values()) {
      entry.node = reindex(entry.node);
      for (const [id, svc] of entry.services) entry.services.set(id, reindex(svc));
      for (const [id, check] of entry.checks) entry.checks.set(id, reindex(check));
    }
    this.notify();
  }

  /** The index of `/v1/health/service/:name` and `/v1/catalog/service/:name`. */
  serviceIndex(name: string): number {
    const own = this.serviceIndexes.get(name);
    if (own !== undefined) return Math.max(1, own);
    if (this.extinctionIndex > 0) return this.extinctionIndex;
    return Math.max(1, this.nodesIndex, this.servicesIndex);
  }

  /** The index of `/v1/catalog/services`. */
  servicesTableIndex(): number {
    return Math.max(1, this.servicesIndex);
  }

  /** The index of `/v1/catalog/nodes`. */
  nodesTableIndex(): number {
    return Math.max(1, this.nodesIndex);
  }

  /** A node record, if known. */
  node(name: string): HealthNode | undefined {
    return this.nodes.get(name)?.node;
  }

  /** All nodes, sorted by name. */
  allNodes(): HealthNode[] {
    return [...this.nodes.values()].map((e) => e.node).sort((a, b) => byteOrder(a.Node, b.Node));
  }

  /** A service instance, if known. */
  service(node: string, serviceId: string): HealthService | undefined {
    return this.nodes.get(node)?.services.get(serviceId);
  }

  /** The service instances of a node, sorted by ID. */
  servicesOf(node: string): HealthService[] {
    const entry = this.nodes.get(node);
    return entry === undefined ? [] : [...entry.services.values()].sort((a, b) => byteOrder(a.ID, b.ID));
  }

  /** A check, if known. */
  check(node: string, checkId: string): HealthCheck | undefined {
    return this.nodes.get(node)?.checks.get(checkId);
  }

  /** The checks of a node (node-level and service-level), sorted by check ID. */
  checksOf(node: string): HealthCheck[] {
    const entry = this.nodes.get(node);
    return entry === undefined ? [] : [...entry.checks.values()].sort((a, b) => byteOrder(a.CheckID, b.CheckID));
  }

  /** True if at least one instance of `name` exists. */
  hasService(name: string): boolean {
    return this.byName.has(name);
  }

  /** The names of every service with at least one instance, sorted. */
  serviceNames(): string[] {
    return [...this.byName.keys()].sort(byteOrder);
  }

  /** Every datacenter a node lives in. */
  datacenters(): Set<string> {
    return new Set([...this.nodes.values()].map((e) => e.node.Datacenter));
  }

  /**
   * The health entries of every instance of `name`, sorted by node then service ID; each
   * with the node's own checks first, then the instance's checks (each group by check ID).
   */
  healthEntries(name: string): HealthServiceEntry[] {
    const keys = this.byName.get(name);
    if (keys === undefined) return [];
    const entries: HealthServiceEntry[] = [];
    for (const key of keys) {
      const [nodeName = '', serviceId = ''] = key.split(SEP);
      const entry = this.nodes.get(nodeName);
      const service = entry?.services.get(serviceId);
      if (entry === undefined || service === undefined) continue;
      const nodeChecks: HealthCheck[] = [];
      const serviceChecks: HealthCheck[] = [];
      for (const check of entry.checks.values()) {
        if (check.ServiceID === '') nodeChecks.push(check);
        else if (check.ServiceID === serviceId) serviceChecks.push(check);
      }
      const byId = (a: HealthCheck, b: HealthCheck): number => byteOrder(a.CheckID, b.CheckID);
      entries.push({
        Node: entry.node,
        Service: service,
        Checks: [...nodeChecks.sort(byId), ...serviceChecks.sort(byId)],
      });
    }
    return entries.sort((a, b) => byteOrder(a.Node.Node, b.Node.Node) || byteOrder(a.Service.ID, b.Service.ID));
  }

  /** Aggregated status of an entry's checks: the worst one wins; no check at all is `passing`. */
  static aggregateStatus(checks: readonly HealthCheck[]): CheckStatus {
    let status: CheckStatus = 'passing';
    for (const check of checks) {
      if (check.Status === 'critical') return 'critical';
      if (check.Status === 'warning') status = 'warning';
    }
    return status;
  }

  private requireNode(name: string): NodeEntry {
    const entry = this.nodes.get(name);
    if (entry === undefined) throw new Error(`Unknown node "${name}"`);
    return entry;
  }

  /** Removes an instance key from the name index and marks the name touched. */
  private unindex(name: string, node: string, serviceId: string, touched: Set<string>): void {
    const keys = this.byName.get(name);
    keys?.delete(node + SEP + serviceId);
    if (keys?.size === 0) this.byName.delete(name);
    touched.add(name);
  }

  /** A service check touches its service; a node check touches every service of its node. */
  private touchCheck(entry: NodeEntry, check: Pick<HealthCheck, 'ServiceID'>, touched: Set<string>): void {
    if (check.ServiceID === '') {
      for (const svc of entry.services.values()) touched.add(svc.Service);
    } else {
      const svc = entry.services.get(check.ServiceID);
      if (svc !== undefined) touched.add(svc.Service);
    }
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }
}

/**
 * The dev server's ACL system: the part of Consul's that the resolver meets.
 *
 * - Tokens (secret + accessor) linked to policies; policies hold rules in Consul's HCL syntax,
 *   of which the dev server reads `service`, `service_prefix`, `node`, `node_prefix` (others are
 *   accepted and ignored). An exact rule beats a prefix rule, a longer prefix a shorter one; for
 *   the same resource `deny` beats `write`, `write` beats (and implies) `read`; no rule = deny
 *   (the dev server always runs with `default_policy = "deny"`).
 * - A request without a token is the anonymous token (accessor
 *   `00000000-0000-0000-0000-000000000002`, no policies unless given some), as in Consul; an
 *   unknown (or deleted) token is `403 ACL not found`.
 * - Reads of services are filtered per instance: an entry stays when the token has `node:read`
 *   on its node and `service:read` on its service; the answer says whether anything was removed
 *   (Consul's `X-Consul-Results-Filtered-By-ACLs`). Every other endpoint needs the management
 *   token (a simplification: Consul checks `agent:`, `operator:`, `acl:` rules there).
 */
import { randomUUID } from 'node:crypto';
import { ConsulApiError } from './consul-dev-decode.js';

/** Accessor ID of Consul's built-in anonymous token. */
export const ANONYMOUS_ACCESSOR = '00000000-0000-0000-0000-000000000002';

type Level = 'deny' | 'read' | 'write';
const RANK: Record<Level, number> = { read: 1, write: 2, deny: 3 };

interface Rule {
  readonly resource: 'service' | 'node';
  readonly prefix: boolean;
  readonly name: string;
  readonly level: Level;
}

/** What a token may see; `management` sees everything. */
export interface AclAuthorizer {
  readonly management: boolean;
  /** node:read on `node` and service:read on `service`. */
  canRead(node: string, service: string): boolean;
  serviceRead(service: string): boolean;
  nodeRead(node: string): boolean;
}

interface Policy {
  readonly ID: string;
  readonly Name: string;
  readonly Description: string;
  readonly Rules: string;
  readonly rules: readonly Rule[];
}

interface Token {
  readonly AccessorID: string;
  readonly SecretID: string;
  readonly Description: string;
  readonly policyIds: readonly string[];
  readonly management: boolean;
}

/**
 * Parses the rule blocks the dev server understands: `service "web" { policy = "read" }`,
 * `node_prefix "" { policy = "write" }`. Other blocks (`agent_prefix`, `key_prefix`, ...) and
 * top-level assignments (`operator = "read"`) are skipped; anything unparseable is a 400.
 */
export function parseAclRules(text: string): Rule[] {
  const rules: Rule[] = [];
  const source = text.replace(/#[^\n]*/g, '').replace(/\/\/[^\n]*/g, '');
  const block = /\s*([a-z_]+)\s*(?:"([^"]*)"\s*)?(?:\{([^}]*)\}|=\s*"([a-z]+)")\s*/gy;
  let at = 0;
  while (at < source.length) {
    if (/^\s*$/.test(source.slice(at))) break;
    block.lastIndex = at;
    const m = block.exec(source);
    if (m === null) throw new ConsulApiError(400, `Failed to parse ACL rules: unexpected input at offset ${at}`);
    at = block.lastIndex;
    const [, kind = '', name, body] = m;
    if (body === undefined || name === undefined) continue; // `operator = "read"` and the like
    const policy = /policy\s*=\s*"([a-z]+)"/.exec(body)?.[1];
    if (policy !== 'read' && policy !== 'write' && policy !== 'deny' && policy !== 'list') {
      throw new ConsulApiError(400, `Failed to parse ACL rules: invalid policy "${String(policy)}" for ${kind}`);
    }
    const resource = kind.replace(/_prefix$/, '');
    if (resource !== 'service' && resource !== 'node') continue;
    rules.push({ resource, prefix: kind.endsWith('_prefix'), name, level: policy === 'list' ? 'read' : policy });
  }
  return rules;
}

/** The level `rules` grant on a resource: exact beats prefix, longest prefix wins, deny beats write beats read. */
function levelOf(rules: readonly Rule[], resource: 'service' | 'node', name: string): Level {
  let best: { specificity: number; level: Level } | undefined;
  for (const r of rules) {
    if (r.resource !== resource) continue;
    const specificity = r.prefix ? (name.startsWith(r.name) ? r.name.length : -1) : r.name === name ? Infinity : -1;
    if (specificity < 0) continue;
    if (
      best === undefined ||
      specificity > best.specificity ||
      (specificity === best.specificity && RANK[r.level] > RANK[best.level])
    ) {
      best = { specificity, level: r.level };
    }
  }
  return best?.level ?? 'deny';
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** Tokens and policies of one dev server, with ACLs on and default deny. */
export class DevAcl {
  /** Policies by ID. */
  private readonly policies = new Map<string, Policy>();
  /** Tokens by secret. */
  private readonly tokens = new Map<string, Token>();

  /**
   * @param managementToken the secret of the initial management token
   * @param filteredTokens secrets of tokens with `service_prefix "" { policy = "read" }` and no node
   *   rights (the shorthand of the `aclFilteredTokens` option)
   */
  constructor(managementToken: string, filteredTokens: readonly string[]) {
    this.tokens.set(managementToken, {
      AccessorID: randomUUID(),
      SecretID: managementToken,
      Description: 'Initial Management Token',
      policyIds: [],
      management: true,
    });
    this.tokens.set('', {
      AccessorID: ANONYMOUS_ACCESSOR,
      SecretID: 'anonymous',
      Description: 'Anonymous Token',
      policyIds: [],
      management: false,
    });
    if (filteredTokens.length > 0) {
      const id = this.createPolicy({ Name: 'dev-service-read-only', Rules: 'service_prefix "" { policy = "read" }' });
      for (const secret of filteredTokens) {
        this.tokens.set(secret, {
          AccessorID: randomUUID(),
          SecretID: secret,
          Description: 'service:read without node:read',
          policyIds: [id],
          management: false,
        });
      }
    }
  }

  /** The authorizer of a request's token (`undefined` = none sent = anonymous), or undefined when unknown. */
  resolve(secret: string | undefined): AclAuthorizer | undefined {
    const token = this.tokens.get(secret === undefined || secret === 'anonymous' ? '' : secret);
    if (token === undefined) return undefined;
    if (token.management) {
      return { management: true, canRead: () => true, serviceRead: () => true, nodeRead: () => true };
    }
    const rules = token.policyIds.flatMap((id) => this.policies.get(id)?.rules ?? []);
    const serviceRead = (s: string): boolean => levelOf(rules, 'service', s) !== 'deny';
    const nodeRead = (n: string): boolean => levelOf(rules, 'node', n) !== 'deny';
    return { management: false, canRead: (n, s) => nodeRead(n) && serviceRead(s), serviceRead, nodeRead };
  }

  /** `PUT /v1/acl/policy`: returns the new policy's ID. */
  createPolicy(body: unknown): string {
    if (!isObject(body) || typeof body['Name'] !== 'string' || body['Name'] === '') {
      throw new ConsulApiError(400, 'Invalid Policy: no Name is set');
    }
    const name = body['Name'];
    if ([...this.policies.values()].some((p) => p.Name === name)) {
      throw new ConsulApiError(400, `Invalid Policy: A Policy with Name "${name}" already exists`);
    }
    const text = typeof body['Rules'] === 'string' ? body['Rules'] : '';
    const policy: Policy = {
      ID: randomUUID(),
      Name: name,
      Description: typeof body['Description'] === 'string' ? body['Description'] : '',
      Rules: text,
      rules: parseAclRules(text),
    };
    this.policies.set(policy.ID, policy);
    return policy.ID;
  }

  policyJson(id: string): unknown {
    const p = this.policies.get(id);
    if (p === undefined) throw new ConsulApiError(404, 'ACL policy not found');
    return { ID: p.ID, Name: p.Name, Description: p.Description, Rules: p.Rules, Datacenters: null };
  }

  /** `PUT /v1/acl/token` (create) or `PUT /v1/acl/token/:accessor` (update its policies). */
  upsertToken(body: unknown, accessor?: string): unknown {
    if (!isObject(body)) throw new ConsulApiError(400, 'Request decode failed: not an object');
    const links = Array.isArray(body['Policies']) ? (body['Policies'] as unknown[]) : [];
    const policyIds = links.map((link) => {
      const l = isObject(link) ? link : {};
      const found = [...this.policies.values()].find((p) => p.ID === l['ID'] || p.Name === l['Name']);
      if (found === undefined) throw new ConsulApiError(400, `No such ACL policy with name "${String(l['Name'])}"`);
      return found.ID;
    });
    const description = typeof body['Description'] === 'string' ? body['Description'] : '';
    let token: Token;
    if (accessor === undefined) {
      const secret = typeof body['SecretID'] === 'string' && body['SecretID'] !== '' ? body['SecretID'] : randomUUID();
      token = { AccessorID: randomUUID(), SecretID: secret, Description: description, policyIds, management: false };
      this.tokens.set(secret, token);
    } else {
      const [key, old] = this.byAccessor(accessor);
      token = { ...old, Description: description || old.Description, policyIds };
      this.tokens.set(key, token);
    }
    return this.tokenJson(token);
  }

  readToken(accessor: string): unknown {
    return this.tokenJson(this.byAccessor(accessor)[1]);
  }

  /** The token of a secret (for `GET /v1/acl/token/self`); 403 when unknown. */
  self(secret: string | undefined): unknown {
    const token = this.tokens.get(secret ?? '');
    if (token === undefined) throw new ConsulApiError(403, 'ACL not found');
    return this.tokenJson(token);
  }

  /** `DELETE /v1/acl/token/:accessor`: the secret is unknown from now on (`403 ACL not found`). */
  deleteToken(accessor: string): void {
    if (accessor === ANONYMOUS_ACCESSOR)
      throw new ConsulApiError(403, 'Permission denied: cannot delete the anonymous token');
    const [key] = this.byAccessor(accessor);
    this.tokens.delete(key);
  }

  private byAccessor(accessor: string): [string, Token] {
    for (const entry of this.tokens) if (entry[1].AccessorID === accessor) return entry;
    throw new ConsulApiError(403, 'ACL not found');
  }

  private tokenJson(t: Token): unknown {
    return {
      AccessorID: t.AccessorID,
      SecretID: t.SecretID,
      Description: t.Description,
      Policies: t.management
        ? [{ ID: '00000000-0000-0000-0000-000000000001', Name: 'global-management' }]
        : t.policyIds.map((id) => ({ ID: id, Name: this.policies.get(id)?.Name ?? '' })),
      Local: false,
    };
  }
}

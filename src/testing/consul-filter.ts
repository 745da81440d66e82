/**
 * A parser and evaluator for the subset of Consul's filter language (go-bexpr) that the
 * `?filter=` parameter of `/v1/health/service/:service` needs.
 *
 * Grammar (go-bexpr's, minus inline-value selectors and ordering operators):
 *   Or    := And ("or" Or)?           And := Not ("and" And)?
 *   Not   := "not" Not | "(" Or ")" | Match
 *   Match := Selector ("==" | "!=" | "contains" | "not contains" | "matches" | "not matches") Value
 *          | Selector "is" ["not"] "empty"
 *          | Value ["not"] "in" Selector
 *   Selector := Ident ("." Ident | "." Digits | "[" String "]")*  |  String holding a JSON pointer ("/Service/Meta/x")
 *   Value    := String ("..." or `...`) | Number | Selector (its text is the value, e.g. `== passing`)
 *
 * Selectors are checked against the shape of a health entry when the expression is
 * compiled (an unknown field is an error, as in Consul), and values are coerced to the
 * selected field's type (`Service.Port == "x"` is an error). A selector that crosses a list
 * of structures (`Checks.Status`) matches if ANY element matches, the operator (negated or
 * not) being applied to each element, as go-bexpr does. A missing map key (`Service.Meta.x`)
 * is neither equal to nor containing anything, and is empty.
 */
import type { HealthServiceEntry } from './consul-api-types.js';
import { FilterExpressionError, tokenize } from './consul-filter-lexer.js';
import type { Token } from './consul-filter-lexer.js';

export { FilterExpressionError };

/** A compiled filter: true if the entry matches. */
export type FilterPredicate = (entry: HealthServiceEntry) => boolean;

type FieldType =
  | { readonly kind: 'string' | 'int' | 'bool' }
  | { readonly kind: 'list' | 'map'; readonly of: FieldType }
  | { readonly kind: 'struct'; readonly fields: Readonly<Record<string, FieldType>> };

const STR: FieldType = { kind: 'string' };
const INT: FieldType = { kind: 'int' };
const BOOL: FieldType = { kind: 'bool' };
const STR_LIST: FieldType = { kind: 'list', of: STR };
const STR_MAP: FieldType = { kind: 'map', of: STR };
const struct = (fields: Record<string, FieldType>): FieldType => ({ kind: 'struct', fields });

/** The filterable shape of a `/v1/health/service` entry (Consul's `CheckServiceNode`). */
const HEALTH_ENTRY: FieldType = struct({
  Node: struct({ ID: STR, Node: STR, Address: STR, Datacenter: STR, TaggedAddresses: STR_MAP, Meta: STR_MAP }),
  Service: struct({
    Kind: STR,
    ID: STR,
    Service: STR,
    Tags: STR_LIST,
    Address: STR,
    TaggedAddresses: { kind: 'map', of: struct({ Address: STR, Port: INT }) },
    Meta: STR_MAP,
    Port: INT,
    Weights: struct({ Passing: INT, Warning: INT }),
    EnableTagOverride: BOOL,
  }),
  Checks: {
    kind: 'list',
    of: struct({
      Node: STR,
      CheckID: STR,
      Name: STR,
      Status: STR,
      Notes: STR,
      Output: STR,
      ServiceID: STR,
      ServiceName: STR,
      ServiceTags: STR_LIST,
      Type: STR,
    }),
  },
});

type Operator =
  '==' | '!=' | 'contains' | 'not contains' | 'in' | 'not in' | 'is empty' | 'is not empty' | 'matches' | 'not matches';

type Node =
  | { readonly op: 'and' | 'or'; readonly left: Node; readonly right: Node }
  | { readonly op: 'not'; readonly operand: Node }
  | { readonly op: 'match'; readonly test: (entry: unknown) => boolean };

const KEYWORDS = new Set(['and', 'or', 'not', 'in', 'contains', 'is', 'empty', 'matches']);

/** A selector path resolved against the schema: where to fan out over lists, and the leaf type. */
interface ResolvedSelector {
  readonly steps: readonly { readonly key: string; readonly fanOut: boolean }[];
  readonly leaf: FieldType;
}

function resolveSelector(path: readonly string[], pos: number): ResolvedSelector {
  let type = HEALTH_ENTRY;
  const steps: { key: string; fanOut: boolean }[] = [];
  for (const key of path) {
    let fanOut = false;
    if (type.kind === 'list' && type.of.kind === 'struct') {
      type = type.of;
      fanOut = true;
    }
    let next: FieldType | undefined;
    if (type.kind === 'struct') next = type.fields[key];
    else if (type.kind === 'map') next = type.of;
    if (next === undefined) throw new FilterExpressionError(`Selector "${path.join('.')}" is not valid`, pos);
    steps.push({ key, fanOut });
    type = next;
  }
  return { steps, leaf: type };
}

const MISSING = Symbol('missing');

function collect(entry: unknown, steps: ResolvedSelector['steps']): unknown[] {
  let values: unknown[] = [entry];
  for (const { key, fanOut } of steps) {
    const next: unknown[] = [];
    for (const value of values) {
      const items = fanOut ? (Array.isArray(value) ? (value as unknown[]) : []) : [value];
      for (const item of items) {
        const has = typeof item === 'object' && item !== null && Object.hasOwn(item, key);
        const child = has ? (item as Record<string, unknown>)[key] : undefined;
        next.push(child === undefined || child === null ? MISSING : child);
      }
    }
    values = next;
  }
  return values;
}

const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const GO_FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

function coerce(raw: string, type: FieldType, pos: number): string | number | boolean {
  if (type.kind === 'int') {
    if (!/^[-+]?\d+$/.test(raw)) throw new FilterExpressionError(`Failed to coerce value "${raw}" to int`, pos);
    return Number(raw);
  }
  if (type.kind === 'bool') {
    if (GO_TRUE.has(raw)) return true;
    if (GO_FALSE.has(raw)) return false;
    throw new FilterExpressionError(`Failed to coerce value "${raw}" to bool`, pos);
  }
  return raw;
}

/** Builds the per-leaf test of a match expression, validating the operator against the leaf type. */
function leafTest(op: Operator, sel: ResolvedSelector, raw: string | undefined, pos: number): (v: unknown) => boolean {
  const { leaf } = sel;
  const bad = (): never => {
    throw new FilterExpressionError(`Operator "${op}" is not supported on this selector`, pos);
  };
  const base = op.replace(/^not /, '').replace(/^is not/, 'is');
  const value = raw ?? '';
  switch (base) {
    case '==':
    case '!=': {
      if (leaf.kind !== 'string' && leaf.kind !== 'int' && leaf.kind !== 'bool') return bad();
      const want = coerce(value, leaf, pos);
      return (v) => v !== MISSING && v === want;
    }
    case 'in':
    case 'contains': {
      if (leaf.kind === 'string') return (v) => typeof v === 'string' && v.includes(value);
      if (leaf.kind === 'map') return (v) => typeof v === 'object' && v !== null && Object.hasOwn(v, value);
      if (leaf.kind === 'list' && leaf.of.kind !== 'struct' && leaf.of.kind !== 'list' && leaf.of.kind !== 'map') {
        const want = coerce(value, leaf.of, pos);
        return (v) => Array.isArray(v) && v.includes(want);
      }
      return bad();
    }
    case 'is empty': {
      if (leaf.kind === 'int' || leaf.kind === 'bool' || leaf.kind === 'struct') return bad();
      return (v) =>
        v === MISSING ||
        (typeof v === 'string' && v === '') ||
        (Array.isArray(v) && v.length === 0) ||
        (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);
    }
    case 'matches': {
      if (leaf.kind !== 'string') return bad();
      let re: RegExp;
      try {
        re = new RegExp(value);
      } catch {
        throw new FilterExpressionError(`Failed to compile regular expression "${value}"`, pos);
      }
      return (v) => typeof v === 'string' && re.test(v);
    }
    default:
      return bad();
  }
}

function matchNode(op: Operator, path: readonly string[], raw: string | undefined, pos: number): Node {
  const sel = resolveSelector(path, pos);
  const test = leafTest(op, sel, raw, pos);
  const negated = op === '!=' || op.startsWith('not ') || op === 'is not empty';
  return {
    op: 'match',
    test: (entry) => collect(entry, sel.steps).some((v) => test(v) !== negated),
  };
}

class Parser {
  /** Position in `tokens`; always points at an unconsumed token (the last one is `eof`). */
  private at = 0;
  constructor(private readonly tokens: readonly Token[]) {}

  parse(): Node {
    const node = this.parseOr();
    const rest = this.peek();
    if (rest.t !== 'eof') this.fail(rest.t === 'rparen' ? 'Unmatched parentheses' : `Unexpected "${rest.text}"`, rest);
    return node;
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.at + offset, this.tokens.length - 1)] as Token;
  }
  private next(): Token {
    const tok = this.peek();
    if (this.at < this.tokens.length - 1) this.at++;
    return tok;
  }
  private isWord(tok: Token, word: string): boolean {
    return tok.t === 'selector' && tok.text === word;
  }
  private fail(msg: string, tok: Token): never {
    throw new FilterExpressionError(`${msg} at offset ${tok.pos}`, tok.pos);
  }

  private parseOr(): Node {
    const left = this.parseAnd();
    if (!this.isWord(this.peek(), 'or')) return left;
    this.next();
    return { op: 'or', left, right: this.parseOr() };
  }
  private parseAnd(): Node {
    const left = this.parseNot();
    if (!this.isWord(this.peek(), 'and')) return left;
    this.next();
    return { op: 'and', left, right: this.parseAnd() };
  }
  private parseNot(): Node {
    const tok = this.peek();
    if (this.isWord(tok, 'not')) {
      this.next();
      return { op: 'not', operand: this.parseNot() };
    }
    if (tok.t === 'lparen') {
      this.next();
      const inner = this.parseOr();
      if (this.peek().t !== 'rparen') this.fail('Unmatched parentheses', tok);
      this.next();
      return inner;
    }
    return this.parseMatch();
  }

  /** Reads the operator after a selector; returns undefined if none follows. */
  private operatorAfterSelector(): Operator | undefined {
    const tok = this.peek();
    if (tok.t === 'eq' || tok.t === 'ne') return (this.next(), tok.text as Operator);
    if (this.isWord(tok, 'contains') || this.isWord(tok, 'matches') || this.isWord(tok, 'in'))
      return (this.next(), tok.text as Operator);
    if (this.isWord(tok, 'is')) {
      this.next();
      const negate = this.isWord(this.peek(), 'not');
      if (negate) this.next();
      if (!this.isWord(this.peek(), 'empty')) this.fail('Expected "empty"', this.peek());
      this.next();
      return negate ? 'is not empty' : 'is empty';
    }
    if (this.isWord(tok, 'not')) {
      const second = this.peek(1);
      if (this.isWord(second, 'contains') || this.isWord(second, 'matches') || this.isWord(second, 'in')) {
        this.next();
        this.next();
        return `not ${second.text}` as Operator;
      }
    }
    return undefined;
  }

  private parseMatch(): Node {
    const first = this.next();
    if (first.t === 'eof') this.fail('Unexpected end of expression', first);
    if (first.t !== 'selector' && first.t !== 'string' && first.t !== 'number')
      this.fail(`Unexpected "${first.text}"`, first);
    if (first.t === 'selector' && KEYWORDS.has(first.text)) this.fail(`Unexpected keyword "${first.text}"`, first);
    // A string holding a JSON pointer may stand for a selector ("/Service/Meta/version" == "2").
    const pointer = first.t === 'string' && first.text.startsWith('/') ? first.text.slice(1).split('/') : undefined;
    const op = first.t === 'selector' || pointer !== undefined ? this.operatorAfterSelector() : this.valueOperator();
    if (op === undefined) return this.fail('Expected a match operator', this.peek());
    if (op === 'in' || op === 'not in') {
      const sel = this.next();
      if (sel.t !== 'selector' || KEYWORDS.has(sel.text)) return this.fail('Invalid selector', sel);
      return matchNode(op, sel.path ?? [], first.text, first.pos);
    }
    const path = pointer ?? first.path ?? [];
    if (op === 'is empty' || op === 'is not empty') return matchNode(op, path, undefined, first.pos);
    const value = this.next();
    if (value.t !== 'string' && value.t !== 'number' && value.t !== 'selector') this.fail('Expected a value', value);
    if (value.t === 'selector' && KEYWORDS.has(value.text)) this.fail(`Unexpected keyword "${value.text}"`, value);
    return matchNode(op, path, value.text, first.pos);
  }

  /** After a literal value only `in` / `not in` may follow. */
  private valueOperator(): Operator | undefined {
    const tok = this.peek();
    if (this.isWord(tok, 'in')) return (this.next(), 'in');
    if (this.isWord(tok, 'not') && this.isWord(this.peek(1), 'in')) return (this.next(), this.next(), 'not in');
    return undefined;
  }
}

function evaluate(node: Node, entry: unknown): boolean {
  switch (node.op) {
    case 'and':
      return evaluate(node.left, entry) && evaluate(node.right, entry);
    case 'or':
      return evaluate(node.left, entry) || evaluate(node.right, entry);
    case 'not':
      return !evaluate(node.operand, entry);
    case 'match':
      return node.test(entry);
  }
}

/**
 * Compiles a Consul filter expression over `/v1/health/service` entries.
 * Throws {@link FilterExpressionError} if the expression is invalid (empty included).
 */
export function compileFilter(expression: string): FilterPredicate {
  const ast = new Parser(tokenize(expression)).parse();
  return (entry) => evaluate(ast, entry);
}

/**
 * The lexer of the dev server's Consul filter language (`consul-filter.ts`, go-bexpr's
 * subset): strings (`"..."` with Go escapes, or `` `...` `` raw), numbers, parentheses,
 * `==` / `!=`, and selectors with their path (`Service.Meta.x`, `Service.Meta["a b"]`);
 * keywords come out as selectors for the parser to tell apart.
 */

/** Thrown by `compileFilter` for a syntax error, an unknown selector or a value of the wrong type. */
export class FilterExpressionError extends Error {
  /** Stable code. */
  readonly code = 'ERR_FILTER_EXPRESSION';
  /** Character offset in the expression where the problem was found. */
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(message);
    this.offset = offset;
  }

  override get name(): string {
    return 'FilterExpressionError';
  }
}

/** One token; `t` is its kind. */
export interface Token {
  readonly t: 'lparen' | 'rparen' | 'eq' | 'ne' | 'string' | 'number' | 'selector' | 'eof';
  readonly pos: number;
  /** The literal's value (string, number text) or the selector's source text. */
  readonly text: string;
  /** Selector path segments. */
  readonly path?: readonly string[];
}

/** The tokens of `src`, ending with `eof`. Throws {@link FilterExpressionError} at the first bad character. */
export function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const fail = (msg: string, at = i): never => {
    throw new FilterExpressionError(`${msg} at offset ${at}`, at);
  };
  const readString = (): string => {
    const quote = src[i] as '"' | '`';
    const start = i;
    const end = src.indexOf(quote, i + 1);
    if (end < 0) fail('Unterminated string literal', start);
    const body = src.slice(i + 1, end);
    i = end + 1;
    if (quote === '`') return body;
    try {
      return JSON.parse(`"${body}"`) as string; // Go's strconv.Unquote escapes are a superset-compatible subset here
    } catch {
      return fail('Invalid escape sequence in string literal', start);
    }
  };
  const ident = /[a-zA-Z][a-zA-Z0-9_/]*/y;
  const digits = /[0-9]+/y;
  while (i < src.length) {
    const c = src[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')') {
      tokens.push({ t: c === '(' ? 'lparen' : 'rparen', pos: i, text: c });
      i++;
    } else if (src.startsWith('==', i) || src.startsWith('!=', i)) {
      tokens.push({ t: c === '=' ? 'eq' : 'ne', pos: i, text: src.slice(i, i + 2) });
      i += 2;
    } else if (c === '"' || c === '`') {
      const pos = i;
      tokens.push({ t: 'string', pos, text: readString() });
    } else if (/[-0-9]/.test(c)) {
      const m = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?/y;
      m.lastIndex = i;
      const found = m.exec(src);
      const next = found === null ? undefined : src[i + found[0].length];
      if (found === null || (next !== undefined && !/[\s)]/.test(next))) fail('Invalid number literal');
      tokens.push({ t: 'number', pos: i, text: (found as RegExpExecArray)[0] });
      i += (found as RegExpExecArray)[0].length;
    } else if (/[a-zA-Z]/.test(c)) {
      const pos = i;
      const path: string[] = [];
      ident.lastIndex = i;
      path.push((ident.exec(src) as RegExpExecArray)[0]);
      i = ident.lastIndex;
      for (;;) {
        if (src[i] === '.') {
          ident.lastIndex = digits.lastIndex = i + 1;
          const seg = ident.exec(src) ?? digits.exec(src);
          if (seg === null) fail('Invalid selector');
          path.push((seg as RegExpExecArray)[0]);
          i += 1 + (seg as RegExpExecArray)[0].length;
        } else if (src[i] === '[') {
          i++;
          while (src[i] === ' ' || src[i] === '\t') i++;
          if (src[i] !== '"' && src[i] !== '`') fail('Invalid index');
          path.push(readString());
          while (src[i] === ' ' || src[i] === '\t') i++;
          if (src[i] !== ']') fail('Unclosed index expression');
          i++;
        } else break;
      }
      tokens.push({ t: 'selector', pos, text: src.slice(pos, i), path });
    } else {
      fail(`Unexpected character ${JSON.stringify(c)}`);
    }
  }
  tokens.push({ t: 'eof', pos: src.length, text: '' });
  return tokens;
}

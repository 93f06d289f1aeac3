/*
 * A CloudWatch Logs JSON filter pattern matcher for tests, so that a metric filter can be checked
 * against the log lines the code really writes (there is no local CloudWatch). It implements the
 * documented subset Coffer's patterns use: `{ ... }` around `$.a.b` selectors compared with `=`,
 * `!=` (strings in double quotes, `*` as a wildcard, or numbers) or `<`, `<=`, `>`, `>=` (numbers),
 * joined by `&&` and `||` with parentheses. Anything else throws, so a pattern it cannot read
 * fails the test instead of passing it.
 *
 * https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html
 */

type Token =
  | { kind: 'sel'; path: string[] }
  | { kind: 'op'; op: string }
  | { kind: 'str'; value: string }
  | { kind: 'num'; value: number }
  | { kind: 'and' | 'or' | '(' | ')' };

/** Each rule reads one token at the start of the rest of the pattern. */
const RULES: readonly [RegExp, (m: RegExpMatchArray) => Token | undefined][] = [
  [/^\s+/, () => undefined],
  [
    /^\$((?:\.[A-Za-z_][A-Za-z0-9_-]*)+)/,
    (m) => ({ kind: 'sel', path: (m[1] as string).slice(1).split('.') }),
  ],
  [/^(&&|\|\|)/, (m) => ({ kind: m[1] === '&&' ? 'and' : 'or' })],
  [/^(!=|<=|>=|=|<|>)/, (m) => ({ kind: 'op', op: m[1] as string })],
  [/^"((?:[^"\\]|\\.)*)"/, (m) => ({ kind: 'str', value: (m[1] as string).replace(/\\(.)/g, '$1') })],
  [/^-?\d+(\.\d+)?/, (m) => ({ kind: 'num', value: Number(m[0]) })],
  [/^[()]/, (m) => ({ kind: m[0] as '(' | ')' })],
];

function tokenize(body: string): Token[] {
  const tokens: Token[] = [];
  let rest = body;
  while (rest.length > 0) {
    const rule = RULES.map(([re, make]) => [rest.match(re), make] as const).find(([m]) => m !== null);
    if (!rule?.[0])
      throw new Error(`the test matcher cannot read the filter pattern at "${rest.slice(0, 20)}"`);
    const [m, make] = rule;
    const token = make(m);
    if (token) tokens.push(token);
    rest = rest.slice(m[0].length);
  }
  return tokens;
}

type Node =
  | { kind: 'cmp'; path: string[]; op: string; value: string | number }
  | { kind: 'and' | 'or'; left: Node; right: Node };

function parse(tokens: Token[]): Node {
  let pos = 0;
  const peek = () => tokens[pos];
  const next = () => {
    const t = tokens[pos++];
    if (!t) throw new Error('the filter pattern ends too early');
    return t;
  };
  // or := and ('||' and)* ; and := term ('&&' term)* ; term := '(' or ')' | cmp
  const or = (): Node => {
    let left = and();
    while (peek()?.kind === 'or') {
      next();
      left = { kind: 'or', left, right: and() };
    }
    return left;
  };
  const and = (): Node => {
    let left = term();
    while (peek()?.kind === 'and') {
      next();
      left = { kind: 'and', left, right: term() };
    }
    return left;
  };
  const term = (): Node => {
    const t = next();
    if (t.kind === '(') {
      const inner = or();
      if (next().kind !== ')') throw new Error('unbalanced parentheses in the filter pattern');
      return inner;
    }
    if (t.kind !== 'sel') throw new Error(`expected a $. selector, got ${t.kind}`);
    const op = next();
    const value = next();
    if (op.kind !== 'op' || (value.kind !== 'str' && value.kind !== 'num')) {
      throw new Error('expected an operator and a value after the selector');
    }
    if (value.kind === 'str' && op.op !== '=' && op.op !== '!=') {
      throw new Error(`${op.op} compares numbers only`);
    }
    return { kind: 'cmp', path: t.path, op: op.op, value: value.value };
  };
  const node = or();
  if (pos !== tokens.length) throw new Error('unexpected tokens at the end of the filter pattern');
  return node;
}

function wildcard(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
}

function evaluate(node: Node, event: unknown): boolean {
  if (node.kind !== 'cmp') {
    return node.kind === 'and'
      ? evaluate(node.left, event) && evaluate(node.right, event)
      : evaluate(node.left, event) || evaluate(node.right, event);
  }
  let v: unknown = event;
  for (const key of node.path) {
    if (v === null || typeof v !== 'object' || !(key in v)) return false;
    v = (v as Record<string, unknown>)[key];
  }
  if (typeof node.value === 'string') {
    // A string comparison matches string values only (a missing or null field matches nothing).
    if (typeof v !== 'string') return false;
    const equal = wildcard(node.value).test(v);
    return node.op === '=' ? equal : !equal;
  }
  if (typeof v !== 'number') return false;
  switch (node.op) {
    case '=':
      return v === node.value;
    case '!=':
      return v !== node.value;
    case '<':
      return v < node.value;
    case '<=':
      return v <= node.value;
    case '>':
      return v > node.value;
    default:
      return v >= node.value;
  }
}

/** True when the log event `line` matches the JSON filter `pattern` (a non-JSON line never does). */
export function matchesFilterPattern(pattern: string, line: string): boolean {
  const body = pattern.trim().match(/^\{(.*)\}$/s)?.[1];
  if (body === undefined) throw new Error('the test matcher only reads JSON filter patterns ({ ... })');
  const tree = parse(tokenize(body));
  let event: unknown;
  try {
    event = JSON.parse(line);
  } catch {
    return false;
  }
  return evaluate(tree, event);
}

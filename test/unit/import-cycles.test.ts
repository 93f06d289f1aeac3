import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/*
 * A static walk of the import graph of lib/ and packages/ (and whatever they import inside the
 * repository). Type-only imports count: a type-only circle still ties two modules together, and
 * it is the first step to a runtime one. Dynamic `import()` does not count: it is how the CLI
 * loads commands lazily, and it runs after both modules have finished loading.
 *
 * TypeScript 7 has no JavaScript compiler API to ask, so the walk reads the sources itself:
 * comments and template literals are blanked first (doc examples and generated scripts may hold
 * text that looks like an import), then import and export statements are matched at line start.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ROOTS = ['lib', 'packages'];

/** Replaces comments and template-literal text with spaces, keeping line breaks and other code. */
function blankCommentsAndTemplates(source: string): string {
  const out = source.split('');
  const blank = (from: number, to: number) => {
    for (let j = from; j < to; j++) if (out[j] !== '\n') out[j] = ' ';
  };
  // Each entry is a template literal being read (`) or a `${…}` expression inside one ({), with
  // the brace depth of that expression.
  const stack: { kind: '`' | '{'; depth: number }[] = [];
  let i = 0;
  while (i < source.length) {
    const top = stack[stack.length - 1];
    const c = source[i];
    if (top?.kind === '`') {
      const start = i;
      while (i < source.length && source[i] !== '`' && !(source[i] === '$' && source[i + 1] === '{')) {
        i += source[i] === '\\' ? 2 : 1;
      }
      blank(start, i);
      if (source[i] === '`') stack.pop();
      else stack.push({ kind: '{', depth: 0 });
      i += source[i] === '`' ? 1 : 2;
      continue;
    }
    if (c === '/' && source[i + 1] === '/') {
      const end = source.indexOf('\n', i);
      const stop = end === -1 ? source.length : end;
      blank(i, stop);
      i = stop;
    } else if (c === '/' && source[i + 1] === '*') {
      const end = source.indexOf('*/', i + 2);
      const stop = end === -1 ? source.length : end + 2;
      blank(i, stop);
      i = stop;
    } else if (c === "'" || c === '"') {
      i++;
      while (i < source.length && source[i] !== c && source[i] !== '\n') i += source[i] === '\\' ? 2 : 1;
      i++;
    } else if (c === '`') {
      stack.push({ kind: '`', depth: 0 });
      i++;
    } else {
      if (top?.kind === '{') {
        if (c === '{') top.depth++;
        else if (c === '}') {
          if (top.depth === 0) stack.pop();
          else top.depth--;
        }
      }
      i++;
    }
  }
  return out.join('');
}

const IMPORT = /^[ \t]*(?:import|export)\s+(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm;

/** The relative module specifiers a source file imports or re-exports statically. */
function staticSpecifiers(source: string): string[] {
  return [...blankCommentsAndTemplates(source).matchAll(IMPORT)].map((m) => m[1] as string);
}

function resolveSpecifier(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  const base = resolve(dirname(from), specifier);
  const candidates = [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, join(base, 'index.ts')];
  return candidates.find((c) => c.endsWith('.ts') && existsSync(c));
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : tsFiles(path);
    return e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

const rel = (file: string) => relative(ROOT, file);

/** The import graph reachable from `roots`: file → the repository files it imports. */
function importGraph(roots: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const queue = roots.flatMap((r) => tsFiles(join(ROOT, r)));
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (graph.has(file)) continue;
    const targets = staticSpecifiers(readFileSync(file, 'utf8'))
      .map((s) => resolveSpecifier(file, s))
      .filter((t): t is string => t !== undefined);
    graph.set(file, targets);
    queue.push(...targets);
  }
  return graph;
}

/** Each import circle, as one path through it that ends where it starts (Tarjan's SCCs). */
function importCircles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const circles: string[][] = [];
  let next = 0;
  const connect = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop() as string;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v))
      circles.push(cycleThrough(graph, component));
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);
  return circles;
}

/** One concrete circle inside a strongly connected component, for the failure message. */
function cycleThrough(graph: ReadonlyMap<string, readonly string[]>, component: readonly string[]): string[] {
  const members = new Set(component);
  const start = [...component].sort()[0] as string;
  // Breadth-first from start back to start, staying inside the component.
  const parent = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift() as string;
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = parent.get(u) as string) path.unshift(u);
        path.unshift(start);
        return path;
      }
      if (!parent.has(w)) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  return [...component, start];
}

describe('import circles', () => {
  it('when lib/ and packages/ are walked, no module imports itself through others', () => {
    const graph = importGraph(ROOTS);
    expect(graph.size).toBeGreaterThan(50);
    const circles = importCircles(graph).map((c) => c.map(rel).join(' → '));
    expect(circles).toEqual([]);
  });

  it('when two modules import each other (type-only included), the walk reports the circle', () => {
    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    expect(importCircles(graph)).toEqual([['a.ts', 'b.ts', 'c.ts', 'a.ts']]);
    const source = [
      "import type { A } from './a.js';",
      'import {',
      '  type B,',
      "} from './b.js';",
      "export * from './c.js';",
      "import './side-effect.js';",
      "/** Example: import { x } from './doc.js'; */",
      "const lazy = () => import('./lazy.js');",
      "const script = `\nimport { y } from './template.js';\n`;",
    ].join('\n');
    expect(staticSpecifiers(source)).toEqual(['./a.js', './b.js', './c.js', './side-effect.js']);
  });
});

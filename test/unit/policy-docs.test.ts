import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { cedar } from '../../lib/authz/cedar-engine.js';
import {
  compilePolicySet,
  loadPolicyDir,
  type PolicySet,
  type PolicySource,
} from '../../lib/authz/policy-set.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const POLICIES = join(ROOT, 'policies');

/** Every ```cedar block of a Markdown file, with the line it starts on. */
function cedarBlocks(name: string, text: string): { where: string; text: string }[] {
  const out: { where: string; text: string }[] = [];
  const re = /^```cedar\n([\s\S]*?)^```/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const line = text.slice(0, m.index).split('\n').length;
    out.push({ where: `${name}:${line}`, text: m[1] as string });
  }
  return out;
}

let schema: PolicySource;
let docs: { where: string; text: string }[];

// Each block is compiled once for the file (compiling parses the schema many times over): the
// second test reads what the first compiled, and compiles a block itself when run alone.
const compiled = new Map<string, PolicySet>();
function compileBlock(block: { where: string; text: string }): PolicySet {
  let set = compiled.get(block.where);
  if (!set) {
    set = compilePolicySet(schema, [{ name: block.where, text: block.text }]);
    compiled.set(block.where, set);
  }
  return set;
}

beforeAll(async () => {
  schema = {
    name: 'schema.cedarschema',
    text: await readFile(join(POLICIES, 'schema.cedarschema'), 'utf8'),
  };
  const files = ['README.md', ...(await readdir(join(ROOT, 'docs'))).map((f) => `docs/${f}`)];
  docs = [];
  for (const f of files.filter((f) => f.endsWith('.md'))) {
    docs.push(...cedarBlocks(f, await readFile(join(ROOT, f), 'utf8')));
  }
});

describe('the Cedar examples in the documentation', () => {
  it('are found (the policy guide has one per common shape)', () => {
    expect(docs.filter((d) => d.where.startsWith('docs/policies.md')).length).toBeGreaterThanOrEqual(6);
  });

  it('each validate against the shipped schema, as written', () => {
    for (const block of docs) {
      const set = compileBlock(block);
      expect(set.policies.length, block.where).toBeGreaterThan(0);
    }
  });

  it('in the policy guide are exactly the policies of policies/examples/ (which the decision tables test)', async () => {
    const names = (await readdir(join(POLICIES, 'examples'))).filter((n) => n.endsWith('.cedar'));
    const examples = await loadPolicyDir(POLICIES, { extraFiles: names.map((n) => `examples/${n}`) });
    const byId = new Map(examples.policies.map((p) => [p.id, p.json]));
    for (const block of docs.filter((d) => d.where.startsWith('docs/policies.md'))) {
      for (const policy of compileBlock(block).policies) {
        expect(byId.has(policy.id), `${block.where}: ${policy.id} is in policies/examples/`).toBe(true);
        // Same policy once parsed: layout and comments may differ, meaning may not.
        expect(policy.json, `${block.where}: ${policy.id}`).toEqual(byId.get(policy.id));
      }
    }
    expect(cedar.getCedarVersion()).toMatch(/^4\./);
  });
});

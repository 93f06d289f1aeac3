import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  compilePolicySet,
  loadPolicyDir,
  mergeActions,
  type PolicySet,
  PolicySetError,
  type PolicySource,
  policySetHash,
  splitPolicies,
} from '../../lib/authz/policy-set.js';
import { DEFAULT_POLICY_DIR, localSettings } from '../../lib/config.js';
import { startLocalServer } from '../../lib/local/server.js';
import { silentLogger } from '../../lib/log.js';

const REPO_POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));
let SCHEMA: PolicySource;

beforeAll(async () => {
  SCHEMA = {
    name: 'schema.cedarschema',
    text: await readFile(join(REPO_POLICIES, 'schema.cedarschema'), 'utf8'),
  };
});

// The repository's own set is loaded once for the file: two tests read it.
let repoSet: Promise<PolicySet> | undefined;
const repoPolicies = (): Promise<PolicySet> => (repoSet ??= loadPolicyDir(REPO_POLICIES));

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof PolicySetError) return err.problems;
    throw err;
  }
  throw new Error('expected a PolicySetError');
}

async function policyDir(files: Record<string, string>, withSchema = true): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-policies-'));
  if (withSchema) await writeFile(join(dir, 'schema.cedarschema'), SCHEMA.text);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

describe('loading the policy set', () => {
  it('loads the repository policies and validates them against the schema', async () => {
    const set = await repoPolicies();
    expect(set.policies.map((p) => p.id)).toContain('admins-may-do-everything');
    expect(set.files).toEqual(['admins.cedar']);
    expect(set.warnings).toEqual([]);
  });

  it('loads the examples on request, and they validate too', async () => {
    const set = await loadPolicyDir(REPO_POLICIES, {
      extraFiles: [
        'examples/auditors.cedar',
        'examples/break-glass.cedar',
        'examples/prod-readers.cedar',
        'examples/revoke.cedar',
        'examples/team-owns-folder.cedar',
        'examples/workload-reads-folder.cedar',
      ],
    });
    expect(set.policies.filter((p) => p.effect === 'forbid').map((p) => p.id)).toEqual([
      'break-glass-guard',
      'prod-read-needs-prod-readers',
      'prod-change-needs-prod-readers',
      'revoke-corp-mallory',
    ]);
  });

  it('when a policy does not parse, names the file, line and column', () => {
    const problems = problemsOf(() =>
      compilePolicySet(SCHEMA, [
        { name: 'good.cedar', text: 'permit (principal in Coffer::Group::"admins", action, resource);\n' },
        {
          name: 'bad.cedar',
          text: '// a comment; with a semicolon\npermit (principal, action, resource)\n  when { principal.id == "x" && };\n',
        },
      ]),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^bad\.cedar:3:\d+: /);
  });

  it('counts columns in characters even after non-ASCII text', () => {
    const problems = problemsOf(() =>
      compilePolicySet(SCHEMA, [
        { name: 'u.cedar', text: '// café ☕\npermit (principal, action, resource) when { "é" == x };\n' },
      ]),
    );
    // `x` is the 52nd character of line 2 (and its 53rd byte: Cedar counts bytes).
    expect(problems[0]).toMatch(/^u\.cedar:2:52: /);
  });

  it('when a policy fails validation, names the file, line and column and the reason', () => {
    const text = [
      '@id("ok") permit (principal in Coffer::Group::"admins", action, resource);',
      '',
      '@id("unguarded-tag")',
      'forbid (principal, action, resource)',
      '  when { resource.getTag("env") == "prod" };',
    ].join('\n');
    const problems = problemsOf(() => compilePolicySet(SCHEMA, [{ name: 'v.cedar', text }]));
    // One problem per resource type the policy may apply to (Secret, Folder), all at the getTag.
    expect(problems.length).toBeGreaterThanOrEqual(1);
    for (const p of problems) expect(p).toMatch(/^v\.cedar:5:10: .*unguarded-tag.*tag `"env"`/);
  });

  it('says a problem once, naming every action it was found for', () => {
    const text = [
      '@id("ip")',
      'permit (principal, action in [Coffer::Action::"read", Coffer::Action::"list"], resource)',
      '  when { context.sourceIp.isInRange(ip("10.0.0.0/8")) };',
    ].join('\n');
    const problems = problemsOf(() => compilePolicySet(SCHEMA, [{ name: 'ip.cedar', text }]));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^ip\.cedar:3:10: .*`sourceIp`.* for Coffer::Action::"(read|list)", "(read|list)";/,
    );
    expect(mergeActions(['a for Coffer::Action::"x"; b', 'a for Coffer::Action::"y"; b', 'other'])).toEqual([
      'a for Coffer::Action::"x", "y"; b',
      'other',
    ]);
  });

  it('refuses unknown actions, entity types and attributes', () => {
    for (const text of [
      'permit (principal, action == Coffer::Action::"readAll", resource);',
      'permit (principal in Coffer::Team::"a", action, resource);',
      'permit (principal, action == Coffer::Action::"read", resource) when { resource.team == "a" };',
    ]) {
      const problems = problemsOf(() => compilePolicySet(SCHEMA, [{ name: 'x.cedar', text }]));
      expect(problems[0], text).toMatch(/^x\.cedar:1:\d+: /);
    }
  });

  it('refuses templates (policies with slots)', () => {
    const problems = problemsOf(() =>
      compilePolicySet(SCHEMA, [
        { name: 't.cedar', text: 'permit (principal == ?principal, action, resource);' },
      ]),
    );
    expect(problems[0]).toMatch(/^t\.cedar:1:\d+: .*template/);
  });

  it('refuses a policy id used twice, naming both places', () => {
    const problems = problemsOf(() =>
      compilePolicySet(SCHEMA, [
        { name: 'a.cedar', text: '@id("same") permit (principal, action, resource);' },
        { name: 'b.cedar', text: '\n\n@id("same") forbid (principal, action, resource);' },
      ]),
    );
    expect(problems).toEqual(['b.cedar:3: policy id "same" is already used at a.cedar:1']);
  });

  it('gives a policy without @id the id <file>:<line>', () => {
    const set = compilePolicySet(SCHEMA, [
      {
        name: 'n.cedar',
        text: '// first\n\npermit (principal, action, resource);\nforbid (principal, action, resource);',
      },
    ]);
    expect(set.policies.map((p) => [p.id, p.effect])).toEqual([
      ['n.cedar:3', 'permit'],
      ['n.cedar:4', 'forbid'],
    ]);
  });

  it('splits policies at semicolons, not at those inside strings or comments', () => {
    const text =
      '// one; two\npermit (principal, action, resource) when { resource.path like "a;*" };\n' +
      'forbid (principal, action, resource) when { resource.path == "b\\";c" }; // tail; comment\n';
    expect(splitPolicies(text).map((c) => c.text.trim().split('\n').pop())).toEqual([
      'permit (principal, action, resource) when { resource.path like "a;*" };',
      'forbid (principal, action, resource) when { resource.path == "b\\";c" };',
    ]);
    const set = compilePolicySet(SCHEMA, [{ name: 's.cedar', text }]);
    expect(set.policies).toHaveLength(2);
  });

  it('reports an unfinished last policy', () => {
    const problems = problemsOf(() =>
      compilePolicySet(SCHEMA, [
        { name: 'e.cedar', text: 'permit (principal, action, resource);\npermit (principal' },
      ]),
    );
    expect(problems[0]).toMatch(/^e\.cedar:2:\d+: /);
  });

  it('when the schema does not parse, names the schema file and location', () => {
    const problems = problemsOf(() =>
      compilePolicySet({ name: 'schema.cedarschema', text: 'namespace Coffer {\n  entity A\n}' }, []),
    );
    expect(problems[0]).toMatch(/^schema\.cedarschema:3:1: /);
  });

  it('refuses a schema out of step with the entities Coffer sends', () => {
    const wrongType = SCHEMA.text.replace('path: String,\n    owner?', 'path: Long,\n    owner?');
    expect(wrongType).not.toBe(SCHEMA.text);
    expect(
      problemsOf(() => compilePolicySet({ name: 'schema.cedarschema', text: wrongType }, []))[0],
    ).toMatch(/does not accept the entities Coffer sends/);
    const noAdmin = SCHEMA.text.replace(/\n {2}\/\/ Administrative[\s\S]*?\};\n/, '\n');
    expect(noAdmin).not.toBe(SCHEMA.text);
    expect(problemsOf(() => compilePolicySet({ name: 'schema.cedarschema', text: noAdmin }, []))).toContain(
      'schema.cedarschema: the schema must declare action "admin"',
    );
  });

  it('says which file is missing', async () => {
    await expect(loadPolicyDir(await policyDir({ 'a.cedar': '' }, false))).rejects.toThrow(
      /schema\.cedarschema: file not found in .*\(copy Coffer's policies\/schema\.cedarschema there\)/,
    );
    await expect(loadPolicyDir(join(tmpdir(), 'coffer-no-such-dir-x9'))).rejects.toThrow(
      /policy directory .* not found/,
    );
    await expect(loadPolicyDir(REPO_POLICIES, { extraFiles: ['examples/nope.cedar'] })).rejects.toThrow(
      /examples\/nope\.cedar: file not found/,
    );
    await expect(loadPolicyDir(REPO_POLICIES, { extraFiles: ['../package.json'] })).rejects.toThrow(
      /must be \.cedar files inside/,
    );
  });

  it('warns, without refusing, when nothing is permitted (every request would be denied)', async () => {
    const onlyForbids = await loadPolicyDir(
      await policyDir({ 'f.cedar': '@id("f") forbid (principal, action, resource);' }),
    );
    expect(onlyForbids.warnings).toEqual([
      'the policy set has no permit policy: every request will be denied',
    ]);
    expect((await loadPolicyDir(await policyDir({}))).warnings).toHaveLength(1);
    expect((await repoPolicies()).warnings).toEqual([]);
  });

  it('loads only the top-level .cedar files of the directory, in name order', async () => {
    const dir = await policyDir({
      'b.cedar': '@id("b") permit (principal, action, resource);',
      'a.cedar': '@id("a") permit (principal, action, resource);',
      'notes.txt': 'not a policy',
      'examples/c.cedar': 'this is not even cedar',
      'tests/d.cedar': 'nor this',
    });
    const set = await loadPolicyDir(dir);
    expect(set.files).toEqual(['a.cedar', 'b.cedar']);
  });
});

describe('the policy set hash', () => {
  const files = [
    { name: 'b.cedar', text: 'permit (principal, action, resource);\n' },
    { name: 'a.cedar', text: 'forbid (principal, action, resource);\n' },
  ];

  it('is the SHA-256 of the canonical text: stable across order and line endings', () => {
    const h = policySetHash(SCHEMA, files);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(policySetHash(SCHEMA, [...files].reverse())).toBe(h);
    expect(
      policySetHash(
        SCHEMA,
        files.map((f) => ({ ...f, text: f.text.replace(/\n/g, '\r\n') })),
      ),
    ).toBe(h);
  });

  it('changes with any policy, file name or schema edit', () => {
    const h = policySetHash(SCHEMA, files);
    expect(policySetHash(SCHEMA, [files[0] as PolicySource])).not.toBe(h);
    expect(
      policySetHash(SCHEMA, [{ ...(files[0] as PolicySource), text: 'x' }, files[1] as PolicySource]),
    ).not.toBe(h);
    expect(
      policySetHash(SCHEMA, [{ ...(files[0] as PolicySource), name: 'c.cedar' }, files[1] as PolicySource]),
    ).not.toBe(h);
    expect(policySetHash({ ...SCHEMA, text: `${SCHEMA.text}\n` }, files)).not.toBe(h);
  });

  it('is what a loaded set carries', async () => {
    const dir = await policyDir(Object.fromEntries(files.map((f) => [f.name, f.text])));
    expect((await loadPolicyDir(dir)).hash).toBe(policySetHash(SCHEMA, files));
  });
});

describe('where the local server finds its policies', () => {
  it('defaults to the package policies/ whatever the working directory', () => {
    expect(DEFAULT_POLICY_DIR).toBe(REPO_POLICIES);
    expect(localSettings({}, '/tmp').policyDir).toBe(REPO_POLICIES);
  });

  it('takes COFFER_POLICY_DIR, relative to the working directory', () => {
    expect(localSettings({ COFFER_POLICY_DIR: 'my-policies' }, '/srv/app').policyDir).toBe(
      '/srv/app/my-policies',
    );
    expect(localSettings({ COFFER_POLICY_DIR: '/etc/coffer/policies' }, '/srv').policyDir).toBe(
      '/etc/coffer/policies',
    );
  });

  it('does not start with an invalid policy set, and says where the problem is', async () => {
    const dir = await policyDir({
      'admins.cedar': '@id("admins") permit (principal in Coffer::Group::"admins", action, resource);\n',
      'broken.cedar': '\n@id("broken") permit (principal, action == Coffer::Action::"raed", resource);\n',
    });
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-data-'));
    // The endpoint is unreachable on purpose: the policies are checked before anything starts.
    const start = startLocalServer(
      { dataDir, port: 0, dynamodbEndpoint: 'http://127.0.0.1:9', policyDir: dir },
      silentLogger,
    );
    await expect(start).rejects.toBeInstanceOf(PolicySetError);
    await expect(start).rejects.toThrow(/broken\.cedar:2:\d+: .*raed/);
  });
});

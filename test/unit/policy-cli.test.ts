import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../lib/cli/main.js';

const REPO_POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));

async function coffer(args: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    env,
    stdin: Readable.from([]),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: tmpdir(),
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

/** A copy of the repository's policies to break in one way or another. */
async function copyOfPolicies(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-policy-cli-'));
  await cp(REPO_POLICIES, dir, { recursive: true });
  return dir;
}

describe('coffer policy validate', () => {
  it("passes on the repository's policies and examples, listing them and the set's hash", async () => {
    const { code, stdout } = await coffer(['policy', 'validate', '--dir', REPO_POLICIES]);
    expect(code).toBe(0);
    expect(stdout).toContain('admins-may-do-everything');
    expect(stdout).toContain('examples valid too: examples/auditors.cedar');
    expect(stdout).toMatch(/policy set hash: [0-9a-f]{64}/);
  });

  it('reads COFFER_POLICY_DIR when no --dir is given', async () => {
    const dir = await copyOfPolicies();
    await writeFile(join(dir, 'extra.cedar'), '@id("from-env-dir") permit (principal, action, resource);\n');
    const { code, stdout } = await coffer(['--json', 'policy', 'validate'], { COFFER_POLICY_DIR: dir });
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    expect(out.dir).toBe(dir);
    expect(out.policies.map((p: { id: string }) => p.id)).toContain('from-env-dir');
  });

  it('fails with the file and line of an invalid policy', async () => {
    const dir = await copyOfPolicies();
    await writeFile(
      join(dir, 'team.cedar'),
      '// team\n\npermit (principal, action == Coffer::Action::"reed", resource);\n',
    );
    const { code, stderr } = await coffer(['policy', 'validate', '--dir', dir]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/team\.cedar:3:\d+: .*reed/);
  });

  it('fails when an example does not validate', async () => {
    const dir = await copyOfPolicies();
    await writeFile(
      join(dir, 'examples', 'broken.cedar'),
      'permit (principal, action, resource) when { x };\n',
    );
    const { code, stderr } = await coffer(['policy', 'validate', '--dir', dir]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/examples\/broken\.cedar:1:\d+: /);
  });
});

describe('coffer policy test', () => {
  it("passes on the repository's tables and prints a table of results", async () => {
    const { code, stdout } = await coffer(['policy', 'test', '--dir', REPO_POLICIES]);
    expect(code, stdout).toBe(0);
    expect(stdout).toMatch(/^ {4}TABLE +# +PRINCIPAL +ACTION +RESOURCE +EXPECT +GOT +POLICIES/);
    expect(stdout).toMatch(
      /ok +tests\/team-owns-folder\.yaml +5 +User::"corp:alice" \[team-a\] +read +team-ab\/key +deny +deny/,
    );
    expect(stdout).toMatch(/\d+ passed, 0 failed, 0 problem\(s\) in 8 table\(s\)/);
    expect(stdout).not.toContain('FAIL');
  });

  it('exits non-zero and marks the failing case', async () => {
    const dir = await copyOfPolicies();
    await writeFile(
      join(dir, 'tests', 'wrong.yaml'),
      [
        'cases:',
        '  - name: someone expects too much',
        '    principal: { id: "corp:nobody" }',
        '    action: read',
        '    resource: { path: team-a/db/password }',
        '    expect: allow',
      ].join('\n'),
    );
    const { code, stdout, stderr } = await coffer(['policy', 'test', '--dir', dir]);
    expect(code).toBe(1);
    expect(stdout).toMatch(
      /FAIL +tests\/wrong\.yaml +1 +User::"corp:nobody" +read +team-a\/db\/password +allow +deny/,
    );
    expect(stdout).toContain('FAIL tests/wrong.yaml #1: someone expects too much');
    expect(stderr).toContain('policy tests failed: 1 case(s) failed');
  });

  it('exits non-zero on a malformed table, naming it', async () => {
    const dir = await copyOfPolicies();
    await writeFile(
      join(dir, 'tests', 'typo.json'),
      JSON.stringify({
        cases: [{ principal: { id: 'a' }, action: 'raed', resource: { path: 'x' }, expect: 'deny' }],
      }),
    );
    const { code, stdout } = await coffer(['policy', 'test', '--dir', dir]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/ERROR tests\/typo\.json: cases\.0\.action: /);
  });

  it('exits non-zero when a table loads a policy file that is not there', async () => {
    const dir = await copyOfPolicies();
    await writeFile(
      join(dir, 'tests', 'missing.yaml'),
      'policies: [examples/gone.cedar]\ncases:\n  - { principal: { id: a }, action: read, resource: { path: x }, expect: deny }\n',
    );
    const { code, stdout } = await coffer(['policy', 'test', '--dir', dir]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/ERROR tests\/missing\.yaml: .*examples\/gone\.cedar: file not found/);
  });

  it('exits non-zero when there is nothing to test', async () => {
    const dir = await copyOfPolicies();
    await rm(join(dir, 'tests'), { recursive: true });
    const { code, stdout } = await coffer(['policy', 'test', '--dir', dir]);
    expect(code).toBe(1);
    expect(stdout).toContain('ERROR tests/: not found');
  });

  it('reports in JSON with --json', async () => {
    const { code, stdout } = await coffer(['--json', 'policy', 'test', '--dir', REPO_POLICIES]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.passed).toBe(true);
    expect(report.results.length).toBeGreaterThan(40);
  });
});

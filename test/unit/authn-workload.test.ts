import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JWTPayload } from 'jose';
import { describe, expect, it } from 'vitest';
import { AuthRefusal } from '../../lib/authn/bearer.js';
import { principalFromToken } from '../../lib/authn/workload.js';
import { escapeIdValue } from '../../lib/authn/workload-id.js';
import { type IssuerConfig, parseConfig } from '../../lib/config-file.js';
import { ConfigError } from '../../lib/errors.js';

const DOC = join(import.meta.dirname, '../../docs/workload-identity.md');

function configError(text: string): string {
  try {
    parseConfig(text, { source: 'test.yaml', env: {} });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

function refusal(issuer: IssuerConfig, payload: JWTPayload): AuthRefusal {
  try {
    principalFromToken(issuer, payload);
  } catch (err) {
    expect(err).toBeInstanceOf(AuthRefusal);
    return err as AuthRefusal;
  }
  throw new Error('expected a refusal');
}

/** The yaml blocks of the guide, by the alias of their first issuer (or "mtls"). */
async function docConfigs(): Promise<Map<string, IssuerConfig | undefined>> {
  const text = await readFile(DOC, 'utf8');
  const out = new Map<string, IssuerConfig | undefined>();
  for (const m of text.matchAll(/^```yaml\n([\s\S]*?)^```/gm)) {
    const config = parseConfig(m[1] as string, { source: 'docs/workload-identity.md', env: {} });
    out.set(config.issuers[0]?.alias ?? 'mtls', config.issuers[0]);
  }
  return out;
}

const now = Math.floor(Date.now() / 1000);

/** A GitHub Actions token's claims, as GitHub's documentation lists them. */
function githubClaims(extra: JWTPayload = {}): JWTPayload {
  return {
    jti: 'example-id',
    sub: 'repo:octo-org/octo-repo:ref:refs/heads/main',
    aud: 'https://coffer.example.com',
    ref: 'refs/heads/main',
    sha: 'd6e7f1a0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6',
    repository: 'octo-org/octo-repo',
    repository_owner: 'octo-org',
    actor_id: '12',
    repository_visibility: 'private',
    repository_id: '74',
    repository_owner_id: '65',
    run_id: '1234',
    run_number: '10',
    run_attempt: '1',
    runner_environment: 'github-hosted',
    actor: 'octocat',
    workflow: 'deploy',
    head_ref: '',
    base_ref: '',
    event_name: 'push',
    ref_type: 'branch',
    ref_protected: 'true',
    workflow_ref: 'octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main',
    workflow_sha: 'd6e7f1a0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6',
    job_workflow_ref: 'octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main',
    job_workflow_sha: 'd6e7f1a0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6',
    iss: 'https://token.actions.githubusercontent.com',
    nbf: now,
    exp: now + 300,
    iat: now,
    ...extra,
  };
}

describe('workload id escaping', () => {
  it('when a value holds a colon, percent, brace or non-ASCII, it is percent-encoded; safe text stays readable', () => {
    expect(escapeIdValue('octo-org/octo-repo')).toBe('octo-org/octo-repo');
    expect(escapeIdValue('refs/heads/main')).toBe('refs/heads/main');
    expect(escapeIdValue('prod:x')).toBe('prod%3Ax');
    expect(escapeIdValue('100%')).toBe('100%25');
    expect(escapeIdValue('{repo}')).toBe('%7Brepo%7D');
    expect(escapeIdValue('é\n')).toBe('%C3%A9%0A');
    // An already-escaped value does not collide with its raw form.
    expect(escapeIdValue('a%3Ab')).not.toBe(escapeIdValue('a:b'));
  });
});

describe('workload mappings in COFFER_CONFIG', () => {
  it("when the guide's GitHub, GitLab, Kubernetes and mTLS examples are loaded, they validate", async () => {
    const configs = await docConfigs();
    expect([...configs.keys()]).toEqual(['github', 'gitlab', 'eks-prod', 'mtls']);
    const github = configs.get('github') as IssuerConfig;
    expect(github.shared).toBe(true);
    expect(github.workloads?.[0]?.idParts).toEqual([
      { text: 'gha:' },
      { claim: 'repository', path: 'repository' },
      { text: ':' },
      { claim: 'ref', path: 'ref' },
    ]);
    const eks = configs.get('eks-prod') as IssuerConfig;
    expect(eks.shared).toBeUndefined();
    expect(eks.workloads?.[0]?.bound).toEqual([
      { name: 'namespace', path: ['kubernetes.io', 'namespace'], exact: ['payments', 'billing'], glob: [] },
    ]);
  });

  const github = (workload: string, issuerExtra = '') => `
issuers:
  - alias: github
    issuer: https://token.actions.githubusercontent.com
    audiences: [https://coffer.example.com, https://github.com/octo-org]
${issuerExtra}
    workloads:
      - name: branches
        id: "gha:{repository}:{ref}"
${workload}
`;

  it('when a mapping on GitHub binds no owner id, or only the repository name, Coffer refuses to start', () => {
    const missing = configError(
      github(`        audiences: [https://coffer.example.com]
        bound: { repository: octo-org/octo-repo }`),
    );
    expect(missing).toContain('issuers.0.workloads.0.bound: a shared issuer signs tokens for everyone');
    expect(missing).toContain('repository_owner_id');
    // A wildcard owner binds nothing.
    expect(
      configError(
        github(`        audiences: [https://coffer.example.com]
        bound: { repository_owner_id: "6*" }`),
      ),
    ).toContain('bind an immutable owner id');
    expect(
      configError(
        github(`        audiences: [https://coffer.example.com]
        bound: { repository_owner_id: { absent: true } }`),
      ),
    ).toContain('bind an immutable owner id');
  });

  it('when a mapping on a shared issuer has no audience of its own, or a generic one, Coffer refuses to start', () => {
    expect(configError(github('        bound: { repository_owner_id: "65" }'))).toContain(
      'issuers.0.workloads.0.audiences: required on a shared issuer',
    );
    const generic = configError(
      github(`        audiences: [https://github.com/octo-org]
        bound: { repository_owner_id: "65" }`),
    );
    expect(generic).toContain('the audience "https://github.com/octo-org" is not specific to Coffer');
  });

  it('when a mapping on any issuer would accept the issuer URL, STS or the Kubernetes API audience, Coffer refuses to start', () => {
    for (const aud of [
      'https://k8s.example.com',
      'sts.amazonaws.com',
      'https://kubernetes.default.svc.cluster.local',
    ]) {
      const message = configError(`
issuers:
  - alias: k8s
    issuer: https://k8s.example.com
    audiences: ["${aud}"]
    workloads:
      - name: pods
        id: "k8s:{sub}"
`);
      expect(message, aud).toContain('is not specific to Coffer');
    }
  });

  it('when GitHub is marked shared: false, or a custom shared issuer names no owner claims, Coffer refuses to start', () => {
    expect(
      configError(
        github(
          `        audiences: [https://coffer.example.com]
        bound: { repository_owner_id: "65" }`,
          '    shared: false',
        ),
      ),
    ).toContain('cannot be marked shared: false');
    const custom = configError(`
issuers:
  - alias: forge
    issuer: https://forge.example.com
    audiences: [https://coffer.example.com]
    shared: true
    workloads:
      - name: ci
        id: "forge:{project}"
        audiences: [https://coffer.example.com]
        bound: { project: a }
`);
    expect(custom).toContain('issuers.0.ownerClaims: required with shared: true');
  });

  it('when templates are malformed, reuse a prefix or take the certificate prefix, Coffer refuses to start', () => {
    const k8s = (id: string, second = '') => `
issuers:
  - alias: k8s
    issuer: https://k8s.example.com
    audiences: [https://coffer.example.com]
    workloads:
      - name: pods
        id: "${id}"
${second}
`;
    expect(configError(k8s('{sub}'))).toContain('must start with a literal prefix');
    expect(configError(k8s('k8s:{a}{b}'))).toContain('each segment after the prefix must be one {claim}');
    expect(configError(k8s('k8s:x/{a}'))).toContain('each segment after the prefix');
    expect(configError(k8s('cert:{sub}'))).toContain('reserved for client-certificate workloads');
    expect(
      configError(
        k8s(
          'k8s:{sub}',
          `      - name: other
        id: "k8s:{aud}"`,
        ),
      ),
    ).toContain('the id prefix "k8s" is used by another workload mapping');
  });

  it('when an issuer has workloads and people without bound claims, Coffer refuses to start', () => {
    const message = configError(`
issuers:
  - alias: gitlab
    issuer: https://gitlab.example.com
    audiences: [app, https://coffer.example.com]
    users: { audiences: [app] }
    workloads:
      - name: ci
        id: "gitlab:{project_path}"
        audiences: [https://coffer.example.com]
        bound: { namespace_id: "72" }
`);
    expect(message).toContain('issuers.0.users.bound: required when the issuer has workloads');
  });
});

describe('mapping a verified token', () => {
  it('when a GitHub main-branch token meets the bound claims, it is the documented workload with its tags', async () => {
    const github = (await docConfigs()).get('github') as IssuerConfig;
    const p = principalFromToken(github, githubClaims());
    expect(p).toEqual({
      type: 'Workload',
      id: 'gha:octo-org/octo-repo:refs/heads/main',
      kind: 'oidc',
      issuer: 'github',
      authMethod: 'oidc',
      groups: ['ci'],
      attributes: {
        repository: 'octo-org/octo-repo',
        repository_id: '74',
        ref: 'refs/heads/main',
        event_name: 'push',
        workflow_ref: 'octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main',
        sha: 'd6e7f1a0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6',
      },
    });
  });

  it('when a bound claim fails (a pull request, another owner with the same repository name, another audience), it is refused and the log names the claim', async () => {
    const github = (await docConfigs()).get('github') as IssuerConfig;
    const pr = refusal(github, githubClaims({ ref: 'refs/pull/42/merge', event_name: 'pull_request' }));
    expect(pr.reason).toBe('no_matching_mapping');
    expect(pr.logFields).toEqual({ mappings: 'branches:ref' });
    expect(refusal(github, githubClaims({ repository_owner_id: '999' })).logFields).toEqual({
      mappings: 'branches:repository_owner_id',
    });
    expect(refusal(github, githubClaims({ aud: 'https://github.com/octo-org' })).logFields).toEqual({
      mappings: 'branches:aud',
    });
    // The refusal is the one 401 of every authentication failure.
    expect(pr.message).toBe('authentication required');
  });

  it('when a claim value holds the separator, it cannot forge another id', () => {
    const issuer = parseConfig(
      `
issuers:
  - alias: k8s
    issuer: https://k8s.example.com
    audiences: [https://coffer.example.com]
    workloads:
      - name: pods
        id: "k8s:{ns}:{sa}"
`,
      { env: {} },
    ).issuers[0] as IssuerConfig;
    const a = principalFromToken(issuer, { ns: 'team:admin', sa: 'x' });
    const b = principalFromToken(issuer, { ns: 'team', sa: 'admin:x' });
    expect(a.id).toBe('k8s:team%3Aadmin:x');
    expect(b.id).toBe('k8s:team:admin%3Ax');
    expect(a.id).not.toBe(b.id);
    expect(principalFromToken(issuer, { ns: 'a%3Ab', sa: 'x' }).id).toBe('k8s:a%253Ab:x');
    // A missing, empty or non-text id claim refuses the token.
    expect(refusal(issuer, { ns: '', sa: 'x' }).reason).toBe('unusable_id_claim');
    expect(refusal(issuer, { sa: 'x' }).logFields).toEqual({ mapping: 'pods', claim: 'ns' });
    expect(refusal(issuer, { ns: { a: 1 }, sa: 'x' }).reason).toBe('unusable_id_claim');
  });

  it('when a token matches two mappings, or none, it is refused', () => {
    const issuer = parseConfig(
      `
issuers:
  - alias: ci
    issuer: https://ci.example.com
    audiences: [https://coffer.example.com]
    workloads:
      - name: main
        id: "ci-main:{repo}"
        bound: { ref: main }
      - name: any-branch
        id: "ci:{repo}:{ref}"
        bound: { ref: "*" }
`,
      { env: {} },
    ).issuers[0] as IssuerConfig;
    const both = refusal(issuer, { repo: 'a', ref: 'main' });
    expect(both.reason).toBe('several_matching_mappings');
    expect(both.logFields).toEqual({ mappings: 'main any-branch' });
    expect(principalFromToken(issuer, { repo: 'a', ref: 'dev' }).id).toBe('ci:a:dev');
    expect(refusal(issuer, { repo: 'a' }).logFields).toEqual({ mappings: 'main:ref any-branch:ref' });
  });

  it('when GitLab people and CI share the issuer, each token matches its own mapping and a foreign CI token matches none', async () => {
    const gitlab = (await docConfigs()).get('gitlab') as IssuerConfig;
    const ci: JWTPayload = {
      namespace_id: '72',
      namespace_path: 'my-group',
      project_id: '20',
      project_path: 'my-group/my-project',
      user_id: '1',
      user_login: 'sample-user',
      pipeline_id: '574',
      pipeline_source: 'push',
      ref: 'main',
      ref_type: 'branch',
      ref_path: 'refs/heads/main',
      ref_protected: 'true',
      sub: 'project_path:my-group/my-project:ref_type:branch:ref:main',
      aud: 'https://coffer.example.com',
    };
    expect(principalFromToken(gitlab, ci)).toMatchObject({
      type: 'Workload',
      id: 'gitlab:my-group/my-project:refs/heads/main',
      attributes: { project_id: '20', project_path: 'my-group/my-project', ref_path: 'refs/heads/main' },
    });
    const person = { sub: '4711', aud: 'coffer-oauth-app-id', groups: ['my-group/platform'] };
    expect(principalFromToken(gitlab, person)).toMatchObject({
      type: 'User',
      id: 'gitlab:4711',
      groups: ['platform'],
    });
    // A job elsewhere on gitlab.com asking for the people's audience is neither a person nor ours.
    const foreign = refusal(gitlab, { ...ci, namespace_id: '999', aud: 'coffer-oauth-app-id' });
    expect(foreign.logFields).toEqual({ mappings: 'pipelines:aud users:project_id' });
    expect(refusal(gitlab, { ...ci, ref_protected: 'false' }).logFields).toEqual({
      mappings: 'pipelines:ref_protected users:aud',
    });
  });

  it('when a Kubernetes token comes from an allowed namespace, nested claims make the id; another namespace is refused', async () => {
    const eks = (await docConfigs()).get('eks-prod') as IssuerConfig;
    const token = (namespace: string): JWTPayload => ({
      aud: ['https://coffer.example.com'],
      iss: eks.issuer,
      sub: `system:serviceaccount:${namespace}:api`,
      'kubernetes.io': {
        namespace,
        node: { name: 'ip-10-0-1-2.eu-west-1.compute.internal', uid: 'n-1' },
        pod: { name: 'api-7d9c-xk2v', uid: 'p-1' },
        serviceaccount: { name: 'api', uid: 'sa-1' },
        warnafter: now + 60,
      },
    });
    expect(principalFromToken(eks, token('payments'))).toEqual({
      type: 'Workload',
      id: 'k8s:payments:api',
      kind: 'oidc',
      issuer: 'eks-prod',
      authMethod: 'oidc',
      groups: [],
      attributes: {
        namespace: 'payments',
        serviceaccount: 'api',
        serviceaccount_uid: 'sa-1',
        pod: 'api-7d9c-xk2v',
      },
    });
    expect(refusal(eks, token('kube-system')).logFields).toEqual({ mappings: 'pods:namespace' });
  });

  it('when an issuer has no workloads, every token is a person as before', () => {
    const issuer = parseConfig(
      'issuers: [{ alias: corp, issuer: "https://login.example.com", audiences: coffer }]',
      { env: {} },
    ).issuers[0] as IssuerConfig;
    expect(principalFromToken(issuer, { sub: 'alice' })).toMatchObject({ type: 'User', id: 'corp:alice' });
  });
});

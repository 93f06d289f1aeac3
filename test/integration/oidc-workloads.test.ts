import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../lib/audit/record.js';
import { buildAuthenticator } from '../../lib/authn/build.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { loadPolicyDir } from '../../lib/authz/policy-set.js';
import { parseConfig } from '../../lib/config-file.js';
import { jsonLogger, silentLogger } from '../../lib/log.js';
import { scanAll } from '../support/dynamo.js';
import { createHarness, type Harness } from '../support/harness.js';
import { startTestIdp, type TestIdp } from '../support/oidc-idp.js';

const POLICIES = join(import.meta.dirname, '../../policies');
const AUD = 'https://coffer.example.com';

/** Claims of a GitHub Actions token, as GitHub's documentation lists them (iss/aud/iat/exp come from the IdP). */
function github(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const repository = (overrides.repository as string | undefined) ?? 'octo-org/octo-repo';
  const ref = (overrides.ref as string | undefined) ?? 'refs/heads/main';
  return {
    sub: `repo:${repository}:ref:${ref}`,
    ref,
    sha: 'd6e7f1a0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6',
    repository,
    repository_owner: 'octo-org',
    repository_owner_id: '65',
    repository_id: '74',
    repository_visibility: 'private',
    actor: 'octocat',
    actor_id: '12',
    run_id: '4242',
    run_number: '10',
    run_attempt: '1',
    runner_environment: 'github-hosted',
    workflow: 'deploy',
    workflow_ref: `${repository}/.github/workflows/deploy.yml@${ref}`,
    workflow_sha: 'd6e7f1a0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6',
    job_workflow_ref: `${repository}/.github/workflows/deploy.yml@${ref}`,
    job_workflow_sha: 'd6e7f1a0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6',
    head_ref: '',
    base_ref: '',
    event_name: 'push',
    ref_type: 'branch',
    ref_protected: 'true',
    ...overrides,
  };
}

/** Claims of a GitLab CI ID token, as GitLab's documentation lists them. */
function gitlab(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    namespace_id: '72',
    namespace_path: 'my-group',
    project_id: '20',
    project_path: 'my-group/my-project',
    user_id: '1',
    user_login: 'sample-user',
    user_email: 'sample-user@example.com',
    user_access_level: 'developer',
    pipeline_id: '574',
    pipeline_source: 'push',
    job_id: '302',
    ref: 'main',
    ref_type: 'branch',
    ref_path: 'refs/heads/main',
    ref_protected: 'true',
    runner_id: 1,
    runner_environment: 'gitlab-hosted',
    sha: '714a629c0b401fdce83e847fc9589983fc6f46bc',
    project_visibility: 'private',
    ci_config_ref_uri: 'gitlab.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main',
    ci_config_sha: '714a629c0b401fdce83e847fc9589983fc6f46bc',
    sub: 'project_path:my-group/my-project:ref_type:branch:ref:main',
    ...overrides,
  };
}

/** Claims of a Kubernetes projected service-account token (EKS shape). */
function k8s(namespace: string, serviceaccount: string): Record<string, unknown> {
  return {
    sub: `system:serviceaccount:${namespace}:${serviceaccount}`,
    'kubernetes.io': {
      namespace,
      node: { name: 'ip-10-0-1-2.eu-west-1.compute.internal', uid: '2b1a3c4d-0000-4000-8000-000000000001' },
      pod: { name: `${serviceaccount}-7d9c-xk2v`, uid: '2b1a3c4d-0000-4000-8000-000000000002' },
      serviceaccount: { name: serviceaccount, uid: '2b1a3c4d-0000-4000-8000-000000000003' },
      warnafter: Math.floor(Date.now() / 1000) + 3600,
    },
  };
}

/**
 * Workload tokens end to end: oidc-provider issues tokens shaped exactly like GitHub Actions',
 * GitLab CI's and Kubernetes', the real app over DynamoDB Local maps them through COFFER_CONFIG's
 * workload mappings and decides with the example policies of policies/examples/.
 */
describe('workload OIDC tokens from a real identity provider', () => {
  let gha: TestIdp;
  let gl: TestIdp;
  let eks: TestIdp;
  let h: Harness;
  const authLogs: string[] = [];

  beforeAll(async () => {
    const clients = (shapes: Record<string, Record<string, unknown>>) => ({
      audience: AUD,
      machineClients: Object.keys(shapes),
      tokenShapes: shapes,
    });
    gha = await startTestIdp(
      clients({
        'gha-main': github(),
        'gha-pr': github({
          ref: 'refs/pull/42/merge',
          event_name: 'pull_request',
          head_ref: 'feature',
          base_ref: 'main',
        }),
        'gha-other-repo': github({ repository: 'octo-org/other-repo', repository_id: '75' }),
        // Someone else's account, with a repository of the same name (after a rename, say).
        'gha-other-owner': github({ repository_owner_id: '999', repository_id: '5000' }),
        'gha-deploy': github({ environment: 'production' }),
      }),
    );
    gl = await startTestIdp(
      clients({
        'gitlab-main': gitlab(),
        'gitlab-other-namespace': gitlab({
          namespace_id: '73',
          namespace_path: 'evil',
          project_path: 'evil/my-project',
        }),
        'gitlab-unprotected': gitlab({
          ref: 'feature',
          ref_path: 'refs/heads/feature',
          ref_protected: 'false',
        }),
      }),
    );
    eks = await startTestIdp(
      clients({ 'k8s-payments-api': k8s('payments', 'api'), 'k8s-billing-api': k8s('billing', 'api') }),
    );
    const config = parseConfig(
      `
issuers:
  - alias: github
    issuer: ${gha.issuer}
    audiences: [${AUD}]
    allowHttpLoopback: true
    shared: true                            # stands in for https://token.actions.githubusercontent.com
    ownerClaims: [repository_owner_id]
    workloads:
      - name: branches
        id: "gha:{repository}:{ref}"
        audiences: [${AUD}]
        bound:
          repository_owner_id: "65"
          repository: octo-org/octo-repo
          ref: "refs/heads/*"
        tags: { repository: repository, ref: ref, event_name: event_name, sha: sha }
        groups: [ci]
      - name: deploys
        id: "gha-env:{repository}:{environment}"
        audiences: [${AUD}]
        bound:
          repository_owner_id: "65"
          environment: production
  - alias: gitlab
    issuer: ${gl.issuer}
    audiences: [${AUD}]
    allowHttpLoopback: true
    shared: true                            # stands in for https://gitlab.com
    ownerClaims: [namespace_id, project_id]
    workloads:
      - name: pipelines
        id: "gitlab:{project_path}:{ref_path}"
        audiences: [${AUD}]
        bound: { namespace_id: "72", ref_protected: "true" }
        tags: { project_path: project_path, project_id: project_id, ref_path: ref_path }
  - alias: eks-prod
    issuer: ${eks.issuer}
    audiences: [${AUD}]
    allowHttpLoopback: true
    workloads:
      - name: pods
        id: "k8s:{namespace}:{serviceaccount}"
        claimPaths:
          namespace: [kubernetes.io, namespace]
          serviceaccount: [kubernetes.io, serviceaccount, name]
        bound: { namespace: payments }
        tags: { namespace: namespace, serviceaccount: serviceaccount }
`,
      { source: 'test', env: {} },
    );
    const policies = await loadPolicyDir(POLICIES, {
      extraFiles: ['examples/ci-reads-own-folder.cedar', 'examples/k8s-reads-namespace.cedar'],
    });
    h = await createHarness({
      label: 'wl',
      audit: 'dynamo',
      authorizer: new CedarAuthorizer(policies, { logger: silentLogger }),
      authenticator: (dev) =>
        buildAuthenticator({
          config,
          logger: jsonLogger((l) => authLogs.push(l)),
          devIssuerKey: dev.publicKey,
        }),
    });
    for (const path of [
      'ci/octo-repo/deploy-key',
      'ci/other-repo/deploy-key',
      'k8s/payments/db',
      'k8s/billing/db',
    ]) {
      expect(
        (await h.call('PUT', `/v1/secrets/${path}`, { body: { value: `value of ${path}` } })).status,
      ).toBe(200);
    }
  }, 120_000);

  afterAll(async () => {
    await gha?.close();
    await gl?.close();
    await eks?.close();
  });

  const refusedAs = async (idp: TestIdp, client: string, reason: string, mappings?: string) => {
    const before = authLogs.length;
    const res = await h.call('GET', '/v1/whoami', { token: await idp.clientCredentialsToken(client) });
    expect(res.status, client).toBe(401);
    expect(res.body.error).toMatchObject({ code: 'unauthenticated', message: 'authentication required' });
    const line = authLogs.slice(before).join('\n');
    expect(line).toContain(`"reason":"${reason}"`);
    if (mappings) expect(line).toContain(`"mappings":"${mappings}"`);
  };

  it('when a GitHub main-branch token meets the bound claims, whoami shows the documented workload, the audit record names its kind and issuer, and it reads its CI folder only', async () => {
    const token = await gha.clientCredentialsToken('gha-main');
    expect(decodeJwt(token)).toMatchObject({ iss: gha.issuer, aud: AUD, repository_owner_id: '65' });
    expect(decodeJwt(token).client_id).toBeUndefined();
    const me = await h.call('GET', '/v1/whoami', { token });
    expect(me.status).toBe(200);
    expect(me.body).toEqual({
      type: 'Workload',
      id: 'gha:octo-org/octo-repo:refs/heads/main',
      entity: 'Coffer::Workload::"gha:octo-org/octo-repo:refs/heads/main"',
      kind: 'oidc',
      issuer: 'github',
      authMethod: 'oidc',
      groups: ['ci'],
      attributes: {
        repository: 'octo-org/octo-repo',
        ref: 'refs/heads/main',
        event_name: 'push',
        sha: 'd6e7f1a0c1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6',
      },
    });
    // The audit record names the identity kind and the token's issuer (no certificate here).
    const records = (await scanAll(h.client, h.tables.audit)).filter(
      (i) => i.requestId === me.headers.get('x-request-id'),
    ) as unknown as RequestRecord[];
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      principal: { type: 'Workload', id: 'gha:octo-org/octo-repo:refs/heads/main' },
      authMethod: 'oidc',
      identity: { kind: 'workload-oidc', issuer: 'github', fingerprint: null },
    });
    const read = await h.call('GET', '/v1/secrets/ci/octo-repo/deploy-key', { token });
    expect(read.status).toBe(200);
    expect(read.body.value).toBe('value of ci/octo-repo/deploy-key');
    expect((await h.call('GET', '/v1/secrets/ci/other-repo/deploy-key', { token })).status).toBe(404);
    expect(
      (await h.call('PUT', '/v1/secrets/ci/octo-repo/deploy-key', { token, body: { value: 'x' } })).status,
    ).toBe(403);
  });

  it('when a GitHub bound claim fails (a pull request, another repository, another owner with the same repository name), it is 401', async () => {
    await refusedAs(gha, 'gha-pr', 'no_matching_mapping', 'branches:ref deploys:environment');
    await refusedAs(gha, 'gha-other-repo', 'no_matching_mapping', 'branches:repository deploys:environment');
    await refusedAs(
      gha,
      'gha-other-owner',
      'no_matching_mapping',
      'branches:repository_owner_id deploys:repository_owner_id',
    );
    expect(authLogs.join('\n')).not.toContain('eyJ');
  });

  it('when a token matches two mappings, it is 401', async () => {
    // A main-branch job with an environment meets both the branch and the deployment mapping.
    await refusedAs(gha, 'gha-deploy', 'several_matching_mappings', 'branches deploys');
  });

  it('when a GitLab CI token of the bound namespace on a protected ref calls, it is the documented workload; another namespace or an unprotected ref is 401', async () => {
    const me = await h.call('GET', '/v1/whoami', { token: await gl.clientCredentialsToken('gitlab-main') });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({
      type: 'Workload',
      id: 'gitlab:my-group/my-project:refs/heads/main',
      kind: 'oidc',
      issuer: 'gitlab',
      attributes: { project_path: 'my-group/my-project', project_id: '20', ref_path: 'refs/heads/main' },
    });
    await refusedAs(gl, 'gitlab-other-namespace', 'no_matching_mapping', 'pipelines:namespace_id');
    await refusedAs(gl, 'gitlab-unprotected', 'no_matching_mapping', 'pipelines:ref_protected');
  });

  it('when a Kubernetes service account of the bound namespace calls, it reads its namespace folder; another namespace is 401', async () => {
    const token = await eks.clientCredentialsToken('k8s-payments-api');
    const me = await h.call('GET', '/v1/whoami', { token });
    expect(me.body).toMatchObject({
      type: 'Workload',
      id: 'k8s:payments:api',
      issuer: 'eks-prod',
      attributes: { namespace: 'payments', serviceaccount: 'api' },
    });
    expect((await h.call('GET', '/v1/secrets/k8s/payments/db', { token })).status).toBe(200);
    expect((await h.call('GET', '/v1/secrets/k8s/billing/db', { token })).status).toBe(404);
    await refusedAs(eks, 'k8s-billing-api', 'no_matching_mapping', 'pods:namespace');
  });
});

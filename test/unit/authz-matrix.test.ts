import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../lib/authn/principal.js';
import { ACTIONS, type RequestContext, type SecretResource } from '../../lib/authz/authorizer.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { loadPolicyDir } from '../../lib/authz/policy-set.js';
import { silentLogger } from '../../lib/log.js';

const POLICY_DIR = fileURLToPath(new URL('../../policies', import.meta.url));
const EXAMPLES = [
  'examples/team-owns-folder.cedar',
  'examples/workload-reads-folder.cedar',
  'examples/auditors.cedar',
  'examples/prod-readers.cedar',
  'examples/break-glass.cedar',
  'examples/revoke.cedar',
];

const A = 'allow';
const D = 'deny';
type Cell = typeof A | typeof D;

const TIME = Date.parse('2025-03-01T12:00:00Z') / 1000;
const user = (id: string, groups: string[]): Principal => ({
  type: 'User',
  id,
  groups,
  attributes: {},
  authMethod: 'oidc',
  issuer: 'corp',
});

/** Who asks, and from where. */
const PRINCIPALS: Record<string, { principal: Principal; context: RequestContext }> = {
  ada: {
    principal: user('corp:ada', ['admins']),
    context: { authMethod: 'oidc', sourceIp: '10.1.0.5', time: TIME },
  },
  alice: {
    principal: user('corp:alice', ['team-a']),
    context: { authMethod: 'oidc', sourceIp: '10.1.0.6', time: TIME },
  },
  carol: {
    principal: user('corp:carol', ['prod-readers', 'team-a']),
    context: { authMethod: 'oidc', sourceIp: '10.1.0.7', time: TIME },
  },
  bob: {
    principal: user('corp:bob', ['team-ab']),
    context: { authMethod: 'oidc', sourceIp: '10.1.0.8', time: TIME },
  },
  billingApi: {
    principal: {
      type: 'Role',
      id: 'arn:aws:iam::111122223333:role/billing-api',
      groups: [],
      attributes: { account: '111122223333' },
      authMethod: 'iam',
    },
    context: { authMethod: 'iam', sourceIp: '10.9.0.1', time: TIME },
  },
  audrey: {
    principal: user('corp:audrey', ['auditors']),
    context: { authMethod: 'oidc', sourceIp: '10.1.0.9', time: TIME },
  },
  mallory: {
    principal: user('corp:mallory', ['admins', 'team-a']),
    context: { authMethod: 'oidc', sourceIp: '10.1.0.10', time: TIME },
  },
  emma: {
    principal: user('corp:emergency-1', ['break-glass']),
    context: { authMethod: 'oidc', sourceIp: '10.20.0.5', time: TIME },
  },
  emmaAway: {
    principal: user('corp:emergency-1', ['break-glass']),
    context: { authMethod: 'oidc', sourceIp: '192.0.2.1', time: TIME },
  },
  nobody: {
    principal: user('corp:nobody', []),
    context: { authMethod: 'oidc', sourceIp: '10.1.0.11', time: TIME },
  },
};

const secret = (path: string, tags: Record<string, string> = {}, owner?: string): SecretResource => ({
  kind: 'Secret',
  path,
  tags,
  ...(owner ? { owner } : {}),
});

const RESOURCES: Record<string, SecretResource> = {
  'team-a/db/password': secret('team-a/db/password', { env: 'prod' }),
  'team-a/app/config': secret('team-a/app/config', { env: 'dev' }),
  'team-a/ci/token': secret('team-a/ci/token'),
  'team-ab/key': secret('team-ab/key'),
  'team-ab/prod/db': secret('team-ab/prod/db', { env: 'prod' }),
  'billing/prod/stripe-key': secret('billing/prod/stripe-key'),
  'billing/dev/stripe-key': secret('billing/dev/stripe-key', { env: 'dev' }),
  'team-a': secret('team-a'),
  'shared/readme': secret('shared/readme', {}, 'corp:alice'),
  'billing/prod-old/key': secret('billing/prod-old/key'),
};

// The column order of every row below.
const COLUMNS = [
  'read',
  'write',
  'list',
  'readMetadata',
  'writeMetadata',
  'delete',
  'restore',
  'destroy',
  'admin',
  'issue',
] as const;

// biome-ignore format: the matrix is aligned by hand, one column per action
const EXPECTED: Record<string, Record<string, Cell[]>> = {
  // admins may do everything, but the prod forbids hold for admins outside prod-readers too.
  ada: {
    //                         read write list rMeta wMeta del rest destr admin issue
    'team-a/db/password':      [D,   D,    A,   A,    D,    A,  A,   A,    A,     A],
    'team-a/app/config':       [A,   A,    A,   A,    A,    A,  A,   A,    A,     A],
    'team-a/ci/token':         [A,   A,    A,   A,    A,    A,  A,   A,    A,     A],
    'team-ab/key':             [A,   A,    A,   A,    A,    A,  A,   A,    A,     A],
    'team-ab/prod/db':         [D,   D,    A,   A,    D,    A,  A,   A,    A,     A],
    'billing/prod/stripe-key': [A,   A,    A,   A,    A,    A,  A,   A,    A,     A],
    'billing/dev/stripe-key':  [A,   A,    A,   A,    A,    A,  A,   A,    A,     A],
    'team-a':                  [A,   A,    A,   A,    A,    A,  A,   A,    A,     A],
    'shared/readme':           [A,   A,    A,   A,    A,    A,  A,   A,    A,     A],
    'billing/prod-old/key':    [A,   A,    A,   A,    A,    A,  A,   A,    A,     A],
  },
  // No example grants `issue` (signing with a CA secret's key): only admins may, by the baseline.
  // team-a owns team-a/ (not destroy, not admin); prod secrets there are out of reach of its values.
  alice: {
    'team-a/db/password':      [D,   D,    A,   A,    D,    A,  A,   D,    D,     D],
    'team-a/app/config':       [A,   A,    A,   A,    A,    A,  A,   D,    D,     D],
    'team-a/ci/token':         [A,   A,    A,   A,    A,    A,  A,   D,    D,     D],
    'team-ab/key':             [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/prod/db':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod/stripe-key': [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/dev/stripe-key':  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a':                  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'shared/readme':           [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod-old/key':    [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
  },
  // team-a and prod-readers: the team's prod secrets too.
  carol: {
    'team-a/db/password':      [A,   A,    A,   A,    A,    A,  A,   D,    D,     D],
    'team-a/app/config':       [A,   A,    A,   A,    A,    A,  A,   D,    D,     D],
    'team-a/ci/token':         [A,   A,    A,   A,    A,    A,  A,   D,    D,     D],
    'team-ab/key':             [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/prod/db':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod/stripe-key': [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/dev/stripe-key':  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a':                  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'shared/readme':           [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod-old/key':    [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
  },
  // team-ab: the sibling folder with the common prefix; team-a's grant never reaches it and back.
  bob: {
    'team-a/db/password':      [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/app/config':       [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/ci/token':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/key':             [A,   A,    A,   A,    A,    A,  A,   D,    D,     D],
    'team-ab/prod/db':         [D,   D,    A,   A,    D,    A,  A,   D,    D,     D],
    'billing/prod/stripe-key': [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/dev/stripe-key':  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a':                  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'shared/readme':           [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod-old/key':    [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
  },
  // The workload role reads billing/prod/ only (not billing/prod-old/).
  billingApi: {
    'team-a/db/password':      [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/app/config':       [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/ci/token':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/key':             [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/prod/db':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod/stripe-key': [A,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'billing/dev/stripe-key':  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a':                  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'shared/readme':           [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod-old/key':    [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
  },
  // Auditors: list and metadata everywhere, nothing else.
  audrey: {
    'team-a/db/password':      [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'team-a/app/config':       [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'team-a/ci/token':         [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'team-ab/key':             [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'team-ab/prod/db':         [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'billing/prod/stripe-key': [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'billing/dev/stripe-key':  [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'team-a':                  [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'shared/readme':           [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
    'billing/prod-old/key':    [D,   D,    A,   A,    D,    D,  D,   D,    D,     D],
  },
  // Revoked: a forbid on the principal beats admins and team-a.
  mallory: {
    'team-a/db/password':      [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/app/config':       [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/ci/token':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/key':             [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/prod/db':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod/stripe-key': [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/dev/stripe-key':  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a':                  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'shared/readme':           [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod-old/key':    [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
  },
  // Break-glass from the admin network through OIDC: read and repair, never delete or destroy;
  // prod values stay with prod-readers.
  emma: {
    'team-a/db/password':      [D,   D,    A,   A,    D,    D,  A,   D,    D,     D],
    'team-a/app/config':       [A,   A,    A,   A,    A,    D,  A,   D,    D,     D],
    'team-a/ci/token':         [A,   A,    A,   A,    A,    D,  A,   D,    D,     D],
    'team-ab/key':             [A,   A,    A,   A,    A,    D,  A,   D,    D,     D],
    'team-ab/prod/db':         [D,   D,    A,   A,    D,    D,  A,   D,    D,     D],
    'billing/prod/stripe-key': [A,   A,    A,   A,    A,    D,  A,   D,    D,     D],
    'billing/dev/stripe-key':  [A,   A,    A,   A,    A,    D,  A,   D,    D,     D],
    'team-a':                  [A,   A,    A,   A,    A,    D,  A,   D,    D,     D],
    'shared/readme':           [A,   A,    A,   A,    A,    D,  A,   D,    D,     D],
    'billing/prod-old/key':    [A,   A,    A,   A,    A,    D,  A,   D,    D,     D],
  },
  // The same break-glass account from outside the admin network: the guard forbids everything.
  emmaAway: {
    'team-a/db/password':      [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/app/config':       [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/ci/token':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/key':             [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/prod/db':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod/stripe-key': [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/dev/stripe-key':  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a':                  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'shared/readme':           [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod-old/key':    [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
  },
  // No groups, no grants: owning shared/readme would not help either (alice owns it, and gets nothing).
  nobody: {
    'team-a/db/password':      [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/app/config':       [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a/ci/token':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/key':             [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-ab/prod/db':         [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod/stripe-key': [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/dev/stripe-key':  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'team-a':                  [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'shared/readme':           [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
    'billing/prod-old/key':    [D,   D,    D,   D,    D,    D,  D,   D,    D,     D],
  },
};

const cases = Object.entries(EXPECTED).flatMap(([who, rows]) =>
  Object.entries(rows).flatMap(([path, cells]) =>
    cells.map((expected, i) => ({ who, path, action: COLUMNS[i] as (typeof COLUMNS)[number], expected })),
  ),
);

describe('the decision matrix (baseline + example policies)', () => {
  let sliced: CedarAuthorizer;
  let whole: CedarAuthorizer;

  beforeAll(async () => {
    const set = await loadPolicyDir(POLICY_DIR, { extraFiles: EXAMPLES });
    sliced = new CedarAuthorizer(set, { logger: silentLogger });
    whole = new CedarAuthorizer(set, { logger: silentLogger, slicing: false });
  });

  it('covers at least 5 principals x every action x 10 resources, each written out', () => {
    expect([...COLUMNS].sort()).toEqual([...ACTIONS].sort());
    expect(Object.keys(EXPECTED).sort()).toEqual(Object.keys(PRINCIPALS).sort());
    expect(Object.keys(PRINCIPALS).length).toBeGreaterThanOrEqual(5);
    for (const rows of Object.values(EXPECTED)) {
      expect(Object.keys(rows).sort()).toEqual(Object.keys(RESOURCES).sort());
      for (const cells of Object.values(rows)) expect(cells).toHaveLength(ACTIONS.length);
    }
    expect(cases.length).toBe(Object.keys(PRINCIPALS).length * ACTIONS.length * 10);
  });

  it.each(cases)('$who $action $path -> $expected', ({ who, path, action, expected }) => {
    const { principal, context } = PRINCIPALS[who] as (typeof PRINCIPALS)[string];
    const resource = RESOURCES[path] as SecretResource;
    const decision = sliced.authorize({ principal, action, resource, context });
    expect(decision.allowed ? A : D).toBe(expected);
    expect(decision.errors).toEqual([]);
    // An allow always names the permit(s) that granted it.
    if (decision.allowed) expect(decision.policyIds.length).toBeGreaterThan(0);
  });

  it('gives exactly the same decisions, deciding policies and errors with and without slicing', () => {
    for (const { who, path, action } of cases) {
      const { principal, context } = PRINCIPALS[who] as (typeof PRINCIPALS)[string];
      const request = { principal, action, resource: RESOURCES[path] as SecretResource, context };
      expect(sliced.authorize(request), `${who} ${action} ${path}`).toEqual(whole.authorize(request));
    }
  });

  it('names the deciding policies: the permit that allowed, the forbid that denied', () => {
    const ask = (who: string, action: (typeof COLUMNS)[number], path: string) => {
      const { principal, context } = PRINCIPALS[who] as (typeof PRINCIPALS)[string];
      return sliced.authorize({ principal, action, resource: RESOURCES[path] as SecretResource, context });
    };
    expect(ask('alice', 'read', 'team-a/ci/token').policyIds).toEqual(['team-a-owns-team-a']);
    expect(ask('alice', 'read', 'team-a/db/password').policyIds).toEqual(['prod-read-needs-prod-readers']);
    expect(ask('mallory', 'read', 'team-a/ci/token').policyIds).toEqual(['revoke-corp-mallory']);
    expect(ask('emmaAway', 'read', 'team-a/ci/token').policyIds).toEqual(['break-glass-guard']);
    // No permit applies: denied by default, no policy to name.
    expect(ask('nobody', 'read', 'team-a/ci/token').policyIds).toEqual([]);
  });

  it('decides list on folders by whole segments: team-a/ is not team-ab/', () => {
    const { principal, context } = PRINCIPALS.alice as (typeof PRINCIPALS)[string];
    const list = (path: string) =>
      sliced.authorize({ principal, action: 'list', resource: { kind: 'Folder', path }, context }).allowed;
    expect(list('team-a/')).toBe(true);
    expect(list('team-a/db/')).toBe(true);
    expect(list('team-ab/')).toBe(false);
    expect(list('team-ab/team-a/')).toBe(false);
    expect(list('billing/')).toBe(false);
  });

  it('refuses actions on resources the schema does not allow them on (read on a folder)', () => {
    const { principal, context } = PRINCIPALS.ada as (typeof PRINCIPALS)[string];
    const decision = sliced.authorize({
      principal,
      action: 'read',
      resource: { kind: 'Folder', path: 'team-a/' },
      context,
    });
    expect(decision.allowed).toBe(false);
  });
});

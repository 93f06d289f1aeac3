import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Principal } from '../../lib/authn/principal.js';
import {
  compilePolicySet,
  PolicySetError,
  policyValidations,
  schemaHash,
  validatorFingerprint,
} from '../../lib/authz/policy-set.js';
import { parsePrincipal } from '../../lib/cli/actions/control.js';
import { compilePushed, forbidsOf } from '../../lib/control/policies.js';
import { type RevocationEntry, revocationFor } from '../../lib/control/revocations.js';
import { controlSettings } from '../../lib/control/settings.js';
import { ConfigError } from '../../lib/errors.js';

const alice: Principal = {
  type: 'User',
  id: 'corp:alice',
  groups: ['devs'],
  attributes: {},
  authMethod: 'oidc',
  issuedAt: 1_000,
};
const base = { by: 'User::"dev:admin"', at: '2026-01-01T00:00:00Z' };
const entry = (e: Partial<RevocationEntry> & Record<string, unknown>): RevocationEntry =>
  ({ id: 'r-00000001', ...base, ...e }) as RevocationEntry;
const NOW = Date.parse('2026-06-01T00:00:00Z');

describe('revocationFor', () => {
  it('when an entry names the principal, with or without its type, it applies; another type does not', () => {
    expect(
      revocationFor({ entries: [entry({ principal: { id: 'corp:alice' } })] }, alice, NOW),
    ).toBeDefined();
    expect(
      revocationFor({ entries: [entry({ principal: { type: 'User', id: 'corp:alice' } })] }, alice, NOW),
    ).toBeDefined();
    expect(
      revocationFor({ entries: [entry({ principal: { type: 'Role', id: 'corp:alice' } })] }, alice, NOW),
    ).toBeUndefined();
  });

  it('when an entry names a group, it applies to its members only', () => {
    expect(revocationFor({ entries: [entry({ group: 'devs' })] }, alice, NOW)).toBeDefined();
    expect(revocationFor({ entries: [entry({ group: 'ops' })] }, alice, NOW)).toBeUndefined();
  });

  it('when an entry has lapsed (until passed), it no longer applies', () => {
    const lapsed = entry({ group: 'devs', until: '2026-05-31T00:00:00Z' });
    expect(revocationFor({ entries: [lapsed] }, alice, NOW)).toBeUndefined();
  });

  it('when only credentials issued before a cutoff are revoked, a newer one passes and one without an issue time is refused', () => {
    const cut = (seconds: number) =>
      entry({ principal: { id: 'corp:alice' }, tokensIssuedBefore: new Date(seconds * 1000).toISOString() });
    expect(revocationFor({ entries: [cut(1_001)] }, alice, NOW)).toBeDefined();
    expect(revocationFor({ entries: [cut(1_000)] }, alice, NOW)).toBeUndefined();
    const { issuedAt: _i, ...noIat } = alice;
    expect(revocationFor({ entries: [cut(1_000)] }, noIat, NOW)).toBeDefined();
  });
});

describe('compilePushed (the bundled forbid floor)', () => {
  const schema = { name: 'schema.cedarschema', text: readFileSync('policies/schema.cedarschema', 'utf8') };
  const bundle = compilePolicySet(schema, [
    {
      name: 'floor.cedar',
      text: '@id("no-eve")\nforbid (principal == Coffer::User::"dev:eve", action, resource);\n',
    },
  ]);
  const admins = {
    name: 'admins.cedar',
    text: '@id("admins")\npermit (principal in Coffer::Group::"admins", action, resource);\n',
  };

  it('when the pushed set leaves a bundled forbid out, it is added as floor:<id> and the hash covers it', () => {
    const alone = compilePolicySet(schema, [admins]);
    const set = compilePushed(schema, [admins], forbidsOf(bundle));
    expect(set.policies.map((p) => p.id)).toEqual(['admins', 'floor:no-eve']);
    expect(set.hash).not.toBe(alone.hash);
  });

  it('when the pushed set has the same forbid under another id and layout, nothing is added', () => {
    const same = {
      name: 'mine.cedar',
      text: '// kept\n@id("eve-out")\nforbid (\n  principal == Coffer::User::"dev:eve",\n  action,\n  resource\n);\n',
    };
    const set = compilePushed(schema, [admins, same], forbidsOf(bundle));
    expect(set.policies.map((p) => p.id)).toEqual(['admins', 'eve-out']);
  });

  it('when a file name is not a plain .cedar name, the set is refused', () => {
    expect(() => compilePushed(schema, [{ ...admins, name: '../x.cedar' }], [])).toThrow(PolicySetError);
  });

  it('when the stored version names this set and this schema, it loads without validation and decides the same', () => {
    const floor = forbidsOf(bundle);
    const validated = compilePushed(schema, [admins], floor);
    const seal = { hash: validated.hash, schemaHash: schemaHash(schema), validator: validatorFingerprint() };
    const before = policyValidations();
    const sealed = compilePushed(schema, [admins], floor, seal);
    expect(policyValidations()).toBe(before);
    expect(sealed.hash).toBe(validated.hash);
    expect(sealed.policies).toEqual(validated.policies);
    expect([...sealed.actions.keys()]).toEqual([...validated.actions.keys()]);
  });

  it('when the seal names another schema, another validator or another hash (a changed floor, other files), the set is validated', () => {
    const floor = forbidsOf(bundle);
    const validated = compilePushed(schema, [admins], floor);
    const good = { hash: validated.hash, schemaHash: schemaHash(schema), validator: validatorFingerprint() };
    for (const [seal, files, f] of [
      [{ ...good, schemaHash: '0'.repeat(64) }, [admins], floor],
      [{ ...good, validator: 'f'.repeat(64) }, [admins], floor],
      [good, [admins], []],
      [good, [{ ...admins, text: admins.text.replace('admins")', 'admins2")') }], floor],
    ] as const) {
      const before = policyValidations();
      compilePushed(schema, files, f, seal);
      expect(policyValidations()).toBe(before + 1);
    }
    // A sealed but invalid file is still refused: it is validated, and fails.
    const invalid = {
      name: 'bad.cedar',
      text: 'permit (principal, action, resource) when { resource.nope };',
    };
    expect(() => compilePushed(schema, [invalid], floor, good)).toThrow(PolicySetError);
  });
});

describe('controlSettings', () => {
  it('when bounds are given, they are read in seconds; longer than the issue allows is refused', () => {
    expect(
      controlSettings({ COFFER_POLICY_FRESHNESS_SECONDS: '5', COFFER_REVOCATION_FRESHNESS_SECONDS: '0.5' }),
    ).toEqual({ policyFreshnessMs: 5000, revocationFreshnessMs: 500 });
    expect(() => controlSettings({ COFFER_REVOCATION_FRESHNESS_SECONDS: '11' })).toThrow(ConfigError);
    expect(() => controlSettings({ COFFER_POLICY_APPROVAL: 'yes' })).toThrow(ConfigError);
    expect(controlSettings({ COFFER_POLICY_APPROVAL: 'required' })).toEqual({ requireApproval: true });
  });
});

describe('parsePrincipal (coffer revoke)', () => {
  it('when given an entity id, it keeps type and id; a bare id matches any type', () => {
    expect(parsePrincipal('User::"corp:alice"')).toEqual({ type: 'User', id: 'corp:alice' });
    expect(parsePrincipal('Coffer::Workload::"cert:CN=a\\"b"')).toEqual({
      type: 'Workload',
      id: 'cert:CN=a"b',
    });
    expect(parsePrincipal('corp:alice')).toEqual({ id: 'corp:alice' });
    expect(() => parsePrincipal('Group::"x"')).toThrow();
  });
});

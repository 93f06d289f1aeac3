import { describe, expect, it } from 'vitest';
import { mapAttributes, mapGroups, principalFromClaims, readClaim } from '../../lib/authn/claims.js';

const issuer = {
  alias: 'corp',
  claims: {
    id: 'sub',
    groups: ['realm_access', 'roles'],
    attributes: { email: 'email', level: 'lvl', team: ['org', 'team'] },
  },
  groupMapping: { eng: ['engineers'], ops: ['operators', 'oncall'], both: ['engineers'] },
} as const;

describe('principal from verified claims', () => {
  it('when claims are complete, it builds the principal field by field', () => {
    const principal = principalFromClaims(issuer, {
      sub: 'alice',
      realm_access: { roles: ['eng', 'ops', 'admins', 'both'] },
      email: 'alice@example.test',
      lvl: 3,
      org: { team: 'platform' },
    });
    expect(principal).toEqual({
      type: 'User',
      id: 'corp:alice',
      groups: ['engineers', 'oncall', 'operators'],
      attributes: { email: 'alice@example.test', level: '3', team: 'platform' },
      authMethod: 'oidc',
      issuer: 'corp',
    });
  });

  it('when the IdP claims groups that are not mapped (admins), they give no Coffer group', () => {
    expect(mapGroups(['admins', 'root', 'Admins'], issuer.groupMapping)).toEqual([]);
    expect(mapGroups('eng', issuer.groupMapping)).toEqual(['engineers']);
    expect(mapGroups({ eng: true }, issuer.groupMapping)).toEqual([]);
    // Inherited object keys are not mappings.
    expect(mapGroups(['constructor', '__proto__', 'toString'], issuer.groupMapping)).toEqual([]);
    expect(mapGroups(['eng'], {})).toEqual([]);
  });

  it('when the id claim is missing, empty, too long, not a string or has control characters, it refuses', () => {
    for (const sub of [undefined, '', 'x'.repeat(257), 42, ['a'], 'alice\nbob', 'a\u0000']) {
      expect(() => principalFromClaims(issuer, { sub } as never), String(sub)).toThrow();
    }
  });

  it('when claim paths cross non-objects or inherited keys, they read nothing', () => {
    expect(readClaim({ a: 'x' }, ['a', 'length'])).toBeUndefined();
    expect(readClaim({}, 'constructor')).toBeUndefined();
    expect(readClaim({ a: { b: ['x'] } }, ['a', 'b'])).toEqual(['x']);
    expect(mapAttributes({ email: ['a'], lvl: { x: 1 } }, issuer.claims.attributes)).toEqual({});
  });
});

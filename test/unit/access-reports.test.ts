import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseGroups, parsePrincipalRef, reportFolder } from '../../lib/access/reports.js';
import { namedEntities } from '../../lib/authz/named-entities.js';
import { compilePolicySet, SCHEMA_FILE } from '../../lib/authz/policy-set.js';
import { InvalidRequestError } from '../../lib/errors.js';

const SCHEMA = fileURLToPath(new URL(`../../policies/${SCHEMA_FILE}`, import.meta.url));

describe('access report inputs', () => {
  it('when a principal is named, its type is read from an entity reference and left open for a bare id', () => {
    expect(parsePrincipalRef('corp:alice')).toEqual({ id: 'corp:alice' });
    expect(parsePrincipalRef('User::"corp:alice"')).toEqual({ type: 'User', id: 'corp:alice' });
    expect(parsePrincipalRef('Coffer::Role::"arn:aws:iam::123456789012:role/app"')).toEqual({
      type: 'Role',
      id: 'arn:aws:iam::123456789012:role/app',
    });
    expect(parsePrincipalRef('Workload::"cert:CN=ca:CN=a \\"quoted\\""')).toEqual({
      type: 'Workload',
      id: 'cert:CN=ca:CN=a "quoted"',
    });
    for (const bad of ['', '   ', 'Group::"admins"', 'User::""', 'User::"x', 'Secret::"a/b"']) {
      expect(() => parsePrincipalRef(bad), bad).toThrow(InvalidRequestError);
    }
  });

  it('when groups are given, they are trimmed, sorted, deduplicated and checked', () => {
    expect(parseGroups(['b', ' a ', 'b', ''])).toEqual(['a', 'b']);
    expect(() => parseGroups(['bad group'])).toThrow(InvalidRequestError);
    expect(() => parseGroups(Array.from({ length: 51 }, (_, i) => `g${i}`))).toThrow(InvalidRequestError);
  });

  it('when a report covers a prefix or a path, the folder it needs admin on is the innermost whole one', () => {
    expect(reportFolder('')).toBe('');
    expect(reportFolder('team-a')).toBe('');
    expect(reportFolder('team-a/')).toBe('team-a/');
    expect(reportFolder('team-a/d')).toBe('team-a/');
    expect(reportFolder('team-a/db/password')).toBe('team-a/db/');
  });

  it('when policies name principals and groups in scopes or conditions, each is found once', async () => {
    const set = compilePolicySet({ name: SCHEMA_FILE, text: await readFile(SCHEMA, 'utf8') }, [
      {
        name: 'p.cedar',
        text: `
permit (principal in Coffer::Group::"a", action, resource);
permit (principal == Coffer::User::"corp:x", action == Coffer::Action::"read", resource in Coffer::Folder::"t/");
forbid (principal, action, resource) when { principal in Coffer::Group::"b" || principal == Coffer::Role::"arn:aws:iam::123456789012:role/r" } unless { principal in Coffer::Group::"a" };
`,
      },
    ]);
    const names = namedEntities(set.policies.map((p) => p.json)).map((u) => `${u.type}::${u.id}`);
    expect(names).toEqual([
      'Coffer::Action::read',
      'Coffer::Folder::t/',
      'Coffer::Group::a',
      'Coffer::Group::b',
      'Coffer::Role::arn:aws:iam::123456789012:role/r',
      'Coffer::User::corp:x',
    ]);
  });
});

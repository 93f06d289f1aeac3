import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { AuthorizationRequest, Authorizer } from '../../lib/authz/authorizer.js';
import { HmacStorageMacKey } from '../../lib/keys/storage-mac.js';
import { grantScopedAuthorizer } from '../../lib/secrets/rotators/grant-access.js';
import { RotationGrants } from '../../lib/secrets/rotators/grants.js';
import { checkRotator, isLoopbackUrl } from '../../lib/secrets/rotators/invoker.js';

const key = new HmacStorageMacKey([{ id: 'k1', key: randomBytes(32) }]);
let now = Date.parse('2026-05-01T00:00:00Z');
const grants = new RotationGrants({ key, binding: 'install-a', now: () => new Date(now) });

describe('rotation grants', () => {
  it('when a grant is made for a step, it verifies to that secret, version, step and stage only', () => {
    const token = grants.issue('team/db/password', 7, 'testSecret');
    expect(token.startsWith('cgr1.')).toBe(true);
    expect(grants.verify(token)).toEqual({
      path: 'team/db/password',
      version: 7,
      step: 'testSecret',
      stage: 'pending',
      expiresAt: Math.floor(now / 1000) + 120,
    });
    expect(grants.verify(grants.issue('team/db/password', 6, 'revertSecret'))?.stage).toBe('previous');
  });

  it('when a grant is edited, made under another key or installation, or has expired, it does not verify', () => {
    const token = grants.issue('team/db/password', 7, 'setSecret');
    const [prefix, body, mac] = token.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>;
    for (const change of [
      { p: 'team/other' },
      { v: 8 },
      { s: 'revertSecret' },
      { e: (payload.e as number) + 600 },
    ]) {
      const edited = Buffer.from(JSON.stringify({ ...payload, ...change })).toString('base64url');
      expect(grants.verify(`${prefix}.${edited}.${mac}`), JSON.stringify(change)).toBeUndefined();
    }
    const otherKey = new RotationGrants({
      key: new HmacStorageMacKey([{ id: 'k1', key: randomBytes(32) }]),
      binding: 'install-a',
      now: () => new Date(now),
    });
    expect(otherKey.verify(token)).toBeUndefined();
    const otherInstall = new RotationGrants({ key, binding: 'install-b', now: () => new Date(now) });
    expect(otherInstall.verify(token)).toBeUndefined();
    expect(grants.verify(`${token}.x`)).toBeUndefined();
    expect(grants.verify('eyJhbGciOiJub25lIn0.e30.')).toBeUndefined();
    now += 121_000;
    expect(grants.verify(token)).toBeUndefined();
  });

  it("when a grant's principal is decided, only readMetadata and read of its own secret are allowed, whatever the policies say", () => {
    const permissive: Authorizer = {
      policySetHash: 'all',
      authorize: () => ({ allowed: true, policyIds: ['permit-all'], errors: [] }),
    };
    const decide = grantScopedAuthorizer(permissive);
    const scope = grants.verify(grants.issue('team/db/password', 3, 'setSecret'));
    const principal = {
      type: 'Workload' as const,
      id: 'rotator:team/db/password@3:setSecret',
      groups: [],
      attributes: {},
      authMethod: 'grant' as const,
      ...(scope ? { grant: scope } : {}),
    };
    const ask = (action: AuthorizationRequest['action'], path: string) =>
      decide.authorize({
        principal,
        action,
        resource: { kind: 'Secret', path, tags: {} },
        context: { authMethod: 'grant', sourceIp: '127.0.0.1', time: 0 },
      }).allowed;
    expect(ask('read', 'team/db/password')).toBe(true);
    expect(ask('readMetadata', 'team/db/password')).toBe(true);
    for (const action of ['write', 'list', 'writeMetadata', 'admin', 'delete', 'issue'] as const) {
      expect(ask(action, 'team/db/password'), action).toBe(false);
    }
    expect(ask('read', 'team/db/other')).toBe(false);
    const { grant: _g, ...noScope } = principal;
    expect(
      decide.authorize({
        principal: noScope,
        action: 'read',
        resource: { kind: 'Secret', path: 'team/db/password', tags: {} },
        context: { authMethod: 'grant', sourceIp: '127.0.0.1', time: 0 },
      }).allowed,
    ).toBe(false);
  });
});

describe('rotator addresses', () => {
  it('when a webhook URL is checked, only plain http(s) on loopback passes', () => {
    for (const ok of [
      'http://127.0.0.1:8080/r',
      'https://localhost/r',
      'http://[::1]:9/x',
      'http://127.9.9.9/',
    ]) {
      expect(isLoopbackUrl(ok), ok).toBe(true);
    }
    for (const bad of [
      'http://10.0.0.1/r',
      'http://127.0.0.1.nip.io/r',
      'http://localhost.example.com/r',
      'http://u:p@127.0.0.1/r',
      'ftp://127.0.0.1/r',
      'http://0.0.0.0/r',
      'http://[::ffff:10.0.0.1]/r',
      'not a url',
    ]) {
      expect(isLoopbackUrl(bad), bad).toBe(false);
    }
  });

  it('when a Lambda ARN is named, it must be on the allow-list and the installation must invoke Lambda', () => {
    const arn = 'arn:aws:lambda:eu-west-1:123456789012:function:rotate-db';
    const invoker = { invoke: async () => {} };
    expect(checkRotator({ lambdaArn: arn }, { lambda: { allowedArns: [arn], invoker } })).toEqual({
      kind: 'lambda',
      arn,
    });
    expect(() => checkRotator({ lambdaArn: `${arn}2` }, { lambda: { allowedArns: [arn], invoker } })).toThrow(
      'allow-list',
    );
    expect(() => checkRotator({ lambdaArn: arn }, { lambda: { allowedArns: [arn] } })).toThrow(
      'cannot invoke',
    );
    expect(() => checkRotator({ webhook: 'http://127.0.0.1/r' }, { lambda: { allowedArns: [arn] } })).toThrow(
      'no webhook',
    );
    expect(checkRotator({}, {})).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { CofferAuthenticator } from '../../lib/authn/authenticator.js';
import { iamCallerFromEvent, principalFromIamCaller } from '../../lib/authn/iam.js';
import type { Principal } from '../../lib/authn/principal.js';
import type { TokenVerifier } from '../../lib/authn/verifier.js';
import { UnauthenticatedError } from '../../lib/errors.js';

describe('IAM caller from an HTTP API v2 event', () => {
  it('when the IAM authorizer context is present, it takes the caller from it', () => {
    const event = {
      headers: { 'x-amz-user-arn': 'arn:aws:iam::999999999999:user/mallory' },
      requestContext: {
        authorizer: {
          iam: {
            accessKey: 'ASIAEXAMPLE',
            accountId: '111122223333',
            callerId: 'AROAEXAMPLE:ci',
            cognitoIdentity: null,
            principalOrgId: 'o-abc123',
            userArn: 'arn:aws:sts::111122223333:assumed-role/deployer/ci',
            userId: 'AROAEXAMPLE:ci',
          },
        },
      },
    };
    expect(iamCallerFromEvent(event)).toEqual({
      userArn: 'arn:aws:sts::111122223333:assumed-role/deployer/ci',
      accountId: '111122223333',
      callerId: 'AROAEXAMPLE:ci',
      principalOrgId: 'o-abc123',
    });
  });

  it('when there is no authorizer context, it finds no caller, whatever the headers say', () => {
    expect(iamCallerFromEvent(undefined)).toBeUndefined();
    expect(iamCallerFromEvent({})).toBeUndefined();
    expect(iamCallerFromEvent({ requestContext: null })).toBeUndefined();
    expect(iamCallerFromEvent({ requestContext: { authorizer: null } })).toBeUndefined();
    expect(iamCallerFromEvent({ requestContext: { authorizer: { iam: null } } })).toBeUndefined();
    expect(iamCallerFromEvent({ requestContext: { authorizer: { iam: { userArn: 42 } } } })).toBeUndefined();
    const spoofed = {
      headers: { 'x-amz-user-arn': 'arn:aws:iam::111122223333:user/admin', 'x-coffer-principal': 'admin' },
      requestContext: { authorizer: { jwt: { claims: { sub: 'x' } } } },
    };
    expect(iamCallerFromEvent(spoofed as never)).toBeUndefined();
  });
});

describe('IAM ARN mapping', () => {
  const cases: [string, Principal][] = [
    [
      'arn:aws:iam::111122223333:user/alice',
      {
        type: 'User',
        id: 'arn:aws:iam::111122223333:user/alice',
        groups: [],
        attributes: { account: '111122223333' },
        authMethod: 'iam',
      },
    ],
    [
      'arn:aws:iam::111122223333:user/division/team/alice',
      {
        type: 'User',
        id: 'arn:aws:iam::111122223333:user/alice',
        groups: [],
        attributes: { account: '111122223333' },
        authMethod: 'iam',
      },
    ],
    [
      'arn:aws:iam::111122223333:role/service/deployer',
      {
        type: 'Role',
        id: 'arn:aws:iam::111122223333:role/deployer',
        groups: [],
        attributes: { account: '111122223333' },
        authMethod: 'iam',
      },
    ],
    [
      'arn:aws:sts::111122223333:assumed-role/deployer/ci-run-42',
      {
        type: 'Role',
        id: 'arn:aws:iam::111122223333:role/deployer',
        groups: [],
        attributes: { account: '111122223333', sessionName: 'ci-run-42' },
        authMethod: 'iam',
      },
    ],
    [
      'arn:aws-cn:sts::111122223333:assumed-role/deployer/i-0abc',
      {
        type: 'Role',
        id: 'arn:aws-cn:iam::111122223333:role/deployer',
        groups: [],
        attributes: { account: '111122223333', sessionName: 'i-0abc' },
        authMethod: 'iam',
      },
    ],
    [
      'arn:aws-us-gov:iam::111122223333:user/ops/bob+ci=1,a.b@c-d',
      {
        type: 'User',
        id: 'arn:aws-us-gov:iam::111122223333:user/bob+ci=1,a.b@c-d',
        groups: [],
        attributes: { account: '111122223333' },
        authMethod: 'iam',
      },
    ],
    [
      'arn:aws-us-gov:sts::111122223333:assumed-role/deployer/botocore-session-1700000000',
      {
        type: 'Role',
        id: 'arn:aws-us-gov:iam::111122223333:role/deployer',
        groups: [],
        attributes: { account: '111122223333', sessionName: 'botocore-session-1700000000' },
        authMethod: 'iam',
      },
    ],
    [
      'arn:aws-cn:iam::111122223333:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS',
      {
        type: 'Role',
        id: 'arn:aws-cn:iam::111122223333:role/AWSServiceRoleForECS',
        groups: [],
        attributes: { account: '111122223333' },
        authMethod: 'iam',
      },
    ],
  ];
  for (const [arn, expected] of cases) {
    it(`when the caller is ${arn}, it maps to ${expected.type}::"${expected.id}"`, () => {
      expect(principalFromIamCaller({ userArn: arn })).toEqual(expected);
      expect(principalFromIamCaller({ userArn: arn, accountId: '111122223333' })).toEqual(expected);
    });
  }

  it('when the same role name is in another account, it is another principal', () => {
    const a = principalFromIamCaller({ userArn: 'arn:aws:sts::111122223333:assumed-role/deployer/run' });
    const b = principalFromIamCaller({ userArn: 'arn:aws:sts::444455556666:assumed-role/deployer/run' });
    expect(a.id).not.toBe(b.id);
    expect(b.id).toBe('arn:aws:iam::444455556666:role/deployer');
  });

  it('when the caller is root, a federated user, malformed or from another account than reported, it refuses', () => {
    for (const userArn of [
      'arn:aws:iam::111122223333:root',
      'arn:aws-us-gov:iam::111122223333:root',
      'arn:aws-cn:iam::111122223333:root',
      'arn:aws:sts::111122223333:federated-user/bob',
      'arn:aws-cn:sts::111122223333:federated-user/bob',
      'arn:aws:sts::111122223333:assumed-role/deployer/s',
      'arn:aws:iam::111122223333:user/alice/',
      'arn:evil:iam::111122223333:user/alice',
      'arn:aws:sts::111122223333:assumed-role/deployer',
      'arn:aws:sts::111122223333:assumed-role/path/deployer/session',
      'arn:aws:iam::1111:user/alice',
      'arn:aws:iam::111122223333:user/',
      'arn:aws:iam::111122223333:user//alice',
      'arn:aws:iam::111122223333:user/alice\n',
      'arn:aws:iam::111122223333:group/admins',
      'not-an-arn',
    ]) {
      expect(() => principalFromIamCaller({ userArn }), userArn).toThrow(UnauthenticatedError);
    }
    expect(() =>
      principalFromIamCaller({ userArn: 'arn:aws:iam::111122223333:user/alice', accountId: '444455556666' }),
    ).toThrow(UnauthenticatedError);
  });

  it('when the organisation id is reported, it becomes the orgId attribute', () => {
    expect(
      principalFromIamCaller({ userArn: 'arn:aws:iam::111122223333:user/a', principalOrgId: 'o-abc' })
        .attributes,
    ).toEqual({ account: '111122223333', orgId: 'o-abc' });
  });
});

describe('authenticator routing between IAM and bearer tokens', () => {
  const verifier: TokenVerifier = {
    issuer: 'https://idp.example',
    alias: 'idp',
    verify: async () => ({
      type: 'User',
      id: 'idp:x',
      groups: [],
      attributes: {},
      authMethod: 'oidc',
      issuer: 'idp',
    }),
  };
  const auth = new CofferAuthenticator({ verifiers: [verifier] });
  const token = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(
    '{"iss":"https://idp.example"}',
  ).toString('base64url')}.sig`;
  const iamCaller = { userArn: 'arn:aws:iam::111122223333:user/alice' };

  it('when on /iam/v1 with the authorizer context, it is the IAM caller and the header is not read', async () => {
    const p = await auth.authenticate({
      path: '/iam/v1/whoami',
      authorization: ['AWS4-HMAC-SHA256 a, b, c'],
      iamCaller,
    });
    expect(p.authMethod).toBe('iam');
  });

  it('when on /iam/v1 without the context, it refuses even a valid bearer token', async () => {
    await expect(
      auth.authenticate({ path: '/iam/v1/whoami', authorization: [`Bearer ${token}`] }),
    ).rejects.toBeInstanceOf(UnauthenticatedError);
    await expect(auth.authenticate({ path: '/iam/v1', authorization: [] })).rejects.toBeInstanceOf(
      UnauthenticatedError,
    );
  });

  it('when on /v1 with an IAM context, it ignores the context and needs a bearer token', async () => {
    await expect(
      auth.authenticate({ path: '/v1/whoami', authorization: [], iamCaller }),
    ).rejects.toBeInstanceOf(UnauthenticatedError);
    const p = await auth.authenticate({ path: '/v1/whoami', authorization: [`Bearer ${token}`], iamCaller });
    expect(p.authMethod).toBe('oidc');
    // A look-alike prefix is not the IAM prefix.
    await expect(
      auth.authenticate({ path: '/iam/v10/whoami', authorization: [], iamCaller }),
    ).rejects.toBeInstanceOf(UnauthenticatedError);
  });

  it('when an IAM request is refused, the log says why and names the ARN API Gateway proved', async () => {
    const logs: Record<string, unknown>[] = [];
    const capture = {
      info() {},
      error() {},
      warn: (message: string, f?: Record<string, unknown>) => logs.push({ message, ...f }),
    };
    const logged = new CofferAuthenticator({ verifiers: [verifier], logger: capture });
    const cases: [Parameters<typeof logged.authenticate>[0], Record<string, unknown>][] = [
      [
        { path: '/iam/v1/whoami', authorization: [`Bearer ${token}`], requestId: 'r1' },
        { reason: 'no_iam_context' },
      ],
      [
        {
          path: '/iam/v1/whoami',
          authorization: [],
          iamCaller: { userArn: 'arn:aws:iam::111122223333:root' },
        },
        { reason: 'unmapped_arn', arn: 'arn:aws:iam::111122223333:root' },
      ],
      [
        { path: '/iam/v1/whoami', authorization: [], iamCaller: { ...iamCaller, accountId: '444455556666' } },
        { reason: 'account_mismatch', arn: iamCaller.userArn },
      ],
    ];
    for (const [request, expected] of cases) {
      logs.length = 0;
      await expect(logged.authenticate(request)).rejects.toBeInstanceOf(UnauthenticatedError);
      expect(logs).toEqual([
        {
          message: 'authentication refused',
          method: 'iam',
          ...(request.requestId ? { requestId: request.requestId } : {}),
          ...expected,
        },
      ]);
    }
  });

  it('when two verifiers claim one issuer, it refuses to start', () => {
    expect(() => new CofferAuthenticator({ verifiers: [verifier, verifier] })).toThrow('two verifiers');
  });
});

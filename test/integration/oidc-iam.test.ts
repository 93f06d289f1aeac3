import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyEventV2WithIAMAuthorizer,
  Context as LambdaContext,
} from 'aws-lambda';
import type { Context } from 'hono';
import { handle } from 'hono/aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import { type HttpApiV2EventLike, iamCallerFromEvent } from '../../lib/authn/iam.js';
import type { ConnectionInfo } from '../../lib/http/app.js';
import { createHarness, type Harness } from '../support/harness.js';

/**
 * The IAM way in as the Lambda handler will use it: full HTTP API v2 events through Hono's
 * Lambda adapter, the caller taken with iamCallerFromEvent from the authorizer context only.
 */

/** What functions/api.ts does: connection facts from the event, never from headers. */
function lambdaConnection(c: Context): ConnectionInfo {
  const event = (c.env as { event?: HttpApiV2EventLike & APIGatewayProxyEventV2 } | undefined)?.event;
  const iamCaller = iamCallerFromEvent(event);
  return {
    sourceIp: event?.requestContext?.http?.sourceIp ?? 'unknown',
    ...(iamCaller ? { iamCaller } : {}),
  };
}

type IamIdentity = APIGatewayProxyEventV2WithIAMAuthorizer['requestContext']['authorizer']['iam'];

function event(
  method: string,
  rawPath: string,
  options: { iam?: Partial<IamIdentity>; headers?: Record<string, string>; body?: string } = {},
): APIGatewayProxyEventV2 | APIGatewayProxyEventV2WithIAMAuthorizer {
  const requestContext = {
    accountId: '123456789012',
    apiId: 'abc123',
    domainName: 'abc123.execute-api.eu-west-1.amazonaws.com',
    domainPrefix: 'abc123',
    http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'aws-sdk-js/3' },
    requestId: 'req-1',
    routeKey: '$default',
    stage: '$default',
    time: '12/Mar/2026:19:03:58 +0000',
    timeEpoch: 1_773_342_238_000,
  };
  const headers = {
    host: 'abc123.execute-api.eu-west-1.amazonaws.com',
    'user-agent': 'aws-sdk-js/3',
    'x-amz-date': '20260312T190358Z',
    ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
    ...options.headers,
  };
  const base = {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString: '',
    headers,
    isBase64Encoded: false,
    ...(options.body !== undefined ? { body: options.body } : {}),
  };
  if (!options.iam) return { ...base, requestContext } as APIGatewayProxyEventV2;
  const iam: IamIdentity = {
    accessKey: 'ASIAEXAMPLEEXAMPLE',
    accountId: '111122223333',
    callerId: 'AROAEXAMPLE:session',
    cognitoIdentity: null as never,
    principalOrgId: null as never,
    userArn: 'arn:aws:sts::111122223333:assumed-role/deployer/session',
    userId: 'AROAEXAMPLE:session',
    ...options.iam,
  };
  return {
    ...base,
    requestContext: { ...requestContext, authorizer: { iam } },
  } as APIGatewayProxyEventV2WithIAMAuthorizer;
}

const lambdaContext = { awsRequestId: 'lambda-1' } as LambdaContext;

describe('IAM callers through the Lambda event', () => {
  let h: Harness;
  let invoke: (e: APIGatewayProxyEventV2) => Promise<{ statusCode: number; body: string }>;

  beforeAll(async () => {
    h = await createHarness({ label: 'oidciam', connection: lambdaConnection });
    const handler = handle(h.app);
    invoke = async (e) => {
      // Hono types the v2 body as string | null where aws-lambda says string | undefined.
      const res = (await handler(e as never, lambdaContext)) as { statusCode: number; body: string };
      return res;
    };
  });

  const whoami = async (e: APIGatewayProxyEventV2) => {
    const res = await invoke(e);
    return { status: res.statusCode, body: JSON.parse(res.body) };
  };

  it('when an IAM user calls, it is User::"arn:aws:iam::ACCOUNT:user/NAME" without the path', async () => {
    const me = await whoami(
      event('GET', '/iam/v1/whoami', {
        iam: {
          userArn: 'arn:aws:iam::111122223333:user/ops/alice',
          callerId: 'AIDAEXAMPLE',
          userId: 'AIDAEXAMPLE',
        },
      }),
    );
    expect(me.status).toBe(200);
    expect(me.body).toEqual({
      type: 'User',
      id: 'arn:aws:iam::111122223333:user/alice',
      entity: 'Coffer::User::"arn:aws:iam::111122223333:user/alice"',
      groups: [],
      attributes: { account: '111122223333' },
      authMethod: 'iam',
    });
  });

  it('when a role ARN calls, it is the Role without its path', async () => {
    const me = await whoami(
      event('GET', '/iam/v1/whoami', { iam: { userArn: 'arn:aws:iam::111122223333:role/svc/reader' } }),
    );
    expect(me.body).toEqual({
      type: 'Role',
      id: 'arn:aws:iam::111122223333:role/reader',
      entity: 'Coffer::Role::"arn:aws:iam::111122223333:role/reader"',
      groups: [],
      attributes: { account: '111122223333' },
      authMethod: 'iam',
    });
  });

  it('when an assumed-role session calls, it is the Role with account and session name attributes', async () => {
    const me = await whoami(
      event('GET', '/iam/v1/whoami', {
        iam: {
          userArn: 'arn:aws:sts::111122223333:assumed-role/deployer/ci-run-42',
          principalOrgId: 'o-abc123',
        },
      }),
    );
    expect(me.body).toEqual({
      type: 'Role',
      id: 'arn:aws:iam::111122223333:role/deployer',
      entity: 'Coffer::Role::"arn:aws:iam::111122223333:role/deployer"',
      groups: [],
      attributes: { account: '111122223333', sessionName: 'ci-run-42', orgId: 'o-abc123' },
      authMethod: 'iam',
    });
  });

  it('when a same-named role in another account calls, it is another principal and owns nothing of the first', async () => {
    const mine = event('PUT', '/iam/v1/secrets/iam/deployer/token', {
      iam: { userArn: 'arn:aws:sts::111122223333:assumed-role/deployer/run-a' },
      body: JSON.stringify({ value: 'v' }),
    });
    expect((await invoke(mine)).statusCode).toBe(200);
    const theirs = await whoami(
      event('GET', '/iam/v1/whoami', {
        iam: { userArn: 'arn:aws:sts::444455556666:assumed-role/deployer/run-a', accountId: '444455556666' },
      }),
    );
    expect(theirs.body.id).toBe('arn:aws:iam::444455556666:role/deployer');
    const meta = await h.call('GET', '/v1/meta/iam/deployer/token');
    expect(meta.body.versions[0].createdBy).toContain('arn:aws:iam::111122223333:role/deployer');
    expect(meta.body.versions[0].createdBy).not.toContain('444455556666');
  });

  it('when identity headers are spoofed, they are ignored', async () => {
    const spoof = {
      'x-amz-user-arn': 'arn:aws:iam::111122223333:user/admin',
      'x-amzn-iam-user-arn': 'arn:aws:iam::111122223333:user/admin',
      'x-coffer-principal': 'User::"admin"',
      'x-coffer-iam-caller': 'arn:aws:iam::111122223333:role/admin',
      'x-forwarded-user': 'admin',
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIA/20260312/eu-west-1/execute-api/aws4_request, SignedHeaders=host, Signature=00',
    };
    // No authorizer context: nothing in the headers makes a caller.
    const bare = await whoami(event('GET', '/iam/v1/whoami', { headers: spoof }));
    expect(bare.status).toBe(401);
    expect(bare.body.error).toMatchObject({ code: 'unauthenticated', message: 'authentication required' });
    // With the context, the context alone decides.
    const real = await whoami(
      event('GET', '/iam/v1/whoami', {
        headers: spoof,
        iam: { userArn: 'arn:aws:iam::111122223333:user/bob' },
      }),
    );
    expect(real.body.id).toBe('arn:aws:iam::111122223333:user/bob');
  });

  it('when the IAM prefix has no authorizer context, a bearer token does not help', async () => {
    const res = await whoami(
      event('GET', '/iam/v1/whoami', { headers: { authorization: `Bearer ${h.token}` } }),
    );
    expect(res.status).toBe(401);
  });

  it('when the IAM prefix is percent-encoded, it is still the IAM prefix: a bearer token does not help', async () => {
    for (const rawPath of ['/%69am/v1/whoami', '/i%61m/v1/whoami', '/iam/%761/whoami']) {
      const res = await whoami(event('GET', rawPath, { headers: { authorization: `Bearer ${h.token}` } }));
      expect(res.status, rawPath).toBe(401);
      expect(res.body.error.code).toBe('unauthenticated');
    }
    // The same encoding on /v1 is just /v1.
    const v1 = await whoami(
      event('GET', '/%761/whoami', { headers: { authorization: `Bearer ${h.token}` } }),
    );
    expect(v1.body).toMatchObject({ id: 'dev:dev-admin', authMethod: 'dev' });
  });

  it('when /v1 carries an IAM context, it is not taken as IAM', async () => {
    const noToken = await whoami(
      event('GET', '/v1/whoami', { iam: { userArn: 'arn:aws:iam::111122223333:user/alice' } }),
    );
    expect(noToken.status).toBe(401);
    const withToken = await whoami(
      event('GET', '/v1/whoami', {
        iam: { userArn: 'arn:aws:iam::111122223333:user/alice' },
        headers: { authorization: `Bearer ${h.token}` },
      }),
    );
    expect(withToken.body).toMatchObject({ id: 'dev:dev-admin', authMethod: 'dev' });
  });

  it('when the caller is root, a federated user, or its account disagrees with the ARN, it is refused', async () => {
    for (const iam of [
      { userArn: 'arn:aws:iam::111122223333:root' },
      { userArn: 'arn:aws:sts::111122223333:federated-user/bob' },
      { userArn: 'arn:aws:iam::111122223333:user/alice', accountId: '999999999999' },
    ]) {
      const res = await whoami(event('GET', '/iam/v1/whoami', { iam }));
      expect(res.status, iam.userArn).toBe(401);
    }
  });
});

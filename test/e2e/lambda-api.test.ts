import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyEventV2WithIAMAuthorizer,
  Context as LambdaContext,
} from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiApp, lambdaHandler } from '../../functions/api-app.js';
import type { LambdaSettings } from '../../functions/env.js';
import { AUDIT_TABLE_ACTIONS, SECRETS_TABLE_ACTIONS } from '../../infra/coffer-stack.js';
import { CofferKeys } from '../../infra/constructs/keys.js';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import { parseConfig } from '../../lib/config-file.js';
import { jsonLogger } from '../../lib/log.js';
import { observeStorageCalls } from '../../lib/store/call-counter.js';
import type { TableNames } from '../../lib/store/tables.js';
import {
  ACCOUNT,
  AUDIT_KEY_ARN,
  DATA_KEY_ARN,
  fakeKms,
  HMAC_KEY_ARN,
  REGION,
} from '../infra/support/fake-kms.js';
import { freshTables, scanAll } from '../support/dynamo.js';

/*
 * The API Lambda handler end to end, as API Gateway drives it: complete HTTP API (payload 2.0)
 * events for a JWT bearer caller on /v1 and a SigV4 caller on /iam/v1 (identity in
 * requestContext.authorizer.iam), through the production wiring (functions/api-app.ts): DynamoDB
 * Local, the KMS adapters over a mocked KMS, the DynamoDB audit trail, the configured OIDC issuer
 * and Cedar policies.
 */

const ISSUER = 'https://idp.example.com/';
const JWKS_URI = 'https://idp.example.com/jwks';
const API_ID = 'a1b2c3d4e5';
const DOMAIN = `${API_ID}.execute-api.${REGION}.amazonaws.com`;
const ROLE = `arn:aws:iam::${ACCOUNT}:role/app-runner`;
const SECRET_VALUE = 'pg://app:Sup3r-S3cret@db:5432/app';

const WORKLOAD_POLICY = `
@id("app-runner-reads-apps")
permit (
  principal == Coffer::Role::"${ROLE}",
  action in [Coffer::Action::"read", Coffer::Action::"readMetadata", Coffer::Action::"list"],
  resource in Coffer::Folder::"apps/"
);
`;

const kms = mockClient(KMSClient);
let client: DynamoDBClient;
let tables: TableNames;
let policyDir: string;
let signingKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let jwks: { keys: JWK[] };
let devToken: string;
const auditLines: string[] = [];
const logLines: string[] = [];
let handler: ReturnType<typeof lambdaHandler>;
let requestCounter = 0;

async function token(subject: string, groups: string[]): Promise<string> {
  return new SignJWT({ groups })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setAudience('coffer')
    .setSubject(subject)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(signingKey);
}

/** The fetch the OIDC verifier uses: only the issuer's JWKS exists. */
const fakeFetch: typeof fetch = async (input) => {
  const url = input instanceof Request ? input.url : String(input);
  if (url === JWKS_URI) {
    return new Response(JSON.stringify(jwks), { headers: { 'content-type': 'application/json' } });
  }
  return new Response('not found', { status: 404 });
};

interface RequestOptions {
  readonly body?: unknown;
  readonly query?: string;
  readonly headers?: Record<string, string>;
}

function requestContext(method: string, rawPath: string, routeKey: string) {
  requestCounter++;
  return {
    accountId: ACCOUNT,
    apiId: API_ID,
    domainName: DOMAIN,
    domainPrefix: API_ID,
    http: {
      method,
      path: rawPath,
      protocol: 'HTTP/1.1',
      sourceIp: '198.51.100.23',
      userAgent: 'coffer-sdk/0.1',
    },
    requestId: `gw-req-${requestCounter}`,
    routeKey,
    stage: '$default',
    time: '22/Nov/2026:21:03:58 +0000',
    timeEpoch: 1_795_381_438_000,
  };
}

function baseEvent(rawPath: string, routeKey: string, o: RequestOptions, auth: Record<string, string>) {
  const body = o.body === undefined ? undefined : JSON.stringify(o.body);
  const prefix = routeKey.includes('/iam/') ? '/iam/v1/' : '/v1/';
  return {
    version: '2.0',
    routeKey,
    rawPath,
    rawQueryString: o.query ?? '',
    headers: {
      accept: 'application/json',
      host: DOMAIN,
      'user-agent': 'coffer-sdk/0.1',
      'x-amzn-trace-id': 'Root=1-6740f0de-0123456789abcdef01234567',
      // Set by API Gateway from the client's own header: never trusted for the source IP.
      'x-forwarded-for': '10.9.8.7',
      'x-forwarded-port': '443',
      'x-forwarded-proto': 'https',
      ...(body !== undefined
        ? { 'content-type': 'application/json', 'content-length': String(body.length) }
        : {}),
      ...auth,
      ...o.headers,
    },
    ...(o.query ? { queryStringParameters: Object.fromEntries(new URLSearchParams(o.query)) } : {}),
    pathParameters: { proxy: rawPath.slice(prefix.length) },
    isBase64Encoded: false,
    ...(body !== undefined ? { body } : {}),
  };
}

/** An event for `ANY /v1/{proxy+}`: no gateway authorizer, the bearer token in the header. */
function bearerEvent(method: string, rawPath: string, bearer: string | undefined, o: RequestOptions = {}) {
  const routeKey = 'ANY /v1/{proxy+}';
  return {
    ...baseEvent(rawPath, routeKey, o, bearer ? { authorization: `Bearer ${bearer}` } : {}),
    requestContext: requestContext(method, rawPath, routeKey),
  } satisfies APIGatewayProxyEventV2;
}

/** An event for `ANY /iam/v1/{proxy+}` after API Gateway verified the SigV4 signature. */
function iamEvent(method: string, rawPath: string, userArn: string, o: RequestOptions = {}) {
  const routeKey = 'ANY /iam/v1/{proxy+}';
  const sigv4 = {
    authorization:
      'AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEEXAMPLE/20261122/eu-west-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=0123456789abcdef',
    'x-amz-date': '20261122T210358Z',
    'x-amz-security-token': 'IQoJb3JpZ2luX2VjEXAMPLE',
  };
  return {
    ...baseEvent(rawPath, routeKey, o, sigv4),
    requestContext: {
      ...requestContext(method, rawPath, routeKey),
      authorizer: {
        iam: {
          accessKey: 'ASIAEXAMPLEEXAMPLE',
          accountId: ACCOUNT,
          callerId: 'AROAEXAMPLEROLEID:i-0abc123',
          cognitoIdentity: null as never,
          principalOrgId: 'o-exampleorg',
          userArn,
          userId: 'AROAEXAMPLEROLEID:i-0abc123',
        },
      },
    },
  } satisfies APIGatewayProxyEventV2WithIAMAuthorizer;
}

/** The response bodies this test reads. */
interface ApiBody {
  readonly error?: { code: string; message: string; requestId: string };
  readonly items?: { path: string }[];
  readonly folders?: string[];
  readonly value?: string;
  readonly [field: string]: unknown;
}

async function invoke(event: APIGatewayProxyEventV2) {
  const context = { awsRequestId: `lambda-${requestCounter}` } as LambdaContext;
  recording = true;
  try {
    const out = await handler(event, context);
    return { status: out.statusCode, body: JSON.parse(out.body) as ApiBody, headers: out.headers };
  } finally {
    recording = false;
  }
}

/** DynamoDB calls the handler made (not the test's own scans), as IAM sees them: action and table. */
const dynamoCalls: { action: string; table: string }[] = [];
let recording = false;

type DynamoInput = {
  TableName?: string;
  RequestItems?: Record<string, unknown>;
  TransactItems?: Record<string, { TableName?: string } | undefined>[];
};

/** TransactWriteItems and BatchWriteItem are authorized per item action and table, like IAM does. */
function iamActionsOf(command: string, input: DynamoInput): { action: string; table: string }[] {
  const name = command.replace(/Command$/, '');
  if (name === 'TransactWriteItems' || name === 'TransactGetItems') {
    return (input.TransactItems ?? []).flatMap((item) =>
      Object.entries(item).map(([kind, op]) => ({
        action: `dynamodb:${kind === 'Get' ? 'GetItem' : kind === 'ConditionCheck' ? 'ConditionCheckItem' : `${kind}Item`}`,
        table: String(op?.TableName),
      })),
    );
  }
  if (input.RequestItems) {
    return Object.keys(input.RequestItems).map((table) => ({ action: `dynamodb:${name}`, table }));
  }
  return [{ action: `dynamodb:${name}`, table: String(input.TableName) }];
}

beforeAll(async () => {
  ({ client, tables } = await freshTables('lambda'));
  // Both transports: the SDK's and the read path's lean one (lib/store/dynamo-lean.ts).
  observeStorageCalls(client, (operation, input) => {
    if (recording) dynamoCalls.push(...iamActionsOf(`${operation}Command`, input as DynamoInput));
  });
  fakeKms(kms);
  const pair = await generateKeyPair('ES256');
  signingKey = pair.privateKey;
  jwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] };

  // The deployment's policy folder: the repository's baseline plus one workload policy.
  policyDir = await mkdtemp(join(tmpdir(), 'coffer-lambda-policies-'));
  for (const file of ['schema.cedarschema', 'admins.cedar']) {
    await copyFile(join('policies', file), join(policyDir, file));
  }
  await writeFile(join(policyDir, 'workload.cedar'), WORKLOAD_POLICY);

  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-lambda-dev-'));
  devToken = await (await DevIssuer.open(dataDir)).mint({ subject: 'dev-admin', groups: ['admins'] });
  await rm(dataDir, { recursive: true, force: true });

  const settings: LambdaSettings = {
    tables,
    secretsKeyArn: DATA_KEY_ARN,
    previousSecretsKeyArns: [],
    auditKeyArn: AUDIT_KEY_ARN,
    fieldHmacKeyArn: HMAC_KEY_ARN,
    config: parseConfig(
      JSON.stringify({
        issuers: [
          {
            alias: 'corp',
            issuer: ISSUER,
            audiences: ['coffer'],
            algorithms: ['ES256'],
            jwksUri: JWKS_URI,
            groupMapping: { 'coffer-admins': ['admins'] },
          },
        ],
      }),
      { source: 'test', format: 'json', env: {} },
    ),
  };
  const logger = jsonLogger((l) => logLines.push(l));
  handler = lambdaHandler(
    () =>
      createApiApp({
        settings,
        policyDir,
        clients: { dynamo: client, kms: new KMSClient({ region: REGION }) },
        logger,
        auditSink: (line) => auditLines.push(line),
        fetch: fakeFetch,
      }),
    logger,
  );
});

afterAll(async () => {
  kms.reset();
  await rm(policyDir, { recursive: true, force: true });
});

describe('the API Lambda handler, driven by HTTP API v2 events', () => {
  it('when an OIDC admin PUTs a secret with a bearer token, it stores it sealed under the pinned KMS key', async () => {
    const admin = await token('alice', ['coffer-admins']);
    const put = await invoke(
      bearerEvent('PUT', '/v1/secrets/apps/db/password', admin, { body: { value: SECRET_VALUE } }),
    );
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ path: 'apps/db/password', version: 1 });
    expect(put.headers?.['cache-control']).toBe('no-store');

    // The folder's first branch key, made under the pinned key (docs/keys.md); the version's data
    // key is wrapped by that branch key.
    const generate = kms.commandCalls(GenerateDataKeyCommand).at(-1)?.args[0].input;
    expect(generate).toEqual({
      KeyId: DATA_KEY_ARN,
      KeySpec: 'AES_256',
      EncryptionContext: {
        'coffer:table': tables.secrets,
        'coffer:purpose': 'branch-key',
        'coffer:folder': 'apps',
        'coffer:branch-version': '1',
      },
    });
    // Nothing in the table holds the value in clear.
    const stored = JSON.stringify(await scanAll(client, tables.secrets));
    expect(stored).not.toContain('Sup3r-S3cret');
  });

  it('when the admin GETs it and lists the folder, it answers with the value and the listing', async () => {
    const admin = await token('alice', ['coffer-admins']);
    const get = await invoke(bearerEvent('GET', '/v1/secrets/apps/db/password', admin));
    expect(get.status).toBe(200);
    expect(get.body).toMatchObject({ path: 'apps/db/password', version: 1, value: SECRET_VALUE });

    await invoke(bearerEvent('PUT', '/v1/secrets/apps/api/token', admin, { body: { value: 't0ken' } }));
    const list = await invoke(bearerEvent('GET', '/v1/list', admin, { query: 'prefix=apps%2F' }));
    expect(list.status).toBe(200);
    expect(list.body.items?.map((i) => i.path)).toEqual(['apps/api/token', 'apps/db/password']);

    const whoami = await invoke(bearerEvent('GET', '/v1/whoami', admin));
    expect(whoami.body).toMatchObject({
      type: 'User',
      id: 'corp:alice',
      groups: ['admins'],
      authMethod: 'oidc',
    });
  });

  it('when a workload role calls /iam/v1 with SigV4, it is the role from the authorizer context and may read and list', async () => {
    const assumed = `arn:aws:sts::${ACCOUNT}:assumed-role/app-runner/i-0abc123`;
    const whoami = await invoke(iamEvent('GET', '/iam/v1/whoami', assumed));
    expect(whoami.status).toBe(200);
    expect(whoami.body).toMatchObject({ type: 'Role', id: ROLE, authMethod: 'iam' });

    const get = await invoke(iamEvent('GET', '/iam/v1/secrets/apps/db/password', assumed));
    expect(get.status).toBe(200);
    expect(get.body.value).toBe(SECRET_VALUE);

    const list = await invoke(
      iamEvent('GET', '/iam/v1/list', assumed, { query: 'prefix=apps%2F&delimiter=%2F' }),
    );
    expect(list.status).toBe(200);
    expect(list.body.folders).toEqual(['apps/api/', 'apps/db/']);
  });

  it('when the workload role tries to write, Cedar denies it with 403 and the denial is audited', async () => {
    const assumed = `arn:aws:sts::${ACCOUNT}:assumed-role/app-runner/i-0abc123`;
    const put = await invoke(
      iamEvent('PUT', '/iam/v1/secrets/apps/db/password', assumed, { body: { value: 'overwritten' } }),
    );
    expect(put.status).toBe(403);
    expect(put.body.error?.code).toBe('forbidden');

    const denial = auditLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((r) => r.type === 'request' && r.decision === 'deny' && r.method === 'PUT');
    expect(denial).toMatchObject({
      principalId: ROLE,
      authMethod: 'iam',
      action: 'write',
      path: 'apps/db/password',
      status: 403,
      // The address API Gateway saw, not the client's X-Forwarded-For.
      sourceIp: '198.51.100.23',
    });
  });

  it('when another OIDC user without a mapped group asks for the secret, it is as if the secret did not exist', async () => {
    const bob = await token('bob', ['engineering']);
    const get = await invoke(bearerEvent('GET', '/v1/secrets/apps/db/password', bob));
    const missing = await invoke(bearerEvent('GET', '/v1/secrets/apps/db/nothing-here', bob));
    expect(get.status).toBe(404);
    expect(get.body.error?.code).toBe('not_found');
    expect({ ...get.body.error, requestId: '' }).toEqual({ ...missing.body.error, requestId: '' });
  });

  it('refuses identities that do not come from the right place', async () => {
    const admin = await token('alice', ['coffer-admins']);
    // A bearer token on the IAM prefix, without the authorizer context: 401.
    const bearerOnIam = await invoke({
      ...bearerEvent('GET', '/iam/v1/whoami', admin),
      routeKey: 'ANY /iam/v1/{proxy+}',
    });
    expect(bearerOnIam.status).toBe(401);
    // An IAM identity on the bearer prefix counts for nothing.
    const iamOnBearer = await invoke({
      ...iamEvent('GET', '/iam/v1/whoami', ROLE),
      rawPath: '/v1/whoami',
    });
    expect(iamOnBearer.status).toBe(401);
    // The local dev issuer is never trusted in AWS.
    const dev = await invoke(bearerEvent('GET', '/v1/whoami', devToken));
    expect(dev.status).toBe(401);
    expect(dev.body.error).toMatchObject({ code: 'unauthenticated', message: 'authentication required' });
  });

  it('writes every request to the audit table, signed, never with a value or a token, query strings only as HMACs', async () => {
    const records = (await scanAll(client, tables.audit)).filter((r) => r.type === 'request');
    expect(records.length).toBeGreaterThanOrEqual(12);
    const text = JSON.stringify(records);
    expect(text).not.toContain('Sup3r-S3cret');
    expect(text).not.toContain('t0ken');
    // No JWT (two base64url JSON parts): a bare 'eyJ' also turns up by chance inside a base64 MAC.
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{8,}\.eyJ/);
    const list = records.find((r) => r.route === '/v1/list') as
      | { hmac: Record<string, string>; hmacKeyId: string | null }
      | undefined;
    expect(list?.hmac.query).toMatch(/^[0-9a-f]{64}$/);
    expect(list?.hmacKeyId).toMatch(/^hmac:/);
    expect(JSON.stringify(list)).not.toContain('prefix=');
    expect(logLines.join('\n')).not.toContain('Sup3r-S3cret');
  });

  it('when API Gateway passes the body base64-encoded, it is decoded before it is parsed', async () => {
    const admin = await token('alice', ['coffer-admins']);
    const json = JSON.stringify({ value: 'b64-ünïcode-valüe' });
    const event = bearerEvent('PUT', '/v1/secrets/apps/b64/value', admin, { body: { value: 'placeholder' } });
    const put = await invoke({
      ...event,
      body: Buffer.from(json, 'utf8').toString('base64'),
      isBase64Encoded: true,
      headers: { ...event.headers, 'content-length': String(Buffer.byteLength(json)) },
    });
    expect(put.status).toBe(200);
    const get = await invoke(bearerEvent('GET', '/v1/secrets/apps/b64/value', admin));
    expect(get.body.value).toBe('b64-ünïcode-valüe');
  });

  it('when a body is over 128 KiB, it answers 413 before parsing, whatever the client said its length was', async () => {
    const admin = await token('alice', ['coffer-admins']);
    const big = JSON.stringify({ value: 'x'.repeat(130 * 1024) });
    const base = bearerEvent('PUT', '/v1/secrets/apps/big/value', admin, { body: { value: 'small' } });
    for (const event of [
      { ...base, body: big, headers: { ...base.headers, 'content-length': String(big.length) } },
      // A lying Content-Length (API Gateway passes the client's header through).
      { ...base, body: big, headers: { ...base.headers, 'content-length': '20' } },
      // Base64, as API Gateway sends a body it takes for binary, with no Content-Length at all.
      {
        ...base,
        body: Buffer.from(big).toString('base64'),
        isBase64Encoded: true,
        headers: { ...base.headers, 'content-length': undefined as unknown as string },
      },
    ]) {
      const put = await invoke(event);
      expect(put.status).toBe(413);
      expect(put.body.error?.code).toBe('payload_too_large');
    }
    const get = await invoke(bearerEvent('GET', '/v1/secrets/apps/big/value', admin));
    expect(get.status).toBe(404);
  });

  it('never lets a dot-segment path carry an IAM identity onto /v1, or reach /iam/v1 without one', async () => {
    const assumed = `arn:aws:sts::${ACCOUNT}:assumed-role/app-runner/i-0abc123`;
    // Signed and verified for the IAM route, but the URL would normalize to /v1/whoami.
    const escaped = await invoke(iamEvent('GET', '/iam/v1/../../v1/whoami', assumed));
    expect(escaped.status).toBe(400);
    expect(escaped.body.error?.code).toBe('invalid_path');
    // The bearer route with a forged authorizer block, and a path that normalizes to /iam/v1.
    const forged = iamEvent('GET', '/v1/../iam/v1/whoami', assumed);
    const sneaked = await invoke({ ...forged, routeKey: 'ANY /v1/{proxy+}' });
    expect(sneaked.status).toBe(400);
    expect(sneaked.body.error?.code).toBe('invalid_path');
  });

  it('when rawPath has a dot segment, the write is refused with 400 invalid_path, audited, and nothing is stored', async () => {
    const admin = await token('alice', ['coffer-admins']);
    for (const rawPath of [
      '/v1/secrets/apps/dots/../landed',
      '/v1/secrets/apps/dots/./landed',
      '/v1/secrets/apps/dots/%2e%2e/landed',
      '/v1/secrets/apps/dots/%2E/landed',
    ]) {
      const before = auditLines.length;
      const put = await invoke(bearerEvent('PUT', rawPath, admin, { body: { value: 'dotted' } }));
      expect(put.status, rawPath).toBe(400);
      expect(put.body.error?.code, rawPath).toBe('invalid_path');
      const record = auditLines
        .slice(before)
        .map((l) => JSON.parse(l))
        .find((r) => r.requestId === put.body.error?.requestId);
      expect(record?.status, rawPath).toBe(400);
      expect(record?.route, rawPath).toBe(rawPath);
    }
    for (const path of ['apps/landed', 'apps/dots/landed']) {
      expect((await invoke(bearerEvent('GET', `/v1/secrets/${path}`, admin))).status).toBe(404);
    }
  });

  it('every DynamoDB and KMS call the handler made is one the stack lets the API role make', () => {
    // DynamoDB: the per-table action sets the stack grants (test/infra/stack.test.ts ties them to
    // the template).
    expect(dynamoCalls.length).toBeGreaterThan(10);
    const allowed: Record<string, readonly string[]> = {
      [tables.secrets]: SECRETS_TABLE_ACTIONS,
      [tables.audit]: AUDIT_TABLE_ACTIONS,
    };
    const refused = dynamoCalls.filter((c) => !allowed[c.table]?.includes(c.action));
    expect(refused).toEqual([]);
    expect(dynamoCalls.some((c) => c.table === tables.audit && c.action === 'dynamodb:PutItem')).toBe(true);

    // KMS: the API role's real statements, built by the same construct with this test's table, and
    // evaluated (actions, key, conditions) against every request the handler sent. The stack is
    // this test's fixture, read for its statements: CDK's built-in template validation (an engine
    // that takes seconds to build) checks the deployed stack in test/infra/stack.test.ts instead.
    const stack = new Stack(new App({ builtinCloudFormationValidation: false }));
    const keys = new CofferKeys(stack, 'Keys', {
      keyStore: 'kms',
      aliasPrefix: 'coffer/test',
      logRetention: RetentionDays.ONE_DAY,
    });
    const role = new Role(stack, 'Api', { assumedBy: new ServicePrincipal('lambda.amazonaws.com') });
    keys.grantDataKeys(role, tables.secrets);
    keys.grantBranchKeys(role, [], tables.secrets);
    keys.grantAuditSigning(role);
    keys.grantFieldHmac(role);
    const arnOf = new Map<string, string>([
      [JSON.stringify(stack.resolve(keys.secretsKeyArn)), DATA_KEY_ARN],
      [JSON.stringify(stack.resolve(keys.auditKey.keyArn)), AUDIT_KEY_ARN],
      [JSON.stringify(stack.resolve(keys.fieldHmacKey.keyArn)), HMAC_KEY_ARN],
    ]);
    const policy = Object.values(Template.fromStack(stack).findResources('AWS::IAM::Policy'))[0];
    const statements = (policy?.Properties.PolicyDocument.Statement ?? []) as IamStatement[];
    const requests = kms.calls().flatMap((call) => kmsRequestsOf(call.args[0] as unknown as KmsCommand));
    expect(new Set(requests.map((r) => r.action))).toEqual(
      new Set(['kms:GenerateDataKey', 'kms:Decrypt', 'kms:Sign', 'kms:GenerateMac']),
    );
    const denied = requests.filter((r) => !statements.some((st) => allows(st, r, arnOf)));
    expect(denied.map((r) => `${r.action} ${r.keyId}`)).toEqual([]);
    // The check can fail: a request with another table in its context is refused.
    const generate = requests.find((r) => r.action === 'kms:GenerateDataKey') as KmsRequest;
    const otherTable = { ...generate, context: { ...generate.context, 'coffer:table': 'another-table' } };
    expect(statements.some((st) => allows(st, otherTable, arnOf))).toBe(false);
    const extraKey = { ...generate, context: { ...generate.context, 'coffer:tenant': 'x' } };
    expect(statements.some((st) => allows(st, extraKey, arnOf))).toBe(false);
    // A context with fewer keys than Coffer's is refused too: the shape must be exact.
    const { 'coffer:branch-version': _version, ...withoutVersion } = generate.context;
    const fewerKeys = { ...generate, context: withoutVersion };
    expect(statements.some((st) => allows(st, fewerKeys, arnOf))).toBe(false);
    // A branch-key context with another purpose is refused.
    const otherPurpose = { ...generate, context: { ...generate.context, 'coffer:purpose': 'data-key' } };
    expect(statements.some((st) => allows(st, otherPurpose, arnOf))).toBe(false);
  }, 120_000);
});

interface IamStatement {
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Condition?: Record<string, Record<string, string | string[]>>;
}

interface KmsRequest {
  readonly action: string;
  readonly keyId: string;
  readonly context: Record<string, string>;
  readonly fields: Record<string, string | undefined>;
}

type KmsCommand = { constructor: { name: string }; input: Record<string, unknown> };
type KmsInput = Partial<Record<'KeyId' | 'SourceKeyId' | 'DestinationKeyId', string>> &
  Partial<Record<'SigningAlgorithm' | 'MessageType' | 'MacAlgorithm', string>> &
  Partial<
    Record<
      'EncryptionContext' | 'SourceEncryptionContext' | 'DestinationEncryptionContext',
      Record<string, string>
    >
  >;

/** One KMS command as the IAM requests it is authorized as (ReEncrypt is two). */
function kmsRequestsOf(command: KmsCommand): KmsRequest[] {
  const input = command.input as KmsInput;
  const name = command.constructor.name.replace(/Command$/, '');
  const fields = {
    'kms:SigningAlgorithm': input.SigningAlgorithm,
    'kms:MessageType': input.MessageType,
    'kms:MacAlgorithm': input.MacAlgorithm,
  };
  if (name === 'ReEncrypt') {
    return [
      {
        action: 'kms:ReEncryptFrom',
        keyId: String(input.SourceKeyId),
        context: input.SourceEncryptionContext ?? {},
        fields,
      },
      {
        action: 'kms:ReEncryptTo',
        keyId: String(input.DestinationKeyId),
        context: input.DestinationEncryptionContext ?? {},
        fields,
      },
    ];
  }
  return [
    { action: `kms:${name}`, keyId: String(input.KeyId), context: input.EncryptionContext ?? {}, fields },
  ];
}

/** A small IAM evaluator for the operators and keys Coffer's KMS statements use; anything else fails. */
function allows(st: IamStatement, request: KmsRequest, arnOf: Map<string, string>): boolean {
  if (st.Effect !== 'Allow') return false;
  const actions = Array.isArray(st.Action) ? st.Action : [st.Action];
  if (!actions.includes(request.action)) return false;
  const resources = Array.isArray(st.Resource) ? st.Resource : [st.Resource];
  if (!resources.some((r) => arnOf.get(JSON.stringify(r)) === request.keyId)) return false;
  for (const [operator, entries] of Object.entries(st.Condition ?? {})) {
    for (const [key, expected] of Object.entries(entries)) {
      const values = Array.isArray(expected) ? expected : [expected];
      if (operator === 'StringEquals') {
        const actual = key.startsWith('kms:EncryptionContext:')
          ? request.context[key.slice('kms:EncryptionContext:'.length)]
          : request.fields[key];
        if (key === 'kms:EncryptionContextKeys' || actual === undefined || !values.includes(actual))
          return false;
      } else if (operator === 'ForAllValues:StringEquals' && key === 'kms:EncryptionContextKeys') {
        if (!Object.keys(request.context).every((k) => values.includes(k))) return false;
      } else if (operator === 'Null' && key.startsWith('kms:EncryptionContext:')) {
        const present = key.slice('kms:EncryptionContext:'.length) in request.context;
        if (values.some((v) => v === String(present))) return false;
      } else {
        throw new Error(`the test evaluator does not know ${operator} ${key}`);
      }
    }
  }
  return true;
}

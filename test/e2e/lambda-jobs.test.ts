import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { type DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { KMSClient, SignCommand } from '@aws-sdk/client-kms';
import { marshall } from '@aws-sdk/util-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checkpointHandler } from '../../functions/checkpoint-handler.js';
import { AUDIT_METRIC_NAMESPACE, type LambdaSettings } from '../../functions/env.js';
import { purgeHandler } from '../../functions/purge-handler.js';
import { DynamoAuditTrail } from '../../lib/audit/dynamo-trail.js';
import { type AuditContext, NoAuditTrail } from '../../lib/audit/trail.js';
import { AllowAllAuthorizer } from '../../lib/authz/authorizer.js';
import { Envelope } from '../../lib/crypto/envelope.js';
import { KmsRootSigner } from '../../lib/keys/kms.js';
import { LocalKeyProvider } from '../../lib/keys/local.js';
import { openLocalStorageMacKey } from '../../lib/keys/storage-mac.js';
import { silentLogger } from '../../lib/log.js';
import { type Caller, SecretService } from '../../lib/secrets/service.js';
import { SecretsStore } from '../../lib/store/secrets-store.js';
import type { TableNames } from '../../lib/store/tables.js';
import { AUDIT_KEY_ARN, DATA_KEY_ARN, fakeKms, REGION } from '../infra/support/fake-kms.js';
import { freshTables, scanAll } from '../support/dynamo.js';

/*
 * The two scheduled functions, wired as in AWS (functions/checkpoint-handler.ts, purge-handler.ts), over
 * DynamoDB Local, with KMS and CloudWatch mocked.
 */

const kms = mockClient(KMSClient);
const cloudwatch = mockClient(CloudWatchClient);
let client: DynamoDBClient;
let tables: TableNames;
let settings: LambdaSettings;

const context = (n: number): AuditContext => ({
  requestId: `req-${n}`,
  time: new Date().toISOString(),
  method: 'GET',
  route: '/v1/secrets/apps/x',
  sourceIp: '198.51.100.1',
  userAgent: 'test',
  written: false,
});

beforeAll(async () => {
  ({ client, tables } = await freshTables('jobs'));
  settings = {
    tables,
    secretsKeyArn: DATA_KEY_ARN,
    previousSecretsKeyArns: [],
    auditKeyArn: AUDIT_KEY_ARN,
    config: { issuers: [] },
  };
});
beforeEach(() => {
  kms.reset();
  cloudwatch.reset();
  fakeKms(kms);
  cloudwatch.on(PutMetricDataCommand).resolves({});
});
afterAll(() => {
  kms.reset();
  cloudwatch.reset();
});

function metrics(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const call of cloudwatch.commandCalls(PutMetricDataCommand)) {
    expect(call.args[0].input.Namespace).toBe(AUDIT_METRIC_NAMESPACE);
    for (const datum of call.args[0].input.MetricData ?? [])
      out[datum.MetricName as string] = datum.Value as number;
  }
  return out;
}

describe('the checkpoint function', () => {
  const kmsClient = new KMSClient({ region: REGION });
  const run = () =>
    checkpointHandler(settings, {
      dynamo: client,
      kms: kmsClient,
      cloudwatch: new CloudWatchClient({ region: REGION }),
      logger: silentLogger,
    })();
  const trail = () =>
    new DynamoAuditTrail({
      client,
      table: tables.audit,
      root: new KmsRootSigner({ client: kmsClient, keyId: AUDIT_KEY_ARN }),
      writer: 'lambda',
    });

  it('when the chains are intact, it signs a checkpoint with the KMS audit key and publishes 0 problems', async () => {
    await trail().finish(context(1), { status: 200 });
    const result = await run();
    expect(result.problemCount).toBe(0);
    expect(result.checkpoint.seq).toBe(1);
    expect(kms.commandCalls(SignCommand).every((c) => c.args[0].input.KeyId === AUDIT_KEY_ARN)).toBe(true);
    expect(metrics()).toMatchObject({ VerificationProblems: 0, CheckpointsWritten: 1 });
  });

  it('when a record written since the last checkpoint was edited, it reports the problem in the metric the alarm watches', async () => {
    const writer = trail();
    const ctx = context(2);
    await writer.finish(ctx, { status: 200 });
    const item = (await scanAll(client, tables.audit)).find((r) => r.requestId === 'req-2');
    expect(item).toBeDefined();
    // What an attacker with table access would do: quietly change a recorded outcome.
    await client.send(
      new UpdateItemCommand({
        TableName: tables.audit,
        Key: marshall({ pk: item?.pk, sk: item?.sk }),
        UpdateExpression: 'SET #s = :s',
        ExpressionAttributeNames: { '#s': 'status' },
        ExpressionAttributeValues: marshall({ ':s': 403 }),
      }),
    );
    const result = await run();
    expect(result.problemCount).toBeGreaterThan(0);
    expect(metrics().VerificationProblems).toBeGreaterThan(0);
  });
});

describe('the purge function', () => {
  it('when a soft-deleted secret is past its recovery window, it purges it, and only that one', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-purge-'));
    try {
      const service = new SecretService({
        store: new SecretsStore(
          client,
          tables.secrets,
          {},
          { key: await openLocalStorageMacKey(dataDir), binding: tables.secrets },
        ),
        envelope: new Envelope(await LocalKeyProvider.open(dataDir)),
        authorizer: new AllowAllAuthorizer(),
        audit: new NoAuditTrail(),
      });
      const caller: Caller = {
        principal: { type: 'User', id: 'corp:alice', groups: ['admins'], attributes: {}, authMethod: 'oidc' },
        context: { authMethod: 'oidc', sourceIp: '198.51.100.1', time: Math.floor(Date.now() / 1000) },
        audit: context(3),
      };
      await service.put({ ...caller, audit: context(4) }, 'apps/old', { value: 'a' });
      await service.put({ ...caller, audit: context(5) }, 'apps/kept', { value: 'b' });
      await service.delete({ ...caller, audit: context(6) }, 'apps/old', 7);

      const now = new Date(Date.now() + 8 * 86_400_000);
      expect(
        await purgeHandler(settings, { dynamo: client, logger: silentLogger, now: () => now })(),
      ).toEqual({
        purged: 1,
      });
      const paths = (await scanAll(client, tables.secrets)).map((r) => r.path);
      expect(paths).not.toContain('apps/old');
      expect(paths).toContain('apps/kept');
      // It never needed a key.
      expect(kms.calls()).toHaveLength(0);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

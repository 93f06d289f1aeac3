import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import {
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { KMSClient, SignCommand } from '@aws-sdk/client-kms';
import { marshall } from '@aws-sdk/util-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { kmsKeys } from '../../functions/aws.js';
import { checkpointHandler } from '../../functions/checkpoint-handler.js';
import { AUDIT_METRIC_NAMESPACE, type LambdaSettings } from '../../functions/env.js';
import { purgeHandler } from '../../functions/purge-handler.js';
import { DynamoAuditTrail } from '../../lib/audit/dynamo-trail.js';
import { type AuditContext, NoAuditTrail } from '../../lib/audit/trail.js';
import { AllowAllAuthorizer } from '../../lib/authz/authorizer.js';
import { openStorageMacKey } from '../../lib/compose.js';
import { Envelope } from '../../lib/crypto/envelope.js';
import { KmsRootSigner } from '../../lib/keys/kms.js';
import { LocalKeyProvider } from '../../lib/keys/local.js';
import { openLocalStorageMacKey } from '../../lib/keys/storage-mac.js';
import { silentLogger } from '../../lib/log.js';
import { type Caller, SecretService } from '../../lib/secrets/service.js';
import { ControlRecords, controlKey } from '../../lib/store/control-records.js';
import { HEADS_STATE } from '../../lib/store/legacy-heads.js';
import { SecretsStore } from '../../lib/store/secrets-store.js';
import type { TableNames } from '../../lib/store/tables.js';
import {
  AUDIT_KEY_ARN,
  DATA_KEY_ARN,
  fakeKms,
  HMAC_KEY_ARN,
  type KmsEngine,
  kmsEngine,
  REGION,
} from '../infra/support/fake-kms.js';
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
// One KMS for the whole file: what one run MAC'd or signed, the next verifies.
const engine: KmsEngine = kmsEngine();

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
    fieldHmacKeyArn: HMAC_KEY_ARN,
    config: { issuers: [] },
  };
});
beforeEach(() => {
  kms.reset();
  cloudwatch.reset();
  fakeKms(kms, [DATA_KEY_ARN], engine);
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

describe('the checkpoint function and the secrets table', () => {
  const kmsClient = new KMSClient({ region: REGION });
  /** Its own tables, so that what these tests write to the secrets table stays theirs. */
  const fresh = async (label: string) => {
    const own = (await freshTables(label)).tables;
    const s: LambdaSettings = { ...settings, tables: own };
    const key = await openStorageMacKey(kmsKeys(s, kmsClient), silentLogger);
    const binding = own.secrets;
    return {
      tables: own,
      // A new handler is a cold start: nothing remembered from the run before.
      run: () =>
        checkpointHandler(s, {
          dynamo: client,
          kms: kmsClient,
          cloudwatch: new CloudWatchClient({ region: REGION }),
          logger: silentLogger,
        })(),
      store: new SecretsStore(client, own.secrets, {}, { key, binding }),
      control: new ControlRecords({ client, table: own.secrets, key, binding }),
    };
  };
  const checkpoints = async (table: string) =>
    (await scanAll(client, table))
      .filter((r) => r.type === 'checkpoint')
      .sort((a, b) => Number(a.seq) - Number(b.seq));
  const rawItem = async (table: string, key: { pk: string; sk: string }) =>
    (await client.send(new GetItemCommand({ TableName: table, Key: marshall(key), ConsistentRead: true })))
      .Item;

  it('signs the control records’ verified generations into the checkpoint, as the local server does', async () => {
    const t = await fresh('jobs-ctl');
    await t.control.put('policy-set', 'active', { hash: 'h1' }, 0);
    await t.control.put('policy-set', 'active', { hash: 'h2' }, 1);
    const result = await t.run();
    expect(result.problemCount).toBe(0);
    const [checkpoint] = await checkpoints(t.tables.audit);
    // storage/heads: the run first recorded that every head of the (empty) table is MAC'd.
    expect(checkpoint?.generations).toEqual({ 'policy-set/active': 2, 'storage/heads': 1 });
  });

  it('when a control record is put back below the generation a checkpoint signed, the next run refuses to sign over it', async () => {
    const t = await fresh('jobs-ctl-rb');
    await t.control.put('policy-set', 'active', { hash: 'h1' }, 0);
    const g1 = await rawItem(t.tables.secrets, controlKey('policy-set', 'active'));
    await t.control.put('policy-set', 'active', { hash: 'h2' }, 1);
    await t.run();
    // Validly MAC'd, once current: a fresh process could not tell; the signed checkpoint can.
    await client.send(new PutItemCommand({ TableName: t.tables.secrets, Item: g1 as never }));
    cloudwatch.resetHistory();
    await expect(t.run()).rejects.toMatchObject({ code: 'integrity_error' });
    expect(metrics()).toMatchObject({ CheckpointsWritten: 0 });
    expect(await checkpoints(t.tables.audit)).toHaveLength(1);
  });

  it('MACs the legacy heads of an upgraded installation once, then only reads the control record', async () => {
    const t = await fresh('jobs-legacy');
    const at = '2026-01-01T00:00:00.000Z';
    // Heads as the version before wrote them: no MAC, no revision.
    for (const path of ['apps/one', 'apps/two']) {
      await client.send(
        new PutItemCommand({
          TableName: t.tables.secrets,
          Item: marshall({
            pk: 'P#apps',
            sk: `H#${path}`,
            type: 'head',
            path,
            latest: 1,
            minVersion: 1,
            createdAt: at,
            updatedAt: at,
            tags: { team: 'a' },
            maxVersions: 10,
            owner: 'corp:alice',
          }),
        }),
      );
    }
    const legacy = await rawItem(t.tables.secrets, { pk: 'P#apps', sk: 'H#apps/one' });
    // Before the job ran, a legacy head is never trusted.
    expect(() => t.store.openHead(legacy as never, 'apps/one')).toThrow(
      expect.objectContaining({ code: 'integrity_error' }),
    );

    await t.run();
    for (const path of ['apps/one', 'apps/two']) {
      const raw = await rawItem(t.tables.secrets, { pk: 'P#apps', sk: `H#${path}` });
      expect(t.store.openHead(raw as never, path)).toMatchObject({ path, latest: 1, owner: 'corp:alice' });
    }
    expect((await t.control.get(HEADS_STATE.kind, HEADS_STATE.id))?.payload).toMatchObject({
      allHeadsMaced: true,
      migrated: 2,
    });

    // Afterwards a run reads the control record, and scans nothing.
    const before = (await scanAll(client, t.tables.secrets)).find((r) => r.sk === 'H#apps/one');
    await t.run();
    const after = (await scanAll(client, t.tables.secrets)).find((r) => r.sk === 'H#apps/one');
    expect(after).toEqual(before);
  });

  it('when a table writer deletes the migration record and plants a head without a MAC, no run ever MACs it', async () => {
    const t = await fresh('jobs-legacy-rb');
    await t.run(); // migrates the empty table, then signs storage/heads in the same run's checkpoint
    expect((await checkpoints(t.tables.audit)).at(-1)?.generations).toMatchObject({ 'storage/heads': 1 });

    await client.send(
      new DeleteItemCommand({
        TableName: t.tables.secrets,
        Key: marshall(controlKey(HEADS_STATE.kind, HEADS_STATE.id)),
      }),
    );
    const planted = {
      pk: 'P#apps',
      sk: 'H#apps/planted',
      type: 'head',
      path: 'apps/planted',
      latest: 1,
      minVersion: 1,
      createdAt: '2026-01-01T00:00:00.000Z',
      updatedAt: '2026-01-01T00:00:00.000Z',
      tags: { access: 'wide' },
      maxVersions: 10,
      owner: 'corp:mallory',
    };
    await client.send(new PutItemCommand({ TableName: t.tables.secrets, Item: marshall(planted) }));

    await expect(t.run()).rejects.toMatchObject({ code: 'integrity_error' });
    await expect(t.run()).rejects.toMatchObject({ code: 'integrity_error' });
    const raw = await rawItem(t.tables.secrets, { pk: 'P#apps', sk: 'H#apps/planted' });
    expect(raw?.mac).toBeUndefined();
    expect(() => t.store.openHead(raw as never, 'apps/planted')).toThrow(
      expect.objectContaining({ code: 'integrity_error' }),
    );
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

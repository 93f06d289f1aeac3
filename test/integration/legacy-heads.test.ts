import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { NoAuditTrail } from '../../lib/audit/trail.js';
import { DevAuthenticator } from '../../lib/authn/dev-authenticator.js';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import { AllowAllAuthorizer } from '../../lib/authz/authorizer.js';
import { type Coffer, composeCoffer, type KeySettings } from '../../lib/compose.js';
import { Envelope } from '../../lib/crypto/envelope.js';
import { LocalKeyProvider } from '../../lib/keys/local.js';
import { openLocalStorageMacKey } from '../../lib/keys/storage-mac.js';
import { silentLogger } from '../../lib/log.js';
import { ControlRecords, controlKey } from '../../lib/store/control-records.js';
import { HEADS_STATE, LOCAL_MIGRATION_MARKER, migrateLegacyHeads } from '../../lib/store/legacy-heads.js';
import type { TableNames } from '../../lib/store/tables.js';
import { freshTables } from '../support/dynamo.js';

let client: DynamoDBClient;
let tables: TableNames;

const headKey = (path: string) => ({ pk: `P#${path.split('/')[0]}`, sk: `H#${path}` });

/** Writes a secret the way the code before authenticated heads did: a head with no MAC and no rev. */
async function writeLegacySecret(dataDir: string, path: string, value: string): Promise<void> {
  const envelope = new Envelope(await LocalKeyProvider.open(dataDir));
  const sealed = await envelope.seal(value, { table: tables.secrets, path, version: 1 });
  const at = '2026-01-01T00:00:00.000Z';
  const items = [
    {
      pk: `S#${path}`,
      sk: 'V#0000000001',
      type: 'version',
      path,
      version: 1,
      createdAt: at,
      createdBy: 'corp:alice',
      alg: sealed.algorithm,
      iv: sealed.iv,
      ct: sealed.ciphertext,
      wk: sealed.wrappedKey,
      kp: sealed.keyProvider,
      kid: sealed.keyId,
    },
    {
      ...headKey(path),
      type: 'head',
      path,
      latest: 1,
      minVersion: 1,
      createdAt: at,
      updatedAt: at,
      tags: { team: 'a' },
      maxVersions: 10,
      owner: 'corp:alice',
    },
    { pk: 'ROOTS', sk: `R#${path.split('/')[0]}` },
  ];
  for (const item of items) {
    await client.send(new PutItemCommand({ TableName: tables.secrets, Item: marshall(item) }));
  }
}

async function compose(dataDir: string, keys?: KeySettings): Promise<{ coffer: Coffer; token: string }> {
  const issuer = await DevIssuer.open(dataDir);
  const coffer = await composeCoffer({
    dynamo: client,
    tables,
    keys: keys ?? { kind: 'local', dataDir },
    audit: { kind: 'trail', trail: new NoAuditTrail() },
    policy: { authorizer: new AllowAllAuthorizer() },
    authn: { authenticator: new DevAuthenticator(issuer.publicKey) },
    connection: () => ({ sourceIp: '127.0.0.1' }),
    logger: silentLogger,
  });
  return { coffer, token: await issuer.mint({ subject: 'dev-admin', groups: ['admins'] }) };
}

async function read(coffer: Coffer, token: string, path: string) {
  const res = await coffer.app.request(`/v1/secrets/${path}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: res.status, body: (await res.json()) as { value?: string; error?: { code: string } } };
}

const rawHead = async (path: string) =>
  (
    await client.send(
      new GetItemCommand({ TableName: tables.secrets, Key: marshall(headKey(path)), ConsistentRead: true }),
    )
  ).Item;

beforeAll(async () => {
  ({ client, tables } = await freshTables('legacy'));
});

describe('heads written before heads carried MACs', () => {
  it('when a data dir from before is opened, its secrets read without a manual migration, and its heads are MAC’d', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-legacy-'));
    await writeLegacySecret(dataDir, 'old/db', 'legacy-value-1');
    await writeLegacySecret(dataDir, 'old/api', 'legacy-value-2');
    expect((await rawHead('old/db'))?.mac).toBeUndefined();

    const { coffer, token } = await compose(dataDir);
    expect(await read(coffer, token, 'old/db')).toMatchObject({
      status: 200,
      body: { value: 'legacy-value-1' },
    });
    expect(await read(coffer, token, 'old/api')).toMatchObject({
      status: 200,
      body: { value: 'legacy-value-2' },
    });
    expect((await rawHead('old/db'))?.mac?.B).toHaveLength(32);
    const marker = JSON.parse(await readFile(join(dataDir, 'keys', LOCAL_MIGRATION_MARKER), 'utf8'));
    expect(marker).toMatchObject({ table: tables.secrets, migrated: 2 });

    // Once migrated, a head whose MAC a table writer strips (after retagging it) is refused, also
    // after the server starts again.
    await client.send(
      new UpdateItemCommand({
        TableName: tables.secrets,
        Key: marshall(headKey('old/db')),
        UpdateExpression: 'SET tags = :t REMOVE mac, mk, rev',
        ExpressionAttributeValues: marshall({ ':t': { team: 'b' } }),
      }),
    );
    expect(await read(coffer, token, 'old/db')).toMatchObject({
      status: 500,
      body: { error: { code: 'integrity_error' } },
    });
    const again = await compose(dataDir);
    expect(await read(again.coffer, again.token, 'old/db')).toMatchObject({
      status: 500,
      body: { error: { code: 'integrity_error' } },
    });
    expect((await read(again.coffer, again.token, 'old/api')).status).toBe(200);
  });

  it('when no migration runs (ports, as in AWS without the migration flag), a head without a MAC is refused', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-legacy-'));
    await writeLegacySecret(dataDir, 'aws/db', 'legacy-value-3');
    const { coffer, token } = await compose(dataDir, {
      kind: 'ports',
      provider: await LocalKeyProvider.open(dataDir),
      storageMac: await openLocalStorageMacKey(dataDir),
    });
    expect(await read(coffer, token, 'aws/db')).toMatchObject({
      status: 500,
      body: { error: { code: 'integrity_error' } },
    });
    expect((await rawHead('aws/db'))?.mac).toBeUndefined();
  });

  it('when the AWS migration runs (the migrateLegacyHeads flag), it MACs legacy heads once and records it; a head stripped later is refused', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-legacy-'));
    await writeLegacySecret(dataDir, 'job/db', 'legacy-value-4');
    const keys: KeySettings = {
      kind: 'ports',
      provider: await LocalKeyProvider.open(dataDir),
      storageMac: await openLocalStorageMacKey(dataDir),
    };
    const { coffer, token } = await compose(dataDir, keys);
    const first = await migrateLegacyHeads(coffer.store, coffer.control);
    expect(first.alreadyDone).toBe(false);
    expect(first.migrated).toBeGreaterThanOrEqual(1);
    expect(await read(coffer, token, 'job/db')).toMatchObject({
      status: 200,
      body: { value: 'legacy-value-4' },
    });
    const state = await coffer.control.get(HEADS_STATE.kind, HEADS_STATE.id);
    expect(state).toMatchObject({ generation: 1, payload: { allHeadsMaced: true } });
    // Run again (the flag left on): nothing is read or MAC'd, so a stripped head stays refused.
    await client.send(
      new UpdateItemCommand({
        TableName: tables.secrets,
        Key: marshall(headKey('job/db')),
        UpdateExpression: 'REMOVE mac',
      }),
    );
    expect(
      await migrateLegacyHeads(
        coffer.store,
        new ControlRecords({ client, table: tables.secrets, key: keys.storageMac, binding: tables.secrets }),
      ),
    ).toEqual({ migrated: 0, alreadyDone: true });
    expect((await read(coffer, token, 'job/db')).status).toBe(500);
    // Deleting the control record is a rollback this process refuses (it saw generation 1).
    const ctl = controlKey(HEADS_STATE.kind, HEADS_STATE.id);
    await client.send(new DeleteItemCommand({ TableName: tables.secrets, Key: marshall(ctl) }));
    await expect(migrateLegacyHeads(coffer.store, coffer.control)).rejects.toThrow('integrity');
  });
});

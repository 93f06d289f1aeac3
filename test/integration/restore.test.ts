import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BatchWriteItemCommand,
  type DynamoDBClient,
  ScanCommand,
  type ScanCommandInput,
} from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { NoAuditTrail } from '../../lib/audit/trail.js';
import { DevAuthenticator } from '../../lib/authn/dev-authenticator.js';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import { AllowAllAuthorizer } from '../../lib/authz/authorizer.js';
import { type Coffer, composeCoffer, type KeySettings } from '../../lib/compose.js';
import { LocalKeyProvider } from '../../lib/keys/local.js';
import { openLocalStorageMacKey } from '../../lib/keys/storage-mac.js';
import { silentLogger } from '../../lib/log.js';
import { ensureTables, type TableNames } from '../../lib/store/tables.js';
import { freshTables } from '../support/dynamo.js';

/*
 * The restore runbook (docs/operations.md) against DynamoDB Local: a point-in-time restore always
 * makes a new table, so the copy here is a new table filled with Scan + BatchWriteItem, and a new
 * composition is pointed at it, as the runbook points the stack or the local server.
 */

let client: DynamoDBClient;
let tables: TableNames;
let dataDir: string;
let issuer: DevIssuer;
const secrets: Record<string, string> = {};

async function compose(
  t: TableNames,
  options: { keys?: KeySettings; installationId?: string } = {},
): Promise<Coffer> {
  return composeCoffer({
    dynamo: client,
    tables: t,
    keys: options.keys ?? { kind: 'local', dataDir },
    audit: { kind: 'trail', trail: new NoAuditTrail() },
    policy: { authorizer: new AllowAllAuthorizer() },
    authn: { authenticator: new DevAuthenticator(issuer.publicKey) },
    connection: () => ({ sourceIp: '127.0.0.1' }),
    logger: silentLogger,
    ...(options.installationId ? { installationId: options.installationId } : {}),
  });
}

async function call(coffer: Coffer, method: string, path: string, body?: unknown) {
  const token = await issuer.mint({ subject: 'dev-admin', groups: ['admins'] });
  const res = await coffer.app.request(path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const json = (await res.json()) as { value?: string; items?: unknown[]; error?: { code: string } };
  return { status: res.status, body: json };
}

/** Copies every item of `from` into a new table, as a restore would. */
async function copyTable(from: string, to: string): Promise<void> {
  await ensureTables(client, { secrets: to, audit: tables.audit });
  let start: ScanCommandInput['ExclusiveStartKey'];
  do {
    const page = await client.send(new ScanCommand({ TableName: from, ExclusiveStartKey: start }));
    const items = page.Items ?? [];
    for (let i = 0; i < items.length; i += 25) {
      let requests = items.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } }));
      while (requests.length > 0) {
        const out = await client.send(new BatchWriteItemCommand({ RequestItems: { [to]: requests } }));
        requests = (out.UnprocessedItems?.[to] ?? []) as typeof requests;
      }
    }
    start = page.LastEvaluatedKey;
  } while (start);
}

beforeAll(async () => {
  ({ client, tables } = await freshTables('restore'));
  dataDir = await mkdtemp(join(tmpdir(), 'coffer-restore-'));
  issuer = await DevIssuer.open(dataDir);
  const original = await compose(tables);
  for (let i = 0; i < 30; i++) {
    const path = `team-${i % 3}/app-${i}/db`;
    secrets[path] = `restore-value-${i}`;
    expect(
      (await call(original, 'PUT', `/v1/secrets/${path}`, { value: secrets[path], tags: { n: String(i) } }))
        .status,
    ).toBe(200);
  }
  expect(
    (await call(original, 'PUT', '/v1/secrets/team-0/app-0/db', { value: 'restore-value-0b' })).status,
  ).toBe(200);
  secrets['team-0/app-0/db'] = 'restore-value-0b';
});

describe('restoring the secrets table into a new table', () => {
  it('when the local server is pointed at a copied table, it reads every secret (the installation id stays the data dir’s)', async () => {
    expect((await readFile(join(dataDir, 'installation-id'), 'utf8')).trim()).toBe(tables.secrets);
    const restored = `${tables.secrets}-restored`;
    await copyTable(tables.secrets, restored);
    const coffer = await compose({ ...tables, secrets: restored });
    for (const [path, value] of Object.entries(secrets)) {
      const res = await call(coffer, 'GET', `/v1/secrets/${path}`);
      expect(res).toMatchObject({ status: 200, body: { value } });
    }
    expect((await call(coffer, 'GET', '/v1/secrets/team-0/app-0/db?version=1')).body.value).toBe(
      'restore-value-0',
    );
    const listed = await call(coffer, 'GET', '/v1/list?prefix=team-1/');
    expect(listed.body.items).toHaveLength(10);
    // The restored installation keeps working: a write lands in the restored table.
    expect((await call(coffer, 'PUT', '/v1/secrets/team-1/new/db', { value: 'after-restore' })).status).toBe(
      200,
    );
  });

  it('when data written under table A is read from table B, it works with installationId = A and fails closed without', async () => {
    const copy = `${tables.secrets}-b`;
    await copyTable(tables.secrets, copy);
    const keys: KeySettings = {
      kind: 'ports',
      provider: await LocalKeyProvider.open(dataDir),
      storageMac: await openLocalStorageMacKey(dataDir),
      // The data was written under branch keys (docs/keys.md): their keyrings are in the copy too.
      hierarchy: true,
    };
    const bound = await compose({ ...tables, secrets: copy }, { keys, installationId: tables.secrets });
    const path = 'team-2/app-2/db';
    expect(await call(bound, 'GET', `/v1/secrets/${path}`)).toMatchObject({
      status: 200,
      body: { value: secrets[path] },
    });
    // Without the setting the installation id defaults to the table's name: nothing verifies.
    const unbound = await compose({ ...tables, secrets: copy }, { keys });
    const res = await call(unbound, 'GET', `/v1/secrets/${path}`);
    expect(res).toMatchObject({ status: 500, body: { error: { code: 'integrity_error' } } });
  });
});

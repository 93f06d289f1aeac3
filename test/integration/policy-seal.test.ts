import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../lib/authn/principal.js';
import type { Action, Resource } from '../../lib/authz/authorizer.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { PolicySetError, policyValidations } from '../../lib/authz/policy-set.js';
import { loadSealedPolicyDir, POLICY_SEAL_ID, POLICY_SEAL_KIND } from '../../lib/control/policy-seal.js';
import { IntegrityError } from '../../lib/errors.js';
import { HmacStorageMacKey } from '../../lib/keys/storage-mac.js';
import { silentLogger } from '../../lib/log.js';
import { ControlRecords, controlKey } from '../../lib/store/control-records.js';
import type { TableNames } from '../../lib/store/tables.js';
import { freshTables } from '../support/dynamo.js';

const REPO_POLICIES = new URL('../../policies/', import.meta.url);
const key = new HmacStorageMacKey([{ id: 'storage-v1', key: new Uint8Array(32).fill(7) }]);
const otherKey = new HmacStorageMacKey([{ id: 'storage-v1', key: new Uint8Array(32).fill(8) }]);

let client: DynamoDBClient;
let tables: TableNames;
let work: string;
/** A fresh ControlRecords is a fresh process: it remembers no generation. */
const control = (k = key) =>
  new ControlRecords({ client, table: tables.secrets, key: k, binding: tables.secrets });

const FORBID_EVE = '@id("no-eve")\nforbid (principal == Coffer::User::"corp:eve", action, resource);\n';

/**
 * A policy directory: the shipped schema and admins policy, plus the given files, and a comment of
 * its own so that each test's set has its own hash (the tests share one table, so one seal).
 */
async function policyDir(extra: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(join(work, 'p-'));
  await writeFile(join(dir, 'tag.cedar'), `// ${dir}\n`);
  await cp(new URL('schema.cedarschema', REPO_POLICIES), join(dir, 'schema.cedarschema'));
  await cp(new URL('admins.cedar', REPO_POLICIES), join(dir, 'admins.cedar'));
  for (const [name, text] of Object.entries(extra)) await writeFile(join(dir, name), text);
  return dir;
}

const user = (id: string, groups: string[]): Principal => ({
  type: 'User',
  id,
  groups,
  attributes: {},
  authMethod: 'oidc',
  issuer: 'corp',
});
const secret: Resource = { kind: 'Secret', path: 'team-a/db/password', tags: { env: 'prod' } };
const context = { authMethod: 'oidc' as const, sourceIp: '10.0.0.1', time: 1_740_830_400 };
const decisions = (a: CedarAuthorizer) =>
  [user('corp:ada', ['admins']), user('corp:eve', ['admins']), user('corp:bob', ['devs'])].flatMap((p) =>
    (['read', 'write', 'admin'] as Action[]).map((action) => {
      const d = a.authorize({ principal: p, action, resource: secret, context });
      return { allowed: d.allowed, policyIds: d.policyIds };
    }),
  );

const sealItem = async () => {
  const { pk, sk } = controlKey(POLICY_SEAL_KIND, POLICY_SEAL_ID);
  const out = await client.send(
    new GetItemCommand({ TableName: tables.secrets, Key: { pk: { S: pk }, sk: { S: sk } } }),
  );
  if (!out.Item) throw new Error('no seal');
  return out.Item;
};

beforeAll(async () => {
  ({ client, tables } = await freshTables('seal'));
  work = await mkdtemp(join(tmpdir(), 'coffer-seal-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('the sealed policy set (validated once, MAC checked at later starts)', () => {
  it('when a set was validated and sealed, the next start loads it without the validator and decides the same', async () => {
    const dir = await policyDir({ 'floor.cedar': FORBID_EVE });
    const before = policyValidations();
    const first = await loadSealedPolicyDir(dir, control(), silentLogger);
    expect(first.via).toBe('validated');
    expect(policyValidations()).toBe(before + 1);

    const second = await loadSealedPolicyDir(dir, control(), silentLogger);
    expect(second.via).toBe('sealed');
    expect(policyValidations()).toBe(before + 1);
    expect(second.set.hash).toBe(first.set.hash);
    expect(second.set.policies).toEqual(first.set.policies);

    const validated = decisions(new CedarAuthorizer(first.set, { logger: silentLogger }));
    expect(decisions(new CedarAuthorizer(second.set, { logger: silentLogger }))).toEqual(validated);
    // The decisions are the policies', not a default: ada is allowed, eve is forbidden, bob denied.
    expect(validated.map((d) => d.allowed)).toEqual([
      true,
      true,
      true,
      false,
      false,
      false,
      false,
      false,
      false,
    ]);
  });

  it('when a file changed after sealing, the set is validated again (and refused if invalid)', async () => {
    const dir = await policyDir({ 'floor.cedar': FORBID_EVE });
    await loadSealedPolicyDir(dir, control(), silentLogger);
    await writeFile(join(dir, 'floor.cedar'), FORBID_EVE.replace('corp:eve', 'corp:mallory'));
    const before = policyValidations();
    expect((await loadSealedPolicyDir(dir, control(), silentLogger)).via).toBe('validated');
    expect(policyValidations()).toBe(before + 1);

    // An edit that does not validate is refused, whatever seal is stored.
    await loadSealedPolicyDir(dir, control(), silentLogger);
    await writeFile(
      join(dir, 'floor.cedar'),
      'permit (principal, action, resource) when { resource.nope };\n',
    );
    await expect(loadSealedPolicyDir(dir, control(), silentLogger)).rejects.toBeInstanceOf(PolicySetError);
  });

  it('when the seal names the set with another schema hash, the start is refused', async () => {
    const dir = await policyDir();
    const { set } = await loadSealedPolicyDir(dir, control(), silentLogger);
    const records = control();
    const current = await records.get<Record<string, unknown>>(POLICY_SEAL_KIND, POLICY_SEAL_ID);
    // Only a holder of the storage key can write this: it is not a seal Coffer makes.
    await records.put(
      POLICY_SEAL_KIND,
      POLICY_SEAL_ID,
      { ...current?.payload, setHash: set.hash, schemaHash: 'f'.repeat(64) },
      current?.generation ?? 0,
    );
    await expect(loadSealedPolicyDir(dir, control(), silentLogger)).rejects.toBeInstanceOf(IntegrityError);
  });

  it('when the seal was made by another validator (an older Coffer), the set is validated again and sealed anew', async () => {
    const dir = await policyDir();
    const { set } = await loadSealedPolicyDir(dir, control(), silentLogger);
    const records = control();
    const current = await records.get<Record<string, unknown>>(POLICY_SEAL_KIND, POLICY_SEAL_ID);
    await records.put(
      POLICY_SEAL_KIND,
      POLICY_SEAL_ID,
      { ...current?.payload, setHash: set.hash, validator: 'f'.repeat(64) },
      current?.generation ?? 0,
    );
    const before = policyValidations();
    expect((await loadSealedPolicyDir(dir, control(), silentLogger)).via).toBe('validated');
    expect(policyValidations()).toBe(before + 1);
    expect((await loadSealedPolicyDir(dir, control(), silentLogger)).via).toBe('sealed');
  });

  it('when the seal was edited in the table or MAC’d with another key, the start is refused', async () => {
    const dir = await policyDir();
    await loadSealedPolicyDir(dir, control(), silentLogger);
    const item = await sealItem();
    const payload = JSON.parse(item.payload?.S ?? '{}') as { setHash: string; schemaHash: string };
    // A table writer points the seal at other bytes: the MAC no longer matches.
    await client.send(
      new PutItemCommand({
        TableName: tables.secrets,
        Item: { ...item, payload: { S: JSON.stringify({ ...payload, setHash: 'a'.repeat(64) }) } },
      }),
    );
    await expect(loadSealedPolicyDir(dir, control(), silentLogger)).rejects.toBeInstanceOf(IntegrityError);

    // A well-formed seal for this very set, MAC'd under a key Coffer does not hold.
    const { pk, sk } = controlKey(POLICY_SEAL_KIND, POLICY_SEAL_ID);
    await client.send(
      new DeleteItemCommand({ TableName: tables.secrets, Key: { pk: { S: pk }, sk: { S: sk } } }),
    );
    await control(otherKey).put(POLICY_SEAL_KIND, POLICY_SEAL_ID, payload, 0);
    await expect(loadSealedPolicyDir(dir, control(), silentLogger)).rejects.toBeInstanceOf(IntegrityError);
  });
});

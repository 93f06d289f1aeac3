import {
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { IntegrityError } from '../../lib/errors.js';
import { HmacStorageMacKey } from '../../lib/keys/storage-mac.js';
import { ControlRecordConflict, ControlRecords, controlKey } from '../../lib/store/control-records.js';
import type { TableNames } from '../../lib/store/tables.js';
import { freshTables } from '../support/dynamo.js';

let client: DynamoDBClient;
let tables: TableNames;
const key = new HmacStorageMacKey([{ id: 'storage-v1', key: new Uint8Array(32).fill(3) }]);
const records = (binding = tables.secrets, k = key) =>
  new ControlRecords({ client, table: tables.secrets, key: k, binding });

const raw = async (kind: string, id: string) => {
  const { pk, sk } = controlKey(kind, id);
  const out = await client.send(
    new GetItemCommand({ TableName: tables.secrets, Key: { pk: { S: pk }, sk: { S: sk } } }),
  );
  if (!out.Item) throw new Error('missing');
  return out.Item;
};
const save = (item: Record<string, unknown>) =>
  client.send(new PutItemCommand({ TableName: tables.secrets, Item: item as never }));

beforeAll(async () => {
  ({ client, tables } = await freshTables('ctl'));
});

describe('authenticated control records', () => {
  it('when written and read back, the payload and a rising generation come back', async () => {
    const control = records();
    expect(await control.get('policy-set', 'a')).toBeUndefined();
    const first = await control.put('policy-set', 'a', { hash: 'h1' }, 0);
    expect(first.generation).toBe(1);
    const second = await control.put('policy-set', 'a', { hash: 'h2' }, 1);
    expect(second.generation).toBe(2);
    // Another process (a fresh reader) sees the same.
    expect(await records().get('policy-set', 'a')).toEqual({
      kind: 'policy-set',
      id: 'a',
      generation: 2,
      payload: { hash: 'h2' },
    });
    expect(await control.generations()).toMatchObject({ 'policy-set/a': 2 });
  });

  it('when a writer names a generation that is not the stored one, the write is refused', async () => {
    const control = records();
    await control.put('revocations', 'all', { ids: [] }, 0);
    await expect(control.put('revocations', 'all', { ids: ['x'] }, 0)).rejects.toBeInstanceOf(
      ControlRecordConflict,
    );
    await control.put('revocations', 'all', { ids: ['x'] }, 1);
    // A stale writer cannot go back to generation 2 (or any lower one).
    await expect(control.put('revocations', 'all', { ids: [] }, 1)).rejects.toBeInstanceOf(
      ControlRecordConflict,
    );
  });

  it('when an older, validly MAC’d copy is put back, a reader that saw the newer one refuses it', async () => {
    const control = records();
    await control.put('branch-key', 'team-a', { active: 'v1' }, 0);
    const old = await raw('branch-key', 'team-a');
    await control.put('branch-key', 'team-a', { active: 'v2' }, 1);
    expect((await control.get('branch-key', 'team-a'))?.generation).toBe(2);
    await save(old);
    await expect(control.get('branch-key', 'team-a')).rejects.toBeInstanceOf(IntegrityError);
    await expect(control.generations()).rejects.toBeInstanceOf(IntegrityError);
    // Deleting it is a rollback to "never written", refused alike.
    const { pk, sk } = controlKey('branch-key', 'team-a');
    await client.send(
      new DeleteItemCommand({ TableName: tables.secrets, Key: { pk: { S: pk }, sk: { S: sk } } }),
    );
    await expect(control.get('branch-key', 'team-a')).rejects.toBeInstanceOf(IntegrityError);
  });

  it('when the payload, generation, kind or id is edited, or the MAC is bad, the record is refused', async () => {
    await records().put('rotation', 'r1', { days: 30 }, 0);
    const item = await raw('rotation', 'r1');
    const mac = item.mac?.B as Uint8Array;
    const flipped = Uint8Array.from(mac);
    flipped[0] = (flipped[0] as number) ^ 1;
    for (const edit of [
      { payload: { S: '{"days":3650}' } },
      { generation: { N: '9' } },
      { kind: { S: 'policy-set' } },
      { id: { S: 'r2' } },
      { mac: { B: flipped } },
      { mk: { S: 'storage-v0' } },
    ]) {
      await save({ ...item, ...edit });
      await expect(records().get('rotation', 'r1')).rejects.toBeInstanceOf(IntegrityError);
    }
    const { mac: _m, ...unsigned } = item;
    await save(unsigned);
    await expect(records().get('rotation', 'r1')).rejects.toBeInstanceOf(IntegrityError);
  });

  it('when a record is copied to another kind or id, it is refused (wrong kind)', async () => {
    await records().put('policy-set', 'copy-src', { permit: 'all' }, 0);
    const item = await raw('policy-set', 'copy-src');
    const target = controlKey('revocations', 'copy-src');
    await save({ ...item, pk: { S: target.pk }, sk: { S: target.sk } });
    await expect(records().get('revocations', 'copy-src')).rejects.toBeInstanceOf(IntegrityError);
  });

  it('when read under another installation id or another MAC key, every record is refused', async () => {
    await records().put('cursor', 'rewrap', { at: 'x' }, 0);
    await expect(records('other-install').get('cursor', 'rewrap')).rejects.toBeInstanceOf(IntegrityError);
    const otherKey = new HmacStorageMacKey([{ id: 'storage-v1', key: new Uint8Array(32).fill(4) }]);
    await expect(records(tables.secrets, otherKey).get('cursor', 'rewrap')).rejects.toBeInstanceOf(
      IntegrityError,
    );
  });
});

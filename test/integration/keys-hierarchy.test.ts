import { fileURLToPath } from 'node:url';
import { GetItemCommand, PutItemCommand, ScanCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { folderRecordId, KEYRING_KIND } from '../../lib/keys/branch-keys.js';
import { jsonLogger } from '../../lib/log.js';
import { controlKey } from '../../lib/store/control-records.js';
import { versionKey } from '../../lib/store/keys.js';
import { createHarness, type Harness } from '../support/harness.js';

const POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));

let h: Harness;
let bob: string;

const kidOf = async (path: string, version: number) => {
  const k = versionKey(path, version);
  const out = await h.client.send(
    new GetItemCommand({ TableName: h.tables.secrets, Key: { pk: { S: k.pk }, sk: { S: k.sk } } }),
  );
  return out.Item?.kid?.S;
};

beforeAll(async () => {
  h = await createHarness({
    label: 'keys',
    authorizer: await CedarAuthorizer.fromDir(POLICIES, { logger: jsonLogger(() => {}) }),
  });
  bob = await h.issuer.mint({ subject: 'bob', groups: ['developers'] });
});

describe('key hierarchy, local end to end', () => {
  it('when secrets in two folders are written, rotated, re-wrapped and retired, every value reads back and status follows', async () => {
    const values = new Map<string, string>();
    const put = async (path: string, value: string) => {
      const res = await h.call('PUT', `/v1/secrets/${path}`, { body: { value } });
      expect(res.status).toBe(200);
      values.set(`${path}@${res.body.version}`, value);
    };
    for (let i = 0; i < 4; i++) {
      await put(`alpha/s${i}`, `a-${i}`);
      await put(`beta/db/s${i}`, `b-${i}`);
    }
    expect(await kidOf('alpha/s0', 1)).toBe('bk:alpha:1');
    expect(await kidOf('beta/db/s0', 1)).toBe('bk:beta:1');

    const rotated = await h.call('POST', '/v1/keys/rotate', { body: {} });
    expect(rotated.status).toBe(200);
    expect(rotated.body.rotated).toEqual([
      { folder: 'alpha', from: 'bk:alpha:1', to: 'bk:alpha:2' },
      { folder: 'beta', from: 'bk:beta:1', to: 'bk:beta:2' },
    ]);
    // New writes use the new version at once.
    await put('alpha/s0', 'a-0-second');
    expect(await kidOf('alpha/s0', 2)).toBe('bk:alpha:2');
    // The old version still reads.
    expect((await h.call('GET', '/v1/secrets/alpha/s1')).body.value).toBe('a-1');

    // Retiring the active key, or one still referenced, is refused.
    const active = await h.call('POST', '/v1/keys/retire', { body: { id: 'bk:alpha:2' } });
    expect(active.status).toBe(409);
    expect(active.body.error.code).toBe('key_state_conflict');
    const used = await h.call('POST', '/v1/keys/retire', { body: { id: 'bk:alpha:1' } });
    expect(used.status).toBe(409);

    let cursor: { done: boolean } | null = null;
    for (let i = 0; i < 20 && !cursor?.done; i++) {
      cursor = (await h.call('POST', '/v1/keys/rewrap', { body: {} })).body.cursor;
    }
    expect(cursor?.done).toBe(true);

    const status = (await h.call('GET', '/v1/keys/status')).body;
    const versionsOf = (folder: string) =>
      Object.fromEntries(
        status.folders
          .find((f: { folder: string }) => f.folder === folder)
          .versions.map((v: { id: string; state: string; secretVersions: number }) => [
            v.id,
            [v.state, v.secretVersions],
          ]),
      );
    expect(versionsOf('alpha')).toEqual({ 'bk:alpha:1': ['ready', 0], 'bk:alpha:2': ['active', 5] });
    expect(versionsOf('beta')).toEqual({ 'bk:beta:1': ['ready', 0], 'bk:beta:2': ['active', 4] });
    expect(status.instance.cache.hits).toBeGreaterThan(0);
    expect(status.root.keys[0]).toMatchObject({ state: 'active', branchKeys: 4, secretVersions: 0 });

    for (const [at, value] of values) {
      const [path, version] = at.split('@') as [string, string];
      const res = await h.call('GET', `/v1/secrets/${path}?version=${version}`);
      expect(res.body.value).toBe(value);
    }
    const retired = await h.call('POST', '/v1/keys/retire', { body: { id: 'bk:alpha:1' } });
    expect(retired.status).toBe(200);
    expect(retired.body.retired).toBe('bk:alpha:1');
    const after = (await h.call('GET', '/v1/keys/status')).body;
    expect(after.folders[0].versions[0]).toMatchObject({ id: 'bk:alpha:1', state: 'retired' });
  });

  it('when a non-admin calls any key operation, it gets 403', async () => {
    const calls: [string, string, unknown][] = [
      ['GET', '/v1/keys/status', undefined],
      ['POST', '/v1/keys/rotate', {}],
      ['POST', '/v1/keys/rotate', { folder: 'alpha' }],
      ['POST', '/v1/keys/rotate', { root: true }],
      ['POST', '/v1/keys/revert', { folder: 'alpha' }],
      ['POST', '/v1/keys/revert', { root: true }],
      ['POST', '/v1/keys/flush', undefined],
      ['POST', '/v1/keys/rewrap', {}],
      ['POST', '/v1/keys/rewrap', { folder: 'alpha' }],
      ['POST', '/v1/keys/retire', { id: 'bk:alpha:1' }],
      ['POST', '/v1/keys/retire', { id: 'local:0000000000000000' }],
    ];
    for (const [method, route, body] of calls) {
      const res = await h.call(method, route, { token: bob, ...(body !== undefined ? { body } : {}) });
      expect([route, res.status, res.body?.error?.code]).toEqual([route, 403, 'forbidden']);
    }
  });

  it('when a folder is rotated and reverted, writes go back to the previous version', async () => {
    await h.call('PUT', '/v1/secrets/gamma/x', { body: { value: 'g1' } });
    const r = await h.call('POST', '/v1/keys/rotate', { body: { folder: 'gamma' } });
    expect(r.body.rotated).toEqual([{ folder: 'gamma', from: 'bk:gamma:1', to: 'bk:gamma:2' }]);
    const back = await h.call('POST', '/v1/keys/revert', { body: { folder: 'gamma' } });
    expect(back.status).toBe(200);
    await h.call('PUT', '/v1/secrets/gamma/x', { body: { value: 'g2' } });
    expect(await kidOf('gamma/x', 2)).toBe('bk:gamma:1');
    const none = await h.call('POST', '/v1/keys/revert', { body: { folder: 'gamma' } });
    expect(none.body.error.code).toBe('key_state_conflict');
  });

  it('when the root is rotated locally, branch keys move to the new root and everything still reads', async () => {
    await h.call('PUT', '/v1/secrets/delta/x', { body: { value: 'd1' } });
    const r = await h.call('POST', '/v1/keys/rotate', { body: { root: true } });
    expect(r.status).toBe(200);
    expect(r.body.to).not.toBe(r.body.from);
    expect(r.body.branchKeys).toBeGreaterThan(0);
    await h.call('POST', '/v1/keys/flush');
    expect((await h.call('GET', '/v1/secrets/delta/x')).body.value).toBe('d1');
    const status = (await h.call('GET', '/v1/keys/status')).body;
    expect(status.root.active).toBe(r.body.to);
    const old = status.root.keys.find((k: { keyId: string }) => k.keyId === r.body.from);
    expect(old).toMatchObject({ state: 'available', branchKeys: 0 });
    // The old root wraps nothing any more: it can be retired, the active one cannot.
    expect((await h.call('POST', '/v1/keys/retire', { body: { id: r.body.to } })).status).toBe(409);
    expect((await h.call('POST', '/v1/keys/retire', { body: { id: r.body.from } })).status).toBe(200);
  });

  it('when the active-version pointer is set back to an old version directly in DynamoDB, it is refused', async () => {
    await h.call('PUT', '/v1/secrets/eps/x', { body: { value: 'e1' } });
    const key = controlKey(KEYRING_KIND, folderRecordId('eps'));
    const Key = { pk: { S: key.pk }, sk: { S: key.sk } };
    const before = (await h.client.send(new GetItemCommand({ TableName: h.tables.secrets, Key }))).Item;
    await h.call('POST', '/v1/keys/rotate', { body: { folder: 'eps' } });
    // An old, validly MAC'd record put back (a rollback of the pointer).
    await h.client.send(new PutItemCommand({ TableName: h.tables.secrets, Item: before as never }));
    const write = await h.call('PUT', '/v1/secrets/eps/x', { body: { value: 'e2' } });
    expect(write.status).toBe(500);
    expect(write.body.error.code).toBe('integrity_error');
    // An edited pointer fails its MAC.
    const payload = JSON.parse(before?.payload?.S as string);
    await h.client.send(
      new UpdateItemCommand({
        TableName: h.tables.secrets,
        Key,
        UpdateExpression: 'SET payload = :p, generation = :g',
        ExpressionAttributeValues: {
          ':p': { S: JSON.stringify({ ...payload, active: 1 }) },
          ':g': { N: '99' },
        },
      }),
    );
    const again = await h.call('PUT', '/v1/secrets/eps/y', { body: { value: 'e3' } });
    expect(again.body.error.code).toBe('integrity_error');
  });

  it('when a data key names another folder’s branch key, the read fails as an integrity error', async () => {
    await h.call('PUT', '/v1/secrets/zeta/x', { body: { value: 'z1' } });
    // The version item and its copy in the current item (whose key id the head's digest leaves
    // out, so that the re-wrap job can change it): either one is checked when the data key opens.
    for (const k of [versionKey('zeta/x', 1), { pk: 'S#zeta/x', sk: 'C' }]) {
      await h.client.send(
        new UpdateItemCommand({
          TableName: h.tables.secrets,
          Key: { pk: { S: k.pk }, sk: { S: k.sk } },
          UpdateExpression: 'SET kid = :k',
          ExpressionAttributeValues: { ':k': { S: 'bk:alpha:2' } },
        }),
      );
    }
    const res = await h.call('GET', '/v1/secrets/zeta/x');
    expect(res.body.error.code).toBe('integrity_error');
    const scan = await h.client.send(new ScanCommand({ TableName: h.tables.secrets }));
    // No key material in the control records beyond wrapped keys.
    expect(JSON.stringify(scan.Items)).not.toContain('plaintext');
  });
});

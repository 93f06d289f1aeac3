import {
  type AttributeValue,
  BatchGetItemCommand,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  type KeysAndAttributes,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { countStorageCalls, type StorageCallCounter } from '../../lib/store/call-counter.js';
import { createHarness, type Harness } from '../support/harness.js';

/*
 * The current item (lib/store/current-copy.ts): a copy of the current version read with the head
 * in one BatchGetItem. A writer of the secrets table who holds no Coffer key edits items directly
 * here; whatever it does, a read never serves a value from a copy that the verified head does not
 * vouch for: it falls back to the version item, as reads did before copies, or answers as that
 * version item says (404 for a destroyed version).
 */

let h: Harness;
let calls: StorageCallCounter;
let n = 0;

type Item = Record<string, AttributeValue>;

const headKey = (path: string) => ({ pk: { S: `P#${path.split('/')[0]}` }, sk: { S: `H#${path}` } });
const copyKey = (path: string) => ({ pk: { S: `S#${path}` }, sk: { S: 'C' } });

async function getItem(key: Item): Promise<Item | undefined> {
  return (
    await h.client.send(new GetItemCommand({ TableName: h.tables.secrets, Key: key, ConsistentRead: true }))
  ).Item;
}
const putItem = (item: Item) =>
  h.client.send(new PutItemCommand({ TableName: h.tables.secrets, Item: item }));

async function write(path: string, value: string): Promise<number> {
  const res = await h.call('PUT', `/v1/secrets/${path}`, { body: { value } });
  expect(res.status, res.text).toBe(200);
  return res.body.version;
}

/** A GET's status, value and storage calls. */
async function read(path: string, query = '') {
  calls.take();
  const res = await h.call('GET', `/v1/secrets/${path}${query}`);
  return { status: res.status, value: res.body?.value, code: res.body?.error?.code, calls: calls.take() };
}

const FAST = { BatchGetItem: 1, PutItem: 1 };
const FALLBACK = { BatchGetItem: 1, GetItem: 1, PutItem: 1 };

const fresh = () => `cc${++n}/app/secret`;

/**
 * Rewrites a head as the code before current items wrote it: no `cv`/`cd`, sealed with the same
 * MAC key and revision, and no current item beside it.
 */
async function toOldLayout(path: string): Promise<void> {
  const head = await h.store.getHead(path);
  if (!head) throw new Error('no head');
  const { current: _copy, ...old } = head;
  const rev = head.rev ?? 1;
  await putItem(h.store.sealHead(old, { ...old, rev: rev - 1 }));
  await h.client.send(new DeleteItemCommand({ TableName: h.tables.secrets, Key: copyKey(path) }));
}

beforeAll(async () => {
  h = await createHarness({
    label: 'copy',
    audit: 'dynamo',
    clientWrapper: (client) => {
      calls = countStorageCalls(client);
      return client;
    },
  });
});

describe('the current item', () => {
  it('when a secret is written, the head names a copy and a read of it takes one round trip', async () => {
    const path = fresh();
    await write(path, 'one');
    await write(path, 'two');
    const head = await getItem(headKey(path));
    expect(head?.cv?.N).toBe('2');
    expect(head?.cd?.B).toHaveLength(32);
    const copy = await getItem(copyKey(path));
    expect(copy?.version?.N).toBe('2');
    expect(await read(path)).toEqual({ status: 200, value: 'two', calls: FAST });
    expect(await read(path, '?version=2')).toEqual({ status: 200, value: 'two', calls: FAST });
    expect(await read(path, '?stage=previous')).toEqual({ status: 200, value: 'one', calls: FALLBACK });
  });

  it('when a superseded copy is put back, the read serves the current version from its version item', async () => {
    const path = fresh();
    await write(path, 'old-value');
    const stale = await getItem(copyKey(path));
    await write(path, 'new-value');
    await putItem(stale as Item);
    const got = await read(path);
    expect(got).toEqual({ status: 200, value: 'new-value', calls: FALLBACK });
  });

  it('when another secret’s copy is put in its place, the read serves this secret’s own value', async () => {
    const mine = fresh();
    const other = fresh();
    await write(mine, 'mine');
    await write(other, 'theirs');
    const foreign = (await getItem(copyKey(other))) as Item;
    // The other path's copy, moved whole, and then also relabelled with this path.
    await putItem({ ...foreign, ...copyKey(mine) });
    expect(await read(mine)).toEqual({ status: 200, value: 'mine', calls: FALLBACK });
    await putItem({ ...foreign, ...copyKey(mine), path: { S: mine } });
    expect(await read(mine)).toEqual({ status: 200, value: 'mine', calls: FALLBACK });
  });

  it('when a copy’s ciphertext, IV or creation time is edited, the read ignores the copy', async () => {
    const path = fresh();
    await write(path, 'edited-value');
    const copy = (await getItem(copyKey(path))) as Item;
    const flipped = Buffer.from(copy.ct?.B as Uint8Array);
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    const edits: Item[] = [
      { ct: { B: flipped } },
      { iv: { B: Buffer.alloc(12) } },
      { createdAt: { S: '2020-01-01T00:00:00.000Z' } },
      { vt: { S: 'binary' } },
    ];
    for (const edit of edits) {
      await putItem({ ...copy, ...edit });
      const got = await read(path);
      expect(got).toEqual({ status: 200, value: 'edited-value', calls: FALLBACK });
    }
  });

  it('when a secret is soft-deleted, its copy is never served, and a purge removes it', async () => {
    const path = fresh();
    await write(path, 'deleted-value');
    const copy = (await getItem(copyKey(path))) as Item;
    expect((await h.call('DELETE', `/v1/secrets/${path}`)).status).toBe(200);
    const got = await read(path);
    expect(got.status).toBe(404);
    expect(got.value).toBeUndefined();
    // Restored, it reads from its copy again.
    expect((await h.call('POST', `/v1/restore/${path}`)).status).toBe(200);
    expect(await read(path)).toEqual({ status: 200, value: 'deleted-value', calls: FAST });
    expect((await h.call('DELETE', `/v1/secrets/${path}`)).status).toBe(200);
    expect((await h.call('POST', `/v1/purge/${path}`)).status).toBe(200);
    expect(await getItem(copyKey(path))).toBeUndefined();
    // A copy put back after the purge serves nothing: there is no head.
    await putItem(copy);
    expect((await read(path)).status).toBe(404);
  });

  it('when the current version is destroyed, the copy goes with it and one put back is never served', async () => {
    const path = fresh();
    await write(path, 'kept-value');
    await write(path, 'destroyed-value');
    const copy = (await getItem(copyKey(path))) as Item;
    const res = await h.call('POST', `/v1/destroy/${path}`, { body: { versions: [2] } });
    expect(res.status, res.text).toBe(200);
    expect(await getItem(copyKey(path))).toBeUndefined();
    expect((await getItem(headKey(path)))?.cd).toBeUndefined();
    await putItem(copy);
    const got = await read(path);
    expect(got.status).toBe(404);
    expect(got.value).toBeUndefined();
    expect(JSON.stringify(got)).not.toContain('destroyed-value');
  });

  it('when an older version is destroyed, the current copy stays and still serves reads', async () => {
    const path = fresh();
    await write(path, 'first');
    await write(path, 'second');
    expect((await h.call('POST', `/v1/destroy/${path}`, { body: { versions: [1] } })).status).toBe(200);
    expect(await read(path)).toEqual({ status: 200, value: 'second', calls: FAST });
  });

  it('when a write is reverted or a rotation promotes its pending version, the head names the new current copy', async () => {
    const path = fresh();
    await write(path, 'before');
    await write(path, 'after');
    expect((await h.call('POST', `/v1/revert/${path}`)).status).toBe(200);
    expect(await read(path)).toEqual({ status: 200, value: 'before', calls: FAST });
    expect((await getItem(copyKey(path)))?.version?.N).toBe('1');

    const generated = fresh();
    const made = await h.call('POST', `/v1/generate/${generated}`, {
      body: { type: 'password', length: 24 },
    });
    expect(made.status, made.text).toBe(200);
    const first = (await read(generated)).value;
    expect((await h.call('POST', `/v1/rotate/${generated}`)).status).toBe(202);
    const rotated = await read(generated);
    expect(rotated.calls).toEqual(FAST);
    expect(rotated.value).toHaveLength(24);
    expect(rotated.value).not.toBe(first);
    expect((await getItem(copyKey(generated)))?.version?.N).toBe('2');
  });

  it('when a metadata change rewrites the head, the copy stays in use', async () => {
    const path = fresh();
    await write(path, 'tagged');
    const patch = await h.call('PATCH', `/v1/meta/${path}`, { body: { tags: { env: 'prod' } } });
    expect(patch.status, patch.text).toBe(200);
    expect(await read(path)).toEqual({ status: 200, value: 'tagged', calls: FAST });
  });

  it('when a head’s copy digest is edited in DynamoDB, the head fails its MAC', async () => {
    const path = fresh();
    await write(path, 'mac-value');
    await h.client.send(
      new UpdateItemCommand({
        TableName: h.tables.secrets,
        Key: headKey(path),
        UpdateExpression: 'REMOVE cd, cv',
      }),
    );
    const got = await read(path);
    expect(got.status).toBe(500);
    expect(got.code).toBe('integrity_error');
  });

  it('when keys are rotated and re-wrapped, the copy is re-wrapped too and still serves reads', async () => {
    const path = fresh();
    await write(path, 'rewrapped-value');
    const before = (await getItem(copyKey(path)))?.kid?.S;
    expect((await h.call('POST', '/v1/keys/rotate', { body: { folder: path.split('/')[0] } })).status).toBe(
      200,
    );
    const rewrap = await h.call('POST', '/v1/keys/rewrap', { body: { folder: path.split('/')[0] } });
    expect(rewrap.status, rewrap.text).toBe(200);
    const after = await getItem(copyKey(path));
    expect(after?.kid?.S).not.toBe(before);
    expect(after?.kid?.S).toBe(
      (await getItem({ pk: { S: `S#${path}` }, sk: { S: 'V#0000000001' } }))?.kid?.S,
    );
    expect(await read(path)).toEqual({ status: 200, value: 'rewrapped-value', calls: FAST });
  });
});

describe('secrets written before current items', () => {
  it('when a head has no copy, reads and batch reads take the version items, and the next write adds the copy', async () => {
    const paths = [fresh(), fresh(), fresh()];
    for (const p of paths) await write(p, `legacy-${p}`);
    for (const p of paths) await toOldLayout(p);
    expect(await read(paths[0] as string)).toEqual({
      status: 200,
      value: `legacy-${paths[0]}`,
      calls: FALLBACK,
    });
    calls.take();
    const batch = await h.call('POST', '/v1/batch-get', { body: { paths } });
    expect(batch.status, batch.text).toBe(200);
    expect(batch.body.results.map((i: { value: string }) => i.value)).toEqual(
      paths.map((p) => `legacy-${p}`),
    );
    expect(calls.take()).toEqual({ BatchGetItem: 2, PutItem: 1 });
    await write(paths[0] as string, 'now-with-copy');
    expect(await read(paths[0] as string)).toEqual({ status: 200, value: 'now-with-copy', calls: FAST });
  });

  it('when a batch mixes copies, old-layout heads, missing and deleted secrets, each path answers as a single read', async () => {
    const withCopy = fresh();
    const old = fresh();
    const deleted = fresh();
    await write(withCopy, 'has-copy');
    await write(old, 'no-copy');
    await write(deleted, 'gone');
    await toOldLayout(old);
    expect((await h.call('DELETE', `/v1/secrets/${deleted}`)).status).toBe(200);
    const missing = fresh();
    const res = await h.call('POST', '/v1/batch-get', {
      body: { paths: [withCopy, old, deleted, missing, withCopy] },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body.results).toMatchObject([
      { path: withCopy, value: 'has-copy', version: 1 },
      { path: old, value: 'no-copy', version: 1 },
      { path: deleted, error: { code: 'not_found' } },
      { path: missing, error: { code: 'not_found' } },
      { path: withCopy, value: 'has-copy', version: 1 },
    ]);
  });
});

describe('batch reads that DynamoDB answers in part', () => {
  /** Sends only the first `keep` keys of each BatchGetItem and reports the rest as unprocessed. */
  function partialClient(client: DynamoDBClient, state: { keep: number; partial: number }): DynamoDBClient {
    const wrapped = Object.create(client) as DynamoDBClient;
    wrapped.send = (async (command: unknown) => {
      if (!(command instanceof BatchGetItemCommand) || state.partial === 0)
        return client.send(command as never);
      state.partial--;
      const [table, request] = Object.entries(command.input.RequestItems ?? {})[0] as [
        string,
        KeysAndAttributes,
      ];
      const keys = request.Keys ?? [];
      // DynamoDB refuses an empty request: with nothing to keep, nothing is sent.
      const kept = keys.slice(0, state.keep);
      const out =
        kept.length > 0
          ? await client.send(
              new BatchGetItemCommand({ RequestItems: { [table]: { ...request, Keys: kept } } }),
            )
          : { Responses: { [table]: [] }, $metadata: {} };
      return { ...out, UnprocessedKeys: { [table]: { ...request, Keys: keys.slice(state.keep) } } };
    }) as DynamoDBClient['send'];
    return wrapped;
  }

  it('when some keys come back unprocessed, they are asked for again and every path is answered', async () => {
    const state = { keep: 3, partial: 0 };
    const p = await createHarness({ label: 'copy-partial', clientWrapper: (c) => partialClient(c, state) });
    const paths = Array.from({ length: 6 }, (_, i) => `partial/s${i}`);
    for (const path of paths) {
      expect((await p.call('PUT', `/v1/secrets/${path}`, { body: { value: `v-${path}` } })).status).toBe(200);
    }
    state.partial = 2;
    const res = await p.call('POST', '/v1/batch-get', { body: { paths } });
    expect(res.status, res.text).toBe(200);
    expect(res.body.results.map((r: { value: string }) => r.value)).toEqual(paths.map((x) => `v-${x}`));
    expect(state.partial).toBe(0);
  });

  it('when keys stay unprocessed, the read is 429 throttled, never answered with secrets missing', async () => {
    const state = { keep: 0, partial: 0 };
    const p = await createHarness({ label: 'copy-throttled', clientWrapper: (c) => partialClient(c, state) });
    expect((await p.call('PUT', '/v1/secrets/throttled/s', { body: { value: 'v' } })).status).toBe(200);
    state.partial = Number.POSITIVE_INFINITY;
    const res = await p.call('GET', '/v1/secrets/throttled/s');
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe('throttled');
  }, 60_000);
});

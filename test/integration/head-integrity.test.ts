import { GetItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { FILTER_PATTERNS } from '../../infra/constructs/monitoring.js';
import { AUTHENTICATED_HEAD_ATTRIBUTES, UNAUTHENTICATED_HEAD_ATTRIBUTES } from '../../lib/store/head-mac.js';
import { matchesFilterPattern } from '../support/cloudwatch-filter.js';
import { scanAll } from '../support/dynamo.js';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
let n = 0;

const headKey = (path: string) => ({
  pk: { S: `P#${path.slice(0, path.indexOf('/'))}` },
  sk: { S: `H#${path}` },
});

async function head(path: string) {
  const out = await h.client.send(new GetItemCommand({ TableName: h.tables.secrets, Key: headKey(path) }));
  if (!out.Item) throw new Error('missing head');
  return out.Item;
}

/** Changes one attribute of a head directly in DynamoDB, the way a table writer could. */
async function update(path: string, expression: string, values?: Record<string, unknown>) {
  await h.client.send(
    new UpdateItemCommand({
      TableName: h.tables.secrets,
      Key: headKey(path),
      UpdateExpression: expression,
      ...(values ? { ExpressionAttributeValues: values as never } : {}),
    }),
  );
}

async function fresh(): Promise<string> {
  n++;
  const path = `hi${n}/app/db`;
  const put = await h.call('PUT', `/v1/secrets/${path}`, {
    body: { value: 'head-integrity-value', tags: { team: 'a' }, description: 'd' },
  });
  expect(put.status).toBe(200);
  return path;
}

async function expectIntegrityError(path: string) {
  for (const route of [`/v1/secrets/${path}`, `/v1/meta/${path}`]) {
    const res = await h.call('GET', route);
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe('integrity_error');
    expect(res.text).not.toContain('head-integrity-value');
  }
  const list = await h.call('GET', `/v1/list?prefix=${encodeURIComponent(path.slice(0, path.indexOf('/')))}`);
  expect(list.status).toBe(500);
  expect(list.body.error.code).toBe('integrity_error');
}

beforeAll(async () => {
  // The composition's own signed audit trail: a refused head must leave its record too.
  h = await createHarness({ label: 'headmac', audit: 'dynamo' });
});

describe('authenticated heads', () => {
  it('when nothing was changed, reads, metadata and lists work', async () => {
    const path = await fresh();
    expect((await h.call('GET', `/v1/secrets/${path}`)).body.value).toBe('head-integrity-value');
    expect((await h.call('GET', `/v1/meta/${path}`)).body.tags).toEqual({ team: 'a' });
    const list = await h.call('GET', `/v1/list?prefix=${path.slice(0, path.indexOf('/'))}`);
    expect(list.body.items.map((i: { path: string }) => i.path)).toEqual([path]);
  });

  it('when a head’s tags are changed in DynamoDB, reads fail with integrity_error', async () => {
    const path = await fresh();
    await update(path, 'SET tags = :t', { ':t': { M: { team: { S: 'b' } } } });
    await expectIntegrityError(path);
  });

  it('when a head’s owner is changed in DynamoDB, reads fail with integrity_error', async () => {
    const path = await fresh();
    await expect(
      h.client.send(
        new UpdateItemCommand({
          TableName: h.tables.secrets,
          Key: headKey(path),
          UpdateExpression: 'SET #o = :o',
          ExpressionAttributeNames: { '#o': 'owner' },
          ExpressionAttributeValues: { ':o': { S: 'corp:mallory' } },
        }),
      ),
    ).resolves.toBeDefined();
    await expectIntegrityError(path);
  });

  it('when a head’s deletion state is changed in DynamoDB (un-deleted or deleted), reads fail', async () => {
    const deleted = await fresh();
    expect((await h.call('DELETE', `/v1/secrets/${deleted}`)).status).toBe(200);
    await update(deleted, 'REMOVE deletedAt, purgeAt');
    await expectIntegrityError(deleted);

    const live = await fresh();
    await update(live, 'SET deletedAt = :d, purgeAt = :p', {
      ':d': { S: '2020-01-01T00:00:00.000Z' },
      ':p': { S: '2020-01-08T00:00:00.000Z' },
    });
    await expectIntegrityError(live);
  });

  it('when any other attribute is changed, added or removed, reads fail', async () => {
    for (const [expression, values] of [
      ['SET latest = :v', { ':v': { N: '1' } }],
      ['SET minVersion = :v', { ':v': { N: '2' } }],
      ['SET maxVersions = :v', { ':v': { N: '99' } }],
      ['SET rev = :v', { ':v': { N: '0' } }],
      ['SET description = :v', { ':v': { S: 'other' } }],
      ['SET mk = :v', { ':v': { S: 'storage-v0' } }],
      ['SET addedLater = :v', { ':v': { S: 'x' } }],
      ['REMOVE description', undefined],
      ['REMOVE mac', undefined],
    ] as const) {
      const path = await fresh();
      await h.call('PUT', `/v1/secrets/${path}`, { body: { value: 'head-integrity-value' } });
      await update(path, expression, values);
      await expectIntegrityError(path);
    }
  });

  it('when a head is copied to another path, reads of that path fail with integrity_error', async () => {
    const source = await fresh();
    const target = await fresh();
    const copy = await head(source);
    await h.client.send(
      new PutItemCommand({
        TableName: h.tables.secrets,
        Item: { ...copy, ...headKey(target), path: { S: target } },
      }),
    );
    await expectIntegrityError(target);
    // Even with only the key changed (path attribute left naming the source).
    await h.client.send(
      new PutItemCommand({ TableName: h.tables.secrets, Item: { ...copy, ...headKey(target) } }),
    );
    const res = await h.call('GET', `/v1/secrets/${target}`);
    expect(res.body.error.code).toBe('integrity_error');
  });

  it('when a head fails verification, the failure is logged with its code (the metric filter counts it) and audited', async () => {
    const path = await fresh();
    await update(path, 'SET tags = :t', { ':t': { M: {} } });
    const before = h.logs.length;
    const res = await h.call('GET', `/v1/secrets/${path}`);
    const records = (await scanAll(h.client, h.tables.audit)).filter(
      (i) => i.requestId === res.headers.get('x-request-id'),
    );
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ path, status: 500, error: 'integrity_error' });
    const lines = h.logs.slice(before).map((l) => JSON.parse(l));
    expect(lines.some((l) => l.code === 'integrity_error')).toBe(true);
    const counted = h.logs
      .slice(before)
      .filter((l) => matchesFilterPattern(FILTER_PATTERNS.integrityFailures, l));
    expect(counted).toHaveLength(1);
    expect(h.logs.slice(before).join('\n')).not.toContain('head-integrity-value');
  });

  it('when a head is written, its revision rises by one with every write', async () => {
    const path = await fresh();
    expect((await head(path)).rev).toEqual({ N: '1' });
    await h.call('PUT', `/v1/secrets/${path}`, { body: { value: 'two' } });
    await h.call('PATCH', `/v1/meta/${path}`, { body: { tags: { team: 'c' } } });
    expect((await head(path)).rev).toEqual({ N: '3' });
  });

  it('every head attribute is either authenticated or in the documented unauthenticated list', async () => {
    // A head with every optional attribute present: description, tags, owner, deletion state.
    const path = await fresh();
    expect((await h.call('DELETE', `/v1/secrets/${path}`)).status).toBe(200);
    const attributes = Object.keys(await head(path));
    const known = new Set([...AUTHENTICATED_HEAD_ATTRIBUTES, ...UNAUTHENTICATED_HEAD_ATTRIBUTES]);
    expect(attributes.filter((a) => !known.has(a))).toEqual([]);
    expect([...UNAUTHENTICATED_HEAD_ATTRIBUTES]).toEqual(['mac']);
    for (const a of AUTHENTICATED_HEAD_ATTRIBUTES) expect(UNAUTHENTICATED_HEAD_ATTRIBUTES.has(a)).toBe(false);
  });

  it("when a generated secret's type or generator parameters are edited in the table, reads fail closed", async () => {
    // A CA's generator holds the limits of what it issues: a table writer must not widen them.
    for (const [i, [expression, values]] of (
      [
        ['SET secretType = :t', { ':t': { S: 'text' } }],
        [
          'SET generator = :g',
          { ':g': { S: '{"type":"password","length":8,"classes":["digits"],"exclude":""}' } },
        ],
        ['REMOVE generator', undefined],
      ] as const
    ).entries()) {
      const path = `gen${i}/app/pw`;
      const res = await h.call('POST', `/v1/generate/${path}`, { body: { type: 'password' } });
      expect(res.status).toBe(200);
      const attributes = Object.keys(await head(path));
      expect(attributes).toEqual(expect.arrayContaining(['secretType', 'generator']));
      await update(path, expression, values);
      const meta = await h.call('GET', `/v1/meta/${path}`);
      expect(meta.status).toBe(500);
      expect(meta.body.error.code).toBe('integrity_error');
    }
  });
});

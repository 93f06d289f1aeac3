import { QueryCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
const paths = [
  'alpha',
  'alpha/one',
  'alpha/two/deep',
  'alpha/two/deeper/x',
  'alphabet/a',
  'beta/b1',
  'beta/b2',
  'beta/sub/c',
  'gamma',
  'team-a/db/password',
  'team-a/api-key',
  'team-ab/db/password',
];

beforeAll(async () => {
  h = await createHarness({ label: 'list' });
  for (const p of paths) await h.call('PUT', `/v1/secrets/${p}`, { body: { value: `value of ${p}` } });
});

async function listAll(
  query: Record<string, string>,
): Promise<{ items: string[]; folders: string[]; pages: number }> {
  const items: string[] = [];
  const folders: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const q = new URLSearchParams({ ...query, ...(cursor ? { cursor } : {}) });
    const res = await h.call('GET', `/v1/list?${q}`);
    expect(res.status, res.text).toBe(200);
    items.push(...res.body.items.map((i: { path: string }) => i.path));
    folders.push(...(res.body.folders ?? []));
    cursor = res.body.cursor;
    pages++;
    expect(pages).toBeLessThan(100);
  } while (cursor);
  return { items, folders, pages };
}

describe('list', () => {
  it('when the prefix is empty, it lists every secret recursively in path order', async () => {
    const { items } = await listAll({});
    expect(items).toEqual([...paths].sort());
  });

  it('when the prefix is a string prefix, it matches across folder boundaries like S3', async () => {
    expect((await listAll({ prefix: 'alpha' })).items).toEqual([
      'alpha',
      'alpha/one',
      'alpha/two/deep',
      'alpha/two/deeper/x',
      'alphabet/a',
    ]);
    expect((await listAll({ prefix: 'alpha/t' })).items).toEqual(['alpha/two/deep', 'alpha/two/deeper/x']);
    expect((await listAll({ prefix: 'team-a/' })).items).toEqual(['team-a/api-key', 'team-a/db/password']);
    expect((await listAll({ prefix: 'nothing/' })).items).toEqual([]);
  });

  it('when delimiter is "/", it lists one level and rolls deeper paths into folders', async () => {
    const top = await listAll({ delimiter: '/' });
    expect(top.items).toEqual(['alpha', 'gamma']);
    expect(top.folders).toEqual(['alpha/', 'alphabet/', 'beta/', 'team-a/', 'team-ab/']);
    const alpha = await listAll({ prefix: 'alpha/', delimiter: '/' });
    expect(alpha.items).toEqual(['alpha/one']);
    expect(alpha.folders).toEqual(['alpha/two/']);
    const partial = await listAll({ prefix: 'alpha/two/dee', delimiter: '/' });
    expect(partial.items).toEqual(['alpha/two/deep']);
    expect(partial.folders).toEqual(['alpha/two/deeper/']);
  });

  it('when limit is small, it paginates with cursors and returns every item exactly once', async () => {
    for (const limit of ['1', '2', '5']) {
      const all = await listAll({ limit });
      expect(all.items).toEqual([...paths].sort());
      expect(all.pages).toBeGreaterThan(1);
      const level = await listAll({ limit, delimiter: '/' });
      expect([...level.items, ...level.folders].sort()).toEqual(
        ['alpha', 'gamma', 'alpha/', 'alphabet/', 'beta/', 'team-a/', 'team-ab/'].sort(),
      );
    }
  });

  it('when a secret is soft-deleted, it is left out of lists', async () => {
    await h.call('PUT', '/v1/secrets/zeta/gone', { body: { value: 'x' } });
    await h.call('DELETE', '/v1/secrets/zeta/gone');
    expect((await listAll({ prefix: 'zeta' })).items).toEqual([]);
  });

  it('when items are returned, each carries its latest version and update time', async () => {
    await h.call('PUT', '/v1/secrets/beta/b1', { body: { value: 'second' } });
    const res = await h.call('GET', '/v1/list?prefix=beta/b1');
    expect(res.body.items).toEqual([{ path: 'beta/b1', version: 2, updatedAt: expect.any(String) }]);
    expect(res.text).not.toContain('value of');
  });

  it('answers with Query, never Scan', async () => {
    const spy = vi.spyOn(h.client, 'send');
    await listAll({});
    await listAll({ prefix: 'alpha/', delimiter: '/' });
    const commands = spy.mock.calls.map(([c]) => c);
    spy.mockRestore();
    expect(commands.some((c) => c instanceof QueryCommand)).toBe(true);
    expect(commands.some((c) => c instanceof ScanCommand)).toBe(false);
  });

  it('when the query is malformed, it answers 400 with a stable code', async () => {
    for (const q of [
      'limit=0',
      'limit=1001',
      'limit=x',
      'delimiter=%2C',
      'prefix=/abs',
      'prefix=a%20b',
      'cursor=!!!',
    ]) {
      const res = await h.call('GET', `/v1/list?${q}`);
      expect(res.status, q).toBe(400);
      expect(['invalid_request', 'invalid_path', 'invalid_cursor']).toContain(res.body.error.code);
    }
    const forged = Buffer.from(JSON.stringify({ k: 'I#other', r: 'x' })).toString('base64url');
    expect((await h.call('GET', `/v1/list?cursor=${forged}`)).status).toBe(400);
  });
});

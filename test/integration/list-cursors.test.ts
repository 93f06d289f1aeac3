import { beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

/*
 * A list cursor is bound to the listing that made it (prefix, delimiter) and to the caller, and
 * authenticated with a key the table does not hold: whatever a client sends back in its place is
 * either that cursor, unchanged, or 400 invalid_cursor — never a DynamoDB error (500).
 */
let h: Harness;
let otherToken: string;
beforeAll(async () => {
  h = await createHarness({ label: 'cursors' });
  otherToken = await h.issuer.mint({ subject: 'someone-else', groups: ['admins'] });
  for (const path of ['app/a', 'app/b', 'app/c', 'app/d', 'zed/a', 'zed/b', 'apple/x', 'apple/y']) {
    expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value: 'v' } })).status).toBe(200);
  }
});

async function firstCursor(query: string, token?: string): Promise<string> {
  const res = await h.call('GET', `/v1/list?${query}`, token ? { token } : {});
  expect(res.status).toBe(200);
  expect(typeof res.body.cursor).toBe('string');
  return res.body.cursor as string;
}

const expectInvalidCursor = (res: { status: number; body: any }, what: string) => {
  expect(res.status, what).toBe(400);
  expect(res.body.error.code, what).toBe('invalid_cursor');
};

describe('list cursors', () => {
  it('when a cursor is passed back unchanged, the listing resumes after the last entry shown', async () => {
    const cursor = await firstCursor('prefix=app/&limit=2');
    const next = await h.call('GET', `/v1/list?prefix=app/&limit=2&cursor=${encodeURIComponent(cursor)}`);
    expect(next.status).toBe(200);
    expect(next.body.items.map((i: { path: string }) => i.path)).toEqual(['app/c', 'app/d']);
  });

  it('when a cursor is reused with another prefix, it answers 400 invalid_cursor', async () => {
    const cursor = encodeURIComponent(await firstCursor('prefix=app/&limit=2'));
    for (const prefix of ['zed/', 'app/c', 'apple/', '', 'a']) {
      const res = await h.call(
        'GET',
        `/v1/list?prefix=${encodeURIComponent(prefix)}&limit=2&cursor=${cursor}`,
      );
      expectInvalidCursor(res, `prefix ${prefix}`);
    }
    const root = encodeURIComponent(await firstCursor('limit=1'));
    expectInvalidCursor(await h.call('GET', `/v1/list?prefix=zed/&cursor=${root}`), 'root cursor on zed/');
  });

  it('when a cursor is reused with another delimiter, it answers 400 invalid_cursor', async () => {
    const cursor = encodeURIComponent(await firstCursor('prefix=app/&limit=2'));
    expectInvalidCursor(
      await h.call('GET', `/v1/list?prefix=app/&delimiter=/&limit=2&cursor=${cursor}`),
      'with a delimiter',
    );
  });

  it('when another caller sends a cursor, it answers 400 invalid_cursor', async () => {
    const cursor = encodeURIComponent(await firstCursor('prefix=app/&limit=2'));
    expectInvalidCursor(
      await h.call('GET', `/v1/list?prefix=app/&limit=2&cursor=${cursor}`, { token: otherToken }),
      'other caller',
    );
  });

  it('when a cursor is edited or made by hand, it answers 400 invalid_cursor', async () => {
    const cursor = await firstCursor('prefix=app/&limit=2');
    const edited = [
      `${cursor.slice(0, -1)}${cursor.endsWith('A') ? 'B' : 'A'}`,
      `A${cursor.slice(1)}`,
      cursor.split('.')[0] ?? '',
      Buffer.from(JSON.stringify({ k: 'H#zed/a' })).toString('base64url'),
      Buffer.from(JSON.stringify({ k: 'H#zzzz' })).toString('base64url'),
      Buffer.from(JSON.stringify({ r: 'zed', k: 'H#zed/a' })).toString('base64url'),
      `${Buffer.from(JSON.stringify({ k: 'H#zzzz' })).toString('base64url')}.${cursor.split('.')[1]}`,
      '.',
      'a.b.c',
    ];
    for (const forged of edited) {
      expectInvalidCursor(
        await h.call('GET', `/v1/list?prefix=app/&limit=2&cursor=${encodeURIComponent(forged)}`),
        forged,
      );
    }
  });

  it('when the MAC of a cursor is spelled another way that decodes to the same bytes, it answers 400 invalid_cursor', async () => {
    const cursor = await firstCursor('prefix=app/&limit=2');
    const [inner, tag = ''] = cursor.split('.');
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    // The last base64url character of a MAC carries padding bits that decoding drops: flipping the
    // lowest one gives a second spelling of the same bytes.
    const last = alphabet.indexOf(tag.slice(-1));
    const respelled = `${tag.slice(0, -1)}${alphabet[last ^ 1]}`;
    expect(Buffer.from(respelled, 'base64url')).toEqual(Buffer.from(tag, 'base64url'));
    expectInvalidCursor(
      await h.call(
        'GET',
        `/v1/list?prefix=app/&limit=2&cursor=${encodeURIComponent(`${inner}.${respelled}`)}`,
      ),
      'respelled MAC',
    );
  });

  it('when a root-level listing pages, its cursors work across partitions', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const q = new URLSearchParams({ prefix: 'ap', limit: '1', ...(cursor ? { cursor } : {}) });
      const res = await h.call('GET', `/v1/list?${q}`);
      expect(res.status).toBe(200);
      seen.push(...res.body.items.map((i: { path: string }) => i.path));
      cursor = res.body.cursor;
    } while (cursor);
    expect(seen).toEqual(['app/a', 'app/b', 'app/c', 'app/d', 'apple/x', 'apple/y']);
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

/**
 * List answers compared with a model computed in memory, over paths whose characters sort around
 * the delimiter ('-' and '.' sort before '/', digits and letters after), some soft-deleted, for many
 * prefixes and page sizes.
 */

let h: Harness;
const live: string[] = [];
const deleted: string[] = [];

/** A fixed pseudo-random sequence, so that a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

const CHARS = ['a', 'b', '-', '.', '_', '0', 'Z'];

function randomPaths(count: number): string[] {
  const next = rng(42);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)] as T;
  const out = new Set<string>();
  while (out.size < count) {
    const segments = 1 + Math.floor(next() * 3);
    const parts: string[] = [];
    for (let i = 0; i < segments; i++) {
      let seg = '';
      const len = 1 + Math.floor(next() * 2);
      for (let j = 0; j < len; j++) seg += pick(CHARS);
      if (seg === '.' || seg === '..') seg = `${seg}x`;
      parts.push(seg);
    }
    out.add(parts.join('/'));
  }
  return [...out];
}

/**
 * The documented order: by first segment, then by path, in byte order (all path characters are
 * ASCII). It differs from plain path order where '-' or '.' follow a first segment: `a-b` sorts
 * after `a/x` because the first segment `a` comes before `a-b`.
 */
function byFirstSegmentThenPath(a: string, b: string): number {
  const [ra = '', rb = ''] = [a.split('/')[0], b.split('/')[0]];
  if (ra !== rb) return ra < rb ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** What a list must answer. */
function model(prefix: string, delimiter: boolean): { items: string[]; folders: string[] } {
  const under = live.filter((p) => p.startsWith(prefix)).sort(byFirstSegmentThenPath);
  if (!delimiter) return { items: under, folders: [] };
  const items: string[] = [];
  const folders = new Set<string>();
  for (const p of under) {
    const cut = p.indexOf('/', prefix.length);
    if (cut === -1) items.push(p);
    else folders.add(p.slice(0, cut + 1));
  }
  return { items, folders: [...folders].sort(byFirstSegmentThenPath) };
}

async function listAll(prefix: string, delimiter: boolean, limit: number) {
  const items: string[] = [];
  const folders: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const q = new URLSearchParams({
      prefix,
      limit: String(limit),
      ...(delimiter ? { delimiter: '/' } : {}),
      ...(cursor ? { cursor } : {}),
    });
    const res = await h.call('GET', `/v1/list?${q}`);
    expect(res.status, res.text).toBe(200);
    expect(res.body.items.length + (res.body.folders?.length ?? 0)).toBeLessThanOrEqual(limit);
    items.push(...res.body.items.map((i: { path: string }) => i.path));
    folders.push(...(res.body.folders ?? []));
    cursor = res.body.cursor;
    pages++;
    expect(pages).toBeLessThan(500);
  } while (cursor);
  return { items, folders };
}

beforeAll(async () => {
  h = await createHarness({ label: 'listmodel' });
  const paths = randomPaths(70);
  for (const [i, p] of paths.entries()) {
    expect((await h.call('PUT', `/v1/secrets/${p}`, { body: { value: 'v' } })).status, p).toBe(200);
    if (i % 5 === 0) {
      expect((await h.call('DELETE', `/v1/secrets/${p}`)).status).toBe(200);
      deleted.push(p);
    } else {
      live.push(p);
    }
  }
  // A folder whose only secrets are deleted.
  for (const p of ['ghost/one', 'ghost/two/deep']) {
    await h.call('PUT', `/v1/secrets/${p}`, { body: { value: 'v' } });
    await h.call('DELETE', `/v1/secrets/${p}`);
    deleted.push(p);
  }
}, 240_000);

describe('list against a model', () => {
  it('when paged at any size, with or without delimiter, it answers exactly the model', {
    timeout: 600_000,
  }, async () => {
    const prefixes = new Set<string>(['', 'a', 'a/', 'ghost/', 'gh', 'Z', '-', '.', '_', '0']);
    for (const p of live.slice(0, 12)) {
      prefixes.add(p.slice(0, Math.max(1, p.length - 1)));
      const slash = p.indexOf('/');
      if (slash !== -1) prefixes.add(p.slice(0, slash + 1));
    }
    for (const prefix of prefixes) {
      if (prefix.startsWith('/') || prefix.includes('//')) continue;
      for (const delimiter of [false, true]) {
        const want = model(prefix, delimiter);
        for (const limit of [3, 1000]) {
          const got = await listAll(prefix, delimiter, limit);
          expect(got.items, `prefix "${prefix}" delimiter ${delimiter} limit ${limit}`).toEqual(want.items);
          expect(got.folders, `prefix "${prefix}" delimiter ${delimiter} limit ${limit}`).toEqual(
            want.folders,
          );
        }
      }
    }
  });

  it('when a folder holds only soft-deleted secrets, it is not listed as a folder', async () => {
    const top = await listAll('', true, 1000);
    expect(top.folders).not.toContain('ghost/');
    expect((await listAll('ghost/', true, 1000)).folders).toEqual([]);
  });
});

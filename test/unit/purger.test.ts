import { describe, expect, it } from 'vitest';
import { Purger, type PurgeStore } from '../../lib/secrets/purger.js';
import type { SecretHead } from '../../lib/store/records.js';

/*
 * The purger's own logic over a small fake of the store port: the window arithmetic and the paging
 * loop. Its behaviour on real items (versions, restored secrets) is tested over DynamoDB Local in
 * test/integration/purger.test.ts.
 */

const head = (over: Partial<SecretHead> = {}): SecretHead => ({
  path: 'apps/db',
  latest: 1,
  minVersion: 1,
  createdAt: '2030-01-01T00:00:00.000Z',
  updatedAt: '2030-01-01T00:00:00.000Z',
  tags: {},
  maxVersions: 100,
  ...over,
});

const deleted = head({
  deletedAt: '2030-01-01T00:00:00.000Z',
  purgeAt: '2030-01-08T00:00:00.000Z',
});

/** A deletion index of `total` entries served `pageSize` at a time; `purge` fails for `gone` paths. */
function fakeStore(total: number, pageSize: number, gone: ReadonlySet<string> = new Set()) {
  const due = Array.from({ length: total }, (_, i) => ({
    path: `p/${i}`,
    purgeAt: '2030-01-08T00:00:00.000Z',
  }));
  const queriedAt: string[] = [];
  const purged: string[] = [];
  const store: PurgeStore = {
    async expiredDeletions(nowIso) {
      queriedAt.push(nowIso);
      return due.splice(0, pageSize);
    },
    async purge(path) {
      purged.push(path);
      return !gone.has(path);
    },
  };
  return { store, queriedAt, purged };
}

describe('Purger', () => {
  it('when the recovery window has not ended, the secret is not expired; from purgeAt on, it is', () => {
    let now = new Date('2030-01-07T23:59:59.999Z');
    const purger = new Purger({ store: fakeStore(0, 1).store, now: () => now });
    expect(purger.isExpired(deleted)).toBe(false);
    now = new Date('2030-01-08T00:00:00.000Z');
    expect(purger.isExpired(deleted)).toBe(true);
    expect(purger.isExpired(head())).toBe(false);
  });

  it('when a head is live or within its window, purgeIfExpired touches nothing', async () => {
    const { store, purged } = fakeStore(0, 1);
    const purger = new Purger({ store, now: () => new Date('2030-01-05T00:00:00Z') });
    expect(await purger.purgeIfExpired(head())).toBe(false);
    expect(await purger.purgeIfExpired(deleted)).toBe(false);
    expect(purged).toEqual([]);
  });

  it('when a deleted head is past its window, purgeIfExpired purges it with the purge time it was read with', async () => {
    const calls: [string, string][] = [];
    const purger = new Purger({
      store: {
        expiredDeletions: async () => [],
        purge: async (path, purgeAt) => {
          calls.push([path, purgeAt]);
          return false;
        },
      },
      now: () => new Date('2030-02-01T00:00:00Z'),
    });
    // Purged by someone else meanwhile still means gone: the caller may use the path.
    expect(await purger.purgeIfExpired(deleted)).toBe(true);
    expect(calls).toEqual([['apps/db', '2030-01-08T00:00:00.000Z']]);
  });

  it('when more entries are due than one page holds, it reads pages until none is due and counts only its own purges', async () => {
    const { store, queriedAt, purged } = fakeStore(7, 3, new Set(['p/1', 'p/5']));
    const now = new Date('2030-03-01T00:00:00Z');
    const purger = new Purger({ store, now: () => now });
    expect(await purger.purgeExpired()).toBe(5);
    expect(purged).toHaveLength(7);
    // Three pages (3 + 3 + 1) and the empty one that ends the loop, each asked with the clock.
    expect(queriedAt).toEqual(Array(4).fill(now.toISOString()));
  });
});

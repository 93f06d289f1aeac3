import { beforeAll, describe, expect, it } from 'vitest';
import { composePurger } from '../../lib/compose.js';
import { scanAll } from '../support/dynamo.js';
import { createHarness, type Harness } from '../support/harness.js';

/*
 * The purger over DynamoDB Local, built as the scheduled purge builds it: from the table and the
 * client alone (no key provider, authorizer or audit trail). The secrets are written and deleted
 * through the app of a harness on the same tables.
 */

let h: Harness;
let now = new Date('2030-01-01T00:00:00Z');

beforeAll(async () => {
  h = await createHarness({ label: 'purger', now: () => now });
});

/** The items that belong to a secret: its head, its versions and its deletion-index entry. */
const itemsOf = async (path: string) =>
  (await scanAll(h.client, h.tables.secrets)).filter(
    (i) => i.sk === `H#${path}` || i.pk === `S#${path}` || String(i.sk).endsWith(`#${path}`),
  );

describe('the purger', () => {
  it('when secrets are past their recovery window, it removes them with every version, and leaves the rest', async () => {
    now = new Date('2030-01-01T00:00:00Z');
    for (const path of ['gone/a', 'gone/b', 'kept/live', 'kept/recent', 'kept/restored']) {
      expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value: 'v1' } })).status).toBe(200);
      expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value: 'v2' } })).status).toBe(200);
    }
    for (const path of ['gone/a', 'gone/b', 'kept/restored']) {
      expect((await h.call('DELETE', `/v1/secrets/${path}?recoveryDays=7`)).status).toBe(200);
    }
    expect((await h.call('POST', '/v1/restore/kept/restored')).status).toBe(200);
    now = new Date('2030-01-06T00:00:00Z');
    expect((await h.call('DELETE', '/v1/secrets/kept/recent?recoveryDays=7')).status).toBe(200);

    now = new Date('2030-01-09T00:00:00Z');
    const purger = composePurger({ dynamo: h.client, tables: h.tables, now: () => now });
    expect(await purger.purgeExpired()).toBe(2);

    expect(await itemsOf('gone/a')).toEqual([]);
    expect(await itemsOf('gone/b')).toEqual([]);
    // Head, both versions and the current item, plus the deletion entry of the one still in its window.
    expect(await itemsOf('kept/live')).toHaveLength(4);
    expect(await itemsOf('kept/restored')).toHaveLength(4);
    expect(await itemsOf('kept/recent')).toHaveLength(5);
    expect((await h.call('GET', '/v1/secrets/kept/restored')).body.value).toBe('v2');
    // Nothing is due any more: a second run finds nothing and changes nothing.
    const before = await scanAll(h.client, h.tables.secrets);
    expect(await purger.purgeExpired()).toBe(0);
    expect(await scanAll(h.client, h.tables.secrets)).toHaveLength(before.length);
  });

  it('when its clock reaches a later window, the next run purges that secret too', async () => {
    now = new Date('2030-01-14T00:00:00Z');
    const purger = composePurger({ dynamo: h.client, tables: h.tables, now: () => now });
    expect(await purger.purgeExpired()).toBe(1);
    expect(await itemsOf('kept/recent')).toEqual([]);
    expect((await h.call('GET', '/v1/meta/kept/recent')).status).toBe(404);
  });
});

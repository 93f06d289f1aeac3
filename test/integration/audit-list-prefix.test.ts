import { describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../lib/audit/record.js';
import { auditFixture } from '../support/audit-fixtures.js';
import { scanAll } from '../support/dynamo.js';
import { createHarness } from '../support/harness.js';

/*
 * A list prefix can say as much as a path ("payroll/2026-layoffs/"), and docs/audit.md promises it
 * is kept only as a keyed HMAC: in the record's `hmac.prefix`, never in `path`, the route or any
 * other field, in the table or in the stdout copy.
 */
describe('list requests in the audit trail', () => {
  it('when a prefix is listed, the record keeps its HMAC and never the prefix in clear', async () => {
    const fx = await auditFixture('audit-prefix');
    const h = await createHarness({ label: 'audit-prefix-app', audit: fx.trail() });
    const planted = `planted-${crypto.randomUUID().slice(0, 8)}`;
    expect((await h.call('PUT', `/v1/secrets/${planted}x/a`, { body: { value: 'v' } })).status).toBe(200);
    const listed = await h.call('GET', `/v1/list?prefix=${planted}&delimiter=/`);
    expect(listed.status).toBe(200);
    const folderListed = await h.call('GET', `/v1/list?prefix=${planted}x/`);
    expect(folderListed.status).toBe(200);

    const items = await scanAll(fx.client, fx.tables.audit);
    const records = items.filter((i) => i.type === 'request') as unknown as RequestRecord[];
    const lists = records.filter((r) => r.action === 'list');
    expect(lists).toHaveLength(2);
    for (const r of lists) {
      expect(r.path).toBeNull();
      expect(r.hmac.prefix).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(lists.map((r) => r.hmac.prefix).sort()).toEqual(
      [fx.hasher.hash('prefix', planted), fx.hasher.hash('prefix', `${planted}x/`)].sort(),
    );
    // The write's record names its path (a path is not sensitive); only list records hold the prefix.
    const listText = JSON.stringify(lists);
    const listLines = fx.lines.filter((l) => JSON.parse(l).action === 'list').join('\n');
    expect(listLines.split('\n')).toHaveLength(2);
    for (const where of [listText, listLines]) expect(where).not.toContain(planted);
  });
});

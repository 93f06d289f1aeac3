import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { Checkpointer } from '../../lib/audit/checkpoint.js';
import type { RequestRecord } from '../../lib/audit/record.js';
import { verifyStorage } from '../../lib/audit/storage-verifier.js';
import { verifyTable } from '../../lib/audit/verify-sources.js';
import { openLocalStorageMacKey } from '../../lib/keys/storage-mac.js';
import { ControlRecords } from '../../lib/store/control-records.js';
import { auditFixture } from '../support/audit-fixtures.js';
import { scanAll } from '../support/dynamo.js';
import { createHarness, type Harness } from '../support/harness.js';

let fx: Awaited<ReturnType<typeof auditFixture>>;
let h: Harness;

const headKey = (path: string) => ({ pk: { S: `P#${path.split('/')[0]}` }, sk: { S: `H#${path}` } });
const rawHead = async (path: string) =>
  (await h.client.send(new GetItemCommand({ TableName: h.tables.secrets, Key: headKey(path) }))).Item;

beforeAll(async () => {
  fx = await auditFixture('storage-verify');
  // The store and the audit trail share the fixture's tables, as in a deployment.
  h = await createHarness({ label: 'storage-verify', audit: fx.trail() });
});

describe('audit verify --storage', () => {
  it('when a change commits, its record names the revision and MAC of the head it wrote', async () => {
    expect((await h.call('PUT', '/v1/secrets/sv/a', { body: { value: 'one' } })).status).toBe(200);
    const head = await rawHead('sv/a');
    const records = (await scanAll(fx.client, fx.tables.audit)) as unknown as RequestRecord[];
    const change = records.find((r) => r.type === 'request' && r.path === 'sv/a' && r.action === 'write');
    expect(change?.head).toEqual({ rev: 1, mac: Buffer.from(head?.mac?.B as Uint8Array).toString('base64') });
    const read = await h.call('GET', '/v1/secrets/sv/a');
    expect(read.status).toBe(200);
    const readRecord = ((await scanAll(fx.client, fx.tables.audit)) as unknown as RequestRecord[]).find(
      (r) => r.requestId === read.headers.get('x-request-id'),
    );
    expect(readRecord?.head).toBeNull();
  });

  it('when the live heads are the ones the log names, it reports nothing', async () => {
    await h.call('PUT', '/v1/secrets/sv/b', { body: { value: 'one' } });
    await h.call('PATCH', '/v1/meta/sv/b', { body: { tags: { t: '1' } } });
    await h.call('PUT', '/v1/secrets/sv/c', { body: { value: 'one' } });
    await h.call('DELETE', '/v1/secrets/sv/c');
    const report = await verifyStorage(fx.reader, h.store);
    expect(report.problems).toEqual([]);
    expect(report.checked).toBeGreaterThanOrEqual(3);
  });

  it('when an older, validly MAC’d head is copied back (put v1, put v2, restore the v1 head), it reports the rollback', async () => {
    await h.call('PUT', '/v1/secrets/sv/rb', { body: { value: 'v1', tags: { access: 'narrow' } } });
    const v1 = await rawHead('sv/rb');
    await h.call('PUT', '/v1/secrets/sv/rb', { body: { value: 'v2', tags: { access: 'wide' } } });
    await h.client.send(new PutItemCommand({ TableName: h.tables.secrets, Item: v1 as never }));
    // The old head is validly MAC'd: the API serves it (it cannot tell), the verifier cannot miss it.
    expect((await h.call('GET', '/v1/secrets/sv/rb')).body.value).toBe('v1');
    const report = await verifyStorage(fx.reader, h.store);
    expect(report.problems).toEqual([{ path: 'sv/rb', kind: 'rolled_back', auditedRev: 2, liveRev: 1 }]);
  });

  it('when a control record is put back to a generation lower than a checkpoint signed, it reports the rollback; the checkpoint still verifies', async () => {
    const control = new ControlRecords({
      client: h.client,
      table: h.tables.secrets,
      key: await openLocalStorageMacKey(h.dataDir),
      binding: h.tables.secrets,
    });
    await control.put('policy-set', 'active', { hash: 'h1' }, 0);
    const g1 = (
      await h.client.send(
        new GetItemCommand({
          TableName: h.tables.secrets,
          Key: { pk: { S: 'CTL' }, sk: { S: 'policy-set#active' } },
        }),
      )
    ).Item;
    await control.put('policy-set', 'active', { hash: 'h2' }, 1);
    const checkpointer = new Checkpointer({
      client: fx.client,
      table: fx.tables.audit,
      root: fx.root,
      generations: () => control.generations(),
    });
    const checkpoint = await checkpointer.write();
    expect(checkpoint.generations).toMatchObject({ 'policy-set/active': 2 });
    expect((await verifyTable(fx.reader, { rootKeys: [fx.rootPem] })).problems).toEqual([]);
    // (The head put back by the test before is still reported; no control record is.)
    const before = await verifyStorage(fx.reader, h.store, control);
    expect(before.problems.filter((p) => p.kind === 'control_rolled_back')).toEqual([]);

    await h.client.send(new PutItemCommand({ TableName: h.tables.secrets, Item: g1 as never }));
    // A fresh process (no memory of generation 2) would accept it; the verifier does not.
    const report = await verifyStorage(fx.reader, h.store, control);
    expect(report.problems).toContainEqual({
      path: 'policy-set/active',
      kind: 'control_rolled_back',
      auditedRev: 2,
      liveRev: 1,
    });
  });
});

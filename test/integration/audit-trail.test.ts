import { DeleteTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../lib/audit/record.js';
import { verifyTable } from '../../lib/audit/verify-sources.js';
import type { Authorizer, Decision } from '../../lib/authz/authorizer.js';
import { auditFixture } from '../support/audit-fixtures.js';
import { scanAll } from '../support/dynamo.js';
import { createHarness, type Harness } from '../support/harness.js';

/** Allows everything but reading values under `locked/`, which a named forbid denies. */
const authorizer: Authorizer = {
  policySetHash: 'test-policy-set-hash',
  authorize(request): Decision {
    if (request.action === 'read' && request.resource.path.startsWith('locked/')) {
      return { allowed: false, policyIds: ['forbid-locked'], errors: [] };
    }
    return { allowed: true, policyIds: ['permit-all'], errors: [] };
  },
};

async function auditItems(client: DynamoDBClient, table: string) {
  return (await scanAll(client, table)).filter((i) => i.type === 'request') as unknown as RequestRecord[];
}

/** A DynamoDB client whose calls fail while `failing.on`, like an unreachable or throttled table. */
function failingClient(
  client: DynamoDBClient,
  failing: { on: boolean; afterSend?: boolean },
): DynamoDBClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: Parameters<DynamoDBClient['send']>[0]) => {
        if (failing.on && !failing.afterSend) {
          throw Object.assign(new Error('injected'), { name: 'InternalServerError' });
        }
        const out = await target.send(command);
        if (failing.on && failing.afterSend) {
          // The write landed but the caller never hears so (a timeout after commit).
          throw Object.assign(new Error('injected timeout'), { name: 'TimeoutError' });
        }
        return out;
      };
    },
  });
}

describe('the audit trail behind the HTTP app', () => {
  let fx: Awaited<ReturnType<typeof auditFixture>>;
  let h: Harness;
  const canary = `CANARY-${crypto.randomUUID()}`;

  beforeAll(async () => {
    fx = await auditFixture('audit-trail');
    h = await createHarness({ label: 'audit-trail', audit: fx.trail({ chains: 2 }), authorizer });
  });

  it('when requests reach the app, each leaves exactly one record with who, what, decision and outcome', async () => {
    expect((await h.call('PUT', '/v1/secrets/locked/x', { body: { value: 'locked' } })).status).toBe(200);
    const before = (await auditItems(fx.client, fx.tables.audit)).length;
    const put = await h.call('PUT', '/v1/secrets/app/db', { body: { value: canary } });
    expect(put.status).toBe(200);
    const get = await h.call('GET', '/v1/secrets/app/db?version=1', {
      headers: { 'user-agent': 'ua-test/1' },
    });
    expect(get.body.value).toBe(canary);
    const denied = await h.call('GET', '/v1/secrets/locked/x');
    const anonymous = await h.call('GET', '/v1/secrets/app/db', { token: null });
    const missing = await h.call('GET', '/v1/secrets/app/none');
    expect([denied.status, anonymous.status, missing.status]).toEqual([403, 401, 404]);

    const records = await auditItems(fx.client, fx.tables.audit);
    expect(records.length - before).toBe(5);
    const byId = new Map(records.map((r) => [r.requestId, r]));
    const w = byId.get(put.headers.get('x-request-id') as string) as RequestRecord;
    expect(w).toMatchObject({
      action: 'write',
      path: 'app/db',
      version: 1,
      decision: 'allow',
      policyIds: ['permit-all'],
      policySetHash: 'test-policy-set-hash',
      status: 200,
      error: null,
      principal: { type: 'User', id: expect.stringContaining('dev-admin') },
      authMethod: 'dev',
      sourceIp: '127.0.0.1',
      method: 'PUT',
    });
    const r = byId.get(get.headers.get('x-request-id') as string) as RequestRecord;
    expect(r).toMatchObject({ action: 'read', version: 1, status: 200, userAgent: 'ua-test/1' });
    // The query string is kept only as a keyed HMAC.
    expect(r.hmac.query).toBe(fx.hasher.hash('query', 'version=1'));
    expect(r.hmacKeyId).toBe(fx.hasher.keyId);
    expect(JSON.stringify(r)).not.toContain('version=1');
    const d = byId.get(denied.headers.get('x-request-id') as string) as RequestRecord;
    expect(d).toMatchObject({
      decision: 'deny',
      policyIds: ['forbid-locked'],
      status: 403,
      error: 'forbidden',
    });
    const m = byId.get(missing.headers.get('x-request-id') as string) as RequestRecord;
    expect(m).toMatchObject({ action: 'read', path: 'app/none', status: 404, error: 'not_found' });
    const a = byId.get(anonymous.headers.get('x-request-id') as string) as RequestRecord;
    expect(a).toMatchObject({ principal: null, authMethod: null, status: 401, error: 'unauthenticated' });
    for (const record of records) {
      expect(Object.keys(record)).toEqual(
        expect.arrayContaining(['chain', 'seq', 'prev', 'hash', 'sig', 'time']),
      );
    }
  });

  it('when a change commits, its record is the one written in its transaction, and a failed change gets a failure record', async () => {
    const ok = await h.call('PUT', '/v1/secrets/app/cas', { body: { value: 'one', cas: 0 } });
    const conflict = await h.call('PUT', '/v1/secrets/app/cas', { body: { value: 'two', cas: 0 } });
    expect([ok.status, conflict.status]).toEqual([200, 409]);
    const records = await auditItems(fx.client, fx.tables.audit);
    const okRecord = records.find((x) => x.requestId === ok.headers.get('x-request-id'));
    const conflictRecord = records.find((x) => x.requestId === conflict.headers.get('x-request-id'));
    expect(okRecord).toMatchObject({ status: 200, action: 'write' });
    expect(conflictRecord).toMatchObject({ status: 409, error: 'cas_conflict', action: 'write' });
    // Both chains remain linear: the failed transaction's sequence number went to the failure record.
    const report = await verifyTable(fx.reader, { rootKeys: [fx.rootPem] });
    expect(report.problems).toEqual([]);
  });

  it('when a value is written and read, no record, log line or stdout copy contains it', async () => {
    await h.call('PUT', '/v1/secrets/app/canary', {
      body: { value: canary, description: 'd' },
      headers: { 'idempotency-key': `idem-${canary}` },
    });
    await h.call('GET', '/v1/secrets/app/canary');
    await h.call('GET', `/v1/secrets/app/canary?x=${canary}`);
    await h.call('PUT', '/v1/secrets/app/canary', { body: { value: canary, cas: 0 } });
    const stored = JSON.stringify(await scanAll(fx.client, fx.tables.audit));
    expect(stored).toContain('app/canary');
    for (const where of [stored, fx.lines.join('\n'), h.logs.join('\n')]) {
      expect(where).not.toContain(canary);
      expect(where).not.toContain(Buffer.from(canary).toString('base64'));
      expect(where).not.toContain(h.token);
    }
  });

  it('when records are written, each goes to the sink as one JSON line with a stable field set', async () => {
    const requests = fx.lines.map((l) => JSON.parse(l)).filter((l) => l.type === 'request');
    expect(requests.length).toBeGreaterThan(5);
    const keys = Object.keys(requests[0]).sort();
    for (const line of requests) expect(Object.keys(line).sort()).toEqual(keys);
    expect(keys).toEqual(
      expect.arrayContaining([
        'principalId',
        'principalType',
        'decision',
        'path',
        'status',
        'requestId',
        'chain',
        'seq',
      ]),
    );
  });
});

describe('when the audit table cannot be written', () => {
  it('a read fails with 503 audit_unavailable and no value; a write fails and stores nothing', async () => {
    const fx = await auditFixture('audit-fail');
    const failing = { on: false };
    const trail = fx.trail({ client: failingClient(fx.client, failing) });
    const h = await createHarness({ label: 'audit-fail', audit: trail });
    const secret = `value-${crypto.randomUUID()}`;
    expect((await h.call('PUT', '/v1/secrets/f/one', { body: { value: secret } })).status).toBe(200);

    failing.on = true;
    const read = await h.call('GET', '/v1/secrets/f/one');
    expect(read.status).toBe(503);
    expect(read.body.error.code).toBe('audit_unavailable');
    expect(read.text).not.toContain(secret);

    failing.on = false;
    expect((await h.call('GET', '/v1/secrets/f/one')).body.value).toBe(secret);
  });

  it('when the audit table is gone, a write fails with 503 and the secrets table is unchanged', async () => {
    const fx = await auditFixture('audit-gone');
    const h = await createHarness({ label: 'audit-gone', audit: fx.trail() });
    const secret = `value-${crypto.randomUUID()}`;
    expect((await h.call('PUT', '/v1/secrets/g/one', { body: { value: secret } })).status).toBe(200);
    const before = await scanAll(h.client, h.tables.secrets);

    await fx.client.send(new DeleteTableCommand({ TableName: fx.tables.audit }));
    const write = await h.call('PUT', '/v1/secrets/g/one', { body: { value: `${secret}-2` } });
    expect(write.status).toBe(503);
    expect(write.body.error.code).toBe('audit_unavailable');
    const create = await h.call('PUT', '/v1/secrets/g/two', { body: { value: secret } });
    expect(create.status).toBe(503);
    const read = await h.call('GET', '/v1/secrets/g/one');
    expect(read.status).toBe(503);
    expect(read.text).not.toContain(secret);

    const after = await scanAll(h.client, h.tables.secrets);
    expect(after).toEqual(before);
  });

  it('when a record write lands but its answer is lost, the next request adopts it and the chain stays linear', async () => {
    const fx = await auditFixture('audit-lost');
    const failing = { on: false, afterSend: true };
    const h = await createHarness({
      label: 'audit-lost',
      audit: fx.trail({ client: failingClient(fx.client, failing) }),
    });
    await h.call('PUT', '/v1/secrets/l/one', { body: { value: 'v' } });
    failing.on = true;
    expect((await h.call('GET', '/v1/secrets/l/one')).status).toBe(503);
    failing.on = false;
    expect((await h.call('GET', '/v1/secrets/l/one')).status).toBe(200);
    expect((await h.call('GET', '/v1/secrets/l/one')).status).toBe(200);
    const report = await verifyTable(fx.reader, { rootKeys: [fx.rootPem] });
    expect(report.problems).toEqual([]);
    // Genesis, the write, the read whose answer was lost, and two reads.
    expect(report.records).toBe(5);
  });
});

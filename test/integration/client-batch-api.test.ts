import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditContext, AuditOutcome, AuditTrail } from '../../lib/audit/trail.js';
import type { AuthorizationRequest, Authorizer, Decision } from '../../lib/authz/authorizer.js';
import { createHarness, type Harness } from '../support/harness.js';

/**
 * The admin (dev:dev-admin) may do anything. Everyone else: `hidden/...` is invisible (no
 * readMetadata), `denied/...` is visible but unreadable, the rest is allowed.
 */
class TestAuthorizer implements Authorizer {
  readonly policySetHash = 'test-policy-set';
  authorize({ principal, action, resource }: AuthorizationRequest): Decision {
    const allow: Decision = { allowed: true, policyIds: ['allow-rest'], errors: [] };
    if (principal.id === 'dev:dev-admin') return { allowed: true, policyIds: ['admins'], errors: [] };
    if (resource.path.startsWith('hidden/'))
      return { allowed: false, policyIds: ['forbid-hidden'], errors: [] };
    if (resource.path.startsWith('denied/') && action === 'read') {
      return { allowed: false, policyIds: ['forbid-denied-read'], errors: [] };
    }
    return allow;
  }
}

/** Keeps the context of every request's record (what the real trail would write). */
class RecordingTrail implements AuditTrail {
  readonly records: { ctx: AuditContext; outcome: AuditOutcome }[] = [];
  withChange<T>(_ctx: AuditContext, run: (items: TransactWriteItem[]) => Promise<T>): Promise<T> {
    return run([]);
  }
  async finish(ctx: AuditContext, outcome: AuditOutcome): Promise<void> {
    this.records.push({ ctx: structuredClone(ctx), outcome });
  }
}

let h: Harness;
let reader: string;
const trail = new RecordingTrail();

beforeAll(async () => {
  h = await createHarness({ label: 'batchapi', authorizer: new TestAuthorizer(), audit: trail });
  reader = await h.issuer.mint({ subject: 'reader', groups: [] });
  for (const [path, value] of [
    ['ok/one', 'value-one'],
    ['ok/two', 'value-two'],
    ['denied/secret', 'value-denied'],
    ['hidden/secret', 'value-hidden'],
  ]) {
    expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value } })).status).toBe(200);
  }
});

const batch = (paths: unknown, token = reader) => h.call('POST', '/v1/batch-get', { body: { paths }, token });

describe('POST /v1/batch-get', () => {
  it('when paths are allowed, denied, hidden and missing, it answers each on its own, in order', async () => {
    const res = await batch(['ok/one', 'denied/secret', 'hidden/secret', 'nope/missing', 'ok/two']);
    expect(res.status).toBe(200);
    const [one, denied, hidden, missing, two] = res.body.results;
    expect(one).toMatchObject({ path: 'ok/one', version: 1, value: 'value-one' });
    expect(two).toMatchObject({ path: 'ok/two', value: 'value-two' });
    expect(denied).toEqual({ path: 'denied/secret', error: { code: 'forbidden', message: 'access denied' } });
    // A secret the caller may not see answers exactly like one that does not exist.
    expect(hidden).toEqual({
      path: 'hidden/secret',
      error: { code: 'not_found', message: 'secret not found' },
    });
    expect(missing.error).toEqual(hidden.error);
    expect(res.text).not.toContain('value-denied');
    expect(res.text).not.toContain('value-hidden');
  });

  it('when the same path is asked twice or a path is invalid, it answers every position', async () => {
    const res = await batch(['ok/one', 'bad//path', 'ok/one']);
    expect(res.status).toBe(200);
    expect(res.body.results).toHaveLength(3);
    expect(res.body.results[0]).toEqual(res.body.results[2]);
    expect(res.body.results[1].error.code).toBe('invalid_path');
  });

  it('when the body has no paths, more than 20, or not strings, it answers 400 invalid_request', async () => {
    const tooMany = Array.from({ length: 21 }, (_, i) => `ok/p${i}`);
    for (const paths of [[], tooMany, [1, 2], 'ok/one']) {
      const res = await batch(paths);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    const extra = await h.call('POST', '/v1/batch-get', {
      body: { paths: ['ok/one'], more: 1 },
      token: reader,
    });
    expect(extra.status).toBe(400);
    expect((await batch(Array.from({ length: 20 }, () => 'ok/one'))).status).toBe(200);
  });

  it('when called without credentials or with GET, it refuses (401, 405)', async () => {
    expect((await h.call('POST', '/v1/batch-get', { body: { paths: ['ok/one'] }, token: null })).status).toBe(
      401,
    );
    expect((await h.call('GET', '/v1/batch-get', { token: reader })).status).toBe(405);
  });

  it('when a batch is read, its one audit record says read, names every path and keeps a deny', async () => {
    trail.records.length = 0;
    await batch(['ok/one', 'denied/secret', 'nope/missing']);
    expect(trail.records).toHaveLength(1);
    const { ctx, outcome } = trail.records[0] as { ctx: AuditContext; outcome: AuditOutcome };
    expect(ctx.action).toBe('read');
    expect(ctx.route).toBe('/v1/batch-get');
    expect(ctx.path).toBe('ok/one,denied/secret,nope/missing');
    expect(ctx.policySetHash).toBe('test-policy-set');
    expect(ctx.decision).toMatchObject({ allowed: false, policyIds: ['forbid-denied-read'] });
    expect(outcome.status).toBe(200);
    expect(JSON.stringify(trail.records)).not.toContain('value-one');

    trail.records.length = 0;
    await batch(['ok/one', 'ok/two']);
    expect(trail.records[0]?.ctx.decision).toMatchObject({ allowed: true, policyIds: ['allow-rest'] });
  });
});

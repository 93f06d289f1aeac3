import { fileURLToPath } from 'node:url';
import { GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { rotationScheduler } from '../../lib/access/rotation-port.js';
import type { AuditContext } from '../../lib/audit/trail.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { loadPolicyDir } from '../../lib/authz/policy-set.js';
import { jsonLogger } from '../../lib/log.js';
import type { Caller } from '../../lib/secrets/service.js';
import { createHarness, type Harness } from '../support/harness.js';

const REPO_POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));

let h: Harness;
let clock = Date.parse('2026-01-01T00:00:00Z');
let n = 0;

const headKey = (path: string) => ({
  pk: { S: `P#${path.slice(0, path.indexOf('/'))}` },
  sk: { S: `H#${path}` },
});

async function generated(maxVersions?: number): Promise<string> {
  n++;
  const path = `rot${n}/app/password`;
  const res = await h.call('POST', `/v1/generate/${path}`, { body: { type: 'password', length: 32 } });
  expect(res.status, res.text).toBe(200);
  if (maxVersions !== undefined) {
    const patch = await h.call('PATCH', `/v1/meta/${path}`, { body: { maxVersions } });
    expect(patch.status, patch.text).toBe(200);
  }
  return path;
}

const read = async (path: string, query = '') => h.call('GET', `/v1/secrets/${path}${query}`);
const meta = async (path: string) => (await h.call('GET', `/v1/meta/${path}`)).body;

beforeAll(async () => {
  h = await createHarness({ label: 'rotation', now: () => new Date(clock) });
});

describe('staging labels and rotation with the built-in generator', () => {
  it('when a secret is rotated, pending becomes current and the old current previous, at once', async () => {
    const path = await generated();
    const before = await read(path);
    expect(before.body.version).toBe(1);
    const res = await h.call('POST', `/v1/rotate/${path}`);
    expect(res.status, res.text).toBe(202);
    expect(res.body).toMatchObject({ state: 'finished', version: 2, stages: { current: 2, previous: 1 } });
    expect(res.text).not.toContain(before.body.value);
    const current = await read(path);
    expect(current.body.version).toBe(2);
    expect(current.body.value).not.toBe(before.body.value);
    expect(current.body.value).toHaveLength(32);
    const previous = await read(path, '?stage=previous');
    expect(previous.body).toMatchObject({ version: 1, value: before.body.value });
    expect((await read(path, '?stage=current')).body.version).toBe(2);
    const pending = await read(path, '?stage=pending');
    expect(pending.status).toBe(404);
    expect((await meta(path)).stages).toEqual({ current: 2, previous: 1 });
    expect((await meta(path)).currentVersion).toBe(2);
  });

  it('when a rotation is reverted, previous is current again and no version is written', async () => {
    const path = await generated();
    const first = (await read(path)).body.value;
    await h.call('POST', `/v1/rotate/${path}`);
    const second = (await read(path)).body.value;
    const res = await h.call('POST', `/v1/revert/${path}`);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ version: 1, stages: { current: 1, previous: 2 } });
    expect((await read(path)).body).toMatchObject({ version: 1, value: first });
    expect((await read(path, '?stage=previous')).body).toMatchObject({ version: 2, value: second });
    expect((await meta(path)).versions).toHaveLength(2);
    const fresh = await generated();
    expect((await h.call('POST', `/v1/revert/${fresh}`)).status).toBe(404);
  });

  it('when a stage and a version are both asked for, or an unknown stage, it is 400', async () => {
    const path = await generated();
    expect((await read(path, '?stage=previous&version=1')).status).toBe(400);
    expect((await read(path, '?stage=latest')).status).toBe(400);
  });

  it('when a value is put by hand, it is current and the old current is previous', async () => {
    const path = await generated();
    const first = (await read(path)).body.value;
    expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value: 'by-hand' } })).status).toBe(200);
    expect((await read(path)).body).toMatchObject({ version: 2, value: 'by-hand' });
    expect((await read(path, '?stage=previous')).body).toMatchObject({ version: 1, value: first });
  });

  it('when rotations of one secret run concurrently, they make one new version', async () => {
    const path = await generated();
    const results = await Promise.all(Array.from({ length: 6 }, () => h.call('POST', `/v1/rotate/${path}`)));
    for (const r of results) expect(r.status, r.text).toBe(202);
    const m = await meta(path);
    expect(m.versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    expect(m.stages).toEqual({ current: 2, previous: 1 });
    expect(new Set(results.map((r) => r.body.version))).toEqual(new Set([2]));
  });

  it('when maxVersions is 1, the previous and current versions survive pruning', async () => {
    const path = await generated(1);
    const first = (await read(path)).body.value;
    for (let i = 0; i < 3; i++) expect((await h.call('POST', `/v1/rotate/${path}`)).status).toBe(202);
    const m = await meta(path);
    expect(m.stages).toEqual({ current: 4, previous: 3 });
    expect(m.versions.map((v: { version: number }) => v.version)).toEqual([3, 4]);
    expect((await read(path, '?version=2')).status).toBe(404);
    expect((await read(path, '?stage=previous')).body.version).toBe(3);
    expect((await read(path, '?stage=previous')).body.value).not.toBe(first);
    // A plain write under maxVersions 1 keeps the old current as previous too.
    await h.call('PUT', `/v1/secrets/${path}`, { body: { value: 'v5' } });
    expect((await meta(path)).versions.map((v: { version: number }) => v.version)).toEqual([4, 5]);
  });

  it('when a secret has no generator, setting a rotation policy or rotating is 400', async () => {
    await h.call('PUT', '/v1/secrets/rotx/plain', { body: { value: 'typed-by-hand' } });
    const set = await h.call('PUT', '/v1/rotation/rotx/plain', { body: { every: '30d' } });
    expect(set.status).toBe(400);
    expect((await h.call('POST', '/v1/rotate/rotx/plain')).status).toBe(400);
  });

  it('when a rotation policy is set, metadata shows it and bad durations are refused', async () => {
    const path = await generated();
    for (const every of ['0d', '30', '1s', 'soon', '3651d']) {
      const res = await h.call('PUT', `/v1/rotation/${path}`, { body: { every } });
      expect(res.status, every).toBe(400);
    }
    const res = await h.call('PUT', `/v1/rotation/${path}`, { body: { every: '30d' } });
    expect(res.status, res.text).toBe(200);
    expect(res.body.rotation).toEqual({
      every: '30d',
      everySeconds: 30 * 86_400,
      nextAt: new Date(clock + 30 * 86_400_000).toISOString(),
    });
    const cleared = await h.call('DELETE', `/v1/rotation/${path}`);
    expect(cleared.status).toBe(200);
    expect(cleared.body.rotation).toBeUndefined();
  });

  it('when a rotation is due, the scheduled job rotates it (and only what is due)', async () => {
    const due = await generated();
    const later = await generated();
    await h.call('PUT', `/v1/rotation/${due}`, { body: { every: '1d' } });
    await h.call('PUT', `/v1/rotation/${later}`, { body: { every: '30d' } });
    const old = (await read(due)).body.value;
    expect(await h.service.rotateDue()).toEqual({ rotated: 0, failed: 0 });
    clock += 2 * 86_400_000;
    expect(await h.service.rotateDue()).toEqual({ rotated: 1, failed: 0 });
    expect((await read(due)).body.version).toBe(2);
    expect((await read(due, '?stage=previous')).body.value).toBe(old);
    expect((await read(later)).body.version).toBe(1);
    const m = await meta(due);
    expect(m.rotation.lastRotatedAt).toBe(new Date(clock).toISOString());
    expect(m.rotation.nextAt).toBe(new Date(clock + 86_400_000).toISOString());
    // Not due again until its next time.
    expect(await h.service.rotateDue()).toEqual({ rotated: 0, failed: 0 });
  });

  it('when a scheduled rotation fails, current is untouched and the head records a fixed error, tried again next run', async () => {
    const path = await generated();
    await h.call('PUT', `/v1/rotation/${path}`, { body: { every: '1d' } });
    // A value written by hand drops the generator but keeps the policy: rotation cannot generate.
    await h.call('PUT', `/v1/secrets/${path}`, { body: { value: 'hand-written-value' } });
    clock += 2 * 86_400_000;
    const run = await h.service.rotateDue();
    expect(run.failed).toBeGreaterThanOrEqual(1);
    expect((await read(path)).body).toMatchObject({ version: 2, value: 'hand-written-value' });
    const m = await meta(path);
    expect(m.rotation.lastRotationError).toEqual({
      message: 'rotation failed: invalid_request',
      at: new Date(clock).toISOString(),
    });
    expect(JSON.stringify(m)).not.toContain('hand-written-value');
    // Still due: the next run tries again (and fails the same way).
    const overdue = await h.call('GET', '/v1/lifecycle/rotation-overdue');
    expect(overdue.body.items.map((i: { path: string }) => i.path)).toContain(path);
    await h.call('DELETE', `/v1/rotation/${path}`);
  });

  it('when a due-index entry has no head behind it, the job rotates nothing and drops it', async () => {
    const path = await generated();
    await h.call('PUT', `/v1/rotation/${path}`, { body: { every: '1d' } });
    const nextAt = (await meta(path)).rotation.nextAt;
    // A table writer's entry for a secret without a rotation policy.
    const other = await generated();
    const { PutItemCommand } = await import('@aws-sdk/client-dynamodb');
    await h.client.send(
      new PutItemCommand({
        TableName: h.tables.secrets,
        Item: {
          pk: { S: 'ROT' },
          sk: { S: `2000-01-01T00:00:00.000Z#${other}` },
          path: { S: other },
          nextAt: { S: '2000-01-01T00:00:00.000Z' },
        },
      }),
    );
    clock = Date.parse(nextAt) + 1000;
    const result = await h.service.rotateDue();
    expect(result.failed).toBe(0);
    expect((await read(other)).body.version).toBe(1);
    expect((await read(path)).body.version).toBe(2);
    const gone = await h.client.send(
      new GetItemCommand({
        TableName: h.tables.secrets,
        Key: { pk: { S: 'ROT' }, sk: { S: `2000-01-01T00:00:00.000Z#${other}` } },
      }),
    );
    expect(gone.Item).toBeUndefined();
  });

  it('when a table writer edits the labels or the rotation policy of a head, reads fail with integrity_error', async () => {
    for (const [attr, value] of [
      ['labels', '{"current":1}'],
      ['rotation', '{"everySeconds":60,"nextAt":"2000-01-01T00:00:00.000Z"}'],
    ] as const) {
      const path = await generated();
      await h.call('POST', `/v1/rotate/${path}`);
      await h.call('PUT', `/v1/rotation/${path}`, { body: { every: '30d' } });
      await h.client.send(
        new UpdateItemCommand({
          TableName: h.tables.secrets,
          Key: headKey(path),
          UpdateExpression: 'SET #a = :v',
          ExpressionAttributeNames: { '#a': attr },
          ExpressionAttributeValues: { ':v': { S: value } },
        }),
      );
      const res = await read(path);
      expect(res.status, attr).toBe(500);
      expect(res.body.error.code).toBe('integrity_error');
      expect((await h.call('POST', `/v1/rotate/${path}`)).status).toBe(500);
      // The job rotates nothing of a head that fails its MAC, and says so.
      clock += 31 * 86_400_000;
      const run = await h.service.rotateDue();
      expect(run.failed).toBeGreaterThanOrEqual(1);
    }
  });
});

describe("offboarding's rotation port", () => {
  it('when a secret is marked due, the next run rotates it; rotateNow rotates at once; the request record is left alone', async () => {
    const port = rotationScheduler(() => h.service);
    const path = await generated();
    const plain = 'rotx/port-plain';
    await h.call('PUT', `/v1/secrets/${plain}`, { body: { value: 'x' } });
    await h.call('PUT', `/v1/rotation/${path}`, { body: { every: '30d' } });
    expect(await port.isConfigured(path)).toBe(true);
    expect(await port.isConfigured(plain)).toBe(false);
    const audit: AuditContext = {
      requestId: 'offboard-1',
      time: new Date(clock).toISOString(),
      method: 'POST',
      route: '/v1/admin/offboard',
      sourceIp: '127.0.0.1',
      userAgent: 'test',
      action: 'admin',
      written: false,
    };
    const caller: Caller = {
      principal: { type: 'User', id: 'dev:admin', groups: ['admins'], attributes: {}, authMethod: 'oidc' },
      context: { authMethod: 'oidc', sourceIp: '127.0.0.1', time: Math.floor(clock / 1000) },
      audit,
    };
    await port.markDue(caller, path, 'offboarding');
    // Without a policy the secret is marked to be replaced by hand; the scheduled job leaves it.
    await port.markDue(caller, plain, 'offboarding');
    expect((await h.call('GET', `/v1/meta/${plain}`)).body.rotationRequested).toMatchObject({
      reason: 'offboarding',
    });
    expect(audit).toMatchObject({ action: 'admin', written: false });
    expect((await h.service.rotateDue()).rotated).toBeGreaterThanOrEqual(1);
    expect((await read(path)).body.version).toBe(2);
    await port.rotateNow(caller, path);
    expect((await read(path)).body.version).toBe(3);
    expect(audit).toMatchObject({ action: 'admin', written: false });
    expect((await read(plain)).body.version).toBe(1);
    expect((await h.call('GET', `/v1/meta/${plain}`)).body.rotationRequested).toBeDefined();
  });
});

describe('lifecycle listings', () => {
  it('when a rotation is past due and not yet run, it is listed as overdue until the job rotates it', async () => {
    const path = await generated();
    await h.call('PUT', `/v1/rotation/${path}`, { body: { every: '1d' } });
    const prefix = path.slice(0, path.indexOf('/') + 1);
    const overdue = async () =>
      (await h.call('GET', `/v1/lifecycle/rotation-overdue?prefix=${prefix}`)).body.items.map(
        (i: { path: string }) => i.path,
      );
    expect(await overdue()).toEqual([]);
    clock += 2 * 86_400_000;
    expect(await overdue()).toEqual([path]);
    await h.service.rotateDue();
    expect(await overdue()).toEqual([]);
  });

  it('when a certificate expires within the window, it is listed as expiring, and not otherwise', async () => {
    const res = await h.call('POST', '/v1/generate/exp/certs/api', {
      body: { type: 'certificate', commonName: 'api.example.com', validityDays: 10 },
    });
    expect(res.status, res.text).toBe(200);
    const expiring = async (within: string) =>
      (await h.call('GET', `/v1/lifecycle/expiring?prefix=exp/&within=${within}`)).body.items.map(
        (i: { path: string }) => i.path,
      );
    expect(await expiring('30d')).toEqual(['exp/certs/api']);
    expect(await expiring('5d')).toEqual([]);
    expect((await h.call('GET', '/v1/lifecycle/expiring?within=soon')).status).toBe(400);
    // Soft-deleted, it is no longer listed.
    await h.call('DELETE', '/v1/secrets/exp/certs/api');
    expect(await expiring('30d')).toEqual([]);
  });
});

describe('rotation is decided by Cedar', () => {
  let c: Harness;
  const tokens: Record<string, string> = {};
  beforeAll(async () => {
    const set = await loadPolicyDir(REPO_POLICIES, {
      extraFiles: ['examples/team-owns-folder.cedar', 'examples/prod-readers.cedar'],
    });
    c = await createHarness({
      label: 'rotauthz',
      authorizer: new CedarAuthorizer(set, { logger: jsonLogger(() => {}) }),
    });
    tokens.root = await c.issuer.mint({ subject: 'root', groups: ['admins', 'prod-readers'] });
    tokens.alice = await c.issuer.mint({ subject: 'alice', groups: ['team-a'] });
    tokens.nobody = await c.issuer.mint({ subject: 'nobody', groups: [] });
    const gen = await c.call('POST', '/v1/generate/team-a/db/password', {
      token: tokens.root,
      body: { type: 'password', length: 20, tags: { env: 'prod' } },
    });
    expect(gen.status, gen.text).toBe(200);
    expect((await c.call('POST', '/v1/rotate/team-a/db/password', { token: tokens.root })).status).toBe(202);
  });

  it('when a caller may see the secret but not write it, rotating and setting a policy are 403', async () => {
    const rotate = await c.call('POST', '/v1/rotate/team-a/db/password', { token: tokens.alice });
    expect(rotate.status).toBe(403);
    const set = await c.call('PUT', '/v1/rotation/team-a/db/password', {
      token: tokens.alice,
      body: { every: '30d' },
    });
    expect(set.status).toBe(403);
    expect((await c.call('DELETE', '/v1/rotation/team-a/db/password', { token: tokens.alice })).status).toBe(
      403,
    );
    const revert = await c.call('POST', '/v1/revert/team-a/db/password', { token: tokens.alice });
    expect(revert.status).toBe(403);
    const previous = await c.call('GET', '/v1/secrets/team-a/db/password?stage=previous', {
      token: tokens.alice,
    });
    expect(previous.status).toBe(403);
  });

  it('when a caller may not see the secret, it is 404 as for a missing one', async () => {
    const rotate = await c.call('POST', '/v1/rotate/team-a/db/password', { token: tokens.nobody });
    expect(rotate.status).toBe(404);
    expect(
      (await c.call('GET', '/v1/meta/team-a/db/password', { token: tokens.root })).body.currentVersion,
    ).toBe(2);
  });
});

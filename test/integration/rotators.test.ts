import { fileURLToPath } from 'node:url';
import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AuditContext, AuditOutcome, AuditTrail } from '../../lib/audit/trail.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { loadPolicyDir } from '../../lib/authz/policy-set.js';
import { jsonLogger } from '../../lib/log.js';
import { WebhookInvoker } from '../../lib/secrets/rotators/webhook.js';
import type { RotatorCall } from '../../packages/client/src/contract.js';
import { createHarness, type Harness } from '../support/harness.js';
import { TestRotator } from '../support/webhook-rotator.js';

const REPO_POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));

/** Keeps what each change record and request record said (a fake of the audit port). */
class RecordingTrail implements AuditTrail {
  readonly changes: AuditContext[] = [];
  readonly finished: { ctx: AuditContext; outcome: AuditOutcome }[] = [];
  async withChange<T>(ctx: AuditContext, run: (items: TransactWriteItem[]) => Promise<T>): Promise<T> {
    const result = await run([]);
    this.changes.push({ ...ctx });
    ctx.written = true;
    return result;
  }
  async finish(ctx: AuditContext, outcome: AuditOutcome): Promise<void> {
    this.finished.push({ ctx: { ...ctx }, outcome });
  }
}

let h: Harness;
/** Changed by the timeout test only: the service reads it at each call. */
const rotatorSettings: { webhooks: WebhookInvoker; stepTimeoutMs: number } = {
  webhooks: new WebhookInvoker(),
  stepTimeoutMs: 15_000,
};
let clock = Date.parse('2026-03-01T00:00:00Z');
const trail = new RecordingTrail();
const rotator = new TestRotator();
let n = 0;

/** What the rotator read with each call's grant, by step. */
let seen: { step: string; status: number; version?: number; value?: string }[] = [];

async function generated(): Promise<string> {
  n++;
  const path = `ext${n}/db/password`;
  const res = await h.call('POST', `/v1/generate/${path}`, { body: { type: 'password', length: 24 } });
  expect(res.status, res.text).toBe(200);
  return path;
}

async function withWebhook(path: string): Promise<void> {
  const res = await h.call('PUT', `/v1/rotation/${path}`, { body: { every: '30d', webhook: rotator.url } });
  expect(res.status, res.text).toBe(200);
  expect(res.body.rotation.rotator).toEqual({ kind: 'webhook', url: rotator.url });
}

const read = async (path: string, query = '') => h.call('GET', `/v1/secrets/${path}${query}`);
const meta = async (path: string) => (await h.call('GET', `/v1/meta/${path}`)).body;

/** A rotator that reads what its grant allows, then answers `status` at `failAt` and 200 elsewhere. */
function readingRotator(failAt?: string, status = 500) {
  return async (call: RotatorCall) => {
    const res = await h.call('GET', `/v1/secrets/${call.path}?stage=${call.stage}`, { token: call.grant });
    seen.push({ step: call.step, status: res.status, version: res.body?.version, value: res.body?.value });
    return { status: call.step === failAt ? status : 200 };
  };
}

beforeAll(async () => {
  await rotator.start();
  h = await createHarness({
    label: 'rotators',
    now: () => new Date(clock),
    audit: trail,
    rotators: rotatorSettings,
  });
});

afterAll(async () => {
  await rotator.stop();
});

beforeEach(() => {
  rotator.calls.length = 0;
  seen = [];
  rotator.behave = readingRotator();
});

describe('a rotation policy naming a webhook rotator', () => {
  it('when the secret is rotated, the rotator is called for setSecret then testSecret with a grant that reads pending', async () => {
    const path = await generated();
    const before = (await read(path)).body.value;
    await withWebhook(path);
    const res = await h.call('POST', `/v1/rotate/${path}`);
    expect(res.status, res.text).toBe(202);
    expect(res.body).toMatchObject({ state: 'finished', version: 2, stages: { current: 2, previous: 1 } });
    expect(rotator.calls.map((c) => [c.step, c.path, c.pendingVersion, c.stage])).toEqual([
      ['setSecret', path, 2, 'pending'],
      ['testSecret', path, 2, 'pending'],
    ]);
    expect(Object.keys(rotator.calls[0] as object).sort()).toEqual([
      'grant',
      'path',
      'pendingVersion',
      'stage',
      'step',
    ]);
    const now = (await read(path)).body;
    expect(now.version).toBe(2);
    // Both steps read the value that became current, and never the old one.
    expect(seen).toEqual([
      { step: 'setSecret', status: 200, version: 2, value: now.value },
      { step: 'testSecret', status: 200, version: 2, value: now.value },
    ]);
    expect(now.value).not.toBe(before);
    const m = await meta(path);
    expect(m.rotation.progress).toBeUndefined();
    expect(m.rotation.rotator).toEqual({ kind: 'webhook', url: rotator.url });
    expect(m.rotation.lastRotatedAt).toBe(new Date(clock).toISOString());
  });

  it('when a grant is used for anything but its own stage, secret and step, it is refused', async () => {
    const path = await generated();
    const other = await generated();
    await withWebhook(path);
    const attempts: Record<string, number> = {};
    rotator.behave = async (call) => {
      if (call.step === 'setSecret') {
        const as = { token: call.grant };
        attempts.current = (await h.call('GET', `/v1/secrets/${path}`, as)).status;
        attempts.stageCurrent = (await h.call('GET', `/v1/secrets/${path}?stage=current`, as)).status;
        attempts.previous = (await h.call('GET', `/v1/secrets/${path}?stage=previous`, as)).status;
        attempts.byVersion = (await h.call('GET', `/v1/secrets/${path}?version=1`, as)).status;
        attempts.both = (await h.call('GET', `/v1/secrets/${path}?stage=pending&version=2`, as)).status;
        attempts.other = (await h.call('GET', `/v1/secrets/${other}?stage=pending`, as)).status;
        attempts.meta = (await h.call('GET', `/v1/meta/${path}`, as)).status;
        attempts.batch = (await h.call('POST', '/v1/batch-get', { ...as, body: { paths: [path] } })).status;
        attempts.write = (await h.call('PUT', `/v1/secrets/${path}`, { ...as, body: { value: 'x' } })).status;
        attempts.list = (await h.call('GET', '/v1/list?prefix=', as)).status;
        const [head, body, mac] = call.grant.split('.');
        const forged = Buffer.from(
          JSON.stringify({ ...JSON.parse(Buffer.from(body as string, 'base64url').toString()), p: other }),
        ).toString('base64url');
        attempts.forged = (
          await h.call('GET', `/v1/secrets/${other}?stage=pending`, { token: `${head}.${forged}.${mac}` })
        ).status;
        attempts.own = (await h.call('GET', `/v1/secrets/${path}?stage=pending`, as)).status;
        (attempts as Record<string, unknown>).grant = call.grant;
      }
      if (call.step === 'testSecret') {
        // The setSecret grant, during testSecret: the step it was made for is over.
        const old = (attempts as Record<string, unknown>).grant as string;
        attempts.oldStep = (await h.call('GET', `/v1/secrets/${path}?stage=pending`, { token: old })).status;
      }
      return { status: 200 };
    };
    expect((await h.call('POST', `/v1/rotate/${path}`)).status).toBe(202);
    const { grant: _g, ...statuses } = attempts as Record<string, unknown>;
    expect(statuses).toEqual({
      current: 403,
      stageCurrent: 403,
      previous: 403,
      byVersion: 403,
      both: 403,
      other: 403,
      meta: 403,
      batch: 403,
      write: 403,
      list: 403,
      forged: 401,
      own: 200,
      oldStep: 403,
    });
    // After the rotation, the same grants read nothing: the version is current, not pending.
    const setGrant = rotator.calls[0]?.grant as string;
    const testGrant = rotator.calls[1]?.grant as string;
    expect((await h.call('GET', `/v1/secrets/${path}?stage=pending`, { token: setGrant })).status).toBe(403);
    expect((await h.call('GET', `/v1/secrets/${path}?stage=pending`, { token: testGrant })).status).toBe(403);
    expect((await h.call('GET', `/v1/secrets/${path}`, { token: testGrant })).status).toBe(403);
  });

  it('when a grant has expired, it is 401', async () => {
    const path = await generated();
    await withWebhook(path);
    let status = 0;
    rotator.behave = async (call) => {
      clock += 121_000;
      status = (await h.call('GET', `/v1/secrets/${path}?stage=pending`, { token: call.grant })).status;
      return { status: 200 };
    };
    expect((await h.call('POST', `/v1/rotate/${path}`)).status).toBe(202);
    expect(status).toBe(401);
  });

  for (const failAt of ['setSecret', 'testSecret'] as const) {
    it(`when the rotator fails at ${failAt}, current is unchanged, the error is recorded and the next run resumes there`, async () => {
      const path = await generated();
      const before = (await read(path)).body;
      await withWebhook(path);
      rotator.behave = readingRotator(failAt);
      const res = await h.call('POST', `/v1/rotate/${path}`);
      expect(res.status, res.text).toBe(502);
      expect(res.body.error).toMatchObject({ code: 'rotation_step_failed' });
      expect(res.text).not.toContain(seen[0]?.value as string);
      expect(await read(path)).toMatchObject({ status: 200, body: { version: 1, value: before.value } });
      const pendingValue = seen[0]?.value as string;
      expect((await read(path, '?stage=pending')).body).toMatchObject({ version: 2, value: pendingValue });
      let m = await meta(path);
      expect(m.stages).toEqual({ current: 1, pending: 2 });
      expect(m.rotation.progress).toEqual({ version: 2, step: failAt, failed: true });
      expect(m.rotation.lastRotationError).toEqual({
        message: `rotation step ${failAt} failed: bad_status`,
        at: new Date(clock).toISOString(),
        step: failAt,
      });
      // The failure's own change record, besides the pending version's.
      const failure = trail.changes.filter((c) => c.path === path).at(-1) as AuditContext;
      expect(failure).toMatchObject({ action: 'write', path, version: 2 });
      expect(failure.requestId).toMatch(/-step$/);
      expect(failure.head?.rev).toBeGreaterThan(0);
      expect(JSON.stringify(trail.changes)).not.toContain(pendingValue);

      rotator.calls.length = 0;
      seen = [];
      rotator.behave = readingRotator();
      clock += 60_000;
      const again = await h.call('POST', `/v1/rotate/${path}`);
      expect(again.status, again.text).toBe(202);
      expect(rotator.calls.map((c) => c.step)).toEqual(
        failAt === 'setSecret' ? ['setSecret', 'testSecret'] : ['testSecret'],
      );
      // The resumed steps read the same pending value with their new grants.
      expect(seen.map((r) => [r.status, r.version, r.value])).toEqual(seen.map(() => [200, 2, pendingValue]));
      expect(again.body).toMatchObject({
        state: 'finished',
        version: 2,
        stages: { current: 2, previous: 1 },
      });
      expect((await read(path)).body).toMatchObject({ version: 2, value: pendingValue });
      m = await meta(path);
      expect(m.versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
      expect(m.rotation.lastRotationError).toBeUndefined();
      expect(m.rotation.progress).toBeUndefined();
    });
  }

  it('when the rotator does not answer within the step timeout, the step fails as a timeout', async () => {
    const path = await generated();
    await withWebhook(path);
    rotator.behave = () => ({ status: 200, delayMs: 2000 });
    rotatorSettings.stepTimeoutMs = 300;
    const res = await h.call('POST', `/v1/rotate/${path}`).finally(() => {
      rotatorSettings.stepTimeoutMs = 15_000;
    });
    expect(res.status).toBe(502);
    const m = await meta(path);
    expect(m.rotation.lastRotationError.message).toBe('rotation step setSecret failed: timeout');
    expect(m.currentVersion).toBe(1);
  });

  it('when the rotation is due, the scheduled run calls the rotator, and a failed run is resumed by the next', async () => {
    const path = await generated();
    const set = await h.call('PUT', `/v1/rotation/${path}`, {
      body: { every: '1d', webhook: rotator.url, rotateImmediately: true },
    });
    expect(set.status, set.text).toBe(200);
    rotator.behave = readingRotator('testSecret', 503);
    const first = await h.service.rotateDue();
    expect(first.failed).toBeGreaterThanOrEqual(1);
    let m = await meta(path);
    expect(m.currentVersion).toBe(1);
    expect(m.rotation.progress).toEqual({ version: 2, step: 'testSecret', failed: true });
    expect(m.rotation.lastRotationError.step).toBe('testSecret');
    const failure = trail.changes.filter((c) => c.path === path).at(-1) as AuditContext;
    expect(failure).toMatchObject({
      route: '/jobs/rotation',
      decision: { policyIds: ['rotation-schedule'] },
    });
    rotator.calls.length = 0;
    rotator.behave = readingRotator();
    const second = await h.service.rotateDue();
    expect(second.failed).toBe(0);
    expect(rotator.calls.filter((c) => c.path === path).map((c) => c.step)).toEqual(['testSecret']);
    m = await meta(path);
    expect(m.stages).toEqual({ current: 2, previous: 1 });
    expect(Date.parse(m.rotation.nextAt)).toBe(clock + 86_400_000);
  });

  it('when a rotation is reverted, the rotator sets the previous value first, then current moves back', async () => {
    const path = await generated();
    const first = (await read(path)).body.value;
    await withWebhook(path);
    expect((await h.call('POST', `/v1/rotate/${path}`)).status).toBe(202);
    rotator.calls.length = 0;
    seen = [];
    rotator.behave = readingRotator('revertSecret');
    const failed = await h.call('POST', `/v1/revert/${path}`);
    expect(failed.status).toBe(502);
    expect((await read(path)).body.version).toBe(2);
    expect((await meta(path)).rotation.lastRotationError.step).toBe('revertSecret');
    rotator.behave = readingRotator();
    seen = [];
    rotator.calls.length = 0;
    const res = await h.call('POST', `/v1/revert/${path}`);
    expect(res.status, res.text).toBe(200);
    expect(rotator.calls.map((c) => [c.step, c.pendingVersion, c.stage])).toEqual([
      ['revertSecret', 1, 'previous'],
    ]);
    expect(seen).toEqual([{ step: 'revertSecret', status: 200, version: 1, value: first }]);
    expect((await read(path)).body).toMatchObject({ version: 1, value: first });
  });

  it('when a webhook is not on loopback, or the rotator is not one this server calls, it is 400 rotator_not_allowed', async () => {
    const path = await generated();
    for (const body of [
      { every: '30d', webhook: 'https://rotator.example.com/hook' },
      { every: '30d', webhook: 'http://10.0.0.1/hook' },
      { every: '30d', webhook: 'http://user:pw@127.0.0.1/hook' },
      { every: '30d', webhook: 'file:///etc/passwd' },
      { every: '30d', lambdaArn: 'arn:aws:lambda:eu-west-1:123456789012:function:rotate' },
      {
        every: '30d',
        webhook: rotator.url,
        lambdaArn: 'arn:aws:lambda:eu-west-1:123456789012:function:rotate',
      },
    ]) {
      const res = await h.call('PUT', `/v1/rotation/${path}`, { body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('rotator_not_allowed');
    }
    expect((await meta(path)).rotation).toBeUndefined();
  });
});

describe('naming an external rotator is decided by Cedar admin', () => {
  let c: Harness;
  const tokens: Record<string, string> = {};
  beforeAll(async () => {
    const set = await loadPolicyDir(REPO_POLICIES, { extraFiles: ['examples/team-owns-folder.cedar'] });
    c = await createHarness({
      label: 'rotatorsauthz',
      authorizer: new CedarAuthorizer(set, { logger: jsonLogger(() => {}) }),
      rotators: { webhooks: new WebhookInvoker() },
    });
    tokens.root = await c.issuer.mint({ subject: 'root', groups: ['admins'] });
    tokens.alice = await c.issuer.mint({ subject: 'alice', groups: ['team-a'] });
    const gen = await c.call('POST', '/v1/generate/team-a/api/key', {
      token: tokens.root,
      body: { type: 'password', length: 20 },
    });
    expect(gen.status, gen.text).toBe(200);
  });

  it('when a caller has writeMetadata but not admin, a generator policy is 200 and naming a rotator 403', async () => {
    const path = '/v1/rotation/team-a/api/key';
    expect((await c.call('PUT', path, { token: tokens.alice, body: { every: '30d' } })).status).toBe(200);
    const named = await c.call('PUT', path, {
      token: tokens.alice,
      body: { every: '30d', webhook: rotator.url },
    });
    expect(named.status).toBe(403);
    const byAdmin = await c.call('PUT', path, {
      token: tokens.root,
      body: { every: '30d', webhook: rotator.url },
    });
    expect(byAdmin.status, byAdmin.text).toBe(200);
    // A policy that names a rotator is changed or cleared by an admin only.
    expect((await c.call('PUT', path, { token: tokens.alice, body: { every: '7d' } })).status).toBe(403);
    expect((await c.call('DELETE', path, { token: tokens.alice })).status).toBe(403);
    expect((await c.call('DELETE', path, { token: tokens.root })).status).toBe(200);
  });
});

import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RotationScheduler } from '../../lib/access/offboard.js';
import { recordKey } from '../../lib/audit/keys.js';
import { AuditReader } from '../../lib/audit/reader.js';
import type { RequestRecord } from '../../lib/audit/record.js';
import { queryRecords } from '../../lib/audit/review.js';
import { verifyTable } from '../../lib/audit/verify-sources.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { compilePolicySet, SCHEMA_FILE } from '../../lib/authz/policy-set.js';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { LocalRootSigner } from '../../lib/keys/local.js';
import { silentLogger } from '../../lib/log.js';
import type { OffboardReport } from '../../packages/client/src/contract.js';
import { createHarness, type Harness } from '../support/harness.js';

/*
 * Offboarding (issue 17): revoke first, then report what the principal read (the real signed audit
 * trail in DynamoDB Local), what it could read (the access reports) and rotation.
 */

const SCHEMA = fileURLToPath(new URL(`../../policies/${SCHEMA_FILE}`, import.meta.url));
const POLICIES = `
@id("admins") permit (principal in Coffer::Group::"admins", action, resource);
@id("devs") permit (principal in Coffer::Group::"devs", action in [Coffer::Action::"read", Coffer::Action::"readMetadata", Coffer::Action::"list"], resource in Coffer::Folder::"team/");
`;
const SECRETS = ['team/a', 'team/b', 'team/c', 'team/d', 'team/e', 'other/x'];
const DAY_MS = 86_400_000;

async function authorizer() {
  const set = compilePolicySet({ name: SCHEMA_FILE, text: await readFile(SCHEMA, 'utf8') }, [
    { name: 'p.cedar', text: POLICIES },
  ]);
  return new CedarAuthorizer(set, { logger: silentLogger });
}

/** A rotation port that remembers what it was asked; `team/a` alone has a rotation policy. */
function fakeRotation(calls: string[]): RotationScheduler {
  return {
    isConfigured: async (path) => path === 'team/a',
    markDue: async (_caller, path, reason) => {
      calls.push(`due ${path} (${reason.startsWith('offboarding (r-') ? 'offboarding' : reason})`);
    },
    rotateNow: async (_caller, path) => {
      calls.push(`rotate ${path}`);
    },
  };
}

async function offboardRecords(h: Harness): Promise<RequestRecord[]> {
  const reader = new AuditReader(h.client, h.tables.audit);
  const records = await queryRecords(reader, { since: '2000-01-01T00:00:00Z', limit: 10_000 });
  return records.filter((r) => r.route === '/v1/admin/offboard');
}

describe('offboard', () => {
  let h: Harness;
  /** Added to the server's clock (offboarding's "now"), to age the reads already made. */
  let shift = 0;
  let alice: string;
  let bob: string;

  beforeAll(async () => {
    h = await createHarness({
      label: 'offboard',
      authorizer: await authorizer(),
      audit: 'dynamo',
      now: () => new Date(Date.now() + shift),
    });
    for (const path of SECRETS) {
      expect(
        (await h.call('PUT', `/v1/secrets/${path}`, { body: { value: `value of ${path}` } })).status,
      ).toBe(200);
    }
    alice = await h.issuer.mint({ subject: 'alice', groups: ['devs'] });
    bob = await h.issuer.mint({ subject: 'bob', groups: ['devs'] });
  });

  it('when a principal read three secrets, offboard revokes it and lists exactly those three as read', async () => {
    const get = (path: string, token = alice) => h.call('GET', `/v1/secrets/${path}`, { token });
    // Successful reads: single reads and an allowed batch.
    expect((await get('team/a')).status).toBe(200);
    expect((await get('team/b')).status).toBe(200);
    expect((await get('team/b')).status).toBe(200);
    expect((await get('team/c')).status).toBe(200);
    const batch = await h.call('POST', '/v1/batch-get', {
      token: alice,
      body: { paths: ['team/a', 'team/c'] },
    });
    expect(batch.status).toBe(200);
    // Reads that failed or were denied, and requests that are not reads, do not count.
    expect((await get('team/nope')).status).toBe(404);
    expect((await get('other/x')).status).toBe(404);
    expect((await h.call('GET', '/v1/secrets/team/d?version=99', { token: alice })).status).toBe(404);
    expect((await h.call('GET', '/v1/meta/team/e', { token: alice })).status).toBe(200);
    expect((await h.call('GET', '/v1/list?prefix=team/', { token: alice })).status).toBe(200);
    // A batch that was partly denied: its audit record cannot say which path was read.
    const mixed = await h.call('POST', '/v1/batch-get', {
      token: alice,
      body: { paths: ['team/d', 'other/x'] },
    });
    expect(mixed.status).toBe(200);
    // Reads by someone else do not count.
    expect((await get('team/d', bob)).status).toBe(200);
    expect((await get('team/e', bob)).status).toBe(200);
    await h.directory.flush();

    // Bad input changes nothing: alice is not revoked by it.
    const bad = await h.call('POST', '/v1/admin/offboard', {
      body: { principal: 'User::"dev:alice"', days: 0 },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
    expect((await get('team/a')).status).toBe(200);

    // A non-admin is refused, and alice keeps her access.
    const refused = await h.call('POST', '/v1/admin/offboard', {
      token: bob,
      body: { principal: 'dev:alice' },
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
    expect((await get('team/a')).status).toBe(200);

    const res = await h.call('POST', '/v1/admin/offboard', {
      body: { principal: 'User::"dev:alice"', reason: 'left the company' },
    });
    expect(res.status, res.text).toBe(200);
    const report = res.body as OffboardReport;
    expect(report.alreadyRevoked).toBe(false);
    expect(report.revocation.principal).toEqual({ type: 'User', id: 'dev:alice' });
    expect(report.revocation.reason).toBe('left the company');
    expect(report.window.days).toBe(90);
    expect(report.read.map((r) => r.path)).toEqual(['team/a', 'team/b', 'team/c']);
    expect(report.read.map((r) => [r.path, r.reads, r.via])).toEqual([
      // team/a: three single reads (one before each refused offboard) and the batch.
      ['team/a', 4, ['batch-get', 'get']],
      ['team/b', 2, ['get']],
      ['team/c', 2, ['batch-get', 'get']],
    ]);
    expect(report.possiblyRead).toEqual(['other/x', 'team/d']);
    // None of them has a rotation policy: each is marked to be replaced by hand.
    expect(report.read.every((r) => r.couldRead === true)).toBe(true);
    expect(report.read.map((r) => r.rotation)).toEqual(
      Array(3).fill({ configured: false, markedDue: true, rotated: false }),
    );
    // What she could read before the revocation: the devs' folder, with her last-seen groups.
    expect(report.couldRead?.principal.groups).toEqual(['devs']);
    expect(report.couldRead?.paths).toEqual(['team/a', 'team/b', 'team/c', 'team/d', 'team/e']);
    expect(report.rotation).toEqual({
      configured: true,
      markedDue: ['team/a', 'team/b', 'team/c'],
      rotated: [],
    });
    // Every chain read verified against the root key: no warning.
    expect(report.warnings).toEqual([]);
    // The marks are in the authenticated heads, and listed with the overdue rotations.
    const overdue = await h.call('GET', '/v1/lifecycle/rotation-overdue?prefix=team/');
    expect(overdue.status, overdue.text).toBe(200);
    expect(
      overdue.body.items.map((i: { path: string; rotationRequested?: { reason: string } }) => [
        i.path,
        i.rotationRequested?.reason,
      ]),
    ).toEqual(['team/a', 'team/b', 'team/c'].map((p) => [p, `offboarding (${report.revocation.id})`]));
    const meta = await h.call('GET', '/v1/meta/team/b');
    expect(meta.body.rotationRequested.reason).toBe(`offboarding (${report.revocation.id})`);
    // Paths only: no value in the report.
    expect(res.text).not.toContain('value of');

    // Revoked: her next request is refused, before any policy.
    const after = await get('team/a');
    expect(after.status).toBe(403);
    expect(after.body.error.code).toBe('revoked');
    // Bob is not.
    expect((await get('team/a', bob)).status).toBe(200);

    // The offboard is audited as the revocation it made; the refused one as a denial.
    const records = await offboardRecords(h);
    const made = records.find((r) => r.status === 200);
    expect(made?.action).toBe('admin');
    expect(made?.principal?.id).toBe('dev:dev-admin');
    expect(made?.control?.change).toBe(`revoke User::"dev:alice" (${report.revocation.id})`);
    expect(records.find((r) => r.status === 403)).toMatchObject({
      principal: { id: 'dev:bob' },
      decision: 'deny',
      error: 'forbidden',
    });

    // Run again: the same revocation, no second entry; the same reads.
    const again = await h.call('POST', '/v1/admin/offboard', { body: { principal: 'User::"dev:alice"' } });
    expect(again.status).toBe(200);
    expect(again.body.alreadyRevoked).toBe(true);
    expect(again.body.revocation.id).toBe(report.revocation.id);
    expect(again.body.read.map((r: { path: string }) => r.path)).toEqual(['team/a', 'team/b', 'team/c']);
    const list = await h.call('GET', '/v1/admin/revocations');
    expect(
      list.body.revocations.filter((e: { principal?: { id: string } }) => e.principal?.id === 'dev:alice'),
    ).toHaveLength(1);

    const root = await LocalRootSigner.open(h.dataDir);
    const verified = await verifyTable(new AuditReader(h.client, h.tables.audit), {
      rootKeys: [await root.publicKeyPem()],
    });
    expect(verified.problems).toEqual([]);
  });

  it('when reads are older than the window, they do not count; a wider window finds them', async () => {
    const carol = await h.issuer.mint({ subject: 'carol', groups: ['devs'] });
    expect((await h.call('GET', '/v1/secrets/team/a', { token: carol })).status).toBe(200);
    const between = new Date(Date.now() + 5).toISOString();
    await new Promise((r) => setTimeout(r, 20));
    expect((await h.call('GET', '/v1/secrets/team/b', { token: carol })).status).toBe(200);

    // From a time between her two reads: only the later one.
    const since = await h.call('POST', '/v1/admin/offboard', {
      body: { principal: 'dev:carol', since: between },
    });
    expect(since.status, since.text).toBe(200);
    expect(since.body.read.map((r: { path: string }) => r.path)).toEqual(['team/b']);
    expect(since.body.window.days).toBeNull();

    // A hundred days on, both reads are older than the default 90 days; a year covers them.
    shift = 100 * DAY_MS;
    try {
      const old = await h.call('POST', '/v1/admin/offboard', { body: { principal: 'dev:carol' } });
      expect(old.status).toBe(200);
      expect(old.body.read).toEqual([]);
      const year = await h.call('POST', '/v1/admin/offboard', {
        body: { principal: 'dev:carol', days: 365 },
      });
      expect(year.body.read.map((r: { path: string }) => r.path)).toEqual(['team/a', 'team/b']);
    } finally {
      shift = 0;
    }

    // Both days and since, or since in the future: 400, before anything is revoked.
    const dave = await h.issuer.mint({ subject: 'dave', groups: ['devs'] });
    for (const body of [
      { principal: 'dev:dave', days: 5, since: between },
      { principal: 'dev:dave', since: new Date(Date.now() + DAY_MS).toISOString() },
      { principal: 'Nope::"x"' },
      { principal: 'dev:dave', extra: true },
    ]) {
      const res = await h.call('POST', '/v1/admin/offboard', { body });
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect((await h.call('GET', '/v1/secrets/team/a', { token: dave })).status).toBe(200);
  });

  it('when a record of the window was edited in the table, its chain is named in a warning (records read as stored)', async () => {
    const gina = await h.issuer.mint({ subject: 'gina', groups: ['devs'] });
    expect((await h.call('GET', '/v1/secrets/team/a', { token: gina })).status).toBe(200);
    const reader = new AuditReader(h.client, h.tables.audit);
    const [record] = (
      await queryRecords(reader, { since: '2000-01-01T00:00:00Z', principal: 'dev:gina', limit: 10 })
    ).filter((r) => r.action === 'read');
    if (!record) throw new Error('no audit record of the read');
    // A table writer moves the read to another secret; the record's hash no longer matches.
    await h.client.send(
      new PutItemCommand({
        TableName: h.tables.audit,
        Item: marshall({ ...record, ...recordKey(record.chain, record.seq), path: 'team/e' }),
      }),
    );
    const res = await h.call('POST', '/v1/admin/offboard', { body: { principal: 'dev:gina' } });
    expect(res.status, res.text).toBe(200);
    expect(res.body.read.map((r: { path: string }) => r.path)).toEqual(['team/e']);
    expect(res.body.warnings.join('\n')).toContain(
      `audit chain(s) failed verification, their records were read as stored: ${record.chain} (hash_mismatch at seq ${record.seq})`,
    );
  });

  it('when the principal was never seen, it is still revoked and the report says what it could read is unknown', async () => {
    const res = await h.call('POST', '/v1/admin/offboard', { body: { principal: 'User::"dev:zed"' } });
    expect(res.status, res.text).toBe(200);
    expect(res.body.read).toEqual([]);
    expect(res.body.couldRead).toBeNull();
    expect(res.body.warnings.join('\n')).toMatch(/not in the directory/);
    const zed = await h.issuer.mint({ subject: 'zed', groups: ['devs'] });
    expect((await h.call('GET', '/v1/secrets/team/a', { token: zed })).body.error.code).toBe('revoked');
  });

  describe('the CLI', () => {
    let server: ServerType;
    let addr: string;
    beforeAll(async () => {
      server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
      await once(server, 'listening');
      addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      await new Promise((resolve) => server.close(resolve));
    });

    async function cli(args: string[], token = h.token) {
      const o = { stdout: '', stderr: '' };
      const io: CliIo = {
        env: { COFFER_ADDR: addr, COFFER_TOKEN: token, COFFER_LOGIN_CACHE: '/nonexistent' },
        cwd: h.dataDir,
        stdin: Object.assign(Readable.from([]), { isTTY: false }),
        stdout: { write: (s: string) => (o.stdout += s) },
        stderr: { write: (s: string) => (o.stderr += s), isTTY: false },
      };
      return { code: await runCli(args, io), ...o };
    }

    it('when run, it prints a table of what was read and could be read; --json prints the report', async () => {
      const erin = await h.issuer.mint({ subject: 'erin', groups: ['devs'] });
      for (const p of ['team/c', 'team/e']) {
        expect((await h.call('GET', `/v1/secrets/${p}`, { token: erin })).status).toBe(200);
      }
      await h.directory.flush();
      const res = await cli(['offboard', 'dev:erin', '--days', '7', '--reason', 'moved team']);
      expect(res.code, res.stderr).toBe(0);
      expect(res.stdout).toMatch(/^revoked "dev:erin" \(any type\): r-[0-9a-f]{8}$/m);
      expect(res.stdout).toMatch(/^READ\s+READS\s+LAST READ\s+VIA\s+STILL READABLE\s+ROTATION$/m);
      expect(res.stdout).toMatch(/^team\/c\s+1\s+\S+\s+get\s+yes\s+no policy, due$/m);
      expect(res.stdout).toMatch(/^team\/e\s+1\s+\S+\s+get\s+yes\s+no policy, due$/m);
      expect(res.stdout).toContain('rotation: 2 marked due, 0 rotated');
      // (An earlier test edited an audit record: that chain's warning is expected, no other.)
      expect(res.stderr).not.toContain('rotation is not configured');
      const meta = await cli(['meta', 'team/e']);
      expect(meta.stdout).toMatch(/^replace by hand: since \S+ \(offboarding \(r-[0-9a-f]{8}\)\)$/m);
      const overdue = await cli(['ls', 'team/', '--rotation-overdue']);
      expect(overdue.stdout).toMatch(
        /^team\/e {2}replace by hand since \S+ \(offboarding \(r-[0-9a-f]{8}\)\)$/m,
      );

      const json = await cli(['--json', 'offboard', 'dev:erin']);
      expect(json.code, json.stderr).toBe(0);
      const report = JSON.parse(json.stdout) as OffboardReport;
      expect(report.alreadyRevoked).toBe(true);
      expect(report.read.map((r) => r.path)).toEqual(['team/c', 'team/e']);

      expect((await cli(['offboard', 'dev:erin', '--days', '0'])).code).toBe(2);
      expect((await cli(['offboard', 'dev:erin', '--days', '3651'])).code).toBe(2);
      const denied = await cli(['offboard', 'dev:bob'], bob);
      // Denied: exit 5, and bob (who asked about himself) is not revoked.
      expect(denied.code).toBe(5);
      expect((await h.call('GET', '/v1/secrets/team/a', { token: bob })).status).toBe(200);
    });
  });

  it("with the server's own rotation, a read secret with a policy is rotated or made due, one without is marked until replaced", async () => {
    const r = await createHarness({ label: 'offreal', authorizer: await authorizer(), audit: 'dynamo' });
    for (const path of ['team/now', 'team/later']) {
      const made = await r.call('POST', `/v1/generate/${path}`, { body: { type: 'password', length: 24 } });
      expect(made.status, made.text).toBe(200);
      expect((await r.call('PUT', `/v1/rotation/${path}`, { body: { every: '30d' } })).status).toBe(200);
    }
    expect((await r.call('PUT', '/v1/secrets/team/hand', { body: { value: 'by hand' } })).status).toBe(200);
    const before = await r.call('GET', '/v1/meta/team/later');
    const gina = await r.issuer.mint({ subject: 'gina', groups: ['devs'] });
    for (const path of ['team/now', 'team/later', 'team/hand']) {
      expect((await r.call('GET', `/v1/secrets/${path}`, { token: gina })).status).toBe(200);
    }
    await r.directory.flush();
    const first = await r.call('POST', '/v1/admin/offboard', { body: { principal: 'dev:gina' } });
    expect(first.status, first.text).toBe(200);
    expect(first.body.couldRead.withRotationPolicy).toEqual(['team/later', 'team/now']);
    expect(first.body.rotation).toEqual({
      configured: true,
      markedDue: ['team/hand', 'team/later', 'team/now'],
      rotated: [],
    });
    expect(first.body.read.map((i: { path: string; rotation: unknown }) => [i.path, i.rotation])).toEqual([
      ['team/hand', { configured: false, markedDue: true, rotated: false }],
      ['team/later', { configured: true, markedDue: true, rotated: false }],
      ['team/now', { configured: true, markedDue: true, rotated: false }],
    ]);
    // Made due now: a policy's next run, a hand-kept secret's request.
    const overdue = await r.call('GET', '/v1/lifecycle/rotation-overdue?prefix=team/');
    const byPath = new Map(overdue.body.items.map((i: { path: string }) => [i.path, i]));
    expect([...byPath.keys()].sort()).toEqual(['team/hand', 'team/later', 'team/now']);
    expect(Date.parse((byPath.get('team/later') as { nextAt: string }).nextAt)).toBeLessThan(
      Date.parse(before.body.rotation.nextAt),
    );
    expect(byPath.get('team/hand')).toMatchObject({
      rotationRequested: { reason: expect.stringMatching(/^offboarding \(r-/) },
    });

    // Offboarding again with --rotate rotates those with a policy at once.
    const again = await r.call('POST', '/v1/admin/offboard', {
      body: { principal: 'dev:gina', rotate: true },
    });
    expect(again.status, again.text).toBe(200);
    expect(again.body.rotation.rotated).toEqual(['team/later', 'team/now']);
    for (const path of ['team/now', 'team/later']) {
      const meta = await r.call('GET', `/v1/meta/${path}`);
      expect(meta.body.stages).toMatchObject({ current: 2, previous: 1 });
    }
    // The hand-kept one waits for a person: the scheduled job does not touch it...
    await r.service.rotateDue();
    expect((await r.call('GET', '/v1/meta/team/hand')).body.rotationRequested.at).toBeDefined();
    // ...and a new value answers the request.
    expect((await r.call('PUT', '/v1/secrets/team/hand', { body: { value: 'replaced' } })).status).toBe(200);
    expect((await r.call('GET', '/v1/meta/team/hand')).body.rotationRequested).toBeUndefined();
    const after = await r.call('GET', '/v1/lifecycle/rotation-overdue?prefix=team/');
    expect(after.body.items.map((i: { path: string }) => i.path)).toEqual([]);
  });

  it('when rotation is configured, the read secrets are marked due, and --rotate rotates those with a policy', async () => {
    const calls: string[] = [];
    const r = await createHarness({
      label: 'offrot',
      authorizer: await authorizer(),
      audit: 'dynamo',
      rotation: fakeRotation(calls),
    });
    for (const path of ['team/a', 'team/b']) {
      expect((await r.call('PUT', `/v1/secrets/${path}`, { body: { value: 'v' } })).status).toBe(200);
    }
    const frank = await r.issuer.mint({ subject: 'frank', groups: ['devs'] });
    for (const path of ['team/a', 'team/b']) {
      expect((await r.call('GET', `/v1/secrets/${path}`, { token: frank })).status).toBe(200);
    }
    const res = await r.call('POST', '/v1/admin/offboard', {
      body: { principal: 'dev:frank', rotate: true },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body.rotation).toEqual({
      configured: true,
      markedDue: ['team/a', 'team/b'],
      rotated: ['team/a'],
    });
    expect(res.body.read.map((i: { path: string; rotation: unknown }) => [i.path, i.rotation])).toEqual([
      ['team/a', { configured: true, markedDue: true, rotated: true }],
      ['team/b', { configured: false, markedDue: true, rotated: false }],
    ]);
    expect(calls).toEqual(['due team/a (offboarding)', 'rotate team/a', 'due team/b (offboarding)']);
    expect(res.body.warnings).toEqual([]);
  });
});

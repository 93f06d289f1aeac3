import { once } from 'node:events';
import { mkdtemp, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type DynamoDBClient, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { directorySortKey, PrincipalDirectory } from '../../lib/access/directory.js';
import {
  type AuditContext,
  type AuditOutcome,
  type AuditTrail,
  NoAuditTrail,
} from '../../lib/audit/trail.js';
import type { Principal } from '../../lib/authn/principal.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { compilePolicySet, SCHEMA_FILE } from '../../lib/authz/policy-set.js';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { openLocalStorageMacKey } from '../../lib/keys/storage-mac.js';
import { silentLogger } from '../../lib/log.js';
import { freshTables } from '../support/dynamo.js';
import { createHarness, type Harness } from '../support/harness.js';

const SCHEMA = fileURLToPath(new URL(`../../policies/${SCHEMA_FILE}`, import.meta.url));

const POLICIES = `
@id("admins") permit (principal in Coffer::Group::"admins", action, resource);
@id("team-a-admins") permit (principal in Coffer::Group::"team-a-admins", action == Coffer::Action::"admin", resource in Coffer::Folder::"team-a/");
@id("ci") permit (principal is Coffer::Workload in Coffer::Group::"ci", action in [Coffer::Action::"read", Coffer::Action::"readMetadata"], resource in Coffer::Folder::"team-a/db/");
@id("team-a") permit (principal in Coffer::Group::"team-a", action in [Coffer::Action::"read", Coffer::Action::"readMetadata", Coffer::Action::"list"], resource in Coffer::Folder::"team-a/");
`;

/** A DynamoDB client that counts (and can refuse) the directory's writes. */
function counting(client: DynamoDBClient, state: { puts: number; fail: boolean }): DynamoDBClient {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: { input?: { Item?: { pk?: { S?: string } } } }) => {
        if (command instanceof PutItemCommand && command.input.Item?.pk?.S === 'DIR') {
          state.puts++;
          if (state.fail) throw Object.assign(new Error('injected outage'), { name: 'InternalServerError' });
        }
        return target.send(command as never);
      };
    },
  });
}

const alice: Principal = {
  type: 'User',
  id: 'corp:alice',
  groups: ['team-a'],
  attributes: { department: 'ops' },
  authMethod: 'oidc',
  issuer: 'corp',
};

describe('the principal directory', () => {
  it('when a principal makes many requests, its entry is written at most once an hour, by all instances together', async () => {
    const { client, tables } = await freshTables('dir');
    const key = await openLocalStorageMacKey(await mkdtemp(join(tmpdir(), 'coffer-dir-')));
    const state = { puts: 0, fail: false };
    let now = new Date('2026-01-01T00:00:00Z');
    const make = () =>
      new PrincipalDirectory({
        client: counting(client, state),
        table: tables.secrets,
        key,
        binding: tables.secrets,
        logger: silentLogger,
        now: () => now,
      });
    const one = make();
    for (let i = 0; i < 100; i++) one.seen(alice);
    await one.flush();
    expect(state.puts).toBe(1);
    expect((await one.get('User', 'corp:alice'))?.lastSeen).toBe('2026-01-01T00:00:00.000Z');

    // 59 minutes on, still nothing; and groups that changed meanwhile wait for the hour.
    now = new Date('2026-01-01T00:59:00Z');
    for (let i = 0; i < 10; i++) one.seen({ ...alice, groups: ['team-b'] });
    await one.flush();
    expect(state.puts).toBe(1);

    // A second instance, with its own memory, tries once; the stored entry is too young for it.
    const two = make();
    two.seen({ ...alice, groups: ['team-b'] });
    two.seen({ ...alice, groups: ['team-b'] });
    await two.flush();
    expect(state.puts).toBe(2);
    expect((await two.get('User', 'corp:alice'))?.groups).toEqual(['team-a']);

    // Past the hour the entry is rewritten, once.
    now = new Date('2026-01-01T01:00:01Z');
    for (let i = 0; i < 10; i++) one.seen({ ...alice, groups: ['team-b'] });
    await one.flush();
    expect(state.puts).toBe(3);
    const entry = await one.get('User', 'corp:alice');
    expect(entry?.groups).toEqual(['team-b']);
    expect(entry?.tags).toEqual({ department: 'ops' });
    expect(entry?.lastSeen).toBe('2026-01-01T01:00:01.000Z');
  });

  it('when the directory cannot be written, requests still succeed, the failure is logged once, and a retry waits a minute', async () => {
    const state = { puts: 0, fail: true };
    const h = await createHarness({ label: 'dirfail', clientWrapper: (c) => counting(c, state) });
    for (let i = 0; i < 5; i++) expect((await h.call('GET', '/v1/whoami')).status).toBe(200);
    await h.directory.flush();
    expect(state.puts).toBe(1);
    expect(h.logs.filter((l) => l.includes('principal directory write failed'))).toHaveLength(1);
    state.fail = false;
    expect((await h.call('GET', '/v1/whoami')).status).toBe(200);
    await h.directory.flush();
    // Within the minute after a failure, no new attempt.
    expect(state.puts).toBe(1);
  });
});

/** Keeps what each request's audit record would say. */
class RecordingTrail implements AuditTrail {
  readonly records: { ctx: AuditContext; outcome: AuditOutcome }[] = [];
  private readonly none = new NoAuditTrail();
  withChange: AuditTrail['withChange'] = (ctx, run) => this.none.withChange(ctx, run);
  async finish(ctx: AuditContext, outcome: AuditOutcome): Promise<void> {
    this.records.push({ ctx: structuredClone(ctx), outcome });
  }
}

describe('the principal directory on the request path', () => {
  it('when the directory write hangs, the request does not wait for it', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let pending = 0;
    const h = await createHarness({
      label: 'dirslow',
      clientWrapper: (client) =>
        new Proxy(client, {
          get(target, prop, receiver) {
            if (prop !== 'send') return Reflect.get(target, prop, receiver);
            return async (command: { input?: { Item?: { pk?: { S?: string } } } }) => {
              if (command instanceof PutItemCommand && command.input.Item?.pk?.S === 'DIR') {
                pending++;
                await gate;
                pending--;
              }
              return target.send(command as never);
            };
          },
        }),
    });
    const res = await h.call('GET', '/v1/whoami');
    expect(res.status).toBe(200);
    // Answered while its directory write is still held.
    expect(pending).toBe(1);
    release();
    await h.directory.flush();
    expect(pending).toBe(0);
    expect((await h.directory.get('User', 'dev:dev-admin'))?.groups).toEqual(['admins']);
  });
});

describe('access report routes', () => {
  let h: Harness;
  const trail = new RecordingTrail();
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    const set = compilePolicySet({ name: SCHEMA_FILE, text: await readFile(SCHEMA, 'utf8') }, [
      { name: 'p.cedar', text: POLICIES },
    ]);
    h = await createHarness({
      label: 'accroutes',
      authorizer: new CedarAuthorizer(set, { logger: silentLogger }),
      audit: trail,
    });
    for (const [name, groups] of Object.entries({
      alice: ['team-a'],
      bob: [],
      tina: ['team-a-admins'],
    })) {
      tokens[name] = await h.issuer.mint({ subject: name, groups });
    }
    for (const path of ['team-a/db/one', 'team-a/db/two', 'team-a/app/three', 'team-a/four', 'team-b/five']) {
      expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value: 'v' } })).status).toBe(200);
    }
    // Every principal makes a request, so the directory knows it.
    for (const t of Object.values(tokens)) await h.call('GET', '/v1/whoami', { token: t });
    await h.directory.flush();
  });

  const what = (query: Record<string, string>, token?: string) =>
    h.call('GET', `/v1/access/what?${new URLSearchParams(query)}`, token ? { token } : {});
  const who = (query: Record<string, string>, token?: string) =>
    h.call('GET', `/v1/access/who?${new URLSearchParams(query)}`, token ? { token } : {});

  it('when a caller without admin asks for a report, it is 403, whatever it asks about', async () => {
    for (const token of [tokens.alice, tokens.bob] as string[]) {
      expect((await what({ principal: 'dev:alice' }, token)).status).toBe(403);
      expect((await what({ principal: 'dev:nobody-at-all' }, token)).status).toBe(403);
      expect((await who({ path: 'team-a/db/one' }, token)).status).toBe(403);
      expect((await who({ path: 'team-a/no/such' }, token)).status).toBe(403);
    }
    expect((await what({ principal: 'dev:alice' }, tokens.bob)).body.error.code).toBe('forbidden');
    // Audited as `admin`, with the deciding policies (none: denied by default); the query that
    // names the prefix and principal only as a keyed hash.
    const last = trail.records.at(-1);
    expect(last?.ctx.action).toBe('admin');
    expect(last?.ctx.decision).toMatchObject({ allowed: false, policyIds: [] });
    expect(last?.ctx.path).toBeUndefined();
    expect(last?.outcome.status).toBe(403);
    await who({ path: 'team-a/db/one' });
    expect(trail.records.at(-1)?.ctx).toMatchObject({
      action: 'admin',
      path: 'team-a/db/one',
      decision: { allowed: true, policyIds: ['admins'] },
    });
  });

  it('when an admin of one folder asks, reports on that folder are answered and others are 403', async () => {
    const t = tokens.tina as string;
    expect((await what({ principal: 'dev:alice', prefix: 'team-a/' }, t)).status).toBe(200);
    expect((await what({ principal: 'dev:alice', prefix: 'team-a/db/' }, t)).status).toBe(200);
    expect((await what({ principal: 'dev:alice' }, t)).status).toBe(403);
    expect((await what({ principal: 'dev:alice', prefix: 'team-b/' }, t)).status).toBe(403);
    // A prefix inside a folder's name is covered by the folder around it: team-a/ for team-a/d.
    expect((await what({ principal: 'dev:alice', prefix: 'team-a/d' }, t)).status).toBe(200);
    expect((await what({ principal: 'dev:alice', prefix: 'team-a' }, t)).status).toBe(403);
    expect((await who({ path: 'team-a/db/one' }, t)).status).toBe(200);
    expect((await who({ path: 'team-b/five' }, t)).status).toBe(403);
  });

  it('when a report follows its cursors, pages add up to the whole answer, and a cursor is bound to its report', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const res = await what({ principal: 'dev:alice', limit: '2', ...(cursor ? { cursor } : {}) });
      expect(res.status).toBe(200);
      expect(res.body.scanned).toBeLessThanOrEqual(2);
      seen.push(...res.body.items.map((i: { path: string }) => i.path));
      cursor = res.body.cursor;
      if (pages === 0) {
        const other = await what({ principal: 'dev:bob', limit: '2', cursor: cursor as string });
        expect(other.status).toBe(400);
        expect(other.body.error.code).toBe('invalid_cursor');
        const otherGroups = await what({
          principal: 'dev:alice',
          groups: 'x',
          limit: '2',
          cursor: cursor as string,
        });
        expect(otherGroups.body.error.code).toBe('invalid_cursor');
      }
      pages++;
    } while (cursor);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(seen.sort()).toEqual(['team-a/app/three', 'team-a/db/one', 'team-a/db/two', 'team-a/four']);
  });

  it('when a report names a principal, the answer says where its groups came from', async () => {
    const fromDirectory = await what({ principal: 'User::"dev:alice"', prefix: 'team-a/db/' });
    expect(fromDirectory.body.principal).toMatchObject({
      entity: 'Coffer::User::"dev:alice"',
      groups: ['team-a'],
      source: 'directory',
      authMethod: 'dev',
    });
    expect(fromDirectory.body.items).toEqual([
      { path: 'team-a/db/one', read: true, write: false, list: true, rotationPolicy: false },
      { path: 'team-a/db/two', read: true, write: false, list: true, rotationPolicy: false },
    ]);
    const given = await what({ principal: 'dev:alice', groups: 'team-b,x' });
    expect(given.body.principal).toMatchObject({ groups: ['team-b', 'x'], source: 'given' });
    expect(given.body.items).toEqual([]);
    const never = await what({ principal: 'corp:carol', groups: 'team-a' });
    expect(never.status).toBe(200);
    expect(never.body.principal).toMatchObject({ source: 'given', issuer: 'corp', authMethod: 'oidc' });
    expect(never.body.items.length).toBe(4);
  });

  it('when a principal is revoked, the reports show it may do nothing, and again what it may once the revocation is removed', async () => {
    const before = await what({ principal: 'dev:alice', prefix: 'team-a/db/' });
    expect(before.body.items.length).toBe(2);
    const revoked = await h.call('POST', '/v1/admin/revocations', {
      body: { principal: { type: 'User', id: 'dev:alice' }, reason: 'left' },
    });
    expect(revoked.status).toBe(200);
    try {
      const during = await what({ principal: 'dev:alice', prefix: 'team-a/db/' });
      expect(during.status).toBe(200);
      expect(during.body.items).toEqual([]);
      const readers = await who({ path: 'team-a/db/one' });
      expect(readers.body.principals.map((p: { id: string }) => p.id)).not.toContain('dev:alice');
      // As a real request would be: refused before any policy.
      expect(
        (await h.call('GET', '/v1/secrets/team-a/db/one', { token: tokens.alice as string })).status,
      ).toBe(403);
    } finally {
      expect((await h.call('DELETE', `/v1/admin/revocations/${revoked.body.id}`)).status).toBe(200);
    }
    const after = await what({ principal: 'dev:alice', prefix: 'team-a/db/' });
    expect(after.body.items.length).toBe(2);
  });

  it('when the input is bad, the answer is a 4xx with a stable code', async () => {
    expect((await what({ principal: 'corp:never-seen' })).body.error.code).toBe('not_found');
    expect((await what({ principal: 'Group::"admins"' })).body.error.code).toBe('invalid_request');
    expect((await what({ principal: 'dev:alice', groups: 'bad group!' })).body.error.code).toBe(
      'invalid_request',
    );
    expect((await what({ principal: 'dev:alice', prefix: '/abs' })).body.error.code).toBe('invalid_path');
    expect((await what({ principal: 'dev:alice', limit: '0' })).body.error.code).toBe('invalid_request');
    expect((await what({})).status).toBe(400);
    expect((await who({ path: 'team-a/db/one', action: 'admin' })).body.error.code).toBe('invalid_request');
    expect((await who({ path: 'team-a/../x' })).body.error.code).toBe('invalid_path');
    expect((await who({ path: 'team-a/db/missing' })).status).toBe(404);
    expect((await h.call('POST', '/v1/access/who?path=team-a/db/one')).status).toBe(405);
  });

  it('when a directory entry is edited in the table, `what` on it fails closed and `who` leaves it out with a warning', async () => {
    const before = await who({ path: 'team-a/db/one' });
    expect(before.body.principals.map((p: { entity: string }) => p.entity)).toContain(
      'Coffer::User::"dev:alice"',
    );
    await h.client.send(
      new UpdateItemCommand({
        TableName: h.tables.secrets,
        Key: { pk: { S: 'DIR' }, sk: { S: directorySortKey('User', 'dev:bob') } },
        UpdateExpression: 'SET #e = :e',
        ExpressionAttributeNames: { '#e': 'entry' },
        ExpressionAttributeValues: {
          ':e': {
            S: JSON.stringify({
              authMethod: 'dev',
              groups: ['team-a'],
              id: 'dev:bob',
              issuer: 'dev',
              lastSeen: new Date().toISOString(),
              tags: {},
              type: 'User',
            }),
          },
        },
      }),
    );
    const forged = await what({ principal: 'dev:bob' });
    expect(forged.status).toBe(500);
    expect(forged.body.error.code).toBe('integrity_error');
    const after = await who({ path: 'team-a/db/one' });
    expect(after.status).toBe(200);
    expect(after.body.principals.map((p: { entity: string }) => p.entity)).not.toContain(
      'Coffer::User::"dev:bob"',
    );
    expect(after.body.warnings).toEqual(['1 principal directory entry failed verification and was left out']);
  });

  describe('coffer access', () => {
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

    async function cli(args: string[], token = h.token, tty = false) {
      const o = { stdout: '', stderr: '' };
      const io: CliIo = {
        env: { COFFER_ADDR: addr, COFFER_TOKEN: token, COFFER_LOGIN_CACHE: '/nonexistent' },
        cwd: h.dataDir,
        stdin: Object.assign(Readable.from([]), { isTTY: false }),
        stdout: { write: (s: string) => (o.stdout += s) },
        stderr: { write: (s: string) => (o.stderr += s), isTTY: tty },
      };
      return { code: await runCli(args, io), ...o };
    }

    it('when asked what a principal may do with --json, it prints one report merged from every page', async () => {
      const res = await cli(['--json', 'access', 'what', 'dev:alice']);
      expect(res.code, res.stderr).toBe(0);
      const report = JSON.parse(res.stdout);
      expect(report.principal.entity).toBe('Coffer::User::"dev:alice"');
      expect(report.items.map((i: { path: string }) => i.path)).toEqual([
        'team-a/app/three',
        'team-a/db/one',
        'team-a/db/two',
        'team-a/four',
      ]);
      expect(report.scanned).toBe(5);
      // Folders need a `list` on the folder itself: alice's policy names secrets and folders alike.
      expect(report.folders).toEqual(['team-a/', 'team-a/app/', 'team-a/db/']);
      expect(res.stderr).toBe('');
    });

    it('when asked on a terminal, it prints a table and a running count on stderr', async () => {
      const res = await cli(['access', 'what', 'dev:alice', '--prefix', 'team-a/db/'], h.token, true);
      expect(res.code, res.stderr).toBe(0);
      expect(res.stdout).toContain('RWL  PATH\nr-l  team-a/db/one\nr-l  team-a/db/two\n');
      expect(res.stdout).toContain('2 of 2 secret(s) under team-a/db/ with access');
    });

    it('when asked who may read a secret, it names the groups and principals; a non-admin gets exit 5', async () => {
      const res = await cli(['--json', 'access', 'who', 'team-a/db/one']);
      expect(res.code, res.stderr).toBe(0);
      const report = JSON.parse(res.stdout);
      expect(report.action).toBe('read');
      // ci is granted to workloads only: its members are tried as every kind of principal.
      expect(report.groups).toEqual(['admins', 'ci', 'team-a']);
      expect(report.principals.map((p: { entity: string }) => p.entity)).toEqual([
        'Coffer::User::"dev:alice"',
        'Coffer::User::"dev:dev-admin"',
      ]);
      const human = await cli(['access', 'who', 'team-a/db/one', '--action', 'write']);
      expect(human.stdout).toBe(
        'write on team-a/db/one\ngroups:\n  admins\nprincipals:\n' +
          `  Coffer::User::"dev:dev-admin"  (directory; last seen ${report.principals[1].lastSeen})\n`,
      );
      expect(human.stderr).toContain('warning: 1 principal directory entry failed verification');
      const denied = await cli(['access', 'who', 'team-a/db/one'], tokens.alice as string);
      expect(denied.code).toBe(5);
      const bad = await cli(['access', 'who', 'team-a/db/one', '--action', 'admin']);
      expect(bad.code).toBe(2);
    });
  });
});

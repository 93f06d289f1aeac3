import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { DevAuthenticator } from '../../lib/authn/dev-authenticator.js';
import type { Authenticator, Principal } from '../../lib/authn/principal.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { loadPolicyDir } from '../../lib/authz/policy-set.js';
import { jsonLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';

const REPO_POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));

let h: Harness;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  const set = await loadPolicyDir(REPO_POLICIES, {
    extraFiles: ['examples/team-owns-folder.cedar', 'examples/auditors.cedar', 'examples/prod-readers.cedar'],
  });
  h = await createHarness({
    label: 'authz',
    authorizer: new CedarAuthorizer(set, { logger: jsonLogger(() => {}) }),
  });
  const people: Record<string, string[]> = {
    root: ['admins', 'prod-readers'],
    alice: ['team-a'],
    carol: ['prod-readers', 'team-a'],
    bob: ['team-ab'],
    audrey: ['auditors'],
    nobody: [],
  };
  for (const [name, groups] of Object.entries(people)) {
    tokens[name] = await h.issuer.mint({ subject: name, groups });
  }
  const seed = async (path: string, body: Record<string, unknown>) => {
    const res = await h.call('PUT', `/v1/secrets/${path}`, { body, token: tokens.root as string });
    expect(res.status, `seeding ${path}`).toBe(200);
  };
  await seed('team-a/db/password', { value: 'pw-1', tags: { env: 'prod' } });
  await seed('team-a/app/config', { value: 'cfg-1', tags: { env: 'dev' } });
  await seed('team-a/old/gone', { value: 'old' });
  await seed('team-ab/key', { value: 'ab-1' });
  await seed('team-ab/sub/x', { value: 'ab-2' });
  const del = await h.call('DELETE', '/v1/secrets/team-a/old/gone', { token: tokens.root as string });
  expect(del.status).toBe(200);
});

const as = (who: string) => ({ token: tokens[who] as string });

/** Status and body, without the request id (the one part that always differs). */
async function answer(who: string, method: string, route: string, body?: unknown) {
  const res = await h.call(method, route, { ...as(who), ...(body !== undefined ? { body } : {}) });
  const copy = res.body === undefined ? res.text : structuredClone(res.body);
  if (copy?.error) delete copy.error.requestId;
  return { status: res.status, body: copy };
}

async function listAll(who: string, query: string) {
  const res = await h.call('GET', `/v1/list?${query}`, as(who));
  expect(res.status).toBe(200);
  return res.body as { items: { path: string }[]; folders?: string[] };
}

describe('a caller who may not see a secret', () => {
  const requests = (path: string): [string, string, unknown?][] => [
    ['GET', `/v1/secrets/${path}`],
    ['GET', `/v1/secrets/${path}?version=1`],
    ['GET', `/v1/meta/${path}`],
    ['PATCH', `/v1/meta/${path}`, { description: 'mine now' }],
    ['DELETE', `/v1/secrets/${path}`],
    ['POST', `/v1/restore/${path}`],
    ['POST', `/v1/destroy/${path}`, { versions: [1] }],
    ['PUT', `/v1/secrets/${path}`, { value: 'overwrite' }],
    ['POST', `/v1/generate/${path}`, { type: 'password' }],
  ];

  it('gets the same status and body for it as for a secret that does not exist, on every route', async () => {
    for (const who of ['bob', 'nobody']) {
      const existing = requests('team-a/db/password');
      const missing = requests('team-a/db/no-such-secret');
      for (const [i, [method, route, body]] of existing.entries()) {
        const [, missingRoute, missingBody] = missing[i] as [string, string, unknown?];
        const a = await answer(who, method, route, body);
        const b = await answer(who, method, missingRoute, missingBody);
        expect(a, `${who} ${method} ${route}`).toEqual(b);
        expect([403, 404]).toContain(a.status);
      }
    }
    // The same for a soft-deleted secret it may not see, restore included.
    for (const [method, route, body] of requests('team-a/old/gone')) {
      const missingRoute = route.replace('team-a/old/gone', 'team-a/old/never');
      expect(await answer('bob', method, route, body), `${method} ${route}`).toEqual(
        await answer('bob', method, missingRoute, body),
      );
    }
  });

  it('changed nothing while trying', async () => {
    const meta = await h.call('GET', '/v1/meta/team-a/db/password', as('root'));
    expect(meta.body).toMatchObject({ currentVersion: 1, tags: { env: 'prod' } });
    expect(meta.body.description).toBeUndefined();
    expect(meta.body.deletedAt).toBeUndefined();
    const value = await h.call('GET', '/v1/secrets/team-a/db/password', as('root'));
    expect(value.body.value).toBe('pw-1');
  });

  it('never sees it in a list, recursive or by folder', async () => {
    for (const query of ['prefix=', 'prefix=team-a', 'prefix=team-a/', 'prefix=team-a/db/']) {
      const page = await listAll('bob', query);
      expect(page.items.map((i) => i.path).filter((p) => p.startsWith('team-a/'))).toEqual([]);
    }
    const root = await listAll('bob', 'prefix=&delimiter=/');
    expect(root.folders).toEqual(['team-ab/']);
    expect(await listAll('nobody', 'prefix=')).toMatchObject({ items: [] });
    expect((await listAll('nobody', 'prefix=&delimiter=/')).folders).toEqual([]);
    // An auditor, who may list, does see it: the filter is the policy, not the data.
    const audit = await listAll('audrey', 'prefix=team-a/');
    expect(audit.items.map((i) => i.path)).toContain('team-a/db/password');
  });

  it('learns nothing about it from list cursors or page sizes', async () => {
    // Every page is what the caller would get if the store held only what it may list: full
    // until the last, and a cursor (which names the last entry shown) only when more follows.
    const hidden = ['team-a/db/password', 'team-a/app/config', 'team-a/old/gone', 'team-a/', 'team-a'];
    const cases: [string, string, string[]][] = [
      ['bob', 'prefix=', ['team-ab/key', 'team-ab/sub/x']],
      ['bob', 'prefix=team-a', ['team-ab/key', 'team-ab/sub/x']],
      ['bob', 'prefix=team-a/', []],
      ['bob', 'prefix=&delimiter=/', ['team-ab/']],
      ['nobody', 'prefix=', []],
      ['nobody', 'prefix=team-a/&delimiter=/', []],
    ];
    for (const [who, query, visible] of cases) {
      for (const limit of [1, 2, 3]) {
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const res = await h.call(
            'GET',
            `/v1/list?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`,
            as(who),
          );
          expect(res.status).toBe(200);
          const page = [...res.body.items.map((i: { path: string }) => i.path), ...(res.body.folders ?? [])];
          cursor = res.body.cursor;
          if (cursor !== undefined) {
            expect(page, `${who} ${query} limit ${limit}: a page with a cursor is full`).toHaveLength(limit);
            const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
            for (const secret of hidden) {
              expect(decoded, `${who} ${query} cursor`).not.toMatch(
                new RegExp(`"(H#)?${secret.replace(/[/-]/g, '\\$&')}(~)?"`),
              );
            }
          }
          seen.push(...page);
          expect(++pages).toBeLessThan(10);
        } while (cursor);
        expect(seen.sort(), `${who} ${query} limit ${limit}`).toEqual(visible);
        expect(pages).toBe(Math.max(1, Math.ceil(visible.length / limit)));
      }
    }
  });

  it('while a caller who may see it but not use it gets 403, not 404', async () => {
    const read = await answer('alice', 'GET', '/v1/secrets/team-a/db/password');
    expect(read).toEqual({ status: 403, body: { error: { code: 'forbidden', message: 'access denied' } } });
    const meta = await h.call('GET', '/v1/meta/team-a/db/password', as('alice'));
    expect(meta.status).toBe(200);
    const auditorRead = await answer('audrey', 'GET', '/v1/secrets/team-a/app/config');
    expect(auditorRead.status).toBe(403);
  });
});

describe('a folder grant', () => {
  it('does not leak to a sibling folder with a common prefix (team-a/ vs team-ab/)', async () => {
    expect((await answer('alice', 'GET', '/v1/secrets/team-ab/key')).status).toBe(404);
    expect((await answer('alice', 'GET', '/v1/meta/team-ab/key')).status).toBe(404);
    expect((await answer('alice', 'PUT', '/v1/secrets/team-ab/new', { value: 'x' })).status).toBe(403);
    expect((await answer('alice', 'PUT', '/v1/secrets/team-ab/key', { value: 'x' })).status).toBe(403);
    // A string prefix "team-a" matches team-ab/ paths in the store; the policy filters them out.
    const listed = (await listAll('alice', 'prefix=team-a')).items.map((i) => i.path);
    expect(listed).toContain('team-a/app/config');
    expect(listed.some((p) => p.startsWith('team-ab/'))).toBe(false);
    expect((await listAll('alice', 'prefix=&delimiter=/')).folders).toEqual(['team-a/']);
    // And the other way round.
    expect((await answer('bob', 'GET', '/v1/secrets/team-ab/key')).status).toBe(200);
    expect((await listAll('bob', 'prefix=team-a')).items.map((i) => i.path).sort()).toEqual([
      'team-ab/key',
      'team-ab/sub/x',
    ]);
  });

  it('grants what it says inside the folder', async () => {
    const put = await answer('alice', 'PUT', '/v1/secrets/team-a/app/new', {
      value: 'n',
      tags: { env: 'dev' },
    });
    expect(put.status).toBe(200);
    expect((await answer('alice', 'GET', '/v1/secrets/team-a/app/new')).body).toMatchObject({ value: 'n' });
    // destroy is not part of the team's grant.
    expect((await answer('alice', 'POST', '/v1/destroy/team-a/app/new', { versions: [1] })).status).toBe(403);
  });
});

describe('re-tagging a prod secret to escape a tag-based forbid', () => {
  it('is denied through PATCH /v1/meta (checked against the current tags)', async () => {
    const res = await answer('alice', 'PATCH', '/v1/meta/team-a/db/password', { tags: { env: 'dev' } });
    expect(res).toEqual({ status: 403, body: { error: { code: 'forbidden', message: 'access denied' } } });
  });

  it('is denied through PUT with new tags, and through PUT keeping them', async () => {
    const retag = await answer('alice', 'PUT', '/v1/secrets/team-a/db/password', {
      value: 'mine',
      tags: { env: 'dev' },
    });
    expect(retag.status).toBe(403);
    const drop = await answer('alice', 'PUT', '/v1/secrets/team-a/db/password', { value: 'mine', tags: {} });
    expect(drop.status).toBe(403);
    const keep = await answer('alice', 'PUT', '/v1/secrets/team-a/db/password', { value: 'mine' });
    expect(keep.status).toBe(403);
  });

  it('left the secret as it was, and still unreadable to the caller', async () => {
    const meta = await h.call('GET', '/v1/meta/team-a/db/password', as('root'));
    expect(meta.body).toMatchObject({ currentVersion: 1, tags: { env: 'prod' } });
    expect((await answer('alice', 'GET', '/v1/secrets/team-a/db/password')).status).toBe(403);
  });

  it('tagging a secret into prod is denied too (checked against the new tags)', async () => {
    expect(
      (await answer('alice', 'PATCH', '/v1/meta/team-a/app/config', { tags: { env: 'prod' } })).status,
    ).toBe(403);
    expect(
      (await answer('alice', 'PUT', '/v1/secrets/team-a/app/fresh', { value: 'x', tags: { env: 'prod' } }))
        .status,
    ).toBe(403);
  });

  it('is allowed to someone the forbid exempts', async () => {
    const res = await answer('carol', 'PATCH', '/v1/meta/team-a/app/config', { tags: { env: 'staging' } });
    expect(res.status).toBe(200);
    expect(res.body.tags).toEqual({ env: 'staging' });
  });
});

describe('folders in a list', () => {
  let f: Harness;
  const tok: Record<string, string> = {};

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-authz-folders-'));
    await cp(join(REPO_POLICIES, 'admins.cedar'), join(dir, 'admins.cedar'));
    await cp(join(REPO_POLICIES, 'schema.cedarschema'), join(dir, 'schema.cedarschema'));
    await writeFile(
      join(dir, 'team.cedar'),
      `@id("team-a") permit (principal in Coffer::Group::"team-a", action, resource in Coffer::Folder::"team-a/");

@id("hush") forbid (principal, action, resource)
when { resource.hasTag("hush") } unless { principal in Coffer::Group::"admins" };

@id("owners") permit (principal, action, resource is Coffer::Secret)
when { resource has owner && resource.owner == principal.id };
`,
    );
    f = await createHarness({
      label: 'authzfolders',
      authorizer: await CedarAuthorizer.fromDir(dir, { logger: jsonLogger(() => {}) }),
    });
    tok.admin = f.token;
    tok.alice = await f.issuer.mint({ subject: 'alice', groups: ['team-a'] });
    tok.nobody = await f.issuer.mint({ subject: 'nobody' });
    for (const [path, tags] of [
      ['team-a/visible/x', {}],
      ['team-a/hush/y', { hush: '1' }],
      ['team-a/hush/deeper/z', { hush: '1' }],
      ['team-a/mixed/a', { hush: '1' }],
      ['team-a/mixed/b', {}],
      ['team-a/gone/z', {}],
      ['team-a/top', {}],
    ] as const) {
      const res = await f.call('PUT', `/v1/secrets/${path}`, { body: { value: 'v', tags } });
      expect(res.status).toBe(200);
    }
    expect((await f.call('DELETE', '/v1/secrets/team-a/gone/z')).status).toBe(200);
  });

  async function level(who: string, prefix: string, limit: number) {
    const folders: string[] = [];
    const items: string[] = [];
    let cursor: string | undefined;
    do {
      const res = await f.call(
        'GET',
        `/v1/list?prefix=${prefix}&delimiter=/&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`,
        { token: tok[who] as string },
      );
      expect(res.status).toBe(200);
      folders.push(...res.body.folders);
      items.push(...res.body.items.map((i: { path: string }) => i.path));
      cursor = res.body.cursor;
    } while (cursor);
    return { folders, items };
  }

  it('shows a folder only when it holds a live secret the caller may list', async () => {
    for (const limit of [1, 2, 100]) {
      expect(await level('alice', 'team-a/', limit)).toEqual({
        folders: ['team-a/mixed/', 'team-a/visible/'],
        items: ['team-a/top'],
      });
      // The admin sees the folder of hushed secrets, not the one whose only secret is deleted.
      expect(await level('admin', 'team-a/', limit)).toEqual({
        folders: ['team-a/hush/', 'team-a/mixed/', 'team-a/visible/'],
        items: ['team-a/top'],
      });
    }
    expect(await level('alice', 'team-a/hush/', 1)).toEqual({ folders: [], items: [] });
    expect(await level('alice', '', 1)).toEqual({ folders: ['team-a/'], items: [] });
  });

  it('creating is authorized against the new secret, which has no owner until it exists', async () => {
    // An "owners manage their secrets" policy must not let anyone create (and so own) a free path.
    for (const [who, path] of [
      ['nobody', 'team-b/db/password'],
      ['alice', 'team-b/db/password'],
      ['nobody', 'team-a/planted'],
    ] as const) {
      const res = await f.call('PUT', `/v1/secrets/${path}`, {
        body: { value: 'x' },
        token: tok[who] as string,
      });
      expect(res.status, `${who} creates ${path}`).toBe(403);
    }
    expect((await f.call('GET', '/v1/meta/team-b/db/password')).status).toBe(404);
    // Created where a policy grants it, the secret is then the creator's: the owner policy applies.
    const made = await f.call('PUT', '/v1/secrets/team-a/alices', {
      body: { value: 'a' },
      token: tok.alice as string,
    });
    expect(made.status).toBe(200);
    const meta = await f.call('GET', '/v1/meta/team-a/alices', { token: tok.alice as string });
    expect(meta.body.owner).toBe('dev:alice');
  });
});

describe('a retried write (Idempotency-Key)', () => {
  it('is decided again: a caller who lost access gets 403, not the first answer', async () => {
    const headers = { 'idempotency-key': 'retag-retry' };
    const first = await h.call('PUT', '/v1/secrets/team-a/app/retry', {
      ...as('alice'),
      body: { value: 'r-1' },
      headers,
    });
    expect(first.status).toBe(200);
    const again = await h.call('PUT', '/v1/secrets/team-a/app/retry', {
      ...as('alice'),
      body: { value: 'r-1' },
      headers,
    });
    expect(again.body).toEqual(first.body);
    // Now the secret is tagged prod: alice may no longer write (nor read) it.
    const tag = await h.call('PATCH', '/v1/meta/team-a/app/retry', {
      ...as('root'),
      body: { tags: { env: 'prod' } },
    });
    expect(tag.status).toBe(200);
    const retry = await h.call('PUT', '/v1/secrets/team-a/app/retry', {
      ...as('alice'),
      body: { value: 'r-1' },
      headers,
    });
    expect(retry.status).toBe(403);
    expect(retry.body.error.code).toBe('forbidden');
    // Nor can the key be used as an oracle for the stored value: a different value is 403 too.
    const guess = await h.call('PUT', '/v1/secrets/team-a/app/retry', {
      ...as('alice'),
      body: { value: 'r-2' },
      headers,
    });
    expect(guess.status).toBe(403);
  });
});

describe('policies whose evaluation errors', () => {
  let e: Harness;
  const logged: Record<string, unknown>[] = [];
  const tok: Record<string, string> = {};

  beforeAll(async () => {
    // A policy dir whose schema declares `issuer` on every User. IAM users have none, so the
    // policies below, valid against that schema, error when an IAM user calls.
    const dir = await mkdtemp(join(tmpdir(), 'coffer-authz-errors-'));
    await cp(join(REPO_POLICIES, 'admins.cedar'), join(dir, 'admins.cedar'));
    const schema = await readFile(join(REPO_POLICIES, 'schema.cedarschema'), 'utf8');
    await writeFile(join(dir, 'schema.cedarschema'), schema.replace('issuer?: String', 'issuer: String'));
    await writeFile(
      join(dir, 'issuers.cedar'),
      `@id("no-partner-users")
forbid (principal is Coffer::User, action, resource) when { principal.issuer == "partner" };

@id("dev-users-read-shared")
permit (
  principal is Coffer::User,
  action in [Coffer::Action::"read", Coffer::Action::"readMetadata"],
  resource in Coffer::Folder::"shared/"
) when { principal.issuer == "dev" };
`,
    );
    const authorizer = await CedarAuthorizer.fromDir(dir, {
      logger: jsonLogger((l) => logged.push(JSON.parse(l))),
    });
    // Dev tokens whose subject starts with "iam-" stand for IAM users (no issuer), as the Lambda
    // adapter would produce them.
    const asIamUser = (dev: Authenticator): Authenticator => ({
      async authenticate(request) {
        const p = await dev.authenticate(request);
        const sub = p.id.slice('dev:'.length);
        if (!sub.startsWith('iam-')) return p;
        const iamUser: Principal = {
          type: 'User',
          id: `arn:aws:iam::111122223333:user/${sub}`,
          groups: p.groups,
          attributes: { account: '111122223333' },
          authMethod: 'iam',
        };
        return iamUser;
      },
    });
    e = await createHarness({
      label: 'authzerr',
      authorizer,
      authenticator: (issuer) => asIamUser(new DevAuthenticator(issuer.publicKey)),
    });
    tok.admin = e.token;
    tok.iamAdmin = await e.issuer.mint({ subject: 'iam-ops', groups: ['admins'] });
    tok.devReader = await e.issuer.mint({ subject: 'reader' });
    tok.iamReader = await e.issuer.mint({ subject: 'iam-reader' });
    const seeded = await e.call('PUT', '/v1/secrets/shared/readme', { body: { value: 'hello' } });
    expect(seeded.status).toBe(200);
  });

  it('a forbid that errors (reads a missing attribute) denies, even an admin', async () => {
    logged.length = 0;
    const put = await e.call('PUT', '/v1/secrets/shared/other', {
      body: { value: 'x' },
      token: tok.iamAdmin,
    });
    expect(put.status).toBe(403);
    const get = await e.call('GET', '/v1/secrets/shared/readme', { token: tok.iamAdmin });
    expect(get.status).toBe(404);
    const warning = logged.find((l) => l.message === 'policy evaluation error');
    expect(warning).toMatchObject({
      level: 'warn',
      outcome: 'denied: a forbid policy failed to evaluate',
      errors: [{ policyId: 'no-partner-users', effect: 'forbid' }],
    });
    expect(JSON.stringify(logged)).not.toContain('hello');
    // The same admin permit with an issuer present: the forbid evaluates (to false) and allows.
    const ok = await e.call('GET', '/v1/secrets/shared/readme', { token: tok.admin });
    expect(ok.status).toBe(200);
  });

  it('a permit that errors grants nothing', async () => {
    const denied = await e.call('GET', '/v1/secrets/shared/readme', { token: tok.iamReader });
    expect(denied.status).toBe(404);
    // Without the error the same permit grants.
    const granted = await e.call('GET', '/v1/secrets/shared/readme', { token: tok.devReader });
    expect(granted.status).toBe(200);
    expect(granted.body.value).toBe('hello');
  });
});

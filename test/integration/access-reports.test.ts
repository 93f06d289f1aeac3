import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AttributeValue, BatchWriteItemCommand } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NoAuditTrail } from '../../lib/audit/trail.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { compilePolicySet, SCHEMA_FILE } from '../../lib/authz/policy-set.js';
import { type Coffer, composeCoffer } from '../../lib/compose.js';
import { parseConfig } from '../../lib/config-file.js';
import { Envelope } from '../../lib/crypto/envelope.js';
import { silentLogger } from '../../lib/log.js';
import { versionToItem } from '../../lib/store/item-codec.js';
import { rootKey } from '../../lib/store/keys.js';
import type { SecretHead } from '../../lib/store/records.js';
import { freshTables } from '../support/dynamo.js';
import { accessClaims, type StaticIssuer, signToken, startStaticIssuer } from '../support/oidc-tokens.js';

/*
 * The must-hold property of the access reports: for a generated policy set and store, `access
 * what` and `access who` agree exactly with the decisions of real API requests made by the same
 * principals, with real OIDC tokens, through the HTTP app.
 */

const SCHEMA = fileURLToPath(new URL(`../../policies/${SCHEMA_FILE}`, import.meta.url));
const TEAMS = 6;
const SUBS = 3;
const SECRETS = 300;
const DELETED = 6;
const PRINCIPALS = 30;
/**
 * Reads and writes cost a storage round trip or more per secret, so each principal really tries
 * every STRIDE-th secret (offset by its index): every secret is still tried by several principals,
 * and the reports must agree exactly on every pair tried. Listings are tried in full.
 */
const STRIDE = 8;

/** A small seeded PRNG (mulberry32): the same store and policies on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rand = prng(17);
const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)] as T;

const GROUPS = [
  ...Array.from({ length: TEAMS }, (_, i) => `team-${i}`),
  ...Array.from({ length: TEAMS }, (_, i) => `readers-${i}`),
  'listers',
  'peekers',
  'meta',
  'prod-readers',
  'writers',
];

/** The generated policy set: folder grants, tag rules, principal tags, named users, a revocation. */
function policies(): string {
  const out: string[] = [`@id("admins") permit (principal in Coffer::Group::"admins", action, resource);`];
  for (let i = 0; i < TEAMS; i++) {
    out.push(
      `@id("team-${i}") permit (principal in Coffer::Group::"team-${i}", action in [Coffer::Action::"read", Coffer::Action::"readMetadata", Coffer::Action::"list", Coffer::Action::"write"], resource in Coffer::Folder::"t${i}/");`,
      `@id("readers-${i}") permit (principal in Coffer::Group::"readers-${i}", action in [Coffer::Action::"read", Coffer::Action::"readMetadata", Coffer::Action::"list"], resource in Coffer::Folder::"t${i}/s${i % SUBS}/");`,
    );
  }
  out.push(
    // Lists everything but may read nothing: folders and secrets appear, values do not.
    `@id("listers") permit (principal in Coffer::Group::"listers", action == Coffer::Action::"list", resource);`,
    // May read but not see: every read is 404.
    `@id("peekers") permit (principal in Coffer::Group::"peekers", action == Coffer::Action::"read", resource);`,
    `@id("meta") permit (principal in Coffer::Group::"meta", action == Coffer::Action::"readMetadata", resource);`,
    // Writers may write what is not prod, anywhere under t1/ and t2/.
    `@id("writers") permit (principal in Coffer::Group::"writers", action == Coffer::Action::"write", resource) when { (resource in Coffer::Folder::"t1/" || resource in Coffer::Folder::"t2/") && !(resource.hasTag("env") && resource.getTag("env") == "prod") };`,
    // A principal tag meets a resource tag.
    `@id("department") permit (principal, action in [Coffer::Action::"read", Coffer::Action::"readMetadata", Coffer::Action::"list"], resource) when { principal.hasTag("department") && resource.hasTag("dept") && principal.getTag("department") == resource.getTag("dept") };`,
    // Prod values only for prod readers (admins included in the rule).
    `@id("prod-floor") forbid (principal, action == Coffer::Action::"read", resource) when { resource.hasTag("env") && resource.getTag("env") == "prod" } unless { principal in Coffer::Group::"prod-readers" || principal in Coffer::Group::"admins" };`,
    // Named principals: one granted, one revoked, one never seen.
    `@id("named-u5") permit (principal == Coffer::User::"corp:u5", action in [Coffer::Action::"read", Coffer::Action::"readMetadata"], resource in Coffer::Folder::"t3/");`,
    `@id("revoked-u7") forbid (principal == Coffer::User::"corp:u7", action, resource);`,
    `@id("named-ghost") permit (principal == Coffer::User::"corp:ghost", action in [Coffer::Action::"read", Coffer::Action::"readMetadata", Coffer::Action::"list"], resource in Coffer::Folder::"t0/");`,
    // Folder listing for the teams' own subfolders only (folders need their own `list`).
    `@id("folders") permit (principal, action == Coffer::Action::"list", resource is Coffer::Folder) when { principal.hasTag("department") };`,
  );
  return out.join('\n');
}

interface Person {
  readonly sub: string;
  /** The secrets this principal reads and writes for real. */
  sample: Set<string>;
  readonly entity: string;
  readonly groups: string[];
  readonly department?: string;
  token: string;
}

const SECRETS_PATHS: { path: string; tags: Record<string, string> }[] = [];
const people: Person[] = [];
let coffer: Coffer;
let issuer: StaticIssuer;
let adminToken: string;

async function call(token: string, method: string, route: string, body?: unknown) {
  const res = await coffer.app.request(route, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  // biome-ignore lint/suspicious/noExplicitAny: answers are read field by field, as in the harness
  return { status: res.status, body: (await res.json()) as any };
}

/**
 * Writes the store with BatchWriteItem (25 items a call) instead of one transaction per secret:
 * the same sealed versions, MAC'd heads and root markers a PUT writes, the first `deleted` of
 * them soft-deleted. Only the setup takes this shortcut; every check goes through the API.
 */
async function seed(secrets: readonly { path: string; tags: Record<string, string> }[], deleted: number) {
  const envelope = new Envelope(coffer.keys);
  const now = new Date().toISOString();
  const purgeAt = new Date(Date.now() + 7 * 86_400_000).toISOString();
  const items: Record<string, AttributeValue>[] = [];
  const roots = new Set<string>();
  for (const [i, { path, tags }] of secrets.entries()) {
    const sealed = await envelope.seal('v', { table: coffer.store.binding, path, version: 1 });
    items.push(
      marshall(
        versionToItem(path, {
          path,
          version: 1,
          createdAt: now,
          createdBy: 'corp:root',
          destroyed: false,
          sealed,
        }),
        { removeUndefinedValues: true },
      ),
    );
    const head: SecretHead = {
      path,
      latest: 1,
      minVersion: 1,
      createdAt: now,
      updatedAt: now,
      tags,
      maxVersions: 10,
      owner: 'corp:root',
      ...(i < deleted ? { deletedAt: now, purgeAt } : {}),
    };
    items.push(coffer.store.sealHead(head, undefined) as Record<string, AttributeValue>);
    const root = rootKey(path);
    if (!roots.has(root.sk)) items.push(marshall(root));
    roots.add(root.sk);
  }
  await pool(
    Array.from({ length: Math.ceil(items.length / 25) }, (_, i) => items.slice(i * 25, i * 25 + 25)),
    4,
    async (chunk) => {
      let request: Record<string, { PutRequest: { Item: Record<string, AttributeValue> } }[]> | undefined = {
        [coffer.store.table]: chunk.map((Item) => ({ PutRequest: { Item } })),
      };
      while (request && Object.keys(request).length > 0) {
        const out = await coffer.store.client.send(new BatchWriteItemCommand({ RequestItems: request }));
        request = out.UnprocessedItems as typeof request;
      }
    },
  );
}

/** Runs tasks with at most `n` at a time. */
async function pool<T>(items: readonly T[], n: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await run(items[next++] as T);
    }),
  );
}

beforeAll(async () => {
  issuer = await startStaticIssuer();
  const mapping = GROUPS.concat('admins')
    .map((g) => `      ${g}: ${g}`)
    .join('\n');
  const config = parseConfig(
    `
issuers:
  - alias: corp
    issuer: ${issuer.issuer}
    audiences: [coffer]
    allowHttpLoopback: true
    claims:
      attributes: { department: department }
    groupMapping:
${mapping}
      idp-only: mapped-but-unused
`,
    { source: 'test', env: {} },
  );
  const set = compilePolicySet({ name: SCHEMA_FILE, text: await readFile(SCHEMA, 'utf8') }, [
    { name: 'generated.cedar', text: policies() },
  ]);
  const { client, tables } = await freshTables('access');
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-access-'));
  coffer = await composeCoffer({
    dynamo: client,
    tables,
    keys: { kind: 'local', dataDir },
    audit: { kind: 'trail', trail: new NoAuditTrail() },
    policy: { authorizer: new CedarAuthorizer(set, { logger: silentLogger }) },
    authn: { config },
    connection: () => ({ sourceIp: '127.0.0.1' }),
    logger: silentLogger,
  });
  const mint = (sub: string, groups: string[], department?: string) =>
    signToken(
      issuer.current,
      accessClaims(issuer.issuer, 'coffer', sub, {
        groups,
        ...(department ? { department } : {}),
        exp: Math.floor(Date.now() / 1000) + 3600,
      }),
    );
  adminToken = await mint('root', ['admins']);

  const depts = ['a', 'b', 'c'];
  for (let i = 0; i < SECRETS; i++) {
    const team = Math.floor(rand() * TEAMS);
    const sub = Math.floor(rand() * SUBS);
    const tags: Record<string, string> = {};
    const env = rand();
    if (env < 0.3) tags.env = 'prod';
    else if (env < 0.6) tags.env = 'dev';
    if (rand() < 0.4) tags.dept = pick(depts);
    const path = rand() < 0.15 ? `t${team}/top-${i}` : `t${team}/s${sub}/secret-${i}`;
    SECRETS_PATHS.push({ path, tags });
  }
  await seed(SECRETS_PATHS, DELETED);
  // Principals: random group sets, some with a department; one pure member of each group; the
  // named and revoked users.
  for (let i = 0; i < PRINCIPALS; i++) {
    const groups = GROUPS.filter(() => rand() < 0.12);
    const department = rand() < 0.4 ? pick(depts) : undefined;
    people.push({
      sub: `u${i}`,
      sample: new Set(),
      entity: '',
      groups,
      ...(department ? { department } : {}),
      token: '',
    });
  }
  for (const g of GROUPS)
    people.push({ sub: `pure-${g}`, sample: new Set(), entity: '', groups: [g], token: '' });
  people.push({ sub: 'root', sample: new Set(), entity: '', groups: ['admins'], token: '' });
  for (const [k, p] of people.entries()) {
    p.sample = new Set(SECRETS_PATHS.map((x) => x.path).filter((_, i) => (i + k) % STRIDE === 0));
    p.token = await mint(p.sub, p.groups, p.department);
    (p as { entity: string }).entity = `Coffer::User::"corp:${p.sub}"`;
  }
}, 180_000);

afterAll(async () => {
  await issuer?.close();
});

/** What each person may really do, found with real requests. */
interface Real {
  read: Set<string>;
  write: Set<string>;
  list: Set<string>;
  folders: Set<string>;
}
const real = new Map<string, Real>();

async function realAccess(p: Person): Promise<Real> {
  const r: Real = { read: new Set(), write: new Set(), list: new Set(), folders: new Set() };
  const paths = SECRETS_PATHS.map((s) => s.path).filter((path) => p.sample.has(path));
  const deleted = new Set(SECRETS_PATHS.slice(0, DELETED).map((x) => x.path));
  for (let i = 0; i < paths.length; i += 20) {
    const res = await call(p.token, 'POST', '/v1/batch-get', { paths: paths.slice(i, i + 20) });
    expect(res.status).toBe(200);
    for (const item of res.body.results) if (item.value !== undefined) r.read.add(item.path);
  }
  let cursor: string | undefined;
  do {
    const res = await call(p.token, 'GET', `/v1/list?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    expect(res.status).toBe(200);
    for (const item of res.body.items) r.list.add(item.path);
    cursor = res.body.cursor;
  } while (cursor);
  for (const prefix of ['', ...Array.from({ length: TEAMS }, (_, i) => `t${i}/`)]) {
    const res = await call(p.token, 'GET', `/v1/list?prefix=${prefix}&delimiter=/&limit=1000`);
    expect(res.status).toBe(200);
    for (const f of res.body.folders) r.folders.add(f);
  }
  // A write with a check-and-set that cannot hold: decided (403) before the check (409), and
  // nothing is written.
  // Live secrets only: a write to a deleted one is refused for being deleted, after the decision.
  await pool(
    paths.filter((path) => !deleted.has(path)),
    6,
    async (path) => {
      const res = await call(p.token, 'PUT', `/v1/secrets/${path}`, { value: 'x', cas: 999_999 });
      if (res.status === 409) r.write.add(path);
      else expect([403, 404], `${p.sub} PUT ${path}`).toContain(res.status);
    },
  );
  return r;
}

describe('access reports against real requests', () => {
  it('when every principal has made real requests, `access what` lists exactly what each could read, write and list', async () => {
    await pool(people, 3, async (p) => {
      real.set(p.sub, await realAccess(p));
    });
    await coffer.directory.flush();

    for (const p of people) {
      const got: Real = { read: new Set(), write: new Set(), list: new Set(), folders: new Set() };
      let cursor: string | undefined;
      let pages = 0;
      do {
        const q = new URLSearchParams({ principal: p.entity, limit: '120', ...(cursor ? { cursor } : {}) });
        const res = await call(adminToken, 'GET', `/v1/access/what?${q}`);
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        expect(res.body.principal.groups).toEqual([...p.groups].sort());
        for (const item of res.body.items) {
          if (item.read && p.sample.has(item.path)) got.read.add(item.path);
          if (item.write && p.sample.has(item.path)) got.write.add(item.path);
          if (item.list) got.list.add(item.path);
        }
        for (const f of res.body.folders) got.folders.add(f);
        cursor = res.body.cursor;
        pages++;
      } while (cursor);
      expect(pages).toBeGreaterThan(1);
      const want = real.get(p.sub) as Real;
      const sorted = (s: Set<string>) => [...s].sort();
      expect(sorted(got.read), `${p.sub} read`).toEqual(sorted(want.read));
      expect(sorted(got.write), `${p.sub} write`).toEqual(sorted(want.write));
      expect(sorted(got.list), `${p.sub} list`).toEqual(sorted(want.list));
      expect(sorted(got.folders), `${p.sub} folders`).toEqual(sorted(want.folders));
    }
    // The generated store and policies exercise every kind of answer.
    const all = [...real.values()];
    expect(all.some((r) => r.read.size > 0 && r.read.size < SECRETS - DELETED)).toBe(true);
    expect(all.some((r) => r.write.size > 0 && r.write.size < SECRETS - DELETED)).toBe(true);
    expect(all.some((r) => r.list.size > r.read.size)).toBe(true);
    expect(all.some((r) => r.folders.size > 0)).toBe(true);
    expect(real.get('pure-peekers')?.read.size).toBe(0);
    expect(real.get('u7')?.read.size).toBe(0);
  }, 300_000);

  it('when asked who may read, write or list each secret, `access who` names exactly the principals whose requests succeeded', async () => {
    expect(real.size).toBe(people.length);
    const live = SECRETS_PATHS.slice(DELETED).map((s) => s.path);
    const checks: [string, 'read' | 'write' | 'list'][] = live.flatMap((path) =>
      (['read', 'write', 'list'] as const).map((a): [string, 'read' | 'write' | 'list'] => [path, a]),
    );
    let ghostSeen = false;
    await pool(checks, 4, async ([path, action]) => {
      const res = await call(adminToken, 'GET', `/v1/access/who?path=${path}&action=${action}`);
      expect(res.status).toBe(200);
      const fromDirectory = res.body.principals
        .filter((x: { sources: string[] }) => x.sources.includes('directory'))
        .map((x: { entity: string }) => x.entity)
        .sort();
      // Reads and writes: among the principals that tried this secret; listings: all of them.
      const tried = (p: Person) => action === 'list' || p.sample.has(path);
      const entityOf = new Map(people.map((p) => [p.entity, p]));
      const reported = fromDirectory.filter((e: string) => tried(entityOf.get(e) as Person));
      const want = people
        .filter((p) => tried(p) && real.get(p.sub)?.[action].has(path))
        .map((p) => p.entity)
        .sort();
      expect(fromDirectory.length).toBeGreaterThanOrEqual(reported.length);
      expect(reported, `${action} ${path}`).toEqual(want);
      // A group is listed when its pure member's requests succeeded.
      for (const g of GROUPS) {
        const member = people.find((p) => p.sub === `pure-${g}`) as Person;
        if (!tried(member)) continue;
        const pure = real.get(member.sub) as Real;
        expect(res.body.groups.includes(g), `${g} ${action} ${path}`).toBe(pure[action].has(path));
      }
      expect(res.body.warnings).toEqual([]);
      if (res.body.principals.some((x: { entity: string }) => x.entity === 'Coffer::User::"corp:ghost"')) {
        ghostSeen = true;
        expect(path.startsWith('t0/') && action !== 'write').toBe(true);
      }
    });
    // A principal named only in a policy, never seen, is reported from the policy.
    expect(ghostSeen).toBe(true);
  }, 300_000);

  it('when a deleted secret is asked about, `access who` answers 404 as reads do', async () => {
    const res = await call(adminToken, 'GET', `/v1/access/who?path=${SECRETS_PATHS[0]?.path}`);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
  });
});

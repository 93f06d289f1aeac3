import { copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpointer } from '../../lib/audit/checkpoint.js';
import { AuditReader } from '../../lib/audit/reader.js';
import { verifyTable } from '../../lib/audit/verify-sources.js';
import { CofferAuthenticator } from '../../lib/authn/authenticator.js';
import { DevTokenVerifier } from '../../lib/authn/dev-authenticator.js';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import { OidcTokenVerifier } from '../../lib/authn/oidc.js';
import { policyValidations } from '../../lib/authz/policy-set.js';
import { type AuditedCoffer, type ControlSettings, composeCoffer } from '../../lib/compose.js';
import { type IssuerConfig, parseConfig } from '../../lib/config-file.js';
import { LocalRootSigner } from '../../lib/keys/local.js';
import { silentLogger } from '../../lib/log.js';
import { CONTROL_PK } from '../../lib/store/control-records.js';
import type { TableNames } from '../../lib/store/tables.js';
import { freshTables } from '../support/dynamo.js';
import { accessClaims, type StaticIssuer, signToken, startStaticIssuer } from '../support/oidc-tokens.js';

/*
 * Policies that change without a deploy and instant revocation (issue 17), on composed Coffer
 * instances sharing one DynamoDB Local table, as Lambda instances share the real one. The
 * freshness bounds are shortened so that "within the bound" is quick to wait for.
 */

const BOUND_MS = 400;
const FAST: ControlSettings = { policyFreshnessMs: BOUND_MS, revocationFreshnessMs: BOUND_MS };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const ADMINS = `@id("admins-may-do-everything")
permit (principal in Coffer::Group::"admins", action, resource);
`;
const DEVS_READ = `@id("devs-read-team")
permit (
  principal in Coffer::Group::"devs",
  action in [Coffer::Action::"read", Coffer::Action::"readMetadata"],
  resource in Coffer::Folder::"team/"
);
`;
/** The bundle's forbid: the floor no pushed set removes. */
const FLOOR = `@id("no-eve")
forbid (principal == Coffer::User::"dev:eve", action, resource);
`;

interface Env {
  readonly client: DynamoDBClient;
  readonly tables: TableNames;
  readonly dataDir: string;
  readonly policyDir: string;
  readonly issuer: DevIssuer;
  readonly oidc: StaticIssuer;
  readonly lines: string[];
}

let env: Env;
const instances: AuditedCoffer[] = [];

function oidcConfig(url: string): IssuerConfig {
  const config = parseConfig(
    `issuers:\n  - { alias: rot, issuer: "${url}", audiences: [coffer], allowHttpLoopback: true, groupMapping: { devs: devs } }\n`,
    { env: {} },
  );
  return config.issuers[0] as IssuerConfig;
}

/** One more app instance over the same tables and keys (a second Lambda environment, say). */
async function instance(control: ControlSettings = FAST): Promise<AuditedCoffer> {
  const coffer = await composeCoffer({
    dynamo: env.client,
    tables: env.tables,
    keys: { kind: 'local', dataDir: env.dataDir },
    audit: { kind: 'dynamo', writer: 'test', chains: 1, sink: (l) => env.lines.push(l) },
    policy: { dir: env.policyDir },
    control,
    authn: {
      authenticator: new CofferAuthenticator({
        verifiers: [
          new DevTokenVerifier(env.issuer.publicKey),
          new OidcTokenVerifier(oidcConfig(env.oidc.url)),
        ],
      }),
    },
    connection: () => ({ sourceIp: '127.0.0.1' }),
    logger: silentLogger,
  });
  instances.push(coffer);
  return coffer;
}

async function call(
  coffer: AuditedCoffer,
  method: string,
  route: string,
  token: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const res = await coffer.app.request(route, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const token = (subject: string, groups: string[]) => env.issuer.mint({ subject, groups });

async function rawItem(sk: string) {
  const out = await env.client.send(
    new GetItemCommand({ TableName: env.tables.secrets, Key: { pk: { S: CONTROL_PK }, sk: { S: sk } } }),
  );
  return out.Item;
}

async function putRaw(item: NonNullable<Awaited<ReturnType<typeof rawItem>>>) {
  await env.client.send(new PutItemCommand({ TableName: env.tables.secrets, Item: item }));
}

async function deleteRaw(sk: string) {
  await env.client.send(
    new DeleteItemCommand({ TableName: env.tables.secrets, Key: { pk: { S: CONTROL_PK }, sk: { S: sk } } }),
  );
}

let admin: string;
let alice: string;
let bob: string;

beforeAll(async () => {
  const { client, tables } = await freshTables('ctl');
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-ctl-'));
  const policyDir = join(dataDir, 'policies');
  await mkdir(policyDir);
  await copyFile('policies/schema.cedarschema', join(policyDir, 'schema.cedarschema'));
  await writeFile(join(policyDir, 'admins.cedar'), ADMINS);
  await writeFile(join(policyDir, 'devs.cedar'), DEVS_READ);
  await writeFile(join(policyDir, 'floor.cedar'), FLOOR);
  env = {
    client,
    tables,
    dataDir,
    policyDir,
    issuer: await DevIssuer.open(dataDir),
    oidc: await startStaticIssuer(),
    lines: [],
  };
  admin = await token('dev-admin', ['admins']);
  alice = await token('alice', ['devs']);
  bob = await token('bob', ['devs']);
  const a = await instance();
  expect((await call(a, 'PUT', '/v1/secrets/team/db', admin, { value: 'v' })).status).toBe(200);
});

afterAll(async () => {
  await env?.oidc.close();
});

describe('revocation', () => {
  it('when a principal is revoked, its next request on this instance is 403 revoked, another instance follows within the bound, and rm restores access', async () => {
    const [a, b] = [await instance(), await instance()];
    expect((await call(a, 'GET', '/v1/secrets/team/db', alice)).status).toBe(200);
    expect((await call(b, 'GET', '/v1/secrets/team/db', alice)).status).toBe(200);

    const added = await call(a, 'POST', '/v1/admin/revocations', admin, {
      principal: { type: 'User', id: 'dev:alice' },
      reason: 'left the company',
    });
    expect(added.status).toBe(200);
    expect(added.body.id).toMatch(/^r-[0-9a-f]{8}$/);

    const denied = await call(a, 'GET', '/v1/secrets/team/db', alice);
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('revoked');
    // Every request, not only secret reads.
    expect((await call(a, 'GET', '/v1/whoami', alice)).body.error.code).toBe('revoked');
    await sleep(BOUND_MS + 50);
    expect((await call(b, 'GET', '/v1/secrets/team/db', alice)).body.error.code).toBe('revoked');
    // Others are untouched.
    expect((await call(b, 'GET', '/v1/secrets/team/db', bob)).status).toBe(200);

    const listed = await call(b, 'GET', '/v1/admin/revocations', admin);
    expect(listed.body.revocations).toEqual([
      expect.objectContaining({
        id: added.body.id,
        principal: { type: 'User', id: 'dev:alice' },
        live: true,
      }),
    ]);
    expect((await call(b, 'DELETE', `/v1/admin/revocations/${added.body.id}`, admin)).status).toBe(200);
    expect((await call(b, 'GET', '/v1/secrets/team/db', alice)).status).toBe(200);
    await sleep(BOUND_MS + 50);
    expect((await call(a, 'GET', '/v1/secrets/team/db', alice)).status).toBe(200);

    // The refusal is audited: principal, deny, code revoked, the revocation as the deciding entry.
    const record = env.lines
      .map((l) => JSON.parse(l))
      .find((r) => r.type === 'request' && r.error === 'revoked' && r.principalId === 'dev:alice');
    expect(record).toMatchObject({ decision: 'deny', policyIds: [`revocation:${added.body.id}`] });
  });

  it('when a group is revoked, its members are refused, and no permit overrides a revocation (not even an admin)', async () => {
    const a = await instance();
    const carol = await token('carol', ['admins']);
    const group = await call(a, 'POST', '/v1/admin/revocations', admin, { group: 'devs' });
    const person = await call(a, 'POST', '/v1/admin/revocations', admin, { principal: { id: 'dev:carol' } });
    expect([group.status, person.status]).toEqual([200, 200]);
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).body.error.code).toBe('revoked');
    expect((await call(a, 'GET', '/v1/secrets/team/db', carol)).body.error.code).toBe('revoked');
    expect((await call(a, 'GET', '/v1/secrets/team/db', admin)).status).toBe(200);
    for (const r of [group, person]) {
      expect((await call(a, 'DELETE', `/v1/admin/revocations/${r.body.id}`, admin)).status).toBe(200);
    }
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(200);
  });

  it('when tokens issued before a time are revoked, an older token is refused and a new one works', async () => {
    const a = await instance();
    const now = Math.floor(Date.now() / 1000);
    const sign = (iat: number) =>
      signToken(env.oidc.current, accessClaims(env.oidc.issuer, 'coffer', 'dana', { iat, groups: ['devs'] }));
    const stolen = await sign(now - 120);
    const fresh = await sign(now);
    expect((await call(a, 'GET', '/v1/secrets/team/db', stolen)).status).toBe(200);
    const cut = await call(a, 'POST', '/v1/admin/revocations', admin, {
      principal: { type: 'User', id: 'rot:dana' },
      tokensIssuedBefore: new Date((now - 60) * 1000).toISOString(),
    });
    expect(cut.status).toBe(200);
    expect((await call(a, 'GET', '/v1/secrets/team/db', stolen)).body.error.code).toBe('revoked');
    expect((await call(a, 'GET', '/v1/secrets/team/db', fresh)).status).toBe(200);
    expect((await call(a, 'DELETE', `/v1/admin/revocations/${cut.body.id}`, admin)).status).toBe(200);
  });

  it('when a caller without admin tries to revoke, it is 403 and the list is unchanged', async () => {
    const a = await instance();
    const res = await call(a, 'POST', '/v1/admin/revocations', bob, { principal: { id: 'dev:alice' } });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('forbidden');
    expect((await call(a, 'GET', '/v1/secrets/team/db', alice)).status).toBe(200);
  });

  it('when the revocation list is deleted, edited or put back to an older generation in DynamoDB, access is never granted: the instance fails closed', async () => {
    const a = await instance();
    const r1 = await call(a, 'POST', '/v1/admin/revocations', admin, { principal: { id: 'dev:alice' } });
    expect(r1.status).toBe(200);
    const older = await rawItem('revocations#list');
    const r2 = await call(a, 'POST', '/v1/admin/revocations', admin, { principal: { id: 'dev:bob' } });
    expect(r2.status).toBe(200);
    const current = await rawItem('revocations#list');
    if (!older || !current) throw new Error('no revocation list stored');

    // Deleted: "never revoked" is a rollback once a list was seen.
    await deleteRaw('revocations#list');
    await sleep(BOUND_MS + 50);
    const deleted = await call(a, 'GET', '/v1/secrets/team/db', alice);
    expect(deleted.status).toBe(500);
    expect(deleted.body.error.code).toBe('integrity_error');
    expect((await call(a, 'GET', '/v1/secrets/team/db', admin)).status).toBe(500);

    // Edited: bob's entry dropped, MAC kept.
    const payload = JSON.parse(current.payload?.S ?? '{}');
    payload.entries = payload.entries.filter(
      (e: { principal?: { id: string } }) => e.principal?.id !== 'dev:bob',
    );
    await putRaw({ ...current, payload: { S: JSON.stringify(payload) } });
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(500);
    // A fresh instance, which never saw the list, refuses the edit too.
    const fresh = await instance();
    expect((await call(fresh, 'GET', '/v1/secrets/team/db', bob)).status).toBe(500);

    // The older generation (before bob was revoked), authentic but rolled back.
    await putRaw(older);
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(500);

    // The genuine record back: the instance decides again, with both revocations.
    await putRaw(current);
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).body.error.code).toBe('revoked');
    expect((await call(a, 'GET', '/v1/secrets/team/db', admin)).status).toBe(200);
    for (const r of [r1, r2]) {
      expect((await call(a, 'DELETE', `/v1/admin/revocations/${r.body.id}`, admin)).status).toBe(200);
    }
  });

  it('when the list is deleted after an audit checkpoint signed its generation, a process that never saw it refuses the absence too', async () => {
    const a = await instance();
    const r = await call(a, 'POST', '/v1/admin/revocations', admin, { principal: { id: 'dev:alice' } });
    expect(r.status).toBe(200);
    await new Checkpointer({
      client: env.client,
      table: env.tables.audit,
      root: a.auditRoot,
      generations: () => a.control.generations(),
    }).write();
    const stored = await rawItem('revocations#list');
    if (!stored) throw new Error('no revocation list stored');
    await deleteRaw('revocations#list');

    // A cold start: it has read nothing yet, but the signed checkpoint says a list existed.
    const cold = await instance();
    const res = await call(cold, 'GET', '/v1/secrets/team/db', alice);
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe('integrity_error');

    await putRaw(stored);
    expect((await call(cold, 'GET', '/v1/secrets/team/db', alice)).body.error.code).toBe('revoked');
    expect((await call(cold, 'DELETE', `/v1/admin/revocations/${r.body.id}`, admin)).status).toBe(200);
  });
});

const DEVS_REMOVED = [{ name: 'admins.cedar', text: ADMINS }];
const WITH_DEVS = [
  { name: 'admins.cedar', text: ADMINS },
  { name: 'devs.cedar', text: DEVS_READ },
];

describe('pushed policy sets', () => {
  it('when a set is pushed, a second running instance applies it within the bound; rollback restores the earlier decisions; every change is audited and audit verify passes', async () => {
    const [a, b] = [await instance(), await instance()];
    expect((await call(b, 'GET', '/v1/secrets/team/db', bob)).status).toBe(200);
    const bundled = a.plane.policySetHash;

    const v1 = await call(a, 'POST', '/v1/admin/policies', admin, { files: WITH_DEVS, comment: 'baseline' });
    expect(v1.status).toBe(200);
    expect(v1.body).toMatchObject({ version: 1, status: 'active' });
    const v2 = await call(a, 'POST', '/v1/admin/policies', admin, { files: DEVS_REMOVED });
    expect(v2.body).toMatchObject({ version: 2, status: 'active' });

    // The pushing instance at once, the other within its bound, without a restart.
    // Bob may no longer see the secret at all: 404, as for one that does not exist.
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(404);
    await sleep(BOUND_MS + 50);
    const validations = policyValidations();
    const denied = await call(b, 'GET', '/v1/secrets/team/db', bob);
    expect(denied.status).toBe(404);
    expect(b.plane.policySetHash).toBe(v2.body.hash);
    // The version record (MAC'd) names the schema it was validated against, this one: applied
    // without validating it again.
    expect(policyValidations()).toBe(validations);

    const back = await call(b, 'POST', '/v1/admin/policies/rollback', admin, { version: 1 });
    expect(back.body).toMatchObject({ version: 3, status: 'active', hash: v1.body.hash });
    expect((await call(b, 'GET', '/v1/secrets/team/db', bob)).status).toBe(200);
    await sleep(BOUND_MS + 50);
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(200);

    const history = await call(a, 'GET', '/v1/admin/policies', admin);
    expect(history.body.active).toMatchObject({
      version: 3,
      action: 'rollback',
      from: 1,
      by: 'User::"dev:dev-admin"',
    });
    expect(history.body.versions.map((v: { version: number; hash: string }) => [v.version, v.hash])).toEqual([
      [3, v1.body.hash],
      [2, v2.body.hash],
      [1, v1.body.hash],
    ]);

    // Each change: one record naming the old and new policy-set hash.
    const records = env.lines.map((l) => JSON.parse(l)).filter((r) => r.type === 'request');
    const changes = records.filter((r) => r.control?.kind === 'policy-set');
    expect(changes.map((r) => [r.control.change, r.control.previousHash, r.control.hash])).toEqual([
      ['push v1', bundled, v1.body.hash],
      ['push v2', v1.body.hash, v2.body.hash],
      ['rollback v3 (from v1)', v2.body.hash, v1.body.hash],
    ]);
    // Each decision names the set that made it: bob's denial on the second instance, v2.
    const bobDenied = records.find(
      (r) => r.principalId === 'dev:bob' && r.status === 404 && r.action === 'read',
    );
    expect(bobDenied?.policySetHash).toBe(v2.body.hash);

    const root = await LocalRootSigner.open(env.dataDir);
    const report = await verifyTable(new AuditReader(env.client, env.tables.audit), {
      rootKeys: [await root.publicKeyPem()],
    });
    expect(report.problems).toEqual([]);

    // Leave the bundled decisions for the next tests: a set like the bundle.
    expect((await call(a, 'POST', '/v1/admin/policies/rollback', admin, { version: 1 })).status).toBe(200);
  });

  it('when a pushed set leaves out a bundled forbid, the forbid still applies (the floor)', async () => {
    const a = await instance();
    const eve = await token('eve', ['admins']);
    expect((await call(a, 'POST', '/v1/admin/policies', admin, { files: DEVS_REMOVED })).status).toBe(200);
    const res = await call(a, 'GET', '/v1/secrets/team/db', eve);
    expect(res.status).toBe(404);
    const record = env.lines
      .map((l) => JSON.parse(l))
      .findLast((r) => r.type === 'request' && r.principalId === 'dev:eve');
    expect(record.policyIds).toEqual(['floor:no-eve']);
    expect((await call(a, 'POST', '/v1/admin/policies', admin, { files: WITH_DEVS })).status).toBe(200);
  });

  it('when a pushed set does not validate against the schema, it is 400 naming the problem, and the set in force stays', async () => {
    const a = await instance();
    expect((await call(a, 'GET', '/v1/whoami', admin)).status).toBe(200);
    const before = a.plane.policySetHash;
    const res = await call(a, 'POST', '/v1/admin/policies', admin, {
      files: [{ name: 'bad.cedar', text: 'permit (principal, action == Coffer::Action::"fly", resource);' }],
    });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('bad.cedar');
    expect(a.plane.policySetHash).toBe(before);
    expect((await call(a, 'POST', '/v1/admin/policies', bob, { files: WITH_DEVS })).status).toBe(403);
  });

  it('when the active policy record is deleted, edited or rolled back in DynamoDB, access is never granted: the instance fails closed', async () => {
    const a = await instance();
    const pushed = await call(a, 'POST', '/v1/admin/policies', admin, { files: DEVS_REMOVED });
    expect(pushed.status).toBe(200);
    const current = await rawItem('policy-set#active');
    if (!current) throw new Error('no active pointer');
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(404);

    await deleteRaw('policy-set#active');
    await sleep(BOUND_MS + 50);
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(500);

    // Pointing the record at an older version that allowed bob, keeping the MAC: refused.
    const payload = JSON.parse(current.payload?.S ?? '{}');
    await putRaw({ ...current, payload: { S: JSON.stringify({ ...payload, version: 1 }) } });
    const edited = await call(a, 'GET', '/v1/secrets/team/db', bob);
    expect(edited.status).toBe(500);
    expect(edited.body.error.code).toBe('integrity_error');
    expect((await call(await instance(), 'GET', '/v1/secrets/team/db', bob)).status).toBe(500);

    await putRaw(current);
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(404);
    expect((await call(a, 'POST', '/v1/admin/policies', admin, { files: WITH_DEVS })).status).toBe(200);
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(200);
  });

  it('when approvals are required, a push waits for a second admin, who alone may approve it', async () => {
    const a = await instance({ ...FAST, requireApproval: true });
    const other = await token('second-admin', ['admins']);
    expect((await call(a, 'GET', '/v1/whoami', admin)).status).toBe(200);
    const before = a.plane.policySetHash;
    const proposed = await call(a, 'POST', '/v1/admin/policies', admin, { files: DEVS_REMOVED });
    expect(proposed.body).toMatchObject({ status: 'pending' });
    expect(a.plane.policySetHash).toBe(before);
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(200);

    const self = await call(a, 'POST', '/v1/admin/policies/approve', admin, {
      version: proposed.body.version,
    });
    expect(self.status).toBe(400);
    const approved = await call(a, 'POST', '/v1/admin/policies/approve', other, {
      version: proposed.body.version,
    });
    expect(approved.body).toMatchObject({ status: 'active', version: proposed.body.version });
    expect((await call(a, 'GET', '/v1/secrets/team/db', bob)).status).toBe(404);
    const history = await call(a, 'GET', '/v1/admin/policies', admin);
    expect(history.body.active).toMatchObject({
      by: 'User::"dev:dev-admin"',
      approvedBy: 'User::"dev:second-admin"',
    });
    expect(history.body.pending).toBeNull();
  });
});

import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { NoAuditTrail } from '../../lib/audit/trail.js';
import { DevAuthenticator } from '../../lib/authn/dev-authenticator.js';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import { AllowAllAuthorizer } from '../../lib/authz/authorizer.js';
import { PolicySetError } from '../../lib/authz/policy-set.js';
import { type CofferSettings, composeCoffer } from '../../lib/compose.js';
import { ConfigError } from '../../lib/errors.js';
import { LocalKeyProvider } from '../../lib/keys/local.js';
import { HmacStorageMacKey } from '../../lib/keys/storage-mac.js';
import { jsonLogger } from '../../lib/log.js';
import { localDynamoClient } from '../../lib/store/dynamo-client.js';
import type { TableNames } from '../../lib/store/tables.js';
import { AUDIT_KEY_ARN, DATA_KEY_ARN, HMAC_KEY_ARN } from '../infra/support/fake-kms.js';
import { freshTables, scanAll } from '../support/dynamo.js';

/*
 * The composition root itself: settings in, a working Coffer out, over DynamoDB Local — and a
 * start that fails before it touches anything when the settings cannot work.
 */

const REPO_POLICIES = fileURLToPath(new URL('../../policies/', import.meta.url));

let client: DynamoDBClient;
let tables: TableNames;

beforeAll(async () => {
  ({ client, tables } = await freshTables('compose'));
});

/** The local server's settings, in a fresh data dir, with the audit lines collected. */
async function localSettings(dataDir: string, auditLines: string[], logLines: string[]) {
  const issuer = await DevIssuer.open(dataDir);
  const settings = {
    dynamo: client,
    tables,
    keys: { kind: 'local', dataDir },
    audit: { kind: 'dynamo', writer: 'local-server', chains: 2, sink: (l: string) => auditLines.push(l) },
    policy: { dir: REPO_POLICIES },
    authn: { config: { issuers: [] }, devIssuerKey: issuer.publicKey },
    connection: () => ({ sourceIp: '127.0.0.1' }),
    logger: jsonLogger((l) => logLines.push(l)),
  } satisfies CofferSettings;
  return { settings, issuer };
}

async function send(
  app: { request: (path: string, init: RequestInit) => Response | Promise<Response> },
  method: string,
  path: string,
  token: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await app.request(path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json() };
}

/** A policy dir with the repository's schema and one policy that names an action the schema lacks. */
async function brokenPolicyDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-policies-'));
  await writeFile(
    join(dir, 'schema.cedarschema'),
    await readFile(join(REPO_POLICIES, 'schema.cedarschema'), 'utf8'),
  );
  await writeFile(
    join(dir, 'broken.cedar'),
    '@id("broken") permit (principal, action == Coffer::Action::"raed", resource);\n',
  );
  return dir;
}

describe('composeCoffer', () => {
  const kms = mockClient(KMSClient);
  afterEach(() => {
    kms.reset();
    vi.restoreAllMocks();
  });

  it('when given the local adapters, it gives a working app whose records are signed by the data-dir root key', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-compose-'));
    const auditLines: string[] = [];
    const logLines: string[] = [];
    const { settings, issuer } = await localSettings(dataDir, auditLines, logLines);
    const coffer = await composeCoffer(settings);
    const token = await issuer.mint({ subject: 'dev-admin', groups: ['admins'] });

    const put = await send(coffer.app, 'PUT', '/v1/secrets/apps/db', token, { value: 's3cret' });
    expect(put).toMatchObject({ status: 200, body: { path: 'apps/db', version: 1 } });
    const get = await send(coffer.app, 'GET', '/v1/secrets/apps/db', token);
    expect(get).toMatchObject({ status: 200, body: { value: 's3cret', version: 1 } });
    // The policies in the directory decide: a caller outside `admins` is denied (the secret is hidden).
    const other = await issuer.mint({ subject: 'bob', groups: [] });
    expect((await send(coffer.app, 'GET', '/v1/secrets/apps/db', other)).status).toBe(404);

    // One record per request, in the table and on the sink, certified by the local root key.
    expect(coffer.auditRoot.keyId).toMatch(/^local-audit:/);
    const records = (await scanAll(client, tables.audit)).filter((i) => i.type === 'request');
    expect(records).toHaveLength(3);
    expect(auditLines.filter((l) => l.includes('"type":"request"'))).toHaveLength(3);
    expect(auditLines.join('\n')).not.toContain('s3cret');
    // The keys live in the data dir, made on first use.
    expect((await readdir(join(dataDir, 'keys'))).sort()).toEqual(
      expect.arrayContaining(['audit-hmac.key', 'audit-root.pem']),
    );
    expect(coffer.keys.keyId).toBe((await LocalKeyProvider.open(dataDir)).keyId);
  });

  it('when the same settings are composed again, the new app reads what the first one wrote', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-compose-'));
    const { settings, issuer } = await localSettings(dataDir, [], []);
    const token = await issuer.mint({ subject: 'dev-admin', groups: ['admins'] });
    const first = await composeCoffer(settings);
    expect((await send(first.app, 'PUT', '/v1/secrets/again/x', token, { value: 'kept' })).status).toBe(200);
    const second = await composeCoffer(settings);
    expect(await send(second.app, 'GET', '/v1/secrets/again/x', token)).toMatchObject({
      status: 200,
      body: { value: 'kept' },
    });
  });

  it('when the policy dir is invalid, it rejects before it opens a key, calls KMS or sends to DynamoDB', async () => {
    const dir = await brokenPolicyDir();
    const unreachable = localDynamoClient('http://127.0.0.1:9');
    const sent = vi.spyOn(unreachable, 'send');
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-compose-'));
    const base = {
      dynamo: unreachable,
      tables,
      audit: { kind: 'dynamo', writer: 'test' },
      policy: { dir },
      authn: { config: { issuers: [] } },
      connection: () => ({ sourceIp: '127.0.0.1' }),
      logger: jsonLogger(() => {}),
    } satisfies Omit<CofferSettings, 'keys'>;

    const local = composeCoffer({ ...base, keys: { kind: 'local', dataDir } });
    await expect(local).rejects.toBeInstanceOf(PolicySetError);
    await expect(local).rejects.toThrow(/broken\.cedar:1:\d+: .*raed/);
    expect(await readdir(dataDir)).toEqual([]);

    const aws = composeCoffer({
      ...base,
      keys: {
        kind: 'kms',
        client: new KMSClient({ region: 'eu-west-1' }),
        keyId: DATA_KEY_ARN,
        auditKeyId: AUDIT_KEY_ARN,
        fieldHmac: { keyId: HMAC_KEY_ARN, label: 'coffer/audit-field-hmac/v1' },
      },
    });
    await expect(aws).rejects.toBeInstanceOf(PolicySetError);
    expect(kms.calls()).toHaveLength(0);
    expect(sent).not.toHaveBeenCalled();
  });

  it('when a DynamoDB audit trail is asked for without a root signer, it says so before loading policies', async () => {
    const start = composeCoffer({
      dynamo: client,
      tables,
      keys: {
        kind: 'ports',
        provider: await LocalKeyProvider.open(await mkdtemp(join(tmpdir(), 'coffer-'))),
        storageMac: new HmacStorageMacKey([{ id: 'test', key: new Uint8Array(32).fill(7) }]),
      },
      audit: { kind: 'dynamo', writer: 'test' },
      policy: { dir: join(tmpdir(), 'no-such-policy-dir') },
      authn: { config: { issuers: [] } },
      connection: () => ({ sourceIp: '127.0.0.1' }),
    });
    await expect(start).rejects.toBeInstanceOf(ConfigError);
    await expect(start).rejects.toThrow('a DynamoDB audit trail needs an audit root signer');
  });

  it('when adapters are given (tests), it uses them as they are and opens only the key ring', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-compose-'));
    const authorizer = new AllowAllAuthorizer();
    const trail = new NoAuditTrail();
    const issuer = await DevIssuer.open(dataDir);
    const authenticator = new DevAuthenticator(issuer.publicKey);
    const coffer = await composeCoffer({
      dynamo: client,
      tables,
      keys: { kind: 'local', dataDir },
      audit: { kind: 'trail', trail },
      policy: { authorizer },
      authn: { authenticator },
      connection: () => ({ sourceIp: '127.0.0.1' }),
      now: () => new Date('2031-05-01T00:00:00Z'),
    });
    expect(coffer.authorizer).toBe(authorizer);
    expect(coffer.audit).toBe(trail);
    expect(coffer.authenticator).toBe(authenticator);
    expect('auditRoot' in coffer).toBe(false);
    // No audit trail of its own: no audit keys were made.
    expect(await readdir(join(dataDir, 'keys'))).not.toContain('audit-root.pem');
    const token = await issuer.mint({ subject: 'anyone', groups: [] });
    const put = await send(coffer.app, 'PUT', '/v1/secrets/given/x', token, { value: 'v' });
    expect(put).toMatchObject({ status: 200, body: { createdAt: '2031-05-01T00:00:00.000Z' } });
  });
});

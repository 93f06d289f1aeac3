import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DecryptCommand,
  GenerateDataKeyCommand,
  KMSClient,
  KMSInvalidStateException,
  ReEncryptCommand,
  RotateKeyOnDemandCommand,
} from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rewrapHandler } from '../../functions/rewrap-handler.js';
import { NoAuditTrail } from '../../lib/audit/trail.js';
import { DevAuthenticator } from '../../lib/authn/dev-authenticator.js';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import { AllowAllAuthorizer } from '../../lib/authz/authorizer.js';
import { type Coffer, composeCoffer } from '../../lib/compose.js';
import { Envelope } from '../../lib/crypto/envelope.js';
import { ConfigError } from '../../lib/errors.js';
import { BranchKeyProvider } from '../../lib/keys/branch-keys.js';
import type { KeyCacheSettings } from '../../lib/keys/key-cache.js';
import { KmsRootKeys } from '../../lib/keys/root-keys.js';
import { HmacStorageMacKey } from '../../lib/keys/storage-mac.js';
import { jsonLogger } from '../../lib/log.js';
import { ControlRecords } from '../../lib/store/control-records.js';
import { freshTables } from '../support/dynamo.js';
import {
  ACCOUNT,
  AUDIT_KEY_ARN,
  DATA_KEY_ARN,
  fakeKms,
  HMAC_KEY_ARN,
  kmsEngine,
  OTHER_KEY_ARN,
} from './support/fake-kms.js';

const kms = mockClient(KMSClient);
const engine = kmsEngine([DATA_KEY_ARN, OTHER_KEY_ARN]);
const OUTSIDE_ARN = `arn:aws:kms:eu-west-1:${ACCOUNT}:key/0b7c1e0e-1111-4d6a-9c1e-000000000009`;
const FOREIGN_ARN = 'arn:aws:kms:eu-west-1:999999999999:key/0b7c1e0e-1111-4d6a-9c1e-00000000000a';

let clock = Date.parse('2026-01-01T00:00:00Z');

async function coffer(options: { rootKeyArns?: string[]; keyCache?: KeyCacheSettings } = {}) {
  const { client, tables } = await freshTables('kk');
  const issuer = await DevIssuer.open(await mkdtemp(join(tmpdir(), 'coffer-kk-')));
  const c: Coffer = await composeCoffer({
    dynamo: client,
    tables,
    keys: {
      kind: 'kms',
      client: new KMSClient({ region: 'eu-west-1', maxAttempts: 1 }),
      keyId: DATA_KEY_ARN,
      auditKeyId: AUDIT_KEY_ARN,
      storageMacKeyId: HMAC_KEY_ARN,
      account: ACCOUNT,
      ...(options.rootKeyArns ? { rootKeyArns: options.rootKeyArns } : {}),
    },
    audit: { kind: 'trail', trail: new NoAuditTrail() },
    policy: { authorizer: new AllowAllAuthorizer() },
    authn: { authenticator: new DevAuthenticator(issuer.publicKey) },
    connection: () => ({ sourceIp: '127.0.0.1' }),
    logger: jsonLogger(() => {}),
    now: () => new Date(clock),
    ...(options.keyCache ? { keyCache: options.keyCache } : {}),
  });
  const token = await issuer.mint({ subject: 'dev-admin', groups: ['admins'] });
  const call = async (method: string, route: string, body?: unknown) => {
    const res = await c.app.request(route, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    // biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
    return { status: res.status, body: (await res.json()) as any };
  };
  return { c, call, tables, client };
}

const branchContext = (binding: string, folder: string, v: number) => ({
  'coffer:table': binding,
  'coffer:purpose': 'branch-key',
  'coffer:folder': folder,
  'coffer:branch-version': String(v),
});

beforeEach(() => {
  kms.reset();
  fakeKms(kms, [DATA_KEY_ARN, OTHER_KEY_ARN], engine);
  clock = Date.parse('2026-01-01T00:00:00Z');
});
afterEach(() => kms.reset());

describe('key hierarchy in KMS mode', () => {
  it('when a folder gets its first branch key and it is unwrapped, KMS is called with the root ARN and the branch context', async () => {
    const { call, tables } = await coffer();
    expect((await call('PUT', '/v1/secrets/team-a/db', { value: 'v1' })).status).toBe(200);
    const ctx = branchContext(tables.secrets, 'team-a', 1);
    expect(kms.commandCalls(GenerateDataKeyCommand).map((x) => x.args[0].input)).toEqual([
      { KeyId: DATA_KEY_ARN, KeySpec: 'AES_256', EncryptionContext: ctx },
    ]);
    // The test unwrap of the new version.
    expect(kms.commandCalls(DecryptCommand).map((x) => x.args[0].input)).toEqual([
      { KeyId: DATA_KEY_ARN, CiphertextBlob: expect.any(Uint8Array), EncryptionContext: ctx },
    ]);
    kms.resetHistory();
    expect((await call('POST', '/v1/keys/flush')).status).toBe(200);
    expect((await call('GET', '/v1/secrets/team-a/db')).body.value).toBe('v1');
    expect(kms.commandCalls(DecryptCommand).map((x) => x.args[0].input)).toEqual([
      { KeyId: DATA_KEY_ARN, CiphertextBlob: expect.any(Uint8Array), EncryptionContext: ctx },
    ]);
    expect(kms.commandCalls(GenerateDataKeyCommand)).toHaveLength(0);
  });

  it('when the root is moved to a key outside the allow-list, it is refused; to an allow-listed one, branch keys are re-wrapped with ReEncrypt', async () => {
    const { call, tables } = await coffer({ rootKeyArns: [OTHER_KEY_ARN] });
    await call('PUT', '/v1/secrets/team-a/db', { value: 'v1' });
    const refused = await call('POST', '/v1/keys/rotate', { root: true, kmsKeyId: OUTSIDE_ARN });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('root_key_not_allowed');
    expect(kms.commandCalls(GenerateDataKeyCommand, { KeyId: OUTSIDE_ARN })).toHaveLength(0);

    kms.resetHistory();
    const moved = await call('POST', '/v1/keys/rotate', { root: true, kmsKeyId: OTHER_KEY_ARN });
    expect(moved.status).toBe(200);
    expect(moved.body).toMatchObject({ from: DATA_KEY_ARN, to: OTHER_KEY_ARN, branchKeys: 1 });
    const ctx = branchContext(tables.secrets, 'team-a', 1);
    expect(kms.commandCalls(ReEncryptCommand).map((x) => x.args[0].input)).toEqual([
      {
        CiphertextBlob: expect.any(Uint8Array),
        SourceKeyId: DATA_KEY_ARN,
        SourceEncryptionContext: ctx,
        DestinationKeyId: OTHER_KEY_ARN,
        DestinationEncryptionContext: ctx,
      },
    ]);
    await call('POST', '/v1/keys/flush');
    kms.resetHistory();
    expect((await call('GET', '/v1/secrets/team-a/db')).body.value).toBe('v1');
    expect(kms.commandCalls(DecryptCommand).map((x) => x.args[0].input.KeyId)).toEqual([OTHER_KEY_ARN]);
  });

  it('when the scheduled re-wrap function runs after a branch key rotation, it moves the folder to the new key and the values read', async () => {
    const { call, tables, client } = await coffer();
    for (const name of ['db', 'api']) {
      expect((await call('PUT', `/v1/secrets/team-a/${name}`, { value: `value of ${name}` })).status).toBe(
        200,
      );
    }
    const rotated = await call('POST', '/v1/keys/rotate', { folder: 'team-a' });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    // Composed by the function itself from its environment's settings (functions/env.ts).
    const run = rewrapHandler(
      {
        tables,
        secretsKeyArn: DATA_KEY_ARN,
        previousSecretsKeyArns: [],
        auditKeyArn: AUDIT_KEY_ARN,
        fieldHmacKeyArn: HMAC_KEY_ARN,
        config: { issuers: [] },
      },
      {
        dynamo: client,
        kms: new KMSClient({ region: 'eu-west-1', maxAttempts: 1 }),
        logger: jsonLogger(() => {}),
      },
    );
    const first = await run(undefined, { getRemainingTimeInMillis: () => 300_000 });
    expect(first.ran).toBe('started');
    expect(first.cursor?.done).toBe(true);
    expect(first.cursor?.rewrapped).toBeGreaterThanOrEqual(2);
    // Every version of the folder is under one key now: the rotated branch key.
    expect(Object.keys(first.cursor?.counts['team-a'] ?? {})).toHaveLength(1);
    // A pass finished just now: the next run has nothing to do.
    expect((await run()).ran).toBe('idle');
    await call('POST', '/v1/keys/flush');
    for (const name of ['db', 'api']) {
      expect((await call('GET', `/v1/secrets/team-a/${name}`)).body.value).toBe(`value of ${name}`);
    }
  });

  it('when the root is rotated without a new key, KMS rotates the current key on demand and nothing else moves', async () => {
    const { call } = await coffer();
    await call('PUT', '/v1/secrets/team-a/db', { value: 'v1' });
    kms.on(RotateKeyOnDemandCommand).resolves({ KeyId: DATA_KEY_ARN });
    kms.resetHistory();
    const res = await call('POST', '/v1/keys/rotate', { root: true });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ from: DATA_KEY_ARN, to: DATA_KEY_ARN, branchKeys: 0, onDemand: true });
    expect(kms.commandCalls(RotateKeyOnDemandCommand).map((x) => x.args[0].input)).toEqual([
      { KeyId: DATA_KEY_ARN },
    ]);
    expect(kms.commandCalls(ReEncryptCommand)).toHaveLength(0);
  });

  it('when an allow-listed root key is in another account, the installation refuses to start', async () => {
    await expect(coffer({ rootKeyArns: [FOREIGN_ARN] })).rejects.toBeInstanceOf(ConfigError);
  });

  for (const [label, error] of [
    ['throttled', Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: {} })],
    [
      'a disconnected custom key store',
      new KMSInvalidStateException({ message: 'custom key store is disconnected', $metadata: {} }),
    ],
  ] as const) {
    it(`when KMS is ${label} and the cached branch key has expired, reads get 503 and are never served from the expired entry`, async () => {
      const { call } = await coffer();
      await call('PUT', '/v1/secrets/team-a/db', { value: 'v1' });
      expect((await call('GET', '/v1/secrets/team-a/db')).status).toBe(200);
      kms.on(DecryptCommand).rejects(error);
      // Within the bound, the cache answers.
      clock += 299_000;
      expect((await call('GET', '/v1/secrets/team-a/db')).status).toBe(200);
      clock += 2_000;
      const res = await call('GET', '/v1/secrets/team-a/db');
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('key_store_unavailable');
      // Still 503 on the next read: the expired entry is gone, not revived.
      expect((await call('GET', '/v1/secrets/team-a/db')).status).toBe(503);
      expect((await call('PUT', '/v1/secrets/team-a/db', { value: 'v2' })).status).toBe(503);
    });
  }

  it('when the use bound is reached, the next read unwraps again and fails closed while KMS is down', async () => {
    const { call } = await coffer({ keyCache: { maxAgeSeconds: 300, maxUses: 3 } });
    await call('PUT', '/v1/secrets/team-a/db', { value: 'v1' });
    expect((await call('GET', '/v1/secrets/team-a/db')).status).toBe(200);
    expect((await call('GET', '/v1/secrets/team-a/db')).status).toBe(200);
    // The second read used the entry up (write: 2 uses, read: 1) and unwrapped again: 1 use.
    expect(kms.commandCalls(DecryptCommand)).toHaveLength(2);
    kms.on(DecryptCommand).rejects(new KMSInvalidStateException({ message: 'disabled', $metadata: {} }));
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await call('GET', '/v1/secrets/team-a/db')).status);
    expect(statuses).toEqual([200, 200, 503, 503]);
  });

  it('when 10,000 warm reads are made, KMS is called once per branch key per cache bound', async () => {
    const { client, tables } = await freshTables('kk10');
    const control = new ControlRecords({
      client,
      table: tables.secrets,
      key: new HmacStorageMacKey([{ id: 'storage-v1', key: new Uint8Array(32).fill(7) }]),
      binding: tables.secrets,
    });
    const root = new KmsRootKeys({ client: new KMSClient({ region: 'eu-west-1' }), keyId: DATA_KEY_ARN });
    const count = async (cache: KeyCacheSettings | undefined, reads: number) => {
      const keys = new BranchKeyProvider({
        root,
        control,
        binding: tables.secrets,
        ...(cache ? { cache } : {}),
      });
      const envelope = new Envelope(keys);
      const id = { table: tables.secrets, path: 'team-a/db', version: 1 };
      const sealed = await envelope.seal('value', id);
      kms.resetHistory();
      for (let i = 0; i < reads; i++) expect(await envelope.open(sealed, id)).toBe('value');
      return kms.calls().length;
    };
    // Default bounds: the branch key was cached when the write unwrapped it; no call at all.
    expect(await count(undefined, 10_000)).toBe(0);
    // A cold instance: one Decrypt for 10,000 reads.
    const cold = new BranchKeyProvider({ root, control, binding: tables.secrets });
    const sealed = await new Envelope(cold).seal('value', {
      table: tables.secrets,
      path: 'team-a/db',
      version: 2,
    });
    const fresh = new Envelope(new BranchKeyProvider({ root, control, binding: tables.secrets }));
    kms.resetHistory();
    for (let i = 0; i < 10_000; i++)
      await fresh.open(sealed, { table: tables.secrets, path: 'team-a/db', version: 2 });
    expect(kms.calls().length).toBe(1);
    // A use bound of 1,000: one Decrypt per 1,000 reads.
    expect(await count({ maxAgeSeconds: 300, maxUses: 1000 }, 10_000)).toBe(10);
    // Disabled: one Decrypt per read.
    expect(await count({ maxAgeSeconds: 0, maxUses: 0 }, 200)).toBe(200);
  });
});

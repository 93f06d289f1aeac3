import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChainPool, WriterChain } from '../../lib/audit/chain.js';
import {
  hmacFieldHasher,
  logLine,
  type RequestRecord,
  recordHash,
  requestFields,
  verifyRootSignature,
} from '../../lib/audit/record.js';
import type { AuditContext } from '../../lib/audit/trail.js';
import type { RootSigner } from '../../lib/keys/provider.js';

const ROOT = join(import.meta.dirname, '../..');

const ed25519Root = (): RootSigner & { pem: string } => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return {
    algorithm: 'Ed25519',
    keyId: 'test-root',
    pem,
    sign: async (m) => sign(null, m, privateKey),
    publicKeyPem: async () => pem,
  };
};

function ctx(overrides: Partial<AuditContext> = {}): AuditContext {
  return {
    requestId: 'r-1',
    time: '2025-01-01T00:00:00.000Z',
    method: 'GET',
    route: '/v1/secrets/a/b',
    sourceIp: '10.0.0.1',
    userAgent: 'ua',
    written: false,
    ...overrides,
  };
}

describe('the audit writer module', () => {
  it('has no update or delete code path: only conditional puts', async () => {
    const source = await readFile(join(ROOT, 'lib/audit/writer.ts'), 'utf8');
    expect(source).not.toMatch(/\b(UpdateItem|DeleteItem|BatchWriteItem|UpdateExpression|DeleteRequest)\b/);
    expect(source).not.toMatch(/\b(Update|Delete)\s*:/);
    expect(source.match(/ConditionExpression: NEVER_WRITTEN/g)?.length).toBeGreaterThanOrEqual(4);
    expect(source).toContain("const NEVER_WRITTEN = 'attribute_not_exists(pk)'");
  });
});

describe('record hashing and fields', () => {
  it('when the same fields come in another order, the hash is the same; any changed field changes it', () => {
    const a = { v: 1, type: 'request', seq: 3, path: 'a/b', principal: { type: 'User', id: 'dev:x' } };
    const b = { principal: { id: 'dev:x', type: 'User' }, path: 'a/b', seq: 3, type: 'request', v: 1 };
    expect(recordHash(a)).toBe(recordHash(b));
    expect(recordHash({ ...a, hash: 'x', sig: 'y' })).toBe(recordHash(a));
    expect(recordHash({ ...a, seq: 4 })).not.toBe(recordHash(a));
    expect(recordHash({ ...a, extra: null })).not.toBe(recordHash(a));
  });

  it('when a request has a query string or client metadata, the record keeps only their keyed HMAC', () => {
    const hasher = hmacFieldHasher(randomBytes(32));
    const fields = requestFields(
      ctx({ sensitive: { query: 'prefix=team-a/secret-project', idempotencyKey: 'client-key-123' } }),
      { status: 200 },
      hasher,
    );
    const text = JSON.stringify(fields);
    expect(text).not.toContain('secret-project');
    expect(text).not.toContain('client-key-123');
    expect(fields.hmac.query).toBe(hasher.hash('query', 'prefix=team-a/secret-project'));
    expect(fields.hmac.query).toMatch(/^[0-9a-f]{64}$/);
    expect(fields.hmacKeyId).toBe(hasher.keyId);
    // The field name is part of what is keyed: one field's HMAC does not match another's.
    expect(hasher.hash('query', 'v')).not.toBe(hasher.hash('idempotencyKey', 'v'));
    expect(hmacFieldHasher(randomBytes(32)).hash('query', 'v')).not.toBe(hasher.hash('query', 'v'));
    // Without a key, sensitive fields are dropped, never stored raw.
    expect(requestFields(ctx({ sensitive: { query: 'q=1' } }), { status: 200 }, undefined).hmac).toEqual({});
    expect(() => hmacFieldHasher(randomBytes(16))).toThrow();
  });

  it('every CloudWatch line of a request record has the same keys, whether or not the request was authenticated', () => {
    const base = requestFields(ctx(), { status: 401, code: 'unauthenticated' }, undefined);
    const anonymous = {
      ...base,
      v: 1,
      type: 'request',
      chain: 'c',
      seq: 1,
      prev: 'p',
      hash: 'h',
      sig: 's',
    } as RequestRecord;
    const known = {
      ...anonymous,
      principal: { type: 'User', id: 'dev:a' },
      authMethod: 'dev',
      action: 'read',
      path: 'a/b',
      version: 2,
      decision: 'allow',
    } as RequestRecord;
    expect(Object.keys(logLine(anonymous)).sort()).toEqual(Object.keys(logLine(known)).sort());
    expect(logLine(anonymous)).toMatchObject({ principalId: null, status: 401, error: 'unauthenticated' });
  });

  it('when a workload calls, the record names the identity kind and its issuer or certificate fingerprint', () => {
    const cert = requestFields(
      ctx({
        principal: {
          type: 'Workload',
          id: 'cert:CN=Acme CA:CN=agent-1',
          groups: [],
          attributes: { serial: '01' },
          authMethod: 'mtls',
          kind: 'certificate',
          issuer: 'CN=Acme CA',
          fingerprint: 'AB:CD',
        },
      }),
      { status: 200 },
      undefined,
    );
    expect(cert.identity).toEqual({
      kind: 'workload-certificate',
      issuer: 'CN=Acme CA',
      fingerprint: 'AB:CD',
    });
    const ci = requestFields(
      ctx({
        principal: {
          type: 'Workload',
          id: 'gha:octo-org/app:production',
          groups: [],
          attributes: {},
          authMethod: 'oidc',
          kind: 'oidc',
          issuer: 'gha',
        },
      }),
      { status: 200 },
      undefined,
    );
    expect(ci.identity).toEqual({ kind: 'workload-oidc', issuer: 'gha', fingerprint: null });
    const person = {
      type: 'User',
      id: 'corp:a',
      groups: [],
      attributes: {},
      authMethod: 'oidc',
      issuer: 'corp',
    } as const;
    expect(requestFields(ctx({ principal: person }), { status: 200 }, undefined).identity).toEqual({
      kind: 'person',
      issuer: 'corp',
      fingerprint: null,
    });
    const role = {
      type: 'Role',
      id: 'arn:aws:iam::1:role/r',
      groups: [],
      attributes: {},
      authMethod: 'iam',
    } as const;
    expect(requestFields(ctx({ principal: role }), { status: 200 }, undefined).identity).toEqual({
      kind: 'iam',
      issuer: null,
      fingerprint: null,
    });
    expect(requestFields(ctx(), { status: 401 }, undefined).identity).toBeNull();
  });
});

describe('root signatures', () => {
  it('verify with Ed25519 and with ECDSA P-256 DER over SHA-256 (the KMS form), and fail with another key', () => {
    const message = Buffer.from('checkpoint bytes');
    const ed = generateKeyPairSync('ed25519');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const edSig = sign(null, message, ed.privateKey).toString('base64');
    const ecSig = sign('sha256', message, { key: ec.privateKey, dsaEncoding: 'der' }).toString('base64');
    expect(verifyRootSignature([ed.publicKey], message, edSig)).toBe(true);
    expect(verifyRootSignature([ec.publicKey], message, ecSig)).toBe(true);
    expect(verifyRootSignature([ec.publicKey, ed.publicKey], message, edSig)).toBe(true);
    expect(verifyRootSignature([ec.publicKey], message, edSig)).toBe(false);
    expect(verifyRootSignature([ed.publicKey], Buffer.from('other'), edSig)).toBe(false);
    expect(verifyRootSignature([ed.publicKey], message, 'not base64 !!')).toBe(false);
  });
});

describe('writer chains', () => {
  it('when a record does not extend the head, commit refuses it; a record signed by another key is never adopted', async () => {
    const root = ed25519Root();
    const chain = new WriterChain('test', new Date());
    const genesis = await chain.certificate(root);
    expect(await chain.certificate(root)).toBe(genesis);
    chain.commit(genesis);
    const first = chain.seal(requestFields(ctx(), { status: 200 }, undefined));
    expect(first).toMatchObject({ seq: 1, prev: genesis.hash });
    expect(() => chain.commit({ ...first, seq: 2 })).toThrow();
    const other = new WriterChain('test', new Date());
    other.commit(await other.certificate(root));
    const foreign = other.seal(requestFields(ctx(), { status: 200 }, undefined));
    expect(chain.adopt({ ...foreign, chain: chain.id, prev: genesis.hash })).toBe(false);
    expect(chain.adopt(first)).toBe(true);
    expect(chain.head).toEqual({ seq: 1, hash: first.hash });
  });

  it('when a chain nears its notAfter, it is retired', () => {
    const start = new Date('2025-01-01T00:00:00Z');
    const chain = new WriterChain('test', start, 3600_000);
    expect(chain.retired(new Date('2025-01-01T00:30:00Z'))).toBe(false);
    expect(chain.retired(new Date('2025-01-01T00:59:00Z'))).toBe(true);
  });

  it('a pool hands each chain to one user at a time, first come first served', async () => {
    let made = 0;
    const pool = new ChainPool(2, () => {
      made++;
      return new WriterChain('test', new Date());
    });
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect(a).not.toBe(b);
    const order: string[] = [];
    const c = pool.acquire().then((x) => {
      order.push('c');
      return x;
    });
    const d = pool.acquire().then((x) => {
      order.push('d');
      return x;
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual([]);
    pool.release(b);
    expect(await c).toBe(b);
    pool.release(a);
    expect(await d).toBe(a);
    expect(order).toEqual(['c', 'd']);
    expect(made).toBe(2);
  });
});
